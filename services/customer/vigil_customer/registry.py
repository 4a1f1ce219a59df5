"""Every field of the customer record, declared once.

One line per field says what it holds (its value type: input and output shapes, columns, how a
value is cleaned and masked), which card (*section*) it sits on for customers and for leads,
whether it is confidential, who may write it and when, and its place in the list, the search
index and copies. The table's columns (``models``), the API schemas (``schemas``), the section
permissions (``access``), storage and masking (``record``, ``present``), the history filter, the
duplicate copy and the search terms are all derived from :data:`FIELDS`; nothing else lists them.

Adding an optional text field is one line here plus a migration adding its column (see
``docs/customers.md``, "Adding a field to the record").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

from marshmallow import fields, validate
from sqlalchemy import JSON, Boolean, Date, ForeignKey, Integer, String
from sqlalchemy import Text as SqlText
from sqlalchemy.orm import mapped_column

from vigil_shared.db import UTCDateTime
from vigil_shared.fields import Timestamp, TrimmedString
from vigil_shared.masking import MASK, mask, mask_ssn

from . import validation

CUSTOMER, LEAD = "customer", "lead"
KINDS = (CUSTOMER, LEAD)

# Sections (the cards of the record). Their permissions are in ``access.SECTION_PERMISSIONS``.
CONTACT, SALE, INSTALLATION, LEAD_INFO, GENERAL = "contact", "sale", "installation", "lead", "general"
# The order a kind's sections are listed in.
SECTION_ORDER = {CUSTOMER: (CONTACT, GENERAL, SALE, INSTALLATION), LEAD: (CONTACT, GENERAL, LEAD_INFO)}

# Who may write a field: through create and PATCH, only when the record is created, or never (shown only).
ALWAYS, ON_CREATE, NEVER = "always", "create", "never"


# --- value types ------------------------------------------------------------------------------------


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


def _doc(description: str | None) -> dict:
    return {"metadata": {"description": description}} if description else {}


class Type:
    """How one kind of value is received, shown and stored. Subclasses override what differs."""

    nullable = True  # in the table
    default: Any = None  # the value a new record starts with (None: no default)

    @property
    def column_type(self):
        return SqlText()

    def input(self, doc: str | None) -> fields.Field:
        raise NotImplementedError

    def output(self, doc: str | None) -> fields.Field:
        return fields.String(allow_none=True, **_doc(doc))

    def columns(self, name: str, column: dict) -> dict[str, Any]:
        """The mapped columns behind the field, by attribute name (``column``: extra arguments)."""
        return {
            name: mapped_column(
                *_column_args(self.column_type, column),
                nullable=self.nullable,
                **({"default": self.default} if self.default is not None else {}),
                **{k: v for k, v in column.items() if k != "foreign_key"},
            )
        }


def _column_args(column_type, column: dict) -> tuple:
    """The column's type, and its foreign key when ``column`` names one (``(target, on delete)``)."""
    if "foreign_key" not in column:
        return (column_type,)
    target, on_delete = column["foreign_key"]
    return column_type, ForeignKey(target, ondelete=on_delete)


@dataclass(frozen=True)
class Text(Type):
    """Text up to ``max_length`` characters, trimmed (``trim=False``: kept as sent, e.g. long notes)."""

    max_length: int = 100
    trim: bool = True
    long: bool = False  # a TEXT column rather than VARCHAR(max_length)

    @property
    def column_type(self):
        return SqlText() if self.long else String(self.max_length)

    def input(self, doc):
        cls = TrimmedString if self.trim else fields.String
        return cls(allow_none=True, validate=validate.Length(max=self.max_length), **_doc(doc))


def long_text() -> Text:
    return Text(max_length=10_000, trim=False, long=True)


@dataclass(frozen=True)
class Name(Type):
    """A name every record has: 1..max_length characters, never empty."""

    max_length: int = 100
    nullable = False

    @property
    def column_type(self):
        return String(self.max_length)

    def input(self, doc):
        return TrimmedString(validate=validate.Length(min=1, max=self.max_length), **_doc(doc))

    def output(self, doc):
        return fields.String(**_doc(doc))


@dataclass(frozen=True)
class Secret(Type):
    """Confidential text, stored only as a FieldCipher token in ``<name>_enc``."""

    max_length: int = 100

    def input(self, doc):
        return fields.String(allow_none=True, validate=validate.Length(max=self.max_length), **_doc(doc))

    def columns(self, name, column):
        return {f"{name}_enc": mapped_column(SqlText(), **column)}


