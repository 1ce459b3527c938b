from __future__ import annotations

from decimal import Decimal

import pytest

from x3_shopify_dagster.domain.money import minor_units, parse_amount, round_money


@pytest.mark.parametrize(
    ("currency", "exponent"), [("EUR", 2), ("USD", 2), ("JPY", 0), ("KWD", 3), ("eur", 2), ("XYZ", 2)]
)
def test_minor_units_follow_iso_4217_with_two_for_unknown_codes(currency: str, exponent: int) -> None:
    assert minor_units(currency) == exponent


@pytest.mark.parametrize(
    ("amount", "currency", "rounded"),
    [
        ("10.005", "EUR", "10.01"),  # half up, like Shopify's per-line rounding (not banker's 10.00)
        ("10.015", "EUR", "10.02"),
        ("-10.005", "EUR", "-10.01"),  # away from zero for credits too
        ("10.004", "EUR", "10.00"),
        ("10.5", "JPY", "11"),
        ("1.2345", "KWD", "1.235"),
        ("119.0", "EUR", "119.00"),
    ],
)
def test_round_money_rounds_half_up_to_the_minor_unit(amount: str, currency: str, rounded: str) -> None:
    result = round_money(Decimal(amount), currency)
    assert result == Decimal(rounded)
    assert str(result) == rounded  # the exponent is the currency's, not whatever came in


def test_round_money_refuses_floats_and_non_finite_values() -> None:
    with pytest.raises(TypeError):
        round_money(10.005, "EUR")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        round_money(Decimal("NaN"), "EUR")


def test_parse_amount_keeps_the_exact_decimal_as_sent() -> None:
    assert parse_amount("119.0") == Decimal("119.0")
    assert str(parse_amount("119.0")) == "119.0"
    assert parse_amount(" 0.10 ") == Decimal("0.10")
    assert parse_amount(Decimal("1.5")) == Decimal("1.5")


@pytest.mark.parametrize("bad", [119.0, 1, True, None])
def test_parse_amount_rejects_non_strings(bad: object) -> None:
    with pytest.raises(TypeError):
        parse_amount(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-inf", "sNaN", "twelve", ""])
def test_parse_amount_rejects_nan_infinity_and_garbage(bad: str) -> None:
    with pytest.raises(ValueError, match=r"decimal amount|finite"):
        parse_amount(bad)
