"""Request and response shapes of the billing API.

Money is always an integer number of minor units (cents) of the company currency, named
``*_amount``/``amount``/``total``/``balance`` and paired with a ``currency`` in every response.
Request bodies refuse every field they do not declare (422 naming it); fields the server owns are
named as read-only.
"""

from __future__ import annotations

import re

from marshmallow import Schema, ValidationError, fields, validate, validates

from vigil_shared.fields import ReadOnlyAwareInput, Timestamp, TrimmedString, text
from vigil_shared.http import PaginationArgs, page_schema

from .ledger import BUCKETS
from .money import CURRENCIES, MAX_AMOUNT

ITEM_KEY = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class Input(ReadOnlyAwareInput):
    """A request body of this service: these fields are the server's."""

    READ_ONLY = ReadOnlyAwareInput.READ_ONLY | {"status", "number", "balance", "currency", "mismatched", "total_tax"}


def amount(*, strict: bool = True, minimum: int = 0, **kwargs) -> fields.Integer:
    """Minor units of the company currency: an integer (never a float or a string), 0 … 10^12.
    ``strict=False`` for query parameters, which are text."""
    return fields.Integer(strict=strict, validate=validate.Range(min=minimum, max=MAX_AMOUNT), **kwargs)


# --- company settings ----------------------------------------------------------------------------


class MmrItemSchema(Schema):
    key = fields.String(required=True, metadata={"description": "`monitoring`, `financing`, `warranty`…"})
    label = TrimmedString(required=True, validate=validate.Length(min=1, max=100))

    @validates("key")
    def _key(self, value, **_):
        if not ITEM_KEY.match(value):
            raise ValidationError("Lower-case letters, digits and _, starting with a letter (at most 40).")


class SettingsSchema(Schema):
    currency = fields.String(metadata={"description": "ISO 4217 code every amount is in"})
    tax_rate_bp = fields.Integer(
        metadata={"description": "Default tax rate of a new line, basis points (825 = 8.25 %)"}
    )
    payment_terms_days = fields.Integer()
    mmr_breakout = fields.Boolean(metadata={"description": "Breakout mode: rates are picked by their line items"})
    mmr_items = fields.List(fields.Nested(MmrItemSchema))
    updated_at = Timestamp()


class SettingsPatchSchema(Input):
    currency = fields.String(validate=validate.OneOf(CURRENCIES))
    tax_rate_bp = fields.Integer(strict=True, validate=validate.Range(min=0, max=10_000))
    payment_terms_days = fields.Integer(strict=True, validate=validate.Range(min=0, max=365))
    mmr_breakout = fields.Boolean()
    mmr_items = fields.List(fields.Nested(MmrItemSchema), validate=validate.Length(max=20))

    @validates("mmr_items")
    def _unique(self, value, **_):
        keys = [item.get("key") for item in value]
        if len(keys) != len(set(keys)):
            raise ValidationError("Each item key appears once.")


# --- a customer's billing account ------------------------------------------------------------------


class AccountSchema(Schema):
    customer_id = fields.Integer()
    location_id = fields.Integer(allow_none=True)
    kind = fields.String(allow_none=True)
    parent_id = fields.Integer(allow_none=True, metadata={"description": "The parent customer it bills through"})
    archived = fields.Boolean()
    currency = fields.String()
    balance = fields.Integer(metadata={"description": "What the customer owes, minor units (negative: credit)"})
    past_due = fields.Integer(metadata={"description": "The part of the balance past its due dates"})
    open_invoices = fields.Integer(metadata={"description": "Issued invoices not yet fully paid"})


# --- the rate catalog ----------------------------------------------------------------------------------


def _item_amounts(value):
    if not isinstance(value, dict):
        raise ValidationError("An object from MMR item key to amount (minor units).")
    for key, amount_value in value.items():
        if not isinstance(key, str) or not ITEM_KEY.match(key):
            raise ValidationError(f"{str(key)[:40]!r} is not an item key.")
        if isinstance(amount_value, bool) or not isinstance(amount_value, int) or not 0 <= amount_value <= MAX_AMOUNT:
            raise ValidationError(f"The amount of {key} is an integer of minor units, 0 to {MAX_AMOUNT}.")


class RateCreateSchema(Input):
    name = text(100)
    total = amount(metadata={"description": "Minor units; optional when `items` is given (their sum)"})
    items = fields.Dict(
        validate=[_item_amounts, validate.Length(max=20)],
        metadata={"description": 'Line-item breakdown: MMR item key → minor units, e.g. `{"monitoring": 2999}`'},
    )
    active = fields.Boolean(load_default=True)