@dataclass(frozen=True)
class SecretDate(Secret):
    """A confidential date (ISO text in the token); the API shows it as text so it can be masked."""

    def input(self, doc):
        return MaskableDate(allow_none=True, **_doc(doc))


@dataclass(frozen=True)
class Phone(Type):
    """A phone number stored as entered, with its E.164 form in ``<name>_e164`` for matching."""

    def input(self, doc):
        return TrimmedString(allow_none=True, validate=validate.Length(max=40), **_doc(doc))

    def columns(self, name, column):
        return {name: mapped_column(String(40), **column), f"{name}_e164": mapped_column(String(20), index=True)}


@dataclass(frozen=True)
class Email(Type):
    """An email address; ``email_key`` (lower case) keeps it unique whatever the case, on every database."""

    def input(self, doc):
        return fields.Email(allow_none=True, validate=validate.Length(max=254), **_doc(doc))

    def columns(self, name, column):
        return {name: mapped_column(String(254), **column), f"{name}_key": mapped_column(String(254), unique=True)}


@dataclass(frozen=True)
class Int(Type):
    """A whole number in ``[low, high]`` (JSON numbers only, no ``"12"``)."""

    low: int | None = None
    high: int | None = None
    required_value: bool = False  # null refused on input
    column_type = property(lambda self: Integer())

    def input(self, doc):
        extra: dict[str, Any] = {} if self.required_value else {"allow_none": True}
        return fields.Integer(strict=True, validate=validate.Range(min=self.low, max=self.high), **extra, **_doc(doc))

    def output(self, doc):
        return fields.Integer(allow_none=True, **_doc(doc))


def money() -> Int:
    """An amount in minor units of the record's ``currency``."""
    return Int(0, 100_000_000)


@dataclass(frozen=True)
class Flag(Type):
    """true/false, never null; ``default`` is what a new record starts with."""

    default: Any = False
    nullable = False
    column_type = property(lambda self: Boolean())

    def input(self, doc):
        return fields.Boolean(**_doc(doc))

    def output(self, doc):
        return fields.Boolean(**_doc(doc))


@dataclass(frozen=True)
class Day(Type):
    """A calendar date (``YYYY-MM-DD``)."""

    column_type = property(lambda self: Date())

    def input(self, doc):
        return fields.Date(allow_none=True, **_doc(doc))

    def output(self, doc):
        return fields.Date(allow_none=True, **_doc(doc))


@dataclass(frozen=True)
class Moment(Type):
    """An instant, shown in UTC (``2026-01-02T03:04:05Z``)."""

    column_type = property(lambda self: UTCDateTime())

    def input(self, doc):
        return Timestamp(allow_none=True, **_doc(doc))

    def output(self, doc):
        return Timestamp(allow_none=True, **_doc(doc))


@dataclass(frozen=True)
class OneOf(Type):
    """One of a few words, accepted in any case and stored in lower case."""

    choices: tuple[str, ...] = ()
    max_length: int = 20

    @property
    def column_type(self):
        return String(self.max_length)

    def input(self, doc):
        return Choice(list(self.choices), allow_none=True, **_doc(doc))


@dataclass(frozen=True)
class Currency(Type):
    """An ISO 4217 code, stored in upper case; every record has one."""

    nullable = False
    default = "USD"
    column_type = property(lambda self: String(3))

    def input(self, doc):
        return fields.String(validate=validate.Regexp(r"^[A-Za-z]{3}$"), **_doc(doc))

    def output(self, doc):
        return fields.String(**_doc(doc))


@dataclass(frozen=True)
class Values(Type):
    """The custom field values (a JSON object)."""

    nullable = False

    def input(self, doc):
        return fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True), **_doc(doc))

    def output(self, doc):
        return fields.Dict(**_doc(doc))

    def columns(self, name, column):
        return {name: mapped_column(JSON, nullable=False, default=dict, **column)}


@dataclass(frozen=True)
class Derived(Type):
    """Shown only, computed from other fields of the record; no column."""

    compute: Callable[[Any], Any] | None = None
    as_integer: bool = False

    def output(self, doc):
        return fields.Integer(allow_none=True, **_doc(doc)) if self.as_integer else super().output(doc)

    def columns(self, name, column):
        return {}


# --- cleaning values (rules that need more than the schema; ValueError → 422 under the field) -------


def _clean_ssn(value: str, state):
    text = value.strip()  # a mask passes here; the domain checks it is the one the caller was shown
    if not text:
        return None
    return text if text.startswith(MASK) else validation.normalize_ssn(text)


def _clean_code(value: str, state):
    return value.strip() or None


# --- the registry -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sections:
    """The section a field sits on for each kind of record (None: that kind has no such field)."""

    customer: str | None
    lead: str | None


