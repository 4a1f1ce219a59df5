"""HTTP views of the property service: thin, they parse, call one command (``commands``), render."""

from .appointments import blp as appointments_blp
from .archive import blp as archive_blp
from .equipment import blp as equipment_blp
from .monitoring import blp as monitoring_blp
from .properties import blp as properties_blp
from .system_kinds import blp as system_kinds_blp
from .systems import blp as systems_blp
from .tech import blp as tech_blp

BLUEPRINTS = [
    properties_blp,
    systems_blp,
    equipment_blp,
    system_kinds_blp,
    appointments_blp,
    tech_blp,
    monitoring_blp,
    archive_blp,
]
