"""Field values of the record: normalising what callers send, storing it, reading it back.

A *logical* value is what the API shows an authorised caller (``"123-45-6789"``, a ``date``, a
phone as entered); the columns behind it may differ (ciphertext plus blind index, display plus
E.164). Change detection, history and duplicate checks all work on logical values.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from vigil_shared.crypto import FieldCipher, digits_only
from vigil_shared.masking import MASK

from . import registry, validation
from .access import CONFIDENTIAL, CUSTOMER, LEAD
from .models import Customer

# Fields every record of a kind must have, in the registry's order.
REQUIRED = {kind: tuple(f.name for f in registry.FIELDS if kind in f.required) for kind in (CUSTOMER, LEAD)}
PHONE_FIELDS = tuple(f.name for f in registry.FIELDS if isinstance(f.type, registry.Phone))
EMAIL_FIELDS = tuple(f.name for f in registry.FIELDS if isinstance(f.type, registry.Email))
# field: the column holding its FieldCipher token
ENCRYPTED = {f.name: f"{f.name}_enc" for f in registry.FIELDS if isinstance(f.type, registry.Secret)}
# Fields whose change rewrites the record's search terms (kind and location ride on every term).
SEARCHED = frozenset({f.name for f in registry.FIELDS if f.search} | {"location_id", "kind"})


def _type(field: str) -> registry.Type | None:
    declared = registry.BY_NAME.get(field)
    return declared.type if declared is not None else None


def read(customer: Customer, field: str, cipher: FieldCipher) -> Any:
    """The logical value of ``field`` (decrypted; an authorised caller's view)."""
    if field in ENCRYPTED:
        plain = cipher.decrypt(getattr(customer, ENCRYPTED[field]))
        if isinstance(_type(field), registry.SecretDate) and plain is not None:
            return date.fromisoformat(plain)
        return plain
    if isinstance(_type(field), registry.Values):
        return dict(getattr(customer, field) or {})
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
    if field in EMAIL_FIELDS:
        setattr(customer, field, value)
        setattr(customer, f"{field}_key", value.strip().lower() if value else None)
        return
    if isinstance(_type(field), registry.Values):
        setattr(customer, field, dict(value or {}))
        return
    setattr(customer, field, value)


def refresh_derived(customer: Customer) -> None:
    """Keys computed from other fields: the sort name and the name+address duplicate key."""
    customer.sort_name = sort_name_of(customer.last_name, customer.first_name)
    customer.name_address_key = name_address_key(
        customer.first_name, customer.last_name, customer.address_line1, customer.zip or customer.city
    )


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
    return registry.BY_NAME[field].masked(value)


def is_masked_echo(field: str, incoming: Any, current: Any) -> bool:
    """A client sending back the masked value it was shown (``***``, ``***-**-1234``) changes nothing."""
    if field not in CONFIDENTIAL or not isinstance(incoming, str):
        return False
    if current is None:
        return False
    current_text = current.isoformat() if isinstance(current, date) else current
    return incoming == masked(field, current_text) or (incoming == MASK)


def normalize(fields: dict[str, Any], state: str | None) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Field-level rules that need more than the schema (each field's ``clean`` in the registry):
    codes, ZIP vs state, phones, SSN, language.

    ``state`` is the state the record will have (sent now, or stored), which decides the ZIP's
    country and the default country of phone numbers.
    """
    values: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for field, value in fields.items():
        if isinstance(value, str) and field not in CONFIDENTIAL and field != "birthdate":
            value = value.strip() or None
        try:
            clean = registry.BY_NAME[field].clean if field in registry.BY_NAME else None
            values[field] = None if value is None else clean(value, state) if clean else value
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
