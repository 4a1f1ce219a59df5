import pytest

from vigil_billing.money import divide_half_up, format_amount, line_amount, line_tax


@pytest.mark.parametrize(
    ("amount", "rate", "tax"),
    [(1000, 825, 83), (1000, 850, 85), (10, 500, 1), (9, 500, 0), (-1000, 825, -83), (0, 825, 0), (3333, 1000, 333)],
)
def test_tax_per_line_rounds_half_away_from_zero(amount, rate, tax):
    assert line_tax(amount, rate) == tax


def test_half_up_in_integers_only():
    assert divide_half_up(5, 10) == 1 and divide_half_up(4, 10) == 0 and divide_half_up(-5, 10) == -1
    assert divide_half_up(10**30 + 5, 10) == 10**29 + 1  # no float anywhere
    with pytest.raises(ValueError):
        divide_half_up(1, 0)


def test_quantities_in_thousandths():
    assert line_amount(1500, 2999) == 4499  # 1.5 × 29.99 = 44.985 → 44.99
    assert line_amount(1000, 2999) == 2999


def test_formatting_follows_the_currency_exponent():
    assert format_amount(123456, "USD") == "1,234.56"
    assert format_amount(-5, "USD") == "-0.05"
    assert format_amount(1234, "JPY") == "1,234"
    assert format_amount(1234, "KWD") == "1.234"