class RatePatchSchema(Input):
    name = text(100)
    total = amount()
    items = fields.Dict(validate=[_item_amounts, validate.Length(max=20)])
    active = fields.Boolean()


class RateItemSchema(Schema):
    key = fields.String()
    label = fields.String()
    amount = fields.Integer()


class RateSchema(Schema):
    id = fields.Integer()
    name = fields.String(allow_none=True)
    total = fields.Integer(metadata={"description": "Minor units of `currency`"})
    currency = fields.String()
    items = fields.List(fields.Nested(RateItemSchema))
    mismatched = fields.Boolean(
        metadata={"description": "The breakdown no longer matches the MMR items: kept where assigned, not assignable"}
    )
    active = fields.Boolean()
    created_at = Timestamp()
    updated_at = Timestamp()


RatePageSchema = page_schema(RateSchema, "RatePage")


class RateListArgs(PaginationArgs):
    q = TrimmedString(validate=validate.Length(max=100), metadata={"description": "Part of the rate's name"})
    total = amount(strict=False)
    total_min = amount(strict=False)
    total_max = amount(strict=False)
    line = fields.List(
        fields.String(validate=validate.Regexp(r"^[a-z][a-z0-9_]{0,39}(:\d{1,13})?$")),
        load_default=list,
        metadata={"description": "Line-item filter, repeatable: `monitoring:2999` (that amount) or `warranty` (any)"},
    )
    active = fields.Boolean(load_default=True, allow_none=True)
    assignable = fields.Boolean(metadata={"description": "`true`: only rates that match the MMR items"})


class AssignmentSchema(Schema):
    customer_id = fields.Integer()
    rate = fields.Nested(RateSchema, allow_none=True)
    a_la_carte = fields.Boolean(metadata={"description": "Simple mode: the rate is customized"})
    contract_term_months = fields.Integer(allow_none=True)
    contract_start = fields.Date(allow_none=True)
    contract_months_remaining = fields.Integer(allow_none=True)
    assigned_at = Timestamp(allow_none=True)


class AssignmentPutSchema(Input):
    rate_id = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=2**31 - 1))
    a_la_carte = fields.Boolean(load_default=False)
    contract_term_months = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=1, max=240))
    contract_start = fields.Date(allow_none=True)


# --- invoices ------------------------------------------------------------------------------------------


class InvoiceLineInput(Input):
    description = TrimmedString(required=True, validate=validate.Length(min=1, max=200))
    quantity = fields.Integer(strict=True, load_default=1, validate=validate.Range(min=1, max=10_000))
    unit_price = amount(required=True)
    tax_rate_bp = fields.Integer(
        strict=True,
        allow_none=True,
        validate=validate.Range(min=0, max=10_000),
        metadata={"description": "Basis points (825 = 8.25 %); the company's default when absent"},
    )


class InvoiceCreateSchema(Input):
    lines = fields.List(fields.Nested(InvoiceLineInput), required=True, validate=validate.Length(min=1, max=200))
    due_date = fields.Date(allow_none=True, metadata={"description": "Issue date + the company's terms when absent"})
    memo = text(500)
    issue = fields.Boolean(load_default=False, metadata={"description": "Issue at once instead of keeping a draft"})
    bill_to_parent = fields.Boolean(
        load_default=True, metadata={"description": "A sub-customer's invoice is owed by its parent (the default)"}
    )


class InvoicePatchSchema(Input):
    lines = fields.List(fields.Nested(InvoiceLineInput), validate=validate.Length(min=1, max=200))
    due_date = fields.Date(allow_none=True)
    memo = text(500)


class VoidSchema(Input):
    reason = text(500)


class InvoiceLineSchema(Schema):
    id = fields.Integer()
    position = fields.Integer()
    description = fields.String()
    quantity = fields.Integer()
    unit_price = fields.Integer()
    amount = fields.Integer(metadata={"description": "quantity × unit_price"})
    tax_rate_bp = fields.Integer()
    tax = fields.Integer(metadata={"description": "amount × tax_rate_bp / 10000, rounded half away from zero"})


