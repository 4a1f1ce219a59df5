"""Service-to-service reads of the customer service, never routed by the gateway and left out of
the published API document.

``GET /api/v1/internal/customers/{id}/credit-subject``: what a credit bureau needs about the subject
(name, address, SSN, birthdate), for the credit service at pull time only. Only the credit service's identity
holding both confidential view permissions may read it, and every read is audited in the
customer's history (``credit_subject_read``: who, when, which fields, the request id).

``GET /api/v1/internal/customers/{id}/emergency-contacts``: the emergency contacts in call order as
the gateway's technician lookup shows them (no passcode), for a caller holding ``contacts.view`` at
the record's location: one query, where the public contacts list reads the record, counts and
decrypts every passcode to mask it.
"""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from vigil_shared.service import current_runtime
from vigil_shared.web import current_identity, requires

from .. import commands
from .common import context


class InternalBlueprint(Blueprint):
    """A blueprint whose operations are left out of the OpenAPI document (service-to-service only)."""

    def register_views_in_doc(self, api, app, spec, *, name, parameters):
        return None


blp = InternalBlueprint("internal", __name__, url_prefix="/api/v1/internal")


@blp.route("/customers/<int:customer_id>/credit-subject")
class CreditSubject(MethodView):
    @requires("confidential.ssn.view")
    def get(self, customer_id):
        """The subject of a credit pull, SSN and birthdate unmasked: services only, audited."""
        return commands.read_credit_subject(context(), customer_id), 200


@blp.route("/customers/<int:customer_id>/emergency-contacts")
class EmergencyContacts(MethodView):
    @requires("contacts.view")
    def get(self, customer_id):
        """The emergency contacts of an on-site lookup, in call order (no passcode)."""
        return {"items": commands.read_emergency_contacts(current_identity(), customer_id, current_runtime().db)}, 200