BOTH_CONTACT = Sections(CONTACT, CONTACT)
BOTH_GENERAL = Sections(GENERAL, GENERAL)
SALE_ONLY = Sections(SALE, None)
INSTALLATION_ONLY = Sections(INSTALLATION, None)
SALE_AND_LEAD = Sections(SALE, LEAD_INFO)
# Lead tracking: a customer keeps these after conversion, read-only on its lead card (not listed).
LEAD_ONLY = Sections(None, LEAD_INFO)


@dataclass(frozen=True)
class Field:
    name: str
    type: Type
    sections: Sections
    doc: str | None = None  # the input description (OpenAPI)
    shown: str | None = None  # the output description, when it differs from nothing
    confidential: str | None = None  # category: ``confidential.<category>.view/modify``; encrypted at rest
    writable: str = ALWAYS
    required: tuple[str, ...] = ()  # kinds that must have a value
    credit: bool = False  # setting it needs the right to run credit
    copied: bool = True  # False: a per-account value a copy of the record does not take
    listed: bool = False  # a column of the list row
    search: str | None = None  # "words", "email" or "phone": what the search index takes from it
    clean: Callable[[Any, str | None], Any] | None = None  # (value, state of the record) → stored form
    column: dict = dataclass_field(default_factory=dict)  # extra column arguments (index, foreign key)

    def section(self, kind: str) -> str | None:
        """The card the field sits on for ``kind``; a lead-only field keeps its card on a customer
        (lead tracking kept after conversion, read-only there) though customers do not list it."""
        if kind == LEAD:
            return self.sections.lead
        return self.sections.customer or self.sections.lead

    def belongs_to(self, kind: str) -> bool:
        return (self.sections.lead if kind == LEAD else self.sections.customer) is not None

    def masked(self, value: Any) -> Any:
        """The value a caller without the confidential permission sees."""
        if value is None:
            return None
        return mask_ssn(value) if self.confidential == "ssn" else mask(value)

    def input_field(self) -> fields.Field:
        return self.type.input(self.doc)

    def output_field(self) -> fields.Field:
        return self.type.output(self.shown)

    def columns(self) -> dict[str, Any]:
        return self.type.columns(self.name, self.column)


def _phone(value, state):
    return validation.parse_phone(value, state)[0]


F = Field
BOTH = (CUSTOMER, LEAD)

