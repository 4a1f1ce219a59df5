"""Field values of the record: normalising what callers send, storing it, reading it back.

A *logical* value is what the API shows an authorised caller (``"123-45-6789"``, a ``date``, a
phone as entered); the columns behind it may differ (ciphertext plus blind index, display plus
E.164). Change detection, history and duplicate checks all work on logical values.
"""
from __future__ import annotations

from datetime import date
from typing import Any

from vigil_shared.crypto import FieldCipher, digits_only
from vigil_shared.masking import MASK, mask, mask_ssn

from . import validation
from .access import CONFIDENTIAL, CUSTOMER, LEAD, SERVICE_FIELDS
from .models import Customer

REQUIRED = {
    CUSTOMER: ("location_id", "first_name", "last_name", "city", "state", "primary_phone", "account_type"),
    LEAD: ("location_id", "first_name", "last_name", "city", "state", "primary_phone", "lead_status"),
}
PHONE_FIELDS = ("primary_phone", "work_phone", "cell_phone", "other_phone")
ENCRYPTED = {"ssn": "ssn_enc", "birthdate": "birthdate_enc", "confirmation_number": "confirmation_number_enc",
             "receiver_number": "receiver_number_enc", "abort_code": "abort_code_enc"}
# Column names equal to field names; every other field maps through the functions below.
PLAIN_FIELDS = (
    "location_id", "first_name", "last_name", "language", "address_line1", "address_line2", "city", "state", "zip",
    "county", "cross_street", "best_time_to_contact", "spouse", "credit_score", "credit_tracking_number",
    "account_type", "account_class", "business_name", "business_contact", "dba_name", "source", "source_campaign",
    "company", "description", "notes", "active", "parent_customer_id", "sale_date", "sold_by", "trainee_trainer",
    "lead_rep", "call_center_rep", "adt_number", "adt_serial_man", "account_number", "mmr", "mmr_a_la_carte",
    "currency", "monitoring_plan", "canceled", "cancel_date", "cancel_reason", "discount_affiliate",
    "discount_affiliate_member_number", "monitored_by", "interactive_services_provider", "adt_system_type",
    "contract_term_months", "activation_fee", "warranty_term_months", "dealer_number", "collections_date",
    "installation_appointment_id", "install_date", "install_tech", "installed", *SERVICE_FIELDS, "callback_at",
    "lead_disposition", "callcenter_comments", "lead_status", "lead_comments", "email",
)
SEARCHED = frozenset({"first_name", "last_name", "business_name", "dba_name", "email", *PHONE_FIELDS,
                      "location_id", "kind"})


def read(customer: Customer, field: str, cipher: FieldCipher) -> Any:
    """The logical value of ``field`` (decrypted; an authorised caller's view)."""
    if field in ENCRYPTED:
        plain = cipher.decrypt(getattr(customer, ENCRYPTED[field]))
        if field == "birthdate" and plain is not None:
            return date.fromisoformat(plain)
        return plain
    if field in PHONE_FIELDS:
        return getattr(customer, field)
    if field == "custom_fields":
        return dict(customer.custom_fields or {})
    return getattr(customer, field)


def write(customer: Customer, field: str, value: Any, cipher: FieldCipher) -> None:
    """Stores a normalised logical value in the columns behind ``field``."""
    if field in ENCRYPTED:
        text = value.isoformat() if isinstance(value, date) else value
        setattr(customer, ENCRYPTED[field], cipher.encrypt(text))
        if field == "ssn":
            customer.ssn_index = cipher.blind_index(text, normalize=digits_only) if text else None
        return
    if field in PHONE_FIELDS:
        if value is None:
            setattr(customer, field, None)
            setattr(customer, f"{field}_e164", None)
        else:
            display, e164 = validation.parse_phone(value, customer.state)
            setattr(customer, field, display)
            setattr(customer, f"{field}_e164", e164)
        return
    if field == "email":
        customer.email = value
        customer.email_key = value.strip().lower() if value else None
        return
    if field == "custom_fields":
        customer.custom_fields = dict(value or {})
        return
    setattr(customer, field, value)


