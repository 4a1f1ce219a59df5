"""HTTP views of the customer service: thin, they parse, call one command (``commands``), render."""

from .contacts import blp as contacts_blp
from .custom_fields import blp as custom_fields_blp
from .customers import blp as customers_blp
from .files import UPLOAD_ENDPOINT
from .files import blp as files_blp
from .internal import blp as internal_blp
from .leads import blp as leads_blp
from .monitoring_companies import blp as monitoring_companies_blp
from .notes import blp as notes_blp
from .tags import applied as customer_tags_blp
from .tags import catalog as tags_blp

BLUEPRINTS = [
    customers_blp,
    leads_blp,
    notes_blp,
    contacts_blp,
    customer_tags_blp,
    files_blp,
    tags_blp,
    custom_fields_blp,
    monitoring_companies_blp,
    internal_blp,
]
MULTIPART_ENDPOINTS = frozenset({UPLOAD_ENDPOINT})
