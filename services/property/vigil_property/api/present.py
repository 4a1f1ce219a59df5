"""Records as a caller sees them: confidential values in clear only for those allowed, and noted.

Every response passes through here, so a PIN or system password never leaves unmasked by accident;
each unmasked value is reported to the gateway (``note_confidential_read``), which audits it.
"""

from __future__ import annotations

from types import SimpleNamespace

from flask import Response, jsonify

from vigil_shared.fields import schema_dumper
from vigil_shared.http import etag_headers
from vigil_shared.identity import Identity
from vigil_shared.masking import mask
from vigil_shared.onsite import TechSite
from vigil_shared.runtime import current_runtime
from vigil_shared.web import current_identity, note_confidential_read

from .. import pins
from ..models import Property, System, SystemKind
from ..properties import ACCESS_COLUMNS, PLAIN_FIELDS
from ..schemas import OnSiteSchema, PropertySchema

CODES_VIEW = "confidential.installation_codes.view"
# the property's own columns as shown (the editable ones are the domain's PLAIN_FIELDS); the PIN and access apart
PROPERTY_COLUMNS = ("id", "customer_id", *PLAIN_FIELDS, "active", "deactivated_at", "created_at", "updated_at")


def may_see_codes(location_id: int | None, identity: Identity | None = None) -> bool:
    return (identity or current_identity()).can(CODES_VIEW, location_id)


def property_body(prop: Property, location_id: int | None, *, with_pin: bool = True, reveal: bool = True) -> dict:
    """The property as the caller sees it; ``reveal=False`` masks the PIN even for those allowed to see it."""
    body = {column: getattr(prop, column) for column in PROPERTY_COLUMNS}
    body["location_id"] = location_id
    body["access"] = {key: getattr(prop, column) for key, column in ACCESS_COLUMNS.items()}
    if not with_pin:
        return body
    if reveal and may_see_codes(location_id):
        body["pin"] = pins.reveal(current_runtime().cipher, prop)
        note_confidential_read("property", prop.id, ["pin"])
    else:
        body["pin"] = mask(pins.DEFAULT_PIN)
    return body


# PropertySchema's dump of a property_body, by converters built once (the schema's per-value machinery
# was a tenth of a read's CPU); tests/test_properties.py pins the JSON to the schema's own dump.
_dump_property = schema_dumper(PropertySchema())


def property_response(scoped, status: int = 200, **headers: str) -> Response:
    """The property as the caller sees it, as a ready response with its ``ETag`` (a ``Response`` passes
    flask-smorest's ``@blp.response`` untouched)."""
    response = jsonify(_dump_property(property_body(scoped.property, scoped.location_id)))
    response.status_code = status
    response.headers.update(etag_headers(scoped.property, **headers))
    return response


def property_page(page, locations: dict[int, int | None]):
    """A list response. A list never shows PINs, so no single call can collect them in bulk: read the
    property for that."""
    return page.answer(lambda item: property_body(item, locations.get(item.customer_id), reveal=False))


def system_body(
    system: System, kind: SystemKind | None, location_id: int | None, identity: Identity | None = None
) -> dict:
    body = {
        column: getattr(system, column)
        for column in (
            "id",
            "property_id",
            "kind_id",
            "ip_address",
            "port",
            "username",
            "version",
            "notes",
            "created_at",
            "updated_at",
        )
    }
    body["kind_name"] = kind.name if kind else None
    body["details"] = dict(system.details or {})
    body["password"] = system_password(system, location_id, identity)
    return body


def system_password(system, location_id: int | None, identity: Identity | None = None) -> str | None:
    """A system's password as the caller may see it (``system``: an entity or a row with its ``id`` and
    ``password_encrypted``): in clear, and noted for the gateway's audit, only with the codes right."""
    if system.password_encrypted is None:
        return None
    if may_see_codes(location_id, identity):
        password = current_runtime().cipher.decrypt(system.password_encrypted)
        note_confidential_read("system", system.id, ["password"])
        return password
    return mask(system.password_encrypted)


# --- the technician lookup's on-site answer, from plain rows (tech.CANDIDATE_PROPERTY_COLUMNS and the
# on_site reads of systems, equipment and appointments): what OnSiteSchema lets out, no more

ON_SITE_PROPERTY_COLUMNS = tuple(
    name for name in TechSite().fields if name not in ("location_id", "access")
)  # the rest of TechSite's fields are the property's own columns


def on_site_property(prop, location_id: int | None) -> dict:
    """The property as the on-site answer shows it: never its PIN (masked or not)."""
    body = {column: getattr(prop, column) for column in ON_SITE_PROPERTY_COLUMNS}
    body["location_id"] = location_id
    body["access"] = {key: getattr(prop, column) for key, column in ACCESS_COLUMNS.items()}
    return body


def on_site_system(system: dict, location_id: int | None, identity: Identity) -> dict:
    """A system (``tech.on_site_records``: its columns by name) as the on-site answer shows it, its
    password as :func:`system_body`'s."""
    body = dict(system)
    body["details"] = dict(body["details"] or {})
    body["password"] = system_password(SimpleNamespace(**system), location_id, identity)
    return body


# OnSiteSchema's dump, by converters built once (tests/test_tech_verify.py pins the JSON to the
# schema's own dump of the entities the lookup loaded before)
dump_on_site = schema_dumper(OnSiteSchema())
