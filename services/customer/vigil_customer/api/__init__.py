"""HTTP views of the customer service: thin, they parse, authorise, call the domain, commit."""
from .customers import blp as customers_blp

BLUEPRINTS = [customers_blp]
MULTIPART_ENDPOINTS: frozenset[str] = frozenset()
