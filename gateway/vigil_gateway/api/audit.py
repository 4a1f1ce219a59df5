from __future__ import annotations

from flask_smorest import Blueprint

from vigil_shared.http import paginate
from vigil_shared.web import requires

from .. import audit as audit_log
from ..context import db_session
from ..schemas import AuditArgs, AuditPageSchema

blp = Blueprint("audit", __name__, url_prefix="/api/v1", description="The append-only audit log")


@blp.route("/audit", methods=["GET"])
@requires("audit.view")
@blp.arguments(AuditArgs, location="query", as_kwargs=True)
@blp.response(200, AuditPageSchema)
def audit_entries(page, per_page, **filters):
    """Sign-ins, credentials, rights changes and confidential reads, newest first."""
    result = paginate(db_session(), audit_log.query(db_session(), **filters), page, per_page)
    return result.body(), 200, result.headers()
