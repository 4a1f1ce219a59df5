"""The property side of the technician portal: check an account number and PIN, answer what is needed on site.

Only the gateway calls this (its ``POST /api/v1/tech/lookup`` adds the emergency contacts and
audits every lookup), so the route is not routed publicly and stays out of the published API
document. It still declares its rule like every operation.
"""

from __future__ import annotations

from functools import cache

from flask import jsonify
from flask.views import MethodView

from vigil_shared.apidoc import InternalBlueprint
from vigil_shared.identity import Identity
from vigil_shared.service import current_runtime
from vigil_shared.web import requires

from .. import commands, tech
from ..schemas import OnSiteSchema, TechVerifySchema
from .common import context, current_identity
from .present import dump_on_site, on_site_property, on_site_system

blp = InternalBlueprint("tech", __name__, url_prefix="/api/v1/tech")


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
        runtime, identity = current_runtime(), current_identity()
        # the hot path reads outside any transaction and any ORM session: one autocommit connection, no
        # probe, no BEGIN/ROLLBACK, plain rows of what the answer shows (no entities to build); the
        # request's context and session only for a wrong PIN or a count to clear
        with runtime.db.read_engine.connect() as quick:
            found = commands.verify_on_site(
                identity, runtime.cipher, cache(context), _client(identity), data["account_number"], data["pin"], quick
            )
            prop, location_id = found.property, found.location_id
            records = tech.on_site_records(quick, prop.id)
        answer = {
            "property": on_site_property(prop, location_id),
            "systems": [on_site_system(system, location_id, identity) for system in records.systems],
            "equipment": records.equipment,
            "open_appointments": records.appointments,
        }
        # a ready response (flask-smorest passes it through): OnSiteSchema's dump by converters built once
        return jsonify(dump_on_site(answer))