# In the order the API documents them. A new optional text field on the sale card, for example:
#     F("alarm_permit_number", Text(50), SALE_ONLY),
FIELDS: tuple[Field, ...] = (
    F(
        "location_id",
        Int(1, required_value=True),
        BOTH_GENERAL,
        "Office location (required for customers and leads)",
        required=BOTH,
        listed=True,
        column={"index": True},
    ),
    # personal information
    F("first_name", Name(100), BOTH_CONTACT, required=BOTH, listed=True, search="words"),
    F("last_name", Name(100), BOTH_CONTACT, required=BOTH, listed=True, search="words"),
    F(
        "birthdate",
        SecretDate(),
        BOTH_CONTACT,
        "Confidential: `***` unless permitted",
        shown="YYYY-MM-DD, or `***` when masked",
        confidential="birthdate",
    ),
    F(
        "language",
        Text(20),
        BOTH_CONTACT,
        "Language code: en, fr, en-US",
        clean=lambda value, state: validation.normalize_language(value),
    ),
    F("address_line1", Text(200), BOTH_CONTACT),
    F("address_line2", Text(200), BOTH_CONTACT),
    F("city", Text(100), BOTH_CONTACT, required=BOTH, listed=True),
    F(
        "state",
        Text(2),
        BOTH_CONTACT,
        "US state or Canadian province code; decides the ZIP's country",
        required=BOTH,
        listed=True,
        clean=lambda value, state: validation.normalize_state(value),
    ),
    F(
        "zip",
        Text(10),
        BOTH_CONTACT,
        "US ZIP/ZIP+4 or Canadian postal code, checked against the state",
        listed=True,
        clean=validation.normalize_zip,
    ),
    F("county", Text(100), BOTH_CONTACT),
    F("cross_street", Text(200), BOTH_CONTACT),
    F(
        "primary_phone",
        Phone(),
        BOTH_CONTACT,
        "Stored as entered, matched as E.164",
        required=BOTH,
        listed=True,
        search="phone",
        clean=_phone,
    ),
    F("work_phone", Phone(), BOTH_CONTACT, search="phone", clean=_phone),
    F("cell_phone", Phone(), BOTH_CONTACT, search="phone", clean=_phone),
    F("other_phone", Phone(), BOTH_CONTACT, search="phone", clean=_phone),
    F("email", Email(), BOTH_CONTACT, copied=False, listed=True, search="email"),
    F("best_time_to_contact", Text(200), BOTH_CONTACT),
    F(
        "ssn",
        Secret(20),
        BOTH_CONTACT,
        "Confidential: `***-**-1234` unless permitted",
        shown="`***-**-1234` when masked",
        confidential="ssn",
        clean=_clean_ssn,
    ),
    F("spouse", Text(200), BOTH_CONTACT),
    F("credit_score", Int(300, 850), BOTH_CONTACT, "Needs `credit.create`; its letter grade is derived", credit=True),
    F(
        "credit_grade",
        Derived(compute=lambda c: validation.credit_grade(c.credit_score)),
        BOTH_CONTACT,
        shown="A ≥ 700, B ≥ 650, C ≥ 600, D ≥ 550, F",
        writable=NEVER,
    ),
    F("credit_tracking_number", Text(100), BOTH_CONTACT, credit=True),
    F("account_type", OneOf(choices=("residential", "commercial")), BOTH_CONTACT, required=(CUSTOMER,), listed=True),
    F("account_class", Text(100), BOTH_CONTACT),
    F("business_name", Text(200), BOTH_CONTACT, listed=True, search="words"),
    F("business_contact", Text(200), BOTH_CONTACT),
    F("dba_name", Text(200), BOTH_CONTACT, "Doing-business-as name", listed=True, search="words"),
    F("source", Text(100), SALE_AND_LEAD),
    F("source_campaign", Text(100), SALE_AND_LEAD),
    # general
    F("company", Text(200), BOTH_GENERAL),
    F("description", long_text(), BOTH_GENERAL),
    F("notes", long_text(), BOTH_GENERAL, "Internal notes about the record"),
    F("active", Flag(default=True), BOTH_GENERAL, listed=True),
    F("custom_fields", Values(), BOTH_GENERAL, "Values of the custom fields defined for this kind"),
    # sale information
    F("parent_customer_id", Int(1), SALE_ONLY, column={"foreign_key": ("customers.id", "SET NULL"), "index": True}),
    F("sale_date", Day(), SALE_ONLY),
    F("sold_by", Text(100), SALE_ONLY),
    F("trainee_trainer", Text(100), SALE_ONLY),
    F("lead_rep", Text(100), SALE_AND_LEAD),
    F("call_center_rep", Text(100), SALE_AND_LEAD, "Set once, when the record is created", writable=ON_CREATE),
    F("adt_number", Text(50), SALE_ONLY, copied=False),
    F("adt_serial_man", Text(50), SALE_ONLY, copied=False),
    F("account_number", Text(50), SALE_ONLY, copied=False),
    F("mmr", money(), SALE_ONLY, "Monthly monitoring charge, minor units of `currency`"),
    F("mmr_a_la_carte", Flag(), SALE_ONLY),
    F("currency", Currency(), SALE_ONLY, clean=lambda value, state: value.upper()),
    F("monitoring_plan", Text(100), SALE_ONLY),
    F("canceled", Flag(), SALE_ONLY, "With `cancel_date` and `cancel_reason`", copied=False),
    F("cancel_date", Day(), SALE_ONLY, copied=False),
    F("cancel_reason", Text(200), SALE_ONLY, copied=False),
    F("discount_affiliate", Text(100), SALE_ONLY),
    F("discount_affiliate_member_number", Text(100), SALE_ONLY),
    F(
        "monitoring_company_id",
        Int(1),
        SALE_ONLY,
        "Monitored By: an active company of the `/monitoring-companies` catalog",
        column={"index": True},
    ),
    F("interactive_services_provider", Text(100), SALE_ONLY),
    F("adt_system_type", Text(100), SALE_ONLY),
    F("contract_term_months", Int(1, 120), SALE_ONLY),
    F(
        "contract_months_remaining",
        Derived(compute=lambda c: validation.months_remaining(c.contract_term_months, c.sale_date), as_integer=True),
        SALE_ONLY,
        shown="From the sale date",
        writable=NEVER,
    ),
    F("activation_fee", money(), SALE_ONLY, "Minor units of `currency`"),
    F("warranty_term_months", Int(0, 240), SALE_ONLY),
    F("dealer_number", Text(50), SALE_ONLY),
    F("collections_date", Day(), SALE_ONLY, copied=False),
    F("funding_status", Text(50), SALE_ONLY, writable=NEVER),
    F("funded_date", Day(), SALE_ONLY, writable=NEVER),
    # installation & equipment
    F("installation_appointment_id", Int(1), INSTALLATION_ONLY, copied=False),
    F("install_date", Day(), INSTALLATION_ONLY),
    F("install_tech", Text(100), INSTALLATION_ONLY),
    F("install_tech_reports_to", Text(100), INSTALLATION_ONLY, writable=NEVER),
    F(
        "confirmation_number",
        Secret(100),
        INSTALLATION_ONLY,
        confidential="installation_codes",
        copied=False,
        clean=_clean_code,
    ),
    F(
        "receiver_number",
        Secret(100),
        INSTALLATION_ONLY,
        confidential="installation_codes",
        copied=False,
        clean=_clean_code,
    ),
    F("abort_code", Secret(100), INSTALLATION_ONLY, confidential="installation_codes", copied=False, clean=_clean_code),
    F("installed", Flag(), INSTALLATION_ONLY),
    F("two_way_voice", Flag(), INSTALLATION_ONLY),
    F("cellular_backup", Flag(), INSTALLATION_ONLY),
    F("guard_response", Flag(), INSTALLATION_ONLY),
    F("maintenance", Flag(), INSTALLATION_ONLY),
    F("invoicing", Flag(), INSTALLATION_ONLY),
    F("aarp", Flag(), INSTALLATION_ONLY),
    F("tellular", Flag(), INSTALLATION_ONLY),
    F("pulse", Flag(), INSTALLATION_ONLY),
    # lead information
    F("callback_at", Moment(), LEAD_ONLY),
    F("lead_disposition", Text(100), LEAD_ONLY),
    F("callcenter_comments", long_text(), LEAD_ONLY),
    F("lead_status", Text(50), LEAD_ONLY, required=(LEAD,)),
    F("lead_comments", long_text(), LEAD_ONLY),
)

