"""HTTP views of the credit service: thin, they parse, call one command (``commands``), render."""

from .checks import blp as checks_blp

BLUEPRINTS = [checks_blp]
