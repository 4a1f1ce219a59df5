"""Request and response shapes of the customer API.

Input schemas refuse unknown fields (marshmallow's ``RAISE``) and name read-only ones; rules that
need the stored record or the caller (ZIP against state, required per kind, who may set what)
live in the domain modules.
"""

from __future__ import annotations

from collections.abc import Mapping

from marshmallow import EXCLUDE, Schema, ValidationError, fields, pre_load, validate

from vigil_shared.alike import alike
from vigil_shared.fields import Timestamp, TrimmedString
from vigil_shared.http import PaginationArgs, page_schema

from . import record, registry
from .access import READ_ONLY
from .custom_fields import APPLIES_TO, TYPES
from .history import SOURCES
from .registry import Choice
from .search import SORTS


# Bases built from the field registry when the module loads: to mypy, a dynamic base class.
class RecordFieldsSchema(Schema.from_dict(registry.input_fields(), name="RecordFieldsBase")):  # type: ignore[misc]
    """Every writable field of the record, from the registry (sections and kinds are checked by the domain)."""

    @pre_load
    def _name_read_only_fields(self, data, **kwargs):
        if isinstance(data, dict):
            read_only = sorted(k for k in data if k in READ_ONLY and k not in self.fields)
            if read_only:
                raise ValidationError({k: ["Read-only field."] for k in read_only})
        return data


class CustomerCreateSchema(
    RecordFieldsSchema.from_dict(  # type: ignore[misc]
        {"kind": Choice(["customer", "lead"], load_default="customer"), **registry.input_fields(registry.ON_CREATE)},
        name="CustomerCreateBase",
    )
):
    """The writable fields, the kind, and the fields set once when the record is created."""

    def load(self, data, *, many=None, partial=None, unknown=None):
        """Schema errors come with the seed rules' errors for the same body (fields required for its
        kind, ZIP against state, phones, SSN…), so a create missing several fields hears of all of
        them in one 422 instead of one problem per attempt."""
        try:
            return super().load(data, many=many, partial=partial, unknown=unknown)
        except ValidationError as exc:
            if many or not isinstance(data, Mapping) or not isinstance(exc.messages, dict):
                raise
            valid = exc.valid_data if isinstance(exc.valid_data, dict) else {}
            kind = valid.get("kind") or data.get("kind") or self.fields["kind"].load_default
            more = record.payload_errors(
                kind if kind in ("customer", "lead") else "customer", valid, data, skip=exc.messages
            )
            if not more:
                raise
            raise ValidationError({**more, **exc.messages}, valid_data=valid) from None


class LeadCreateSchema(CustomerCreateSchema):
    """``POST /leads``: the same body, a lead unless it says otherwise."""

    kind = Choice(["customer", "lead"], load_default="lead")


class CustomerPatchSchema(RecordFieldsSchema):
    pass


class CreateArgs(Schema):
    allow_duplicates = fields.Boolean(
        load_default=False,
        metadata={"description": "Create the record even though likely duplicates exist (they answer 409 otherwise)"},
    )


class CustomerCreateArgs(CreateArgs):
    run_precheck = fields.Boolean(
        load_default=None,
        metadata={
            "description": "Run the ADT PreCheck: by default true when the monitoring company is ADT. With it the "
            "ADT-required fields are enforced (birthdate, SSN, email, address line 1, ZIP, county, and business "
            "name and contact for commercial accounts); the PreCheck starts in the background when the company "
            "has PreCheck Order Enabled (`GET /customers/{id}/precheck`)."
        },
    )


class ConvertSchema(Schema):
    location_id = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    sold_by = TrimmedString(required=True, validate=validate.Length(min=1, max=100))
    account_type = Choice(["residential", "commercial"], metadata={"description": "Required when the lead has none"})
    custom_fields = fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True))


class DuplicateSchema(RecordFieldsSchema):
    """Values the copy should have instead of the original's (all optional)."""


class TagRefSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    color = fields.String(allow_none=True)


