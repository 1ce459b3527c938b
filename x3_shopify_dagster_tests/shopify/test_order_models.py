from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from x3_shopify_dagster.domain.shopify_orders import IncompleteOrderError, ShopifyOrder
from x3_shopify_dagster_tests.shopify.fakes import (
    after_sales_node,
    bag,
    full_order,
    line_item,
    page_node,
    tax,
)


def test_paged_shape_and_assembled_bulk_shape_give_the_same_order() -> None:
    order = full_order(7, line_items=3, refunds=1, fulfillments=1)
    paged = page_node(order, 250, 250)
    details = after_sales_node(order, 250, 250)
    paged["refunds"], paged["fulfillments"] = details["refunds"], details["fulfillments"]
    assert ShopifyOrder.from_graphql(paged) == ShopifyOrder.from_graphql(order)


def test_money_is_decimal_from_strings_and_floats_are_rejected() -> None:
    order = ShopifyOrder.from_graphql(full_order(1))
    assert order.total_price_set.shop_money.amount == Decimal("69.70")
    assert isinstance(order.line_items[0].original_unit_price_set.shop_money.amount, Decimal)

    with_float = full_order(1)
    with_float["totalPriceSet"]["shopMoney"]["amount"] = 69.7
    with pytest.raises(ValidationError, match="strings"):
        ShopifyOrder.from_graphql(with_float)


def test_timestamps_are_aware_utc_and_naive_ones_are_rejected() -> None:
    order = ShopifyOrder.from_graphql(full_order(1, fulfillments=1))
    assert order.updated_at == datetime(2026, 11, 27, 10, tzinfo=UTC)
    assert order.updated_at.utcoffset() is not None
    # "+01:00" in the source is converted, not kept
    assert order.fulfillments[0].created_at == datetime(2026, 11, 27, 12, tzinfo=UTC)
    assert order.fulfillments[0].created_at.tzinfo == UTC

    naive = full_order(1)
    naive["updatedAt"] = "2026-11-27T10:00:00"
    with pytest.raises(ValidationError, match="timezone"):
        ShopifyOrder.from_graphql(naive)


def test_taxes_included_and_excluded_orders_keep_shopify_figures() -> None:
    included = ShopifyOrder.from_graphql(full_order(1, taxes_included=True))
    excluded_node = full_order(2, taxes_included=False)
    excluded_node["lineItems"] = [line_item(2, 1, price="100.00", taxes=[tax("8.25", 0.0825, "Sales tax")])]
    excluded_node["totalPriceSet"] = bag("108.25", "USD")
    excluded = ShopifyOrder.from_graphql(excluded_node)

    assert included.taxes_included is True
    assert excluded.taxes_included is False
    line_tax = excluded.line_items[0].tax_lines[0]
    assert line_tax.rate == Decimal("0.0825")  # float rate read through its shortest repr, not binary noise
    assert line_tax.price_set.shop_money.amount == Decimal("8.25")
    assert excluded.total_price_set.shop_money.currency_code == "USD"


def test_discounts_are_typed_and_allocations_point_at_their_application() -> None:
    node = full_order(3)
    node["discountApplications"] = [
        {
            "index": 0,
            "allocationMethod": "ACROSS",
            "targetSelection": "ALL",
            "targetType": "LINE_ITEM",
            "value": {"__typename": "PricingPercentageValue", "percentage": 10.0},
        },
        {
            "index": 1,
            "allocationMethod": "EACH",
            "targetSelection": "ENTITLED",
            "targetType": "SHIPPING_LINE",
            "value": {"__typename": "MoneyV2", "amount": "5.00", "currencyCode": "EUR"},
        },
    ]
    allocation = {"allocatedAmountSet": bag("2.99"), "discountApplication": {"index": 0}}
    node["lineItems"] = [line_item(3, 1, allocations=[allocation])]
    order = ShopifyOrder.from_graphql(node)

    percent, fixed = order.discount_applications
    assert (percent.value_type, percent.value_percentage, percent.value_amount) == (
        "PricingPercentageValue",
        Decimal("10.0"),
        None,
    )
    assert fixed.value_amount is not None
    assert fixed.value_amount.amount == Decimal("5.00")
    assert order.line_items[0].discount_allocations[0].discount_application_index == 0
    assert order.line_items[0].discount_allocations[0].allocated_amount_set.shop_money.amount == Decimal("2.99")


