"""What a technician is told on site: the property service's answer to an account number and PIN,
which the gateway's ``POST /api/v1/tech/lookup`` passes on (adding the emergency contacts).

One declaration for both: the property service dumps its records through these schemas and the
gateway dumps the property service's JSON through them again, so only these fields ever leave.
Dates and timestamps therefore accept a value already in wire form and keep it as it is.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields

from .fields import Timestamp


class _KeepsWireForm:
    """A value that is already a string (an upstream answer passed on) is written unchanged."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        if isinstance(value, str):
            return value
        return super()._serialize(value, attr, obj, **kwargs)  # type: ignore[misc]


class OnSiteDate(_KeepsWireForm, fields.Date):
    pass


class OnSiteTimestamp(_KeepsWireForm, Timestamp):
    pass


class TechAccess(Schema):
    managed_by = fields.String(allow_none=True)
    name = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    email = fields.String(allow_none=True)
    notes = fields.String(allow_none=True)


class TechSite(Schema):
    """The property, without its PIN and without customer data."""

    id = fields.Integer()
    customer_id = fields.Integer()
    location_id = fields.Integer(allow_none=True)
    account_number = fields.String(allow_none=True)
    type = fields.String(allow_none=True)
    system_type = fields.String(allow_none=True)
    address = fields.String(allow_none=True)
    city = fields.String(allow_none=True)
    postal_code = fields.String(allow_none=True)
    monitoring_status = fields.String()
    active = fields.Boolean()
    notes = fields.String(allow_none=True)
    access = fields.Nested(TechAccess)


class TechSystem(Schema):
    id = fields.Integer()
    kind_id = fields.Integer()
    kind_name = fields.String(allow_none=True)
    ip_address = fields.String(allow_none=True)
    port = fields.Integer(allow_none=True)
    username = fields.String(allow_none=True)
    password = fields.String(
        allow_none=True,
        metadata={"description": "`***` without confidential.installation_codes.view at the property's location"},
    )
    version = fields.String(allow_none=True)
    notes = fields.String(allow_none=True)
    details = fields.Dict(keys=fields.String(), values=fields.String())


class TechEquipment(Schema):
    id = fields.Integer()
    item = fields.String()
    zone = fields.String(allow_none=True)
    serial_number = fields.String(allow_none=True)
    install_date = OnSiteDate(allow_none=True)
    warranty_end = OnSiteDate(allow_none=True)
    status = fields.String()


class TechAppointment(Schema):
    id = fields.Integer()
    type = fields.String()
    starts_at = OnSiteTimestamp()
    ends_at = OnSiteTimestamp()
    technician_id = fields.Integer(allow_none=True)
    notes = fields.String(allow_none=True)


class TechOnSite(Schema):
    """The property service's whole answer."""

    property = fields.Nested(TechSite)
    systems = fields.List(fields.Nested(TechSystem))
    equipment = fields.List(fields.Nested(TechEquipment))
    open_appointments = fields.List(fields.Nested(TechAppointment))
