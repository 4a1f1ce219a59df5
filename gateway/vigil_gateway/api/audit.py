from __future__ import annotations

from vigil_shared.endpoints import Blueprint
from vigil_shared.http import paginate

from .. import audit as audit_log
from ..context import db_session
from ..schemas import AuditArgs, AuditPageSchema

blp = Blueprint("audit", __name__, url_prefix="/api/v1", description="The append-only audit log")


@blp.route("/audit", methods=["GET"])
@blp.read("audit.view", AuditPageSchema, query=AuditArgs)
def audit_entries(page, per_page, **filters):
    """Sign-ins, credentials, rights changes and confidential reads, newest first."""
    result = paginate(db_session(), audit_log.query(db_session(), **filters), page, per_page)
    return result.body(), 200, result.headers()
