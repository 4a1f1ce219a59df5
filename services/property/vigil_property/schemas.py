"""Request and response shapes of the property API.

Request bodies refuse every field they do not declare (422 naming it); fields the server owns
(``id``, ``customer_id``, ``location_id``, timestamps, ``active``…) are named as read-only, so a
client learns which action sets them instead of seeing them silently ignored.
"""

from __future__ import annotations

import ipaddress

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from vigil_shared.fields import ReadOnlyAwareInput, Timestamp, TrimmedString, text
from vigil_shared.http import MAX_PER_PAGE, PaginationArgs, page_schema
from vigil_shared.onsite import TechOnSite

from .models import (
    ACCESS_MANAGERS,
    APPOINTMENT_STATUSES,
    APPOINTMENT_TYPES,
    EQUIPMENT_STATUSES,
    MONITORING_STATUSES,
    PROPERTY_TYPES,
)
from .pins import PIN_PATTERN


class Choice(fields.String):
    """One of ``choices``, case-insensitive; an empty string means none when ``allow_none``."""

    def __init__(self, choices, **kwargs):
        self.choices = tuple(choices)
        metadata = {"enum": [*self.choices, *([None] if kwargs.get("allow_none") else [])]}
        super().__init__(metadata=metadata | kwargs.pop("metadata", {}), **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs).strip().lower()
        if text == "" and self.allow_none:
            return None
        if text not in self.choices:
            raise ValidationError(f"Must be one of: {', '.join(self.choices)}.")
        return text


class Input(ReadOnlyAwareInput):
    """A request body of this service: these fields are the server's."""

    READ_ONLY = ReadOnlyAwareInput.READ_ONLY | {
        "active",
        "deactivated_at",
        "property_id",
        "kind_id",
        "kind_name",
        "status",
        "cancelled_at",
        "cancelled_by",
    }


class AccessSchema(Schema):
    """Who manages access to the site (a tenant, a letting agent…) and how to get in."""

    managed_by = Choice(
        ACCESS_MANAGERS,
        allow_none=True,
        metadata={"description": "Who manages access: owner, tenant, letting_agent or other"},
    )
    name = text(200)
    phone = text(40)
    email = fields.Email(allow_none=True, validate=validate.Length(max=254))
    notes = text(5000, metadata={"description": "Gate, key-safe and entry notes"})


class AccessInput(AccessSchema, Input):
    pass


class PropertySchema(Schema):
    id = fields.Integer(dump_only=True)
    customer_id = fields.Integer(dump_only=True)
    location_id = fields.Integer(
        dump_only=True, allow_none=True, metadata={"description": "Office location: the customer's"}
    )
    account_number = fields.String(allow_none=True)
    pin = fields.String(metadata={"description": "Account PIN; `***` without confidential.installation_codes.view"})
    type = fields.String(allow_none=True, metadata={"enum": [*PROPERTY_TYPES, None]})
    system_type = fields.String(allow_none=True)
    address = fields.String(allow_none=True)
    city = fields.String(allow_none=True)
    postal_code = fields.String(allow_none=True)
    monitoring_status = fields.String(metadata={"enum": list(MONITORING_STATUSES)})
    central_station = fields.String(
        allow_none=True,
        metadata={
            "description": "The central station the property is linked to (set by its first message); while "
            "set, the customer's Monitored By cannot change. PATCH it to null to unlink."
        },
    )
    notes = fields.String(allow_none=True)
    access = fields.Nested(AccessSchema)
    active = fields.Boolean(metadata={"description": "False once deactivated; inactive properties cannot be edited"})
    deactivated_at = Timestamp(allow_none=True)
    created_at = Timestamp()
    updated_at = Timestamp()


class PropertyCreateSchema(Input):
    account_number = TrimmedString(
        allow_none=True,
        validate=validate.Length(min=1, max=40),
        metadata={"description": "Monitoring account number, unique"},
    )
    pin = fields.String(
        validate=validate.Regexp(PIN_PATTERN, error="Exactly 4 digits."),
        metadata={"description": "Account PIN for the technician portal, 4 digits; 0000 by default"},
    )
    type = Choice(PROPERTY_TYPES, allow_none=True, metadata={"description": "residential, commercial or empty"})
    system_type = text(200, metadata={"description": "e.g. DSC 1832 + CCTV"})
    address = text(200)
    city = text(100)
    postal_code = text(20)
    monitoring_status = Choice(MONITORING_STATUSES, metadata={"description": "active (default), suspended, cancelled"})
    notes = text(10_000)
    access = fields.Nested(AccessInput)


