"""Money helpers: the one place where amounts are parsed and rounded.

Rounding is ROUND_HALF_UP to the currency's minor unit. Shopify computes taxes, discount allocations and
totals per line rounding half up (away from zero for the half), and the invoice total we build from those
lines must equal Shopify's order total to the cent; rounding the same way as Shopify keeps derived amounts
(for example a re-split of an order discount) identical to what Shopify shows. Banker's rounding would
drift by a cent on exactly the half-cent cases Shopify rounds up.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

# ISO 4217 exponents that differ from the common 2. Anything not listed (including unknown codes) uses 2.
_MINOR_UNITS: dict[str, int] = {
    **dict.fromkeys(
        (
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "PYG",
            "RWF",
            "UGX",
            "UYI",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ),
        0,
    ),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}


def minor_units(currency_code: str) -> int:
    """Number of decimal places of the currency's minor unit (ISO 4217 exponent); unknown codes use 2."""
    return _MINOR_UNITS.get(currency_code.upper(), 2)


def round_money(amount: Decimal, currency_code: str) -> Decimal:
    """Round ``amount`` half up to the currency's minor unit, e.g. 10.005 EUR -> 10.01, 10.5 JPY -> 11."""
    if not isinstance(amount, Decimal):
        raise TypeError(f"money must be a Decimal, got {type(amount).__name__}")
    if not amount.is_finite():
        raise ValueError(f"money must be finite, got {amount}")
    quantum = Decimal(1).scaleb(-minor_units(currency_code))
    return amount.quantize(quantum, rounding=ROUND_HALF_UP)


def parse_amount(text: str | Decimal) -> Decimal:
    """Parse a money amount as sent by Shopify (a JSON string such as ``"119.0"``) into a Decimal.

    Floats are refused on purpose: a float has already lost the exact decimal value. NaN and infinities are
    refused too. The scale is kept as sent (``"119.0"`` stays ``Decimal("119.0")``); round with
    :func:`round_money` where a rounded figure is needed.
    """
    if isinstance(text, Decimal):
        value = text
    elif isinstance(text, str):
        try:
            value = Decimal(text.strip())
        except InvalidOperation:
            raise ValueError(f"not a decimal amount: {text!r}") from None
    else:
        raise TypeError(f"money amounts must be strings, got {type(text).__name__}: {text!r}")
    if not value.is_finite():
        raise ValueError(f"money amount must be finite, got {text!r}")
    return value