class InvoiceSchema(Schema):
    id = fields.Integer()
    customer_id = fields.Integer()
    bill_to_customer_id = fields.Integer()
    location_id = fields.Integer(allow_none=True)
    status = fields.String(metadata={"enum": ["draft", "issued", "partially_paid", "paid", "void"]})
    number = fields.Integer(allow_none=True, metadata={"description": "Sequential per company, given when issued"})
    currency = fields.String()
    issue_date = fields.Date(allow_none=True)
    due_date = fields.Date(allow_none=True)
    memo = fields.String(allow_none=True)
    lines = fields.List(fields.Nested(InvoiceLineSchema))
    subtotal = fields.Integer()
    tax_total = fields.Integer()
    total = fields.Integer()
    amount_paid = fields.Integer()
    balance = fields.Integer()
    recurring_invoice_id = fields.Integer(allow_none=True)
    void_reason = fields.String(allow_none=True)
    voided_at = Timestamp(allow_none=True)
    created_at = Timestamp()
    updated_at = Timestamp()


InvoicePageSchema = page_schema(InvoiceSchema, "InvoicePage")


class InvoiceListArgs(PaginationArgs):
    status = fields.String(
        validate=validate.OneOf(["draft", "issued", "partially_paid", "paid", "void", "open"]),
        metadata={"description": "`open`: issued or partially paid"},
    )


# --- billing methods -------------------------------------------------------------------------------------


class MethodCreateSchema(Input):
    """Only a processor token: a card number, CVC or full account number is refused (422) and never read."""

    token = fields.String(
        required=True,
        validate=[validate.Length(min=4, max=100), validate.Regexp(r"^[A-Za-z0-9_\-]+$")],
        metadata={"description": "What the processor's tokenize endpoint answered the client"},
    )
    is_default = fields.Boolean(load_default=False)


class MethodSchema(Schema):
    id = fields.Integer()
    customer_id = fields.Integer()
    location_id = fields.Integer(allow_none=True)
    kind = fields.String(metadata={"enum": ["card", "ach"]})
    brand = fields.String(allow_none=True)
    last4 = fields.String()
    exp_month = fields.Integer(allow_none=True)
    exp_year = fields.Integer(allow_none=True)
    holder = fields.String(allow_none=True)
    is_default = fields.Boolean()
    created_at = Timestamp()


MethodPageSchema = page_schema(MethodSchema, "BillingMethodPage")


# --- payments ----------------------------------------------------------------------------------------------


class PaymentCreateSchema(Input):
    method = fields.String(required=True, validate=validate.OneOf(["cash", "check", "card", "ach"]))
    amount = amount(required=True, minimum=1)
    billing_method_id = fields.Integer(
        strict=True,
        allow_none=True,
        validate=validate.Range(min=1, max=2**31 - 1),
        metadata={"description": "card, ach"},
    )
    check_number = text(40)
    memo = text(500)
    invoice_ids = fields.List(
        fields.Integer(strict=True, validate=validate.Range(min=1, max=2**31 - 1)),
        validate=validate.Length(max=100),
        metadata={"description": "Invoices to pay first; then the oldest due. What is left becomes credit."},
    )


class RefundSchema(Input):
    amount = amount(minimum=1, metadata={"description": "All that is left when absent"})
    reason = text(500)


class AllocationSchema(Schema):
    invoice_id = fields.Integer()
    amount = fields.Integer()


class PaymentSchema(Schema):
    id = fields.Integer()
    customer_id = fields.Integer()
    location_id = fields.Integer(allow_none=True)
    method = fields.String()
    billing_method_id = fields.Integer(allow_none=True)
    check_number = fields.String(allow_none=True)
    memo = fields.String(allow_none=True)
    amount = fields.Integer()
    currency = fields.String()
    status = fields.String(metadata={"enum": ["pending", "succeeded", "failed"]})
    failure_code = fields.String(allow_none=True)
    failure_message = fields.String(allow_none=True)
    amount_refunded = fields.Integer()
    refund_pending_amount = fields.Integer(
        allow_none=True,
        metadata={
            "description": "A refund whose outcome is unknown (the processor's answer was lost): the next "
            "refund must ask for this amount, which then resolves it"
        },
    )
    unallocated = fields.Integer(metadata={"description": "Credit left once allocated and refunded"})
    allocations = fields.List(fields.Nested(AllocationSchema))
    received_at = Timestamp(allow_none=True)
    created_at = Timestamp()


PaymentPageSchema = page_schema(PaymentSchema, "PaymentPage")


# --- recurring invoices and scheduled payments ------------------------------------------------------------


class RecurringCreateSchema(Input):
    lines = fields.List(fields.Nested(InvoiceLineInput), required=True, validate=validate.Length(min=1, max=200))
    memo = text(500)
    interval_months = fields.Integer(strict=True, load_default=1, validate=validate.OneOf([1, 2, 3, 6, 12]))
    start_date = fields.Date(required=True)
    end_date = fields.Date(allow_none=True)
    count = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=1, max=1200))
    bill_to_parent = fields.Boolean(
        load_default=True, metadata={"description": "A sub-customer's new template bills its parent (the default)"}
    )


