"""Money is exact: integer minor units (cents) with the company's ISO 4217 currency, never a float.

Tax is computed per invoice line, on the line's amount, as ``amount × rate_basis_points / 10000``
rounded **half away from zero** to the minor unit (``round_half_up``), then the invoice's tax is the
sum of its lines' tax. Rounding per line means a line's tax never changes when other lines are
added, and the printed lines always add up to the printed total.
"""

from __future__ import annotations

# ISO 4217 minor-unit exponents of the currencies a company may bill in (others can be added here).
CURRENCY_EXPONENTS: dict[str, int] = {
    "USD": 2,
    "CAD": 2,
    "EUR": 2,
    "GBP": 2,
    "AUD": 2,
    "NZD": 2,
    "MXN": 2,
    "CHF": 2,
    "JPY": 0,
    "KWD": 3,
}
CURRENCIES = tuple(sorted(CURRENCY_EXPONENTS))
DEFAULT_CURRENCY = "USD"
MAX_AMOUNT = 10**12  # minor units one amount may hold (10 billion dollars): bounds every sum below 2**63
BASIS_POINTS = 10_000  # 1 % = 100 basis points


def divide_half_up(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded half away from zero, in integers only."""
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    sign = -1 if numerator < 0 else 1
    quotient, remainder = divmod(abs(numerator), denominator)
    if remainder * 2 >= denominator:
        quotient += 1
    return sign * quotient


def line_tax(amount: int, rate_basis_points: int) -> int:
    """The tax of one line of ``amount`` minor units at ``rate_basis_points`` (825 = 8.25 %)."""
    return divide_half_up(amount * rate_basis_points, BASIS_POINTS)


def line_amount(quantity_thousandths: int, unit_price: int) -> int:
    """``quantity`` (in thousandths, so 1.5 hours is 1500) × ``unit_price``, rounded half up to the minor unit."""
    return divide_half_up(quantity_thousandths * unit_price, 1000)


def format_amount(amount: int, currency: str) -> str:
    """``12345, "USD"`` → ``"123.45"`` (for statements; the API always answers minor units)."""
    exponent = CURRENCY_EXPONENTS.get(currency, 2)
    sign = "-" if amount < 0 else ""
    whole, fraction = divmod(abs(amount), 10**exponent)
    return f"{sign}{whole:,}" + (f".{fraction:0{exponent}d}" if exponent else "")
