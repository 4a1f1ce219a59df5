"""Request and response shapes of what hangs off a record: notes, contacts, tags, files."""

from __future__ import annotations

from flask_smorest.fields import Upload
from marshmallow import Schema, ValidationError, fields, pre_load, validate

from vigil_shared.alike import alike
from vigil_shared.fields import Timestamp, TrimmedString
from vigil_shared.http import PaginationArgs, page_schema

from .notes import PRIORITIES, STATUSES


def _no_fixed_fields(names):
    """A pre-load hook naming fields that cannot change once the item exists."""

    @pre_load
    def hook(self, data, **kwargs):
        if isinstance(data, dict):
            fixed = [k for k in names if k in data]
            if fixed:
                raise ValidationError({k: ["Cannot be changed; create a new one instead."] for k in fixed})
        return data

    return hook


# --- notes and tickets ----------------------------------------------------------------------------


class NoteFields(Schema):
    text = TrimmedString(validate=validate.Length(min=1, max=10_000))
    urgent = fields.Boolean()
    assignee = TrimmedString(allow_none=True, validate=validate.Length(max=100), metadata={"description": "Tickets"})
    due_date = fields.Date(allow_none=True, metadata={"description": "Tickets"})
    priority = fields.String(allow_none=True, validate=validate.OneOf(PRIORITIES), metadata={"description": "Tickets"})
    status = fields.String(allow_none=True, validate=validate.OneOf(STATUSES), metadata={"description": "Tickets"})


class NoteCreateSchema(NoteFields):
    kind = fields.String(load_default="note", validate=validate.OneOf(["note", "ticket"]))
    text = TrimmedString(required=True, validate=validate.Length(min=1, max=10_000))


class NotePatchSchema(NoteFields):
    _fixed = _no_fixed_fields(("kind", "id", "customer_id", "created_at", "created_by"))


class NoteSchema(Schema):
    id, customer_id = alike(2, fields.Integer)
    kind, text = alike(2, fields.String)
    urgent = fields.Boolean()
    assignee = fields.String(allow_none=True)
    due_date = fields.Date(allow_none=True)
    priority, status, created_by = alike(3, fields.String, allow_none=True)
    created_at, updated_at = alike(2, Timestamp)


class NoteListArgs(PaginationArgs):
    kind = fields.String(validate=validate.OneOf(["note", "ticket"]))
    status = fields.String(validate=validate.OneOf(STATUSES))
    open = fields.Boolean(metadata={"description": "true: notes and unclosed tickets; false: closed tickets"})
    assignee = TrimmedString(validate=validate.Length(max=100))


NotePageSchema = page_schema(NoteSchema, "NotePage")


# --- contacts -------------------------------------------------------------------------------------


class PhoneSchema(Schema):
    label = TrimmedString(load_default="phone", validate=validate.Length(min=1, max=20))
    number = TrimmedString(required=True, validate=validate.Length(min=1, max=40))


class ContactFields(Schema):
    name = TrimmedString(validate=validate.Length(min=1, max=200))
    relation = TrimmedString(
        allow_none=True, validate=validate.Length(max=100), metadata={"description": "Emergency contacts"}
    )
    role = TrimmedString(allow_none=True, validate=validate.Length(max=100), metadata={"description": "Other contacts"})
    phones = fields.List(fields.Nested(PhoneSchema), validate=validate.Length(max=5))
    email = fields.Email(allow_none=True, validate=validate.Length(max=254))
    has_key = fields.Boolean(metadata={"description": "Emergency contacts: holds a key to the premises"})
    call_priority = fields.Integer(
        allow_none=True,
        strict=True,
        validate=validate.Range(min=1, max=100),
        metadata={"description": "Emergency contacts: 1 is called first"},
    )
    passcode = fields.String(
        allow_none=True,
        validate=validate.Length(max=50),
        metadata={"description": "Confidential: `***` unless permitted"},
    )
    is_primary = fields.Boolean()


class ContactCreateSchema(ContactFields):
    type = fields.String(required=True, validate=validate.OneOf(["emergency", "other"]))
    name = TrimmedString(required=True, validate=validate.Length(min=1, max=200))


