"""The gateway's own operations; everything else under /api/v1 is forwarded to a service."""

from .access import blp as access_blp
from .audit import blp as audit_blp
from .auth import blp as auth_blp
from .integrations import blp as integrations_blp
from .users import blp as users_blp
from .webhooks import blp as webhooks_blp

BLUEPRINTS = [auth_blp, users_blp, access_blp, audit_blp, webhooks_blp, integrations_blp]
