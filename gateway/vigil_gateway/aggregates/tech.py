"""Technician portal: ``POST /api/v1/tech/lookup`` with an account number and PIN, answered on site.

The view parses the body, calls :func:`vigil_gateway.tech_lookup.look_up_site` (the property
service checks the PIN and answers the site: address, system type, access information, systems,
equipment, open appointments; the customer service adds the emergency contacts) and renders the
answer. Nothing else of the customer (SSN, birthdate, billing) is asked for, and the response schema
(``vigil_shared.onsite``) lets only the documented fields out.

Every lookup, good or bad (refused, malformed, locked, wrong PIN), is written to the audit log as
``tech.lookup`` with the account number tried, never the PIN.
"""

from __future__ import annotations

from functools import wraps

from flask import g, jsonify, request
from flask.views import MethodView
from marshmallow import Schema, fields, validate
from werkzeug.exceptions import HTTPException

from vigil_shared.alike import alike
from vigil_shared.endpoints import Blueprint
from vigil_shared.errors import Problem
from vigil_shared.fields import schema_dumper
from vigil_shared.onsite import TechOnSite

from .. import audit
from ..context import database
from ..tech_lookup import look_up_site

blp = Blueprint("tech", __name__, url_prefix="/api/v1/tech", description="Technician portal")


class TechLookupRequest(Schema):
    account_number = fields.String(
        required=True,
        validate=validate.Length(min=1, max=40),
        metadata={"description": "The property's monitoring account number"},
    )
    pin = fields.String(
        required=True,
        validate=validate.Regexp(r"^[0-9]{4}$", error="Exactly 4 digits."),
        metadata={"description": "The property's 4-digit account PIN"},
    )


class TechContactPhone(Schema):
    label, number, e164 = alike(3, fields.String, allow_none=True)


class TechContact(Schema):
    id = fields.Integer()
    name = fields.String()
    relation, role = alike(2, fields.String, allow_none=True)
    phones = fields.List(fields.Nested(TechContactPhone))
    email = fields.String(allow_none=True)
    has_key = fields.Boolean()
    call_priority = fields.Integer(allow_none=True)
    is_primary = fields.Boolean()


class TechLookupResult(TechOnSite):
    """The property service's answer (one declaration with it), plus what the gateway adds."""

    emergency_contacts = fields.List(
        fields.Nested(TechContact),
        allow_none=True,
        metadata={"description": "In calling order; null when the customer service could not be asked (see `partial`)"},
    )
    # marshmallow types Schema.partial (a load option) as a bool; a field of that name is what it declares here
    partial = fields.Boolean(metadata={"description": "True when a part could not be fetched"})  # type: ignore[assignment]
    unavailable = fields.List(fields.String(), metadata={"description": "Services that did not answer"})


# TechLookupResult's dump, by converters built once; gateway/tests/test_tech_lookup.py pins it to the schema's
dump_lookup_result = schema_dumper(TechLookupResult())


# --- audit ---------------------------------------------------------------------------------------


def _outcome(status: int) -> str:
    if status < 400:
        return audit.SUCCESS
    return audit.DENIED if status in (401, 403, 429) else audit.FAILURE


def _account_tried() -> str | None:
    body = request.get_json(silent=True)
    value = body.get("account_number") if isinstance(body, dict) else None
    return value[:40] if isinstance(value, str) else None


def _audit(status: int, reason: str | None = None) -> None:
    details = {"account_number": _account_tried(), "status": status}
    if reason:
        details["reason"] = reason
    found = g.get("tech_site") or {}
    if found.get("customer_id") is not None:
        details["customer_id"] = found["customer_id"]
    if g.get("tech_partial"):
        details["partial"] = True
    audit.record(
        database(),
        "tech.lookup",
        _outcome(status),
        target_type="property" if found else None,
        target_id=found.get("id"),
        details=details,
    )


def audited(view):
    """Writes one ``tech.lookup`` audit entry for whatever becomes of the request, refusals included."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        try:
            response = view(*args, **kwargs)
        except Problem as problem:
            _audit(problem.status, problem.type if problem.type != "about:blank" else problem.title)
            raise
        except HTTPException as error:
            _audit(error.code or 500, error.name)
            raise
        except Exception:
            _audit(500, "unexpected error")
            raise
        _audit(response.status_code)
        return response

    return wrapper  # functools.wraps carries what flask-smorest documented on the view


# --- the operation -------------------------------------------------------------------------------


LOOKUP_REFUSED = {
    403: "You lack `tech_portal.use`, or hold it only at other locations than the "
    "property's (said once the PIN is right)",
    404: "No property matches this account number and PIN",
    503: "The property service is unavailable",
    429: "Too many attempts from your address, or the account is locked after 5 wrong PINs (see `Retry-After`)",
}


@blp.route("/lookup")
class TechLookup(MethodView):
    @audited
    @blp.operation("tech_portal.use", TechLookupResult, body=TechLookupRequest, answers=LOOKUP_REFUSED)
    def post(self, data):
        """Identify a property on site with its account number and PIN; get what the visit needs.

        Needs `tech_portal.use` at the property's location. Every lookup is audited.
        """
        found = look_up_site(data)
        g.tech_site, g.tech_partial = found.property_found, found.partial  # for the audit entry
        # a ready response (flask-smorest passes it through): only TechLookupResult's fields leave, dumped
        # by converters built once (marshmallow's nested dump of the whole answer was the view's largest part)
        response = jsonify(dump_lookup_result(found.body()))
        response.headers.update(found.headers())
        return response