class CustomerSchema(Schema.from_dict(registry.output_fields(), name="CustomerBase")):  # type: ignore[misc]
    """The record as the caller may see it: sections without view permission are left out."""

    class Meta:
        unknown = EXCLUDE

    tags = fields.List(fields.Nested(TagRefSchema))


class CustomerListItemSchema(Schema.from_dict(registry.output_fields(listed_only=True), name="CustomerListItemBase")):  # type: ignore[misc]
    """The compact row of the list (fields marked ``listed`` in the registry)."""

    tags = fields.List(fields.Nested(TagRefSchema))


class CustomerPageSchema(Schema):
    items = fields.List(fields.Nested(CustomerListItemSchema), required=True)
    page, per_page = alike(2, fields.Integer, required=True)
    total = fields.Integer(required=True, metadata={"description": "Exact up to 10,000, else an estimate"})
    total_estimated = fields.Boolean(required=True)


MAX_TAG_FILTERS = 10


class CustomerListArgs(PaginationArgs):
    q = TrimmedString(
        validate=validate.Length(min=1, max=200),
        metadata={
            "description": "Words matching the start of a name, business or DBA name, email, phone digits "
            "(any format), customer id or property account number; at most 10 different words"
        },
    )
    cursor = fields.String(
        validate=validate.Length(max=500),
        metadata={"description": "Keyset position from a `Link` header; keeps deep pages as fast as the first"},
    )
    sort = fields.String(load_default="name", validate=validate.OneOf(SORTS))
    kind = fields.String(validate=validate.OneOf(["customer", "lead"]))
    active = fields.Boolean()
    archived = fields.String(load_default="all", validate=validate.OneOf(["all", "only", "none"]))
    location_id = fields.List(fields.Integer(validate=validate.Range(min=1)), load_default=list)
    account_type = Choice(["residential", "commercial"])
    # each tag is one more condition (a record has every tag named): hundreds of them kept a request and a
    # database connection busy for seconds
    tag = fields.List(
        TrimmedString(validate=validate.Length(min=1, max=50)),
        load_default=list,
        validate=validate.Length(max=MAX_TAG_FILTERS),
        metadata={
            "description": f"Records having every one of these tags (at most {MAX_TAG_FILTERS}), among those of "
            "the locations where you hold `tags.view`"
        },
    )
    city = TrimmedString(validate=validate.Length(max=100))
    state = TrimmedString(validate=validate.Length(max=2))
    created_from, created_to = alike(2, Timestamp)
    activity_from = Timestamp(metadata={"description": "Last activity at or after"})
    activity_to = Timestamp()


class DuplicateMatchSchema(Schema):
    """A likely duplicate the caller may view; ``reasons`` name only fields they may see on it."""

    id = fields.Integer()
    name, kind = alike(2, fields.String)
    reasons = fields.List(fields.String(validate=validate.OneOf(("phone", "email", "ssn", "name_address"))))


# --- history -------------------------------------------------------------------------------------


class HistoryArgs(PaginationArgs):
    field = TrimmedString(validate=validate.Length(max=100))
    user = TrimmedString(validate=validate.Length(max=100), metadata={"description": "Actor id or username"})
    source = fields.String(validate=validate.OneOf(SOURCES))
    action = TrimmedString(validate=validate.Length(max=30))
    since, until = alike(2, Timestamp)


class HistoryEntrySchema(Schema):
    id = fields.Integer()
    at = Timestamp()
    actor_id, actor_name = alike(2, fields.String, allow_none=True)
    source = fields.String()
    client_ip, request_id = alike(2, fields.String, allow_none=True)
    action, target_type = alike(2, fields.String)
    target_id = fields.Integer(allow_none=True)
    field, old_value, new_value = alike(3, fields.String, allow_none=True)
    confidential = fields.Boolean()


HistoryPageSchema = page_schema(HistoryEntrySchema, "CustomerHistoryPage")


# --- custom field definitions -----------------------------------------------------------------------


