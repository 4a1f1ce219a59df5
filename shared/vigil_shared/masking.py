"""How confidential values look to callers without the confidential permission.

Every response, list, export, history entry and event passes confidential values through these,
so a masked value looks the same wherever it appears.
"""

from __future__ import annotations

import re

MASK = "***"


def mask_ssn(value: str | None) -> str | None:
    """``***-**-1234``: the last four digits stay, so staff can confirm a number read to them."""
    if not value:
        return value
    digits = "".join(ch for ch in value if ch.isdigit())
    return f"***-**-{digits[-4:]}" if len(digits) >= 4 else MASK


def mask(value: object) -> str | None:
    """Dates, codes, PINs and passwords: nothing of them shows."""
    return None if value in (None, "") else MASK


# An outside system's free text (a bureau's reason, a processor's decline message) is stored and shown
# to callers who may not read a confidential value: anything shaped like one is masked first.
_CARD = re.compile(r"(?<!\d)\d(?:[ -]?\d){11,18}(?!\d)")  # 12 to 19 digits, spaced or dashed
_SSN = re.compile(r"(?<!\d)\d{3}[ -]?\d{2}[ -]?\d{4}(?!\d)")


def scrub(text: str | None, *known: str | None) -> str | None:
    """``text`` with every card-number-like and SSN-like run of digits, and each ``known`` value (a
    token, a key sent with the request), replaced by ``***``."""
    if not text:
        return text
    for value in known:
        if value:
            text = text.replace(value, MASK)
    return _SSN.sub(MASK, _CARD.sub(MASK, text))


# A run of digit groups joined by at most two separators ("1980-02-03", "02/03/1980", "123.45.0750",
# "123 45 0750"): where an outside system may write a date or a number in any of its usual forms.
_DIGIT_RUN = re.compile(r"(?<![\w])\d+(?:[^\w\n]{1,2}\d+)*(?![\w])")


_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTH = r"(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
# "February 3, 1980", "Feb. 3 1980", "3 Feb 1980": the month by name
_NAMED_DATES = (
    re.compile(rf"(?<![\w]){_MONTH}\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{2,4}})(?![\w])", re.IGNORECASE),
    re.compile(rf"(?<![\w])(\d{{1,2}})(?:st|nd|rd|th)?\s+{_MONTH},?\s+(\d{{2,4}})(?![\w])", re.IGNORECASE),
)


def _date_parts(iso: str) -> tuple[int, int, int] | None:
    try:
        year, month, day = (int(part) for part in iso[:10].split("-"))
    except ValueError:
        return None
    return year, month, day


def _spells(groups: list[str], date: tuple[int, int, int]) -> bool:
    """Whether these digit groups (a slice of a run's) write ``date``: three groups in year-month-day, month-day-year or
    day-month-year order (a two-digit year too), or one group of its digits run together."""
    year, month, day = date
    years = {year, year % 100}
    if len(groups) == 3:
        a, b, c = (int(group) for group in groups)
        return (a in years and (b, c) == (month, day)) or (c in years and (a, b) in ((month, day), (day, month)))
    if len(groups) == 1 and len(groups[0]) in (6, 8):
        run = groups[0]
        padded = (f"{month:02d}", f"{day:02d}")
        for y in (f"{year:04d}", f"{year % 100:02d}"):
            if run in (y + padded[0] + padded[1], padded[0] + padded[1] + y, padded[1] + padded[0] + y):
                return True
    return False


def scrub_subject(
    text: str | None, ssn: str | None = None, birthdate: str | None = None, *, shapes: bool = True
) -> str | None:
    """:func:`scrub`, and the subject's own SSN and birthdate in whatever form they are written
    (``shapes=False``: the subject's values only, not every run shaped like a card number or an SSN).

    An outside system's words about a person (a bureau's reason, ADT's) are shown to callers who may not
    read that person's SSN or birthdate. Shape alone misses them: a date is not SSN-shaped, and a bureau
    may write ``123.45.6789``. Knowing the values, every run of digits (with its separators) that holds
    the whole SSN or spells the birthdate is masked whole."""
    if not text:
        return text
    ssn_digits = "".join(ch for ch in ssn or "" if ch.isdigit())
    date = _date_parts(birthdate) if birthdate else None

    def masked(match: re.Match[str]) -> str:
        run = match.group(0)
        digits = "".join(ch for ch in run if ch.isdigit())
        if len(ssn_digits) >= 9 and ssn_digits in digits:
            return MASK
        groups = re.findall(r"\d+", run)
        if date is not None and any(_spells(groups[i : i + size], date) for i in range(len(groups)) for size in (1, 3)):
            return MASK
        return run

    text = _DIGIT_RUN.sub(masked, text)
    if date is not None:
        year, month, day = date

        def named(match: re.Match[str]) -> str:
            words = [part for part in match.groups() if part]
            name = next(part for part in words if not part.isdigit())
            numbers = [int(part) for part in words if part.isdigit()]
            same = _MONTHS.index(name.lower()) + 1 == month and numbers == [day, numbers[1]]
            return MASK if same and numbers[1] in (year, year % 100) else match.group(0)

        for pattern in _NAMED_DATES:
            text = pattern.sub(named, text)
    return scrub(text) if shapes else text
