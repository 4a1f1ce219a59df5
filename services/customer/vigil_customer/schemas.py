"""Request and response shapes of the customer API.

Input schemas refuse unknown fields (marshmallow's ``RAISE``) and name read-only ones; rules that
need the stored record or the caller (ZIP against state, required per kind, who may set what)
live in the domain modules.
"""
from __future__ import annotations

from collections.abc import Mapping

from marshmallow import EXCLUDE, Schema, ValidationError, fields, pre_load, validate

from vigil_shared.fields import Timestamp, TrimmedString
from vigil_shared.http import PaginationArgs, page_schema
from vigil_shared.masking import MASK

from . import record
from .access import READ_ONLY
from .custom_fields import APPLIES_TO, TYPES
from .history import SOURCES
from .search import SORTS


def text(max_length: int, **kwargs):
    return TrimmedString(allow_none=True, validate=validate.Length(max=max_length), **kwargs)


NAME = validate.Length(min=1, max=100)
MONEY = validate.Range(min=0, max=100_000_000)


class Choice(fields.String):
    """One of a few lower-case words, accepted in any case (``Residential`` → ``residential``)."""

    def __init__(self, choices, **kwargs):
        super().__init__(validate=validate.OneOf(choices), **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        result = super()._deserialize(value, attr, data, **kwargs)
        return result.strip().lower() if isinstance(result, str) else result


class MaskableDate(fields.Date):
    """A date, or the ``***`` mask a caller without the confidential permission was shown (ignored)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if value == MASK:
            return MASK
        return super()._deserialize(value, attr, data, **kwargs)


class RecordFieldsSchema(Schema):
    """Every writable field of the record (sections and kinds are checked by the domain)."""

    location_id = fields.Integer(strict=True, validate=validate.Range(min=1),
                                 metadata={"description": "Office location (required for customers and leads)"})
    # personal information
    first_name = TrimmedString(validate=NAME)
    last_name = TrimmedString(validate=NAME)
    birthdate = MaskableDate(allow_none=True, metadata={"description": "Confidential: `***` unless permitted"})
    language = text(20, metadata={"description": "Language code: en, fr, en-US"})
    address_line1 = text(200)
    address_line2 = text(200)
    city = text(100)
    state = text(2, metadata={"description": "US state or Canadian province code; decides the ZIP's country"})
    zip = text(10, metadata={"description": "US ZIP/ZIP+4 or Canadian postal code, checked against the state"})
    county = text(100)
    cross_street = text(200)
    primary_phone = text(40, metadata={"description": "Stored as entered, matched as E.164"})
    work_phone = text(40)
    cell_phone = text(40)
    other_phone = text(40)
    email = fields.Email(allow_none=True, validate=validate.Length(max=254))
    best_time_to_contact = text(200)
    ssn = fields.String(allow_none=True, validate=validate.Length(max=20),
                        metadata={"description": "Confidential: `***-**-1234` unless permitted"})
    spouse = text(200)
    credit_score = fields.Integer(allow_none=True, strict=True, validate=validate.Range(min=300, max=850),
                                  metadata={"description": "Needs `credit.create`; its letter grade is derived"})
    credit_tracking_number = text(100)
    account_type = Choice(["residential", "commercial"], allow_none=True)
    account_class = text(100)
    business_name = text(200)
    business_contact = text(200)
    dba_name = text(200, metadata={"description": "Doing-business-as name"})
    source = text(100)
    source_campaign = text(100)
    # general
    company = text(200)
    description = fields.String(allow_none=True, validate=validate.Length(max=10_000))
    notes = fields.String(allow_none=True, validate=validate.Length(max=10_000),
                          metadata={"description": "Internal notes about the record"})
    active = fields.Boolean()
    custom_fields = fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True),
                                metadata={"description": "Values of the custom fields defined for this kind"})
    # sale information
    parent_customer_id = fields.Integer(allow_none=True, strict=True, validate=validate.Range(min=1))
    sale_date = fields.Date(allow_none=True)
    sold_by = text(100)
    trainee_trainer = text(100)
    lead_rep = text(100)
    adt_number = text(50)
    adt_serial_man = text(50)
    account_number = text(50)
    mmr = fields.Integer(allow_none=True, strict=True, validate=MONEY,
                         metadata={"description": "Monthly monitoring charge, minor units of `currency`"})
    mmr_a_la_carte = fields.Boolean()
    currency = fields.String(validate=validate.Regexp(r"^[A-Za-z]{3}$"))
    monitoring_plan = text(100)
    canceled = fields.Boolean(metadata={"description": "With `cancel_date` and `cancel_reason`"})
    cancel_date = fields.Date(allow_none=True)
    cancel_reason = text(200)
    discount_affiliate = text(100)
    discount_affiliate_member_number = text(100)
    monitored_by = text(100)
    interactive_services_provider = text(100)
    adt_system_type = text(100)
    contract_term_months = fields.Integer(allow_none=True, strict=True, validate=validate.Range(min=1, max=120))
    activation_fee = fields.Integer(allow_none=True, strict=True, validate=MONEY,
                                    metadata={"description": "Minor units of `currency`"})
    warranty_term_months = fields.Integer(allow_none=True, strict=True, validate=validate.Range(min=0, max=240))
    dealer_number = text(50)
    collections_date = fields.Date(allow_none=True)
    # installation & equipment
    installation_appointment_id = fields.Integer(allow_none=True, strict=True, validate=validate.Range(min=1))
    install_date = fields.Date(allow_none=True)
    install_tech = text(100)
    confirmation_number = fields.String(allow_none=True, validate=validate.Length(max=100))
    receiver_number = fields.String(allow_none=True, validate=validate.Length(max=100))
    abort_code = fields.String(allow_none=True, validate=validate.Length(max=100))
    installed = fields.Boolean()
    two_way_voice = fields.Boolean()
    cellular_backup = fields.Boolean()
    guard_response = fields.Boolean()
    maintenance = fields.Boolean()
    invoicing = fields.Boolean()
    aarp = fields.Boolean()
    tellular = fields.Boolean()
    pulse = fields.Boolean()
    # lead information
    callback_at = Timestamp(allow_none=True)
    lead_disposition = text(100)
    callcenter_comments = fields.String(allow_none=True, validate=validate.Length(max=10_000))
    lead_status = text(50)
    lead_comments = fields.String(allow_none=True, validate=validate.Length(max=10_000))

    @pre_load
    def _name_read_only_fields(self, data, **kwargs):
        if isinstance(data, dict):
            read_only = sorted(k for k in data if k in READ_ONLY and k not in self.fields)
            if read_only:
                raise ValidationError({k: ["Read-only field."] for k in read_only})
        return data


class CustomerCreateSchema(RecordFieldsSchema):
    kind = Choice(["customer", "lead"], load_default="customer")
    call_center_rep = text(100, metadata={"description": "Set once, when the record is created"})

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
            more = record.payload_errors(kind if kind in ("customer", "lead") else "customer", valid, data,
                                         skip=exc.messages)
            if not more:
                raise
            raise ValidationError({**more, **exc.messages}, valid_data=valid) from None


class LeadCreateSchema(CustomerCreateSchema):
    """``POST /leads``: the same body, a lead unless it says otherwise."""

    kind = Choice(["customer", "lead"], load_default="lead")


class CustomerPatchSchema(RecordFieldsSchema):
    pass


class CreateArgs(Schema):
    allow_duplicates = fields.Boolean(load_default=False, metadata={
        "description": "Create the record even though likely duplicates exist (they answer 409 otherwise)"})


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


class CustomerSchema(Schema):
    """The record as the caller may see it: sections without view permission are left out."""

    class Meta:
        unknown = EXCLUDE

    id = fields.Integer()
    kind = fields.String()
    location_id = fields.Integer(allow_none=True)
    created_at = Timestamp()
    updated_at = Timestamp()
    created_by = fields.String(allow_none=True)
    converted_at = Timestamp(allow_none=True)
    archived_at = Timestamp(allow_none=True)
    last_activity_at = Timestamp()
    first_name = fields.String()
    last_name = fields.String()
    birthdate = fields.String(allow_none=True, metadata={"description": "YYYY-MM-DD, or `***` when masked"})
    language = fields.String(allow_none=True)
    address_line1 = fields.String(allow_none=True)
    address_line2 = fields.String(allow_none=True)
    city = fields.String(allow_none=True)
    state = fields.String(allow_none=True)
    zip = fields.String(allow_none=True)
    county = fields.String(allow_none=True)
    cross_street = fields.String(allow_none=True)
    primary_phone = fields.String(allow_none=True)
    work_phone = fields.String(allow_none=True)
    cell_phone = fields.String(allow_none=True)
    other_phone = fields.String(allow_none=True)
    email = fields.String(allow_none=True)
    best_time_to_contact = fields.String(allow_none=True)
    ssn = fields.String(allow_none=True, metadata={"description": "`***-**-1234` when masked"})
    spouse = fields.String(allow_none=True)
    credit_score = fields.Integer(allow_none=True)
    credit_grade = fields.String(allow_none=True, metadata={"description": "A ≥ 700, B ≥ 650, C ≥ 600, D ≥ 550, F"})
    credit_tracking_number = fields.String(allow_none=True)
    account_type = fields.String(allow_none=True)
    account_class = fields.String(allow_none=True)
    business_name = fields.String(allow_none=True)
    business_contact = fields.String(allow_none=True)
    dba_name = fields.String(allow_none=True)
    source = fields.String(allow_none=True)
    source_campaign = fields.String(allow_none=True)
    company = fields.String(allow_none=True)
    description = fields.String(allow_none=True)
    notes = fields.String(allow_none=True)
    active = fields.Boolean()
    custom_fields = fields.Dict()
    tags = fields.List(fields.Nested(TagRefSchema))
    parent_customer_id = fields.Integer(allow_none=True)
    sale_date = fields.Date(allow_none=True)
    sold_by = fields.String(allow_none=True)
    trainee_trainer = fields.String(allow_none=True)
    lead_rep = fields.String(allow_none=True)
    call_center_rep = fields.String(allow_none=True)
    adt_number = fields.String(allow_none=True)
    adt_serial_man = fields.String(allow_none=True)
    account_number = fields.String(allow_none=True)
    mmr = fields.Integer(allow_none=True)
    mmr_a_la_carte = fields.Boolean()
    currency = fields.String()
    monitoring_plan = fields.String(allow_none=True)
    canceled = fields.Boolean()
    cancel_date = fields.Date(allow_none=True)
    cancel_reason = fields.String(allow_none=True)
    discount_affiliate = fields.String(allow_none=True)
    discount_affiliate_member_number = fields.String(allow_none=True)
    monitored_by = fields.String(allow_none=True)
    interactive_services_provider = fields.String(allow_none=True)
    adt_system_type = fields.String(allow_none=True)
    contract_term_months = fields.Integer(allow_none=True)
    contract_months_remaining = fields.Integer(allow_none=True, metadata={"description": "From the sale date"})
    activation_fee = fields.Integer(allow_none=True)
    warranty_term_months = fields.Integer(allow_none=True)
    dealer_number = fields.String(allow_none=True)
    collections_date = fields.Date(allow_none=True)
    funding_status = fields.String(allow_none=True)
    funded_date = fields.Date(allow_none=True)
    installation_appointment_id = fields.Integer(allow_none=True)
    install_date = fields.Date(allow_none=True)
    install_tech = fields.String(allow_none=True)
    install_tech_reports_to = fields.String(allow_none=True)
    confirmation_number = fields.String(allow_none=True)
    receiver_number = fields.String(allow_none=True)
    abort_code = fields.String(allow_none=True)
    installed = fields.Boolean()
    two_way_voice = fields.Boolean()
    cellular_backup = fields.Boolean()
    guard_response = fields.Boolean()
    maintenance = fields.Boolean()
    invoicing = fields.Boolean()
    aarp = fields.Boolean()
    tellular = fields.Boolean()
    pulse = fields.Boolean()
    callback_at = Timestamp(allow_none=True)
    lead_disposition = fields.String(allow_none=True)
    callcenter_comments = fields.String(allow_none=True)
    lead_status = fields.String(allow_none=True)
    lead_comments = fields.String(allow_none=True)


class CustomerListItemSchema(Schema):
    id = fields.Integer()
    kind = fields.String()
    location_id = fields.Integer(allow_none=True)
    first_name = fields.String()
    last_name = fields.String()
    business_name = fields.String(allow_none=True)
    dba_name = fields.String(allow_none=True)
    email = fields.String(allow_none=True)
    primary_phone = fields.String(allow_none=True)
    city = fields.String(allow_none=True)
    state = fields.String(allow_none=True)
    zip = fields.String(allow_none=True)
    account_type = fields.String(allow_none=True)
    active = fields.Boolean()
    archived_at = Timestamp(allow_none=True)
    created_at = Timestamp()
    last_activity_at = Timestamp()
    tags = fields.List(fields.Nested(TagRefSchema))


class CustomerPageSchema(Schema):
    items = fields.List(fields.Nested(CustomerListItemSchema), required=True)
    page = fields.Integer(required=True)
    per_page = fields.Integer(required=True)
    total = fields.Integer(required=True, metadata={"description": "Exact up to 10,000, else an estimate"})
    total_estimated = fields.Boolean(required=True)


class CustomerListArgs(PaginationArgs):
    q = TrimmedString(validate=validate.Length(min=1, max=200), metadata={
        "description": "Words matching the start of a name, business or DBA name, email, phone digits "
                       "(any format), customer id or property account number"})
    cursor = fields.String(validate=validate.Length(max=500), metadata={
        "description": "Keyset position from a `Link` header; keeps deep pages as fast as the first"})
    sort = fields.String(load_default="name", validate=validate.OneOf(SORTS))
    kind = fields.String(validate=validate.OneOf(["customer", "lead"]))
    active = fields.Boolean()
    archived = fields.String(load_default="all", validate=validate.OneOf(["all", "only", "none"]))
    location_id = fields.List(fields.Integer(validate=validate.Range(min=1)), load_default=list)
    account_type = Choice(["residential", "commercial"])
    tag = fields.List(TrimmedString(validate=validate.Length(min=1, max=50)), load_default=list)
    city = TrimmedString(validate=validate.Length(max=100))
    state = TrimmedString(validate=validate.Length(max=2))
    created_from = Timestamp()
    created_to = Timestamp()
    activity_from = Timestamp(metadata={"description": "Last activity at or after"})
    activity_to = Timestamp()


class DuplicateMatchSchema(Schema):
    """A likely duplicate the caller may view; ``reasons`` name only fields they may see on it."""

    id = fields.Integer()
    name = fields.String()
    kind = fields.String()
    reasons = fields.List(fields.String(validate=validate.OneOf(("phone", "email", "ssn", "name_address"))))


# --- history -------------------------------------------------------------------------------------

class HistoryArgs(PaginationArgs):
    field = TrimmedString(validate=validate.Length(max=100))
    user = TrimmedString(validate=validate.Length(max=100), metadata={"description": "Actor id or username"})
    source = fields.String(validate=validate.OneOf(SOURCES))
    action = TrimmedString(validate=validate.Length(max=30))
    since = Timestamp()
    until = Timestamp()


class HistoryEntrySchema(Schema):
    id = fields.Integer()
    at = Timestamp()
    actor_id = fields.String(allow_none=True)
    actor_name = fields.String(allow_none=True)
    source = fields.String()
    client_ip = fields.String(allow_none=True)
    request_id = fields.String(allow_none=True)
    action = fields.String()
    target_type = fields.String()
    target_id = fields.Integer(allow_none=True)
    field = fields.String(allow_none=True)
    old_value = fields.String(allow_none=True)
    new_value = fields.String(allow_none=True)
    confidential = fields.Boolean()


HistoryPageSchema = page_schema(HistoryEntrySchema, "CustomerHistoryPage")


# --- custom field definitions -----------------------------------------------------------------------

class CustomFieldCreateSchema(Schema):
    key = fields.String(required=True, validate=validate.Regexp(
        r"^[a-z][a-z0-9_]{0,49}$", error="Lower-case letters, digits and _, starting with a letter."))
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
    key = fields.String()
    label = fields.String()
    type = fields.String()
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