def _only_null(value: object) -> None:
    raise ValidationError("Only null (unlink): a property is linked by its central station's messages.")


class PropertyPatchSchema(PropertyCreateSchema):
    """Any subset of the fields; ``access`` changes only the sub-fields it names."""

    central_station = fields.String(
        allow_none=True,
        validate=_only_null,
        metadata={"description": "null unlinks the property from its central station (Monitored By is then free)"},
    )


class PropertyListArgs(PaginationArgs):
    q = TrimmedString(
        validate=validate.Length(max=200),
        metadata={"description": "Matches account number, address, city, postal code or system type"},
    )
    account_number = TrimmedString(validate=validate.Length(max=40))
    customer_id = fields.Integer()
    ids = fields.List(
        fields.Integer(),
        data_key="id",
        validate=validate.Length(max=MAX_PER_PAGE),
        metadata={"description": "Only these properties (`id=1&id=2`, at most 100): many reads in one call"},
    )
    monitoring_status = Choice(MONITORING_STATUSES)
    type = Choice(PROPERTY_TYPES)
    active = fields.Boolean()
    sort = fields.String(
        load_default="id",
        validate=validate.OneOf(
            ["id", "-id", "account_number", "-account_number", "city", "-city", "created_at", "-created_at"]
        ),
    )


class CustomerPropertiesArgs(PaginationArgs):
    active = fields.Boolean()


class StateChangeSchema(Input):
    reason = text(500, metadata={"description": "Why, kept in the property's history"})


class TransferSchema(Input):
    to_customer_id = fields.Integer(
        required=True, validate=validate.Range(min=1), metadata={"description": "The customer receiving the property"}
    )
    reason = text(500, metadata={"description": "Why, kept in the property's history (e.g. house sold)"})


class HistoryEntrySchema(Schema):
    id = fields.Integer()
    action = fields.String(
        metadata={
            "description": "created, updated, deactivated, reactivated, transferred, "
            "system_added, system_removed, equipment_added, equipment_deleted"
        }
    )
    subject = fields.String(
        allow_none=True,
        metadata={"description": "The system or equipment changed, if not the property itself (e.g. `system 3`)"},
    )
    field = fields.String(allow_none=True)
    old_value = fields.String(allow_none=True)
    new_value = fields.String(allow_none=True)
    reason = fields.String(allow_none=True)
    actor_id = fields.String(allow_none=True)
    actor_name = fields.String(allow_none=True)
    source = fields.String(metadata={"description": "api, integration or workflow"})
    request_id = fields.String(allow_none=True)
    at = Timestamp()


# --- system kinds and systems ------------------------------------------------------------------

SLUG = validate.Regexp(r"^[a-z][a-z0-9_]{0,49}$", error="Lower-case letters, digits and _, starting with a letter.")