class RecurringSchema(Schema):
    id = fields.Integer()
    customer_id = fields.Integer()
    bill_to_customer_id = fields.Integer()
    location_id = fields.Integer(allow_none=True)
    lines = fields.List(fields.Dict())
    memo = fields.String(allow_none=True)
    interval_months = fields.Integer()
    start_date = fields.Date()
    next_date = fields.Date(allow_none=True)
    end_date = fields.Date(allow_none=True)
    remaining = fields.Integer(allow_none=True)
    status = fields.String(metadata={"enum": ["active", "cancelled", "ended"]})
    cancelled_by_operation = fields.String(
        allow_none=True, metadata={"description": "The archive operation that cancelled it (GET /operations/{id})"}
    )
    created_at = Timestamp()


RecurringPageSchema = page_schema(RecurringSchema, "RecurringInvoicePage")


class ActiveArgs(PaginationArgs):
    active = fields.Boolean(metadata={"description": "`true`: only the live ones (what archiving cancels)"})


class ScheduledCreateSchema(Input):
    billing_method_id = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=2**31 - 1))
    amount = amount(required=True, minimum=1)
    due_date = fields.Date(required=True)


class ScheduledSchema(Schema):
    id = fields.Integer()
    customer_id = fields.Integer()
    location_id = fields.Integer(allow_none=True)
    billing_method_id = fields.Integer()
    amount = fields.Integer()
    due_date = fields.Date()
    next_attempt_on = fields.Date(allow_none=True)
    attempts = fields.Integer()
    status = fields.String(metadata={"enum": ["scheduled", "processing", "succeeded", "failed", "cancelled"]})
    payment_id = fields.Integer(allow_none=True)
    failure_code = fields.String(allow_none=True)
    failure_message = fields.String(allow_none=True)
    cancelled_by_operation = fields.String(
        allow_none=True, metadata={"description": "The archive operation that cancelled it (GET /operations/{id})"}
    )
    created_at = Timestamp()


ScheduledPageSchema = page_schema(ScheduledSchema, "ScheduledPaymentPage")


class RunDueSchema(Input):
    date = fields.Date(
        allow_none=True,
        metadata={
            "description": "The day to run for (today or earlier; a later day is refused, 422); today when absent"
        },
    )


# --- ledger, statements, AR aging --------------------------------------------------------------------------


class EntrySchema(Schema):
    kind = fields.String(metadata={"enum": ["invoice", "void", "payment", "refund"]})
    id = fields.Integer(metadata={"description": "The invoice, payment or refund"})
    date = fields.Date()
    customer_id = fields.Integer(metadata={"description": "Whose activity (a sub-customer's, on a parent)"})
    description = fields.String()
    amount = fields.Integer(metadata={"description": "Minor units; positive raises what is owed"})
    balance = fields.Integer(metadata={"description": "The running balance after this entry"})


TransactionPageSchema = page_schema(EntrySchema, "TransactionPage")


class TransactionArgs(PaginationArgs):
    from_ = fields.Date(data_key="from")
    to = fields.Date()


class StatementArgs(Schema):
    from_ = fields.Date(data_key="from", required=True)
    to = fields.Date(required=True)


class StatementSchema(Schema):
    customer_id = fields.Integer()
    currency = fields.String()
    from_ = fields.Date(data_key="from", attribute="from")
    to = fields.Date()
    opening_balance = fields.Integer()
    closing_balance = fields.Integer()
    entries = fields.List(fields.Nested(EntrySchema))


def _aged() -> dict[str, fields.Field]:
    """What an aging row or its totals hold: minor units per age bucket, and their total."""
    return {name: fields.Integer() for name in (*BUCKETS, "total")}


AgingTotalsSchema = Schema.from_dict(_aged(), name="AgingTotals")
AgingSchema = Schema.from_dict(
    {"customer_id": fields.Integer(), "location_id": fields.Integer(allow_none=True), **_aged()}, name="Aging"
)


AgingPageSchema = page_schema(
    AgingSchema, "AgingPage", required=False, totals=fields.Nested(AgingTotalsSchema), currency=fields.String()
)


class AgingArgs(PaginationArgs):
    location_id = fields.Integer(validate=validate.Range(min=1, max=2**31 - 1))
