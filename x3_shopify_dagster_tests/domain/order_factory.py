"""Hand-made Shopify orders for the invoice tests: every amount is a literal the test can check by hand.

The payload is the snake_case shape ``ShopifyOrder.to_payload()`` produces (what staging stores), so the
orders go through the same validation as replayed ones.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from x3_shopify_dagster.domain.shopify_orders import ShopifyOrder

PROCESSED_AT = "2026-11-27T10:00:00Z"
_line_ids = itertools.count(5900000000001)


def bag(amount: str, currency: str = "EUR", presentment: tuple[str, str] | None = None) -> dict[str, Any]:
    """A MoneyBag; ``presentment`` is (amount, currency), else the same as the shop money."""
    shop = {"amount": amount, "currency_code": currency}
    other = {"amount": presentment[0], "currency_code": presentment[1]} if presentment else shop
    return {"shop_money": shop, "presentment_money": other}


def tax(
    amount: str,
    *,
    title: str = "VAT",
    rate: str = "0.2",
    currency: str = "EUR",
    presentment: tuple[str, str] | None = None,
) -> dict[str, Any]:
    return {"title": title, "rate": rate, "price_set": bag(amount, currency, presentment)}


def allocation(amount: str, application: int = 0, currency: str = "EUR") -> dict[str, Any]:
    return {"allocated_amount_set": bag(amount, currency), "discount_application_index": application}


def line(
    sku: str | None,
    quantity: int,
    unit_price: str,
    *,
    taxes: Sequence[dict[str, Any]] = (),
    discounts: Sequence[dict[str, Any]] = (),
    duties: Sequence[str] = (),
    currency: str = "EUR",
    name: str | None = None,
    gift_card: bool = False,
    presentment_unit_price: tuple[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "id": f"gid://shopify/LineItem/{next(_line_ids)}",
        "sku": sku,
        "name": name or (sku or "Custom item").title(),
        "quantity": quantity,
        "current_quantity": quantity,
        "is_gift_card": gift_card,
        "original_unit_price_set": bag(unit_price, currency, presentment_unit_price),
        "discounted_total_set": bag(unit_price, currency),  # not read by the invoice builder
        "tax_lines": list(taxes),
        "discount_allocations": list(discounts),
        "duties": [
            {"id": f"gid://shopify/Duty/{n}", "price_set": bag(d, currency)} for n, d in enumerate(duties)
        ],
    }


def shipping(
    title: str,
    price: str,
    *,
    taxes: Sequence[dict[str, Any]] = (),
    discounts: Sequence[dict[str, Any]] = (),
    currency: str = "EUR",
) -> dict[str, Any]:
    return {
        "title": title,
        "original_price_set": bag(price, currency),
        "discounted_price_set": bag(price, currency),
        "tax_lines": list(taxes),
        "discount_allocations": list(discounts),
    }


def percentage(index: int, percent: str, *, scope: str = "ALL") -> dict[str, Any]:
    return {
        "index": index,
        "allocation_method": "ACROSS",
        "target_selection": scope,
        "target_type": "LINE_ITEM",
        "value_type": "PricingPercentageValue",
        "value_percentage": percent,
    }


def fixed(index: int, amount: str, currency: str = "EUR", *, scope: str = "EXPLICIT") -> dict[str, Any]:
    return {
        "index": index,
        "allocation_method": "EACH",
        "target_selection": scope,
        "target_type": "LINE_ITEM",
        "value_type": "MoneyV2",
        "value_amount": {"amount": amount, "currency_code": currency},
    }


def order(
    *,
    lines: Sequence[dict[str, Any]],
    total: str,
    shipping_lines: Sequence[dict[str, Any]] = (),
    currency: str = "EUR",
    taxes_included: bool = True,
    discount_applications: Sequence[dict[str, Any]] = (),
    guest: bool = False,
    legacy_id: int = 5800000000042,
    presentment_total: tuple[str, str] | None = None,
    **fields: Any,
) -> ShopifyOrder:
    payload: dict[str, Any] = {
        "id": f"gid://shopify/Order/{legacy_id}",
        "legacy_resource_id": legacy_id,
        "name": "#1042",
        "email": "claire.martin@bistro-lyon.example",
        "customer_id": None if guest else "gid://shopify/Customer/7100000000001",
        "created_at": PROCESSED_AT,
        "updated_at": PROCESSED_AT,
        "processed_at": PROCESSED_AT,
        "test": False,
        "display_financial_status": "PAID",
        "display_fulfillment_status": "UNFULFILLED",
        "currency_code": currency,
        "presentment_currency_code": presentment_total[1] if presentment_total else currency,
        "taxes_included": taxes_included,
        "total_price_set": bag(total, currency, presentment_total),
        "total_shipping_price_set": bag("0", currency),
        "current_total_price_set": bag(total, currency, presentment_total),
        "discount_applications": list(discount_applications),
        "line_items": list(lines),
        "shipping_lines": list(shipping_lines),
    }
    return ShopifyOrder.model_validate({**payload, **fields})