def refresh_derived(customer: Customer) -> None:
    """Keys computed from other fields: the sort name and the name+address duplicate key."""
    customer.sort_name = sort_name_of(customer.last_name, customer.first_name)
    customer.name_address_key = name_address_key(customer.first_name, customer.last_name, customer.address_line1,
                                                 customer.zip or customer.city)


def sort_name_of(last_name: str | None, first_name: str | None) -> str:
    return f"{validation.fold(last_name)} {validation.fold(first_name)}".strip()[:220]


def name_address_key(first_name, last_name, address_line1, place) -> str | None:
    """Folded ``first last|street|zip-or-city``; None without a street (too weak to call a duplicate)."""
    if not (first_name and last_name and address_line1):
        return None
    street = " ".join(validation.fold(address_line1).replace(".", " ").replace(",", " ").split())
    where = "".join(validation.fold(place or "").split())
    return f"{validation.fold(first_name)} {validation.fold(last_name)}|{street}|{where}"[:400]


def masked(field: str, value: Any) -> Any:
    """The value a caller without the confidential permission sees."""
    if value is None:
        return None
    if field == "ssn":
        return mask_ssn(value)
    return mask(value)


def is_masked_echo(field: str, incoming: Any, current: Any) -> bool:
    """A client sending back the masked value it was shown (``***``, ``***-**-1234``) changes nothing."""
    if field not in CONFIDENTIAL or not isinstance(incoming, str):
        return False
    if current is None:
        return False
    current_text = current.isoformat() if isinstance(current, date) else current
    return incoming == masked(field, current_text) or (incoming == MASK)


def normalize(fields: dict[str, Any], state: str | None) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Field-level rules that need more than the schema: codes, ZIP vs state, phones, SSN, language.

    ``state`` is the state the record will have (sent now, or stored), which decides the ZIP's
    country and the default country of phone numbers.
    """
    values, errors = {}, {}
    for field, value in fields.items():
        if isinstance(value, str) and field not in CONFIDENTIAL and field != "birthdate":
            value = value.strip() or None
        try:
            if value is None:
                values[field] = None
            elif field == "state":
                values[field] = validation.normalize_state(value)
            elif field == "zip":
                values[field] = validation.normalize_zip(value, state)
            elif field in PHONE_FIELDS:
                values[field] = validation.parse_phone(value, state)[0]
            elif field == "ssn":
                text = value.strip()  # a mask passes here; the caller checks it is the one it was shown
                if not text:
                    values[field] = None
                else:
                    values[field] = text if text.startswith(MASK) else validation.normalize_ssn(text)
            elif field == "language":
                values[field] = validation.normalize_language(value)
            elif field in ("confirmation_number", "receiver_number", "abort_code"):
                values[field] = value.strip() or None
            elif field == "currency":
                values[field] = value.upper()
            else:
                values[field] = value
        except ValueError as exc:
            errors.setdefault(field, []).append(str(exc))
    return values, errors


def required_message(kind: str) -> str:
    return f"Required for {'leads' if kind == LEAD else 'customers'}."


def payload_errors(kind: str, valid: dict, sent, skip=()) -> dict[str, list[str]]:
    """Every seed rule a new record's body can be checked against on its own: fields required for
    its kind (absent or empty in ``sent``, the body as received) and the value rules of
    :func:`normalize` (ZIP against state, phones, SSN, language) on ``valid``, the values that
    passed the schema. ``skip`` names fields already reported. Lets one 422 name every problem."""
    skip = set(skip)
    errors: dict[str, list[str]] = {}
    for name in REQUIRED.get(kind, ()):
        raw = sent.get(name) if hasattr(sent, "get") else None
        if name not in skip and (raw is None or (isinstance(raw, str) and not raw.strip())):
            errors[name] = [required_message(kind)]
    state = valid.get("state")
    try:
        state = validation.normalize_state(state) if isinstance(state, str) and state.strip() else None
    except ValueError:
        state = None
    _, value_errors = normalize({k: v for k, v in valid.items() if k not in skip and k not in errors}, state)
    for name, messages in value_errors.items():
        errors.setdefault(name, []).extend(messages)
    return errors
