"""Operations the gateway answers by combining several services (summaries, technician lookup).

Each aggregate is a flask-smorest Blueprint in its own module of this package, listed here.
"""

from .operations import blp as operations_blp
from .summary import blp as summary_blp
from .tech import blp as tech_blp

BLUEPRINTS: list = [tech_blp, summary_blp, operations_blp]
