"""Money values as Shopify's Admin API exposes them: ``MoneyV2`` and ``MoneyBag`` (shop + presentment)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
ZERO = Decimal("0")


def to_cents(amount: Decimal) -> Decimal:
    """Round to the currency's minor unit (every currency the sandbox serves has two decimals)."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def format_decimal(amount: Decimal) -> str:
    """Shopify's ``Decimal`` scalar text: no trailing zeros but at least one decimal ("119.0", "29.9")."""
    text = format(amount.normalize(), "f")
    if "." not in text:
        text += ".0"
    return "0.0" if text in ("-0.0", "-0") else text


@dataclass(frozen=True, slots=True)
class Money:
    """``MoneyV2``: an amount in one currency."""

    amount: Decimal
    currency_code: str


@dataclass(frozen=True, slots=True)
class MoneyBag:
    """``MoneyBag``: the same amount in the shop currency and in the customer's presentment currency."""

    shop: Money
    presentment: Money

    @classmethod
    def of(cls, shop_amount: Decimal, shop_currency: str, presentment_amount: Decimal,
           presentment_currency: str) -> MoneyBag:
        return cls(Money(shop_amount, shop_currency), Money(presentment_amount, presentment_currency))

    @classmethod
    def zero(cls, shop_currency: str, presentment_currency: str) -> MoneyBag:
        return cls.of(ZERO, shop_currency, ZERO, presentment_currency)

    def __add__(self, other: MoneyBag) -> MoneyBag:
        return MoneyBag(Money(self.shop.amount + other.shop.amount, self.shop.currency_code),
                        Money(self.presentment.amount + other.presentment.amount,
                              self.presentment.currency_code))

    def __sub__(self, other: MoneyBag) -> MoneyBag:
        return MoneyBag(Money(self.shop.amount - other.shop.amount, self.shop.currency_code),
                        Money(self.presentment.amount - other.presentment.amount,
                              self.presentment.currency_code))


def sum_bags(bags: list[MoneyBag] | tuple[MoneyBag, ...], shop_currency: str,
             presentment_currency: str) -> MoneyBag:
    total = MoneyBag.zero(shop_currency, presentment_currency)
    for bag in bags:
        total = total + bag
    return total