# Shown on every record the caller may view, never written by a request; columns in ``models``.
# ``(name, output field or None for a field of FIELDS, in the list row)``
SYSTEM: tuple[tuple[str, Callable[[], fields.Field] | None, bool], ...] = (
    ("id", fields.Integer, True),
    ("kind", fields.String, True),
    ("location_id", None, True),
    ("created_at", Timestamp, True),
    ("updated_at", Timestamp, False),
    ("created_by", lambda: fields.String(allow_none=True), False),
    ("converted_at", lambda: Timestamp(allow_none=True), False),
    ("archived_at", lambda: Timestamp(allow_none=True), True),
    ("last_activity_at", Timestamp, True),
)
ALWAYS_SHOWN = tuple(name for name, _, _ in SYSTEM)

BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}


def register(new: Field) -> None:
    """Adds a field after import (tests only; the application declares its fields in :data:`FIELDS`).
    Must run before ``models`` and ``schemas`` are imported: they are built from the registry."""
    global FIELDS
    if new.name in BY_NAME:
        raise ValueError(f"{new.name} is already a field of the record")
    FIELDS = (*FIELDS, new)
    BY_NAME[new.name] = new
    _FIELDS_OF.clear()


def fields_of(kind: str) -> tuple[str, ...]:
    """The fields records of ``kind`` have, section by section (worked out once per kind: every
    create and every read of a record walks them)."""
    known = _FIELDS_OF.get(kind)
    if known is None:
        known = _FIELDS_OF[kind] = tuple(
            f.name
            for section in SECTION_ORDER[kind]
            for f in FIELDS
            if f.belongs_to(kind) and f.section(kind) == section
        )
    return known


_FIELDS_OF: dict[str, tuple[str, ...]] = {}  # emptied by register()


def column_definitions() -> dict[str, Any]:
    """Every mapped column behind the registry's fields, by attribute name (for ``models.Customer``)."""
    columns: dict[str, Any] = {}
    for f in FIELDS:
        for name, column in f.columns().items():
            columns[name] = column
    return columns


def output_fields(*, listed_only: bool = False) -> dict[str, fields.Field]:
    """The record as the API shows it (``listed_only``: the list row), always-shown fields first."""
    shown: dict[str, fields.Field] = {}
    for name, output, listed in SYSTEM:
        if listed or not listed_only:
            shown[name] = output() if output is not None else BY_NAME[name].output_field()
    for f in FIELDS:
        if f.name not in shown and (f.listed or not listed_only):
            shown[f.name] = f.output_field()
    return shown


def input_fields(writable: str = ALWAYS) -> dict[str, fields.Field]:
    """The fields a request body may carry: ``ALWAYS`` (create and PATCH) or ``ON_CREATE`` (create only)."""
    return {f.name: f.input_field() for f in FIELDS if f.writable == writable}