class ContactPatchSchema(ContactFields):
    _fixed = _no_fixed_fields(("type", "id", "customer_id", "created_at"))


class PhoneOutSchema(Schema):
    label, number = alike(2, fields.String)


class ContactSchema(Schema):
    id, customer_id = alike(2, fields.Integer)
    type, name = alike(2, fields.String)
    relation, role = alike(2, fields.String, allow_none=True)
    phones = fields.List(fields.Nested(PhoneOutSchema))
    email = fields.String(allow_none=True)
    has_key = fields.Boolean()
    call_priority = fields.Integer(allow_none=True)
    passcode = fields.String(allow_none=True)
    is_primary = fields.Boolean()
    created_at, updated_at = alike(2, Timestamp)


class ContactListArgs(PaginationArgs):
    type = fields.String(validate=validate.OneOf(["emergency", "other"]))


ContactPageSchema = page_schema(ContactSchema, "ContactPage")


# --- tags -----------------------------------------------------------------------------------------

COLOR = validate.Regexp(r"^#[0-9a-fA-F]{6}$", error="A colour like #1e90ff.")


class TagCreateSchema(Schema):
    name = TrimmedString(required=True, validate=validate.Length(min=1, max=50))
    color = fields.String(allow_none=True, validate=COLOR)


class TagPatchSchema(Schema):
    name = TrimmedString(validate=validate.Length(min=1, max=50))
    color = fields.String(allow_none=True, validate=COLOR)


class TagSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    color = fields.String(allow_none=True)
    created_at = Timestamp()


class TagListArgs(PaginationArgs):
    q = TrimmedString(validate=validate.Length(max=50), metadata={"description": "Start of the tag name"})


TagPageSchema = page_schema(TagSchema, "TagPage")


class ApplyTagSchema(Schema):
    tag_id = fields.Integer(strict=True, validate=validate.Range(min=1))
    name = TrimmedString(validate=validate.Length(min=1, max=50), metadata={"description": "Instead of tag_id"})

    @pre_load
    def _one_of(self, data, **kwargs):
        if isinstance(data, dict) and ("tag_id" in data) == ("name" in data):
            raise ValidationError({"tag_id": ["Send either tag_id or name."]})
        return data


# --- files ----------------------------------------------------------------------------------------


class FileUploadSchema(Schema):
    file = Upload(required=True, metadata={"description": "PDF, PNG, JPEG, GIF, WebP, text, CSV, ZIP, DOCX, XLSX"})


class FileFormSchema(Schema):
    description = TrimmedString(validate=validate.Length(max=500))


class FileSchema(Schema):
    id, customer_id = alike(2, fields.Integer)
    filename, content_type = alike(2, fields.String)
    size = fields.Integer()
    sha256 = fields.String()
    description, uploaded_by = alike(2, fields.String, allow_none=True)
    created_at = Timestamp()


FilePageSchema = page_schema(FileSchema, "FilePage")


class MonitoringCompanyCreateSchema(Schema):
    name = TrimmedString(required=True, validate=validate.Length(min=1, max=100))
    is_adt = fields.Boolean(load_default=False)
    precheck_order_enabled = fields.Boolean(load_default=False)
    requires_dealer_number = fields.Boolean(
        load_default=False, metadata={"description": "The ADT PreCheck then needs the customer's dealer number"}
    )
    active = fields.Boolean(load_default=True)


class MonitoringCompanyPatchSchema(Schema):
    name = TrimmedString(validate=validate.Length(min=1, max=100))
    is_adt = fields.Boolean()
    precheck_order_enabled = fields.Boolean()
    requires_dealer_number = fields.Boolean()
    active = fields.Boolean()


class MonitoringCompanySchema(Schema):
    id = fields.Integer()
    name = fields.String()
    is_adt = fields.Boolean()
    precheck_order_enabled = fields.Boolean()
    requires_dealer_number = fields.Boolean()
    active = fields.Boolean()


class MonitoringCompanyListArgs(PaginationArgs):
    active = fields.Boolean(metadata={"description": "Only the active (true) or inactive (false) companies"})


MonitoringCompanyPageSchema = page_schema(MonitoringCompanySchema, "MonitoringCompanyPage")