class CustomFieldCreateSchema(Schema):
    key = fields.String(
        required=True,
        validate=validate.Regexp(
            r"^[a-z][a-z0-9_]{0,49}$", error="Lower-case letters, digits and _, starting with a letter."
        ),
    )
    label = TrimmedString(required=True, validate=validate.Length(min=1, max=100))
    type = fields.String(required=True, validate=validate.OneOf(TYPES))
    options = fields.List(TrimmedString(validate=validate.Length(min=1, max=100)), validate=validate.Length(max=200))
    required = fields.Boolean(load_default=False)
    applies_to = fields.String(load_default="both", validate=validate.OneOf(APPLIES_TO))
    position = fields.Integer(load_default=0, validate=validate.Range(min=0, max=10_000))
    active = fields.Boolean(load_default=True)


class CustomFieldPatchSchema(Schema):
    label = TrimmedString(validate=validate.Length(min=1, max=100))
    options = fields.List(TrimmedString(validate=validate.Length(min=1, max=100)), validate=validate.Length(max=200))
    required = fields.Boolean()
    applies_to = fields.String(validate=validate.OneOf(APPLIES_TO))
    position = fields.Integer(validate=validate.Range(min=0, max=10_000))
    active = fields.Boolean()

    @pre_load
    def _immutable(self, data, **kwargs):
        if isinstance(data, dict):
            fixed = [k for k in ("key", "type", "id") if k in data]
            if fixed:
                raise ValidationError({k: ["Cannot be changed once the field exists."] for k in fixed})
        return data


class CustomFieldSchema(Schema):
    id = fields.Integer()
    key, label, type = alike(3, fields.String)
    options = fields.List(fields.String())
    required = fields.Boolean()
    applies_to = fields.String()
    position = fields.Integer()
    active = fields.Boolean()
    created_at = Timestamp()


class CustomFieldArgs(Schema):
    kind = fields.String(validate=validate.OneOf(["customer", "lead"]))
    include_inactive = fields.Boolean(load_default=False)


class CustomFieldListSchema(Schema):
    items = fields.List(fields.Nested(CustomFieldSchema))


# --- archiving -----------------------------------------------------------------------------------


def _confirmed(value: bool) -> bool:
    if value is not True:
        raise ValidationError("Confirm with true: archiving cancels the customer's future items.")
    return value


class ArchiveSchema(Schema):
    confirm = fields.Boolean(
        required=True, validate=_confirmed, metadata={"description": "Must be true (the confirmation checkbox)"}
    )


class UnarchiveSchema(ArchiveSchema):
    scope = fields.String(
        load_default="parent",
        validate=validate.OneOf(["parent", "parent_and_children"]),
        metadata={
            "description": "`parent`: this customer only; `parent_and_children`: also its archived sub-customers"
        },
    )
    restore_cancelled = fields.Boolean(
        load_default=False,
        metadata={"description": "Restore the items archiving cancelled that still make sense (default: none)"},
    )


class CustomerRefSchema(Schema):
    id = fields.Integer()
    name = fields.String()


class ArchiveTargetsSchema(Schema):
    customer = fields.Nested(CustomerRefSchema)
    sub_customers = fields.List(
        fields.Nested(CustomerRefSchema), metadata={"description": "Unarchived, archived along"}
    )


# --- parent and sub-customers ----------------------------------------------------------------------


class FamilyMemberSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    archived_at = Timestamp(allow_none=True)
    location_id = fields.Integer(allow_none=True)


class FamilySchema(Schema):
    parent = fields.Nested(FamilyMemberSchema, allow_none=True, metadata={"description": "On a sub-customer"})
    items = fields.List(fields.Nested(FamilyMemberSchema), metadata={"description": "Its sub-customers you may view"})
    total = fields.Integer()
    header = fields.String(
        allow_none=True, metadata={"description": '"Sub-customer of {name}", "{N} sub-customers" or null'}
    )


class ParentCandidateArgs(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=500))
    per_page = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    q = TrimmedString(
        validate=validate.Length(min=1, max=200),
        metadata={"description": "Part of the name, business name, account number or customer id"},
    )
    cursor = fields.String(validate=validate.Length(max=500), metadata={"description": "From a `Link` header"})