def test_refunds_and_fulfilments_are_flattened() -> None:
    order = ShopifyOrder.from_graphql(full_order(4, line_items=2, refunds=1, fulfillments=1))
    refund = order.refunds[0]
    assert refund.refund_line_items[0].line_item_id == "gid://shopify/LineItem/4001"
    assert refund.refund_line_items[0].restock_type == "RETURN"
    assert refund.total_refunded_set.shop_money.amount == Decimal("29.90")
    fulfillment = order.fulfillments[0]
    assert fulfillment.location_id == "gid://shopify/Location/1"
    assert [f.line_item_id for f in fulfillment.fulfillment_line_items] == [
        "gid://shopify/LineItem/4001",
        "gid://shopify/LineItem/4002",
    ]
    assert fulfillment.tracking_info[0].number == "TRK4"
    line = order.line_items[0]
    assert (line.variant_id, line.inventory_item_id) == (
        "gid://shopify/ProductVariant/1",
        "gid://shopify/InventoryItem/1",
    )


def test_guest_checkout_has_no_customer_and_falls_back_to_the_order_email() -> None:
    guest = ShopifyOrder.from_graphql(full_order(5, guest=True, email="guest@example.com"))
    assert guest.customer_id is None
    assert guest.contact_email == "guest@example.com"

    account = ShopifyOrder.from_graphql(full_order(6, email=None, customer_email="a@b.example"))
    assert account.contact_email == "a@b.example"
    redacted = ShopifyOrder.from_graphql(full_order(7, guest=True, email=None))
    assert redacted.contact_email is None


def test_content_hash_ignores_updated_at_only() -> None:
    base = full_order(8, refunds=1)
    original = ShopifyOrder.from_graphql(base)

    bumped = copy.deepcopy(base)
    bumped["updatedAt"] = "2026-11-27T11:30:00Z"
    assert ShopifyOrder.from_graphql(bumped).content_hash() == original.content_hash()

    changes: list[tuple[str, Any]] = [
        ("displayFinancialStatus", "REFUNDED"),
        ("email", "new@example.com"),
        ("cancelledAt", "2026-11-27T11:00:00Z"),
    ]
    for key, value in changes:
        changed = copy.deepcopy(base)
        changed[key] = value
        assert ShopifyOrder.from_graphql(changed).content_hash() != original.content_hash(), key

    repriced = copy.deepcopy(base)
    repriced["lineItems"][1]["discountedTotalSet"]["shopMoney"]["amount"] = "19.90"
    assert ShopifyOrder.from_graphql(repriced).content_hash() != original.content_hash()
    refund_changed = copy.deepcopy(base)
    refund_changed["refunds"][0]["updatedAt"] = "2026-11-27T12:30:00Z"
    assert ShopifyOrder.from_graphql(refund_changed).content_hash() != original.content_hash()


def test_payload_is_json_safe_and_round_trips() -> None:
    order = ShopifyOrder.from_graphql(full_order(9, refunds=1, fulfillments=1, line_items=3))
    payload = order.to_payload()
    text = json.dumps(payload)  # no Decimal/datetime left
    assert payload["total_price_set"]["shop_money"]["amount"] == "69.70"
    assert payload["updated_at"] == "2026-11-27T10:00:00Z"

    again = ShopifyOrder.model_validate(json.loads(text))
    assert again == order
    assert again.content_hash() == order.content_hash()


def test_models_are_frozen() -> None:
    order = ShopifyOrder.from_graphql(full_order(10))
    with pytest.raises(ValidationError):
        order.name = "#9999"  # type: ignore[misc]


def test_an_order_with_unread_pages_is_refused() -> None:
    node = page_node(full_order(11, line_items=3), 2, 5)
    with pytest.raises(IncompleteOrderError, match="lineItems"):
        ShopifyOrder.from_graphql(node)


def test_refunds_without_their_line_items_are_refused() -> None:
    # The page query and bulk rows carry refund headers only; they must be completed before validation.
    node = page_node(full_order(12, refunds=1), 250, 250)
    with pytest.raises(IncompleteOrderError, match="refundLineItems"):
        ShopifyOrder.from_graphql(node)
