"""Value rules of the customer record, as plain functions the schemas and domain share.

Each ``normalize_*`` returns the stored form of a value or raises ``ValueError`` with the message
the caller sees under the field's name.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from datetime import date

import phonenumbers

US_STATES = frozenset(
    [
        "AL",
        "AK",
        "AZ",
        "AR",
        "CA",
        "CO",
        "CT",
        "DE",
        "DC",
        "FL",
        "GA",
        "HI",
        "ID",
        "IL",
        "IN",
        "IA",
        "KS",
        "KY",
        "LA",
        "ME",
        "MD",
        "MA",
        "MI",
        "MN",
        "MS",
        "MO",
        "MT",
        "NE",
        "NV",
        "NH",
        "NJ",
        "NM",
        "NY",
        "NC",
        "ND",
        "OH",
        "OK",
        "OR",
        "PA",
        "RI",
        "SC",
        "SD",
        "TN",
        "TX",
        "UT",
        "VT",
        "VA",
        "WA",
        "WV",
        "WI",
        "WY",
        "PR",
        "GU",
        "VI",
        "AS",
        "MP",
        "AA",
        "AE",
        "AP",
    ]
)
CA_PROVINCES = frozenset(["AB", "BC", "MB", "NB", "NL", "NS", "NT", "NU", "ON", "PE", "QC", "SK", "YT"])
STATES = US_STATES | CA_PROVINCES

_US_ZIP = re.compile(r"^(\d{5})(?:[- ]?(\d{4}))?$")
_US_ZIP5 = re.compile(r"^\d{5}$")
# Canada Post: no D, F, I, O, Q, U anywhere; no W or Z as the first letter.
_CA_POSTAL = re.compile(r"^([ABCEGHJ-NPRSTVXY]\d[ABCEGHJ-NPRSTV-Z]) ?(\d[ABCEGHJ-NPRSTV-Z]\d)$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Z]{2})?$")
_SSN = re.compile(r"^(\d{3})-?(\d{2})-?(\d{4})$")

CREDIT_GRADES = ((700, "A"), (650, "B"), (600, "C"), (550, "D"), (300, "F"))
CREDIT_SCORE_RANGE = (300, 850)


def country_of_state(state: str | None) -> str | None:
    """``US`` or ``CA`` for a known state/province code, None without a state."""
    if not state:
        return None
    return "CA" if state in CA_PROVINCES else "US"


def normalize_state(value: str) -> str:
    code = value.strip().upper()
    if code not in STATES:
        raise ValueError("Not a US state or Canadian province code (e.g. UT, ON).")
    return code


def normalize_zip(value: str, state: str | None) -> str:
    """US ZIP or ZIP+4 for a US state, a Canadian postal code for a province; with no state,
    a 5-digit ZIP or a Canadian postal code. ``22`` and other short values are refused."""
    raw = value.strip().upper()
    country = country_of_state(state)
    canadian = _CA_POSTAL.match(raw)
    if country == "US":
        us = _US_ZIP.match(raw)
        if us:  # ZIP+4 typed without the dash (846011234) or with a space is stored as 84601-1234
            return f"{us.group(1)}-{us.group(2)}" if us.group(2) else us.group(1)
        raise ValueError("Must be a US ZIP code such as 84601 or 84601-1234.")
    if country == "CA":
        if canadian:
            return f"{canadian.group(1)} {canadian.group(2)}"
        raise ValueError("Must be a Canadian postal code such as K1A 0B1.")
    if _US_ZIP5.match(raw):
        return raw
    if canadian:
        return f"{canadian.group(1)} {canadian.group(2)}"
    raise ValueError("Must be a 5-digit ZIP code or a Canadian postal code.")


@functools.lru_cache(maxsize=256)
def parse_phone(value: str, state: str | None = None) -> tuple[str, str]:
    """``(as entered, E.164)``. Numbers without a country code are read in the state's country.

    Kept for the last few hundred numbers (a pure function of its arguments; a refusal is not kept):
    a create parsed each of its numbers twice, validating and then storing them."""
    display = value.strip()
    region = country_of_state(state) or "US"
    try:
        parsed = phonenumbers.parse(display, region)
    except phonenumbers.NumberParseException:
        raise ValueError("Not a phone number.") from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError("Not a valid phone number for its country.")
    return display, phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def national_digits(e164: str | None) -> str | None:
    """The digits a person dials at home: ``+16135551234`` → ``6135551234``."""
    if not e164:
        return None
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.national_significant_number(parsed)


def searched_phone(query: str) -> str | None:
    """The national digits of a searched phone number, read as stored numbers are (E.164 through
    ``phonenumbers``, US/Canada by default): ``16133742291``, ``+1 613 374 2291`` and
    ``(613) 374-2291`` all give ``6133742291``. None when the query is not a valid number."""
    try:
        parsed = phonenumbers.parse(query.strip(), "US")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.national_significant_number(parsed)


def normalize_ssn(value: str) -> str:
    """``123-45-6789`` (dashes optional on input); numbers the SSA never issues are refused."""
    match = _SSN.match(value.strip())
    if not match:
        raise ValueError("Must be 9 digits, e.g. 123-45-6789.")
    area, group, serial = match.groups()
    if area in ("000", "666") or area.startswith("9") or group == "00" or serial == "0000":
        raise ValueError("Not a valid SSN.")
    return f"{area}-{group}-{serial}"


def normalize_language(value: str) -> str:
    """ISO 639 language, optionally with a region: ``en``, ``fr``, ``en-US``."""
    language, _, region = value.strip().replace("_", "-").partition("-")
    code = language.lower() + (f"-{region.upper()}" if region else "")
    if not _LANGUAGE.match(code):
        raise ValueError("Must be a language code such as en, fr or en-US.")
    return code


def credit_grade(score: int | None) -> str | None:
    if score is None:
        return None
    for floor, grade in CREDIT_GRADES:
        if score >= floor:
            return grade
    return None


def months_remaining(term_months: int | None, start: date | None, today: date | None = None) -> int | None:
    """Whole months left on a contract that started on ``start`` (the sale date)."""
    if term_months is None or start is None:
        return None
    today = today or date.today()
    elapsed = (today.year - start.year) * 12 + (today.month - start.month)
    if today.day < start.day:
        elapsed -= 1
    return max(0, min(term_months, term_months - max(0, elapsed)))


def fold(text: str | None) -> str:
    """Lower case without accents: what search terms and sort keys are made of."""
    if not text:
        return ""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower().strip()
