"""Request and response schemas of the credit service (they are its OpenAPI document too)."""

from __future__ import annotations

from marshmallow import RAISE, Schema, fields, validate

from vigil_shared.fields import Timestamp, TrimmedString
from vigil_shared.http import PaginationArgs, page_schema

from .models import BUREAUS, PRECHECK_STATUSES, STATUSES


class Strict(Schema):
    class Meta:
        unknown = RAISE


class PreviousAddressSchema(Strict):
    address_line1 = TrimmedString(required=True, validate=validate.Length(min=1, max=200))
    address_line2 = TrimmedString(validate=validate.Length(max=200), allow_none=True)
    city = TrimmedString(required=True, validate=validate.Length(min=1, max=100))
    state = TrimmedString(required=True, validate=validate.Length(min=2, max=50))
    zip = TrimmedString(required=True, validate=validate.Regexp(r"^[A-Za-z0-9 -]{3,10}$"))


class BureauOptionsSchema(Strict):
    """The bureau's own extra fields."""

    subject_pin = TrimmedString(
        validate=validate.Regexp(r"^[0-9]{4,8}$"),
        metadata={"description": "Equifax/Experian subject PIN (stored encrypted, never shown back)"},
    )
    continue_on_match = fields.Boolean(metadata={"description": "Brinks/Monitronics continue-on-match option"})


class CreditCheckCreateSchema(Strict):
    bureau = fields.String(required=True, validate=validate.OneOf(BUREAUS))
    options = fields.Nested(BureauOptionsSchema, load_default=dict)
    previous_address = fields.Nested(PreviousAddressSchema, allow_none=True, load_default=None)
    confirm_repeat = fields.Boolean(
        load_default=False,
        metadata={"description": "Pull again although the same bureau was pulled within the company's repeat days"},
    )


class ManualScoreSchema(Strict):
    score = fields.Integer(required=True, strict=True, validate=validate.Range(min=300, max=850))
    tracking_number = TrimmedString(validate=validate.Length(min=1, max=100), allow_none=True, load_default=None)


class CreditCheckSchema(Schema):
    id = fields.Integer()
    customer_id = fields.Integer()
    bureau = fields.String(allow_none=True, metadata={"description": "None for a manually entered score"})
    status = fields.String(validate=validate.OneOf(STATUSES))
    score = fields.Integer(allow_none=True)
    grade = fields.String(allow_none=True, metadata={"description": "Letter grade from the company's bands"})
    transaction_id = fields.String(allow_none=True)
    reason = fields.String(allow_none=True, metadata={"description": "Why it failed, had no hit or is frozen"})
    attempts = fields.Integer()
    applied = fields.Boolean()
    applied_at = Timestamp(allow_none=True)
    applied_by = fields.String(allow_none=True)
    skipped = fields.Boolean()
    requested_by_name = fields.String(allow_none=True)
    created_at = Timestamp()
    run_at = Timestamp(allow_none=True)
    has_previous_address = fields.Boolean()


CreditCheckPageSchema = page_schema(CreditCheckSchema, "CreditCheckPage")


class CreditCheckListArgs(PaginationArgs):
    pass


class GradeBandSchema(Strict):
    grade = TrimmedString(required=True, validate=validate.Length(min=1, max=10))
    min_score = fields.Integer(required=True, strict=True, validate=validate.Range(min=300, max=850))


class CreditSettingsSchema(Schema):
    repeat_days = fields.Integer()
    grade_bands = fields.List(fields.Nested(GradeBandSchema))
    precheck_rerun_on_change = fields.Boolean(
        metadata={"description": "Run the ADT PreCheck again when a customer who had one changes phone, address or SSN"}
    )


class CreditSettingsPatchSchema(Strict):
    repeat_days = fields.Integer(strict=True, validate=validate.Range(min=0, max=365))
    grade_bands = fields.List(fields.Nested(GradeBandSchema), validate=validate.Length(min=1, max=20))
    precheck_rerun_on_change = fields.Boolean()


class PreCheckSchema(Schema):
    id = fields.Integer()
    customer_id = fields.Integer()
    status = fields.String(validate=validate.OneOf(PRECHECK_STATUSES))
    trigger = fields.String(
        metadata={
            "description": "`create` (the customer's creation), `refresh` (asked for) or `change` (phone,"
            " address or SSN)"
        }
    )
    reference = fields.String(allow_none=True, metadata={"description": "ADT's reference of the PreCheck"})
    reasons = fields.List(fields.String(), metadata={"description": "Why it was declined or needs review"})
    error = fields.String(allow_none=True, metadata={"description": "Why it could not run"})
    attempts = fields.Integer()
    requested_by_name = fields.String(allow_none=True)
    created_at = Timestamp()
    completed_at = Timestamp(allow_none=True)


class PreCheckStatusSchema(Schema):
    latest = fields.Nested(PreCheckSchema, allow_none=True)
    history = fields.List(fields.Nested(PreCheckSchema))
