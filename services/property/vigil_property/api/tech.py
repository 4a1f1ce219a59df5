"""The property side of the technician portal: check an account number and PIN, answer what is needed on site.

Only the gateway calls this (its ``POST /api/v1/tech/lookup`` adds the emergency contacts and
audits every lookup), so the route is not routed publicly and stays out of the published API
document. It still declares its rule like every operation.
"""

from __future__ import annotations

from flask.views import MethodView
from sqlalchemy.orm import Session

from vigil_shared.apidoc import InternalBlueprint
from vigil_shared.identity import Identity
from vigil_shared.onsite import TechSite
from vigil_shared.service import current_runtime
from vigil_shared.web import requires

from .. import appointments, commands, equipment, systems
from ..schemas import OnSiteSchema, TechVerifySchema
from .common import context
from .present import property_body, system_body

blp = InternalBlueprint("tech", __name__, url_prefix="/api/v1/tech")

ON_SITE_PROPERTY_FIELDS = tuple(TechSite().fields)  # what the on-site contract lets out, no more


def _client(identity: Identity) -> str:
    """Attempts are counted per client address; a caller without one counts on its own."""
    return (identity.client_ip or f"{identity.kind}:{identity.subject}")[:100]


@blp.route("/verify")
class TechVerify(MethodView):
    @requires("tech_portal.use")
    @blp.arguments(TechVerifySchema)
    @blp.response(200, OnSiteSchema)
    def post(self, data):
        """Check an account number and PIN (constant time); 404 for either wrong, 429 when locked or too fast."""
        ctx = context()
        # the hot path reads outside any transaction: one autocommit connection, no probe, no BEGIN/ROLLBACK
        with Session(current_runtime().db.read_engine, expire_on_commit=False) as quick:
            found = commands.verify_on_site(ctx, _client(ctx.identity), data["account_number"], data["pin"], quick)
            identity, prop, location_id = ctx.identity, found.property, found.location_id
            body = property_body(prop, location_id, with_pin=False)
            return {
                "property": {key: body[key] for key in ON_SITE_PROPERTY_FIELDS},
                "systems": [
                    system_body(system, kind, location_id, identity)
                    for system, kind in systems.systems_with_kinds(quick, prop.id)
                ],
                "equipment": equipment.equipment_of(quick, prop.id),
                "open_appointments": appointments.open_appointments(quick, prop.id),
            }