def ip_address(value: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValidationError("Not an IPv4 or IPv6 address.") from None


class KindFieldSchema(Schema):
    name = fields.String(
        required=True,
        validate=SLUG,
        metadata={"description": "ip_address, port, username, password, version, or a custom name kept in `details`"},
    )
    label = TrimmedString(required=True, validate=validate.Length(min=1, max=100))
    required = fields.Boolean(load_default=False)


class KindFieldInput(KindFieldSchema, Input):
    pass


class SystemKindSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    manufacturer = fields.String(allow_none=True)
    description = fields.String(allow_none=True)
    # "fields" would shadow marshmallow's own attribute of that name
    field_specs = fields.List(
        fields.Nested(KindFieldSchema),
        data_key="fields",
        attribute="fields",
        metadata={"description": "What a system of this kind asks for"},
    )
    created_at = Timestamp()
    updated_at = Timestamp()


class SystemKindPatchSchema(Input):
    name = TrimmedString(validate=validate.Length(min=1, max=100))
    manufacturer = text(100)
    description = text(5000)
    field_specs = fields.List(
        fields.Nested(KindFieldInput), data_key="fields", attribute="fields", validate=validate.Length(max=50)
    )

    @validates_schema
    def _unique_field_names(self, data, **kwargs):
        names = [spec["name"] for spec in data.get("fields") or []]
        if len(names) != len(set(names)):
            raise ValidationError("Each field name may appear once.", field_name="fields")


class SystemKindCreateSchema(SystemKindPatchSchema):
    name = TrimmedString(required=True, validate=validate.Length(min=1, max=100))


class SystemKindListArgs(PaginationArgs):
    q = TrimmedString(validate=validate.Length(max=100), metadata={"description": "Matches name or manufacturer"})


class SystemSchema(Schema):
    id = fields.Integer()
    property_id = fields.Integer()
    kind_id = fields.Integer()
    kind_name = fields.String()
    ip_address = fields.String(allow_none=True)
    port = fields.Integer(allow_none=True)
    username = fields.String(allow_none=True)
    password = fields.String(
        allow_none=True,
        metadata={"description": "`***` without confidential.installation_codes.view; null when none is stored"},
    )
    version = fields.String(allow_none=True, metadata={"description": "Software or firmware version"})
    notes = fields.String(allow_none=True)
    details = fields.Dict(
        keys=fields.String(), values=fields.String(), metadata={"description": "Values of the kind's custom fields"}
    )
    created_at = Timestamp()
    updated_at = Timestamp()


class SystemPatchSchema(Input):
    """Any subset; ``details`` changes only the keys it names (null removes one)."""

    ip_address = TrimmedString(allow_none=True, validate=ip_address)
    port = fields.Integer(allow_none=True, validate=validate.Range(min=1, max=65535))
    username = text(100)
    password = fields.String(
        allow_none=True,
        validate=validate.Length(min=1, max=200),
        metadata={
            "description": "Stored encrypted. Changing a stored one needs confidential.installation_codes.modify"
        },
    )
    version = text(50)
    notes = text(10_000)
    details = fields.Dict(
        keys=fields.String(validate=SLUG), values=TrimmedString(allow_none=True, validate=validate.Length(max=500))
    )


class SystemCreateSchema(SystemPatchSchema):
    READ_ONLY = Input.READ_ONLY - {"kind_id"}

    kind_id = fields.Integer(required=True, metadata={"description": "A system kind from /system-kinds"})


# --- equipment -----------------------------------------------------------------------------------


class EquipmentSchema(Schema):
    id = fields.Integer()
    property_id = fields.Integer()
    item = fields.String()
    zone = fields.String(allow_none=True)
    serial_number = fields.String(allow_none=True)
    install_date = fields.Date(allow_none=True)
    warranty_end = fields.Date(allow_none=True)
    status = fields.String(metadata={"enum": list(EQUIPMENT_STATUSES)})
    notes = fields.String(allow_none=True)
    created_at = Timestamp()
    updated_at = Timestamp()


class EquipmentPatchSchema(Input):
    READ_ONLY = Input.READ_ONLY - {"status"}

    item = TrimmedString(validate=validate.Length(min=1, max=200), metadata={"description": "e.g. PIR motion sensor"})
    zone = text(50)
    serial_number = text(100)
    install_date = fields.Date(allow_none=True)
    warranty_end = fields.Date(allow_none=True)
    status = Choice(EQUIPMENT_STATUSES, metadata={"description": "installed (default), faulty, removed"})
    notes = text(10_000)


class EquipmentCreateSchema(EquipmentPatchSchema):
    item = TrimmedString(
        required=True, validate=validate.Length(min=1, max=200), metadata={"description": "e.g. PIR motion sensor"}
    )


class EquipmentListArgs(PaginationArgs):
    status = Choice(EQUIPMENT_STATUSES)


# --- appointments --------------------------------------------------------------------------------


class AppointmentSchema(Schema):
    id = fields.Integer()
    property_id = fields.Integer()
    customer_id = fields.Integer()
    location_id = fields.Integer(allow_none=True, metadata={"description": "Office location: the customer's"})
    type = fields.String(metadata={"enum": list(APPOINTMENT_TYPES)})
    starts_at = Timestamp()
    ends_at = Timestamp()
    technician_id = fields.Integer(allow_none=True, metadata={"description": "The assigned technician's user id"})
    status = fields.String(metadata={"enum": list(APPOINTMENT_STATUSES)})
    notes = fields.String(allow_none=True)
    cancel_reason = fields.String(allow_none=True)
    cancelled_at = Timestamp(allow_none=True)
    cancelled_by = fields.String(allow_none=True)
    cancelled_by_operation = fields.String(
        allow_none=True, metadata={"description": "The archive operation that cancelled it (GET /operations/{id})"}
    )
    completed_at = Timestamp(allow_none=True)
    created_at = Timestamp()
    updated_at = Timestamp()


class AppointmentPatchSchema(Input):
    """Any subset; the status changes only through `/cancel` and `/complete`."""

    type = Choice(APPOINTMENT_TYPES, metadata={"description": "install, service, inspection or sale"})
    starts_at = Timestamp(metadata={"description": "UTC; an offset-less time is taken as UTC"})
    ends_at = Timestamp()
    technician_id = fields.Integer(
        allow_none=True,
        validate=validate.Range(min=1),
        metadata={"description": "User id of the technician; null leaves it unassigned"},
    )
    notes = text(10_000)


class AppointmentCreateSchema(AppointmentPatchSchema):
    type = Choice(APPOINTMENT_TYPES, required=True, metadata={"description": "install, service, inspection or sale"})
    starts_at = Timestamp(required=True, metadata={"description": "UTC; an offset-less time is taken as UTC"})
    ends_at = Timestamp(required=True)


class CancelSchema(Input):
    reason = TrimmedString(
        required=True,
        validate=validate.Length(min=1, max=500),
        metadata={"description": "Why the visit is called off; kept with it and in the history"},
    )


class CompleteSchema(Input):
    notes = text(10_000, metadata={"description": "The technician's notes; replaces the appointment's notes"})


class AppointmentListArgs(PaginationArgs):
    technician = fields.Integer(metadata={"description": "Technician's user id"})
    from_ = Timestamp(data_key="from", metadata={"description": "Keeps appointments ending after this moment"})
    to = Timestamp(metadata={"description": "Keeps appointments starting before this moment"})
    status = Choice(APPOINTMENT_STATUSES)
    type = Choice(APPOINTMENT_TYPES)
    property_id = fields.Integer()
    sort = fields.String(load_default="starts_at", validate=validate.OneOf(["starts_at", "-starts_at"]))

    @validates_schema
    def _window(self, data, **kwargs):
        if data.get("from_") and data.get("to") and data["to"] <= data["from_"]:
            raise ValidationError("Must be after `from`.", field_name="to")


class RelatedAppointmentListArgs(PaginationArgs):
    status = Choice(APPOINTMENT_STATUSES)
    sort = fields.String(load_default="starts_at", validate=validate.OneOf(["starts_at", "-starts_at"]))


# --- technician portal (internal: the gateway's /tech/lookup calls it) ----------------------------


class TechVerifySchema(Input):
    account_number = TrimmedString(required=True, validate=validate.Length(min=1, max=40))
    pin = fields.String(required=True, validate=validate.Regexp(PIN_PATTERN, error="Exactly 4 digits."))


OnSiteSchema = TechOnSite  # what /tech/verify answers, declared once with the gateway's /tech/lookup


PropertyPageSchema = page_schema(PropertySchema, "PropertyPage")
AppointmentPageSchema = page_schema(AppointmentSchema, "AppointmentPage")
SystemKindPageSchema = page_schema(SystemKindSchema, "SystemKindPage")
SystemPageSchema = page_schema(SystemSchema, "SystemPage")
EquipmentPageSchema = page_schema(EquipmentSchema, "EquipmentPage")
HistoryPageSchema = page_schema(HistoryEntrySchema, "PropertyHistoryPage")


# --- central stations: signals and account statuses -------------------------------------------------

SIGNAL_TYPES = ("alarm", "trouble", "restore", "test", "open", "close")
ACCOUNT_STATUSES = ("active", "suspended", "cancelled", "in_test")


class MonitoringMessageSchema(Schema):
    """What the gateway forwards from a verified central station (not reachable from outside)."""

    central_station = TrimmedString(required=True, validate=validate.Length(min=1, max=120))
    # the monitoring company the integration is bound to (vigil_property.monitoring: which properties match)
    monitoring_company_id = fields.Integer(
        allow_none=True, load_default=None, validate=validate.Range(min=1, max=2**31 - 1)
    )
    message_id = TrimmedString(required=True, validate=validate.Length(min=1, max=100))
    account_number = TrimmedString(required=True, validate=validate.Length(min=1, max=40))
    kind = Choice(("status", *SIGNAL_TYPES), required=True)
    status = Choice(ACCOUNT_STATUSES, allow_none=True, load_default=None)
    zone = TrimmedString(allow_none=True, load_default=None, validate=validate.Length(max=40))
    user = TrimmedString(allow_none=True, load_default=None, validate=validate.Length(max=40))
    description = TrimmedString(allow_none=True, load_default=None, validate=validate.Length(max=300))
    occurred_at = Timestamp(allow_none=True, load_default=None)

    @validates_schema
    def _status_needs_value(self, data, **_):
        if data["kind"] == "status" and not data.get("status"):
            raise ValidationError({"status": ["An account status message names the status."]})


class MonitoringBatchSchema(Schema):
    """Messages the gateway grouped (central stations' signals and statuses, verified there)."""

    items = fields.List(
        fields.Nested(MonitoringMessageSchema), required=True, validate=validate.Length(min=1, max=1000)
    )


class MonitoringBatchReceiptSchema(Schema):
    property_ids = fields.List(
        fields.Integer(allow_none=True),
        metadata={"description": "Each message's property, in order; null: kept unmatched"},
    )


class SignalSchema(Schema):
    id = fields.Integer()
    property_id = fields.Integer(allow_none=True)
    account_number = fields.String()
    central_station = fields.String()
    message_id = fields.String()
    kind = fields.String(metadata={"description": "alarm, trouble, restore, test, open, close or status"})
    status = fields.String(allow_none=True)
    zone = fields.String(allow_none=True)
    user = fields.String(attribute="panel_user", allow_none=True)
    description = fields.String(allow_none=True)
    occurred_at = Timestamp()
    received_at = Timestamp()
    resolved_at = Timestamp(allow_none=True)
    resolved_by = fields.String(allow_none=True)


class SignalArgs(PaginationArgs):
    kind = Choice(("status", *SIGNAL_TYPES))
    since = Timestamp()


class SignalPageSchema(page_schema(SignalSchema, "SignalPageBase")):  # type: ignore[misc]
    last_test_at = Timestamp(allow_none=True)
    test_overdue = fields.Boolean(metadata={"description": "No test signal within the last 25 hours"})


UnmatchedPageSchema = page_schema(SignalSchema, "UnmatchedSignalPage")


class ResolveSignalSchema(Schema):
    property_id = fields.Integer(required=True, validate=validate.Range(min=1, max=2**31 - 1))


class StationAccountSchema(Schema):
    account_number = TrimmedString(required=True, validate=validate.Length(min=1, max=40))
    status = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=20))
    address = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=300))


class DriftRequestSchema(Schema):
    central_station = TrimmedString(required=True, validate=validate.Length(min=1, max=120))
    # the monitoring company the integration is bound to (vigil_property.monitoring: which properties match)
    monitoring_company_id = fields.Integer(
        allow_none=True, load_default=None, validate=validate.Range(min=1, max=2**31 - 1)
    )
    accounts = fields.List(fields.Nested(StationAccountSchema), required=True, validate=validate.Length(max=100_000))


class DriftReportSchema(Schema):
    missing_in_vigil = fields.List(fields.Dict())
    missing_at_station = fields.List(fields.Dict())
    status_mismatch = fields.List(fields.Dict())
    address_mismatch = fields.List(fields.Dict())
