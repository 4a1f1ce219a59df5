"""HTTP views of the property service: thin, they parse, authorise, call the domain, commit."""
from .properties import blp as properties_blp

BLUEPRINTS = [properties_blp]
