"""Seeded orders as the API serves them: money reconciles to the cent in both currencies, the history covers
every case the connector must handle, and the same seed always builds the same stores."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
import pytest

from x3_shopify_dagster.sandboxes.shopify import SandboxConfig, ShopifySandbox
from x3_shopify_dagster.sandboxes.shopify.catalog import access_token_for
from x3_shopify_dagster.sandboxes.shopify.models import gid
from x3_shopify_dagster.sandboxes.shopify.state import SandboxState

pytest_plugins = ["x3_shopify_dagster_tests.fixtures.shopify_sandbox"]

BAG = "{ shopMoney { amount currencyCode } presentmentMoney { amount currencyCode } }"
HEADER = f"""query Header($id: ID!) {{ order(id: $id) {{
  id name email test cancelledAt cancelReason displayFinancialStatus displayFulfillmentStatus
  currencyCode presentmentCurrencyCode taxesIncluded customer {{ id }}
  totalPriceSet {BAG} subtotalPriceSet {BAG} totalTaxSet {BAG} totalShippingPriceSet {BAG} totalDiscountsSet {BAG}
  currentTotalPriceSet {BAG} currentSubtotalPriceSet {BAG} currentTotalTaxSet {BAG} totalRefundedSet {BAG}
  taxLines {{ rate priceSet {BAG} }}
  discountApplications(first: 10) {{ nodes {{ __typename index targetSelection targetType allocationMethod }} }}
  shippingLines(first: 5) {{ nodes {{ title originalPriceSet {BAG} discountedPriceSet {BAG}
    taxLines {{ rate priceSet {BAG} }}
    discountAllocations {{ allocatedAmountSet {BAG} discountApplication {{ index }} }} }} }}
  refunds(first: 20) {{ totalRefundedSet {BAG}
    refundLineItems(first: 60) {{ nodes {{ quantity restockType subtotalSet {BAG} totalTaxSet {BAG}
      lineItem {{ id }} }} }}
    refundShippingLines(first: 5) {{ nodes {{ subtotalAmountSet {BAG} taxAmountSet {BAG} }} }} }}
  fulfillments(first: 10) {{ status fulfillmentLineItems(first: 10) {{ nodes {{ quantity }} }} }}
}} }}"""
LINES = f"""query Lines($id: ID!, $after: String) {{ order(id: $id) {{ lineItems(first: 40, after: $after) {{
  pageInfo {{ hasNextPage endCursor }}
  nodes {{ id sku quantity currentQuantity taxable originalUnitPriceSet {BAG} originalTotalSet {BAG}
    discountedTotalSet {BAG} totalDiscountSet {BAG} taxLines {{ rate priceSet {BAG} }}
    discountAllocations {{ allocatedAmountSet {BAG} discountApplication {{ index }} }} }} }} }} }}"""
SIDES = ("shopMoney", "presentmentMoney")


@pytest.fixture(scope="module")
def api_orders() -> Iterator[list[dict[str, Any]]]:
    """Every seeded order of both stores, read over HTTP (a dedicated sandbox with an unlimited bucket)."""
    sandbox = ShopifySandbox(SandboxConfig(bucket_size=1e9, restore_rate=1e9)).start()
    orders = []
    try:
        with httpx.Client() as http:
            for store in sandbox.config.stores:
                def data(query: str, variables: dict[str, Any], store: str = store) -> dict[str, Any]:
                    response = http.post(sandbox.graphql_url(store), json={"query": query, "variables": variables},
                                         headers={"X-Shopify-Access-Token": sandbox.access_token(store)})
                    body = response.json()
                    assert "errors" not in body, body["errors"]
                    return body["data"]["order"]  # type: ignore[no-any-return]

                for order in sandbox.state.orders(store):
                    order_id = gid("Order", order.legacy_id)
                    header = data(HEADER, {"id": order_id})
                    lines: list[dict[str, Any]] = []
                    cursor = None
                    while True:
                        connection = data(LINES, {"id": order_id, "after": cursor})["lineItems"]
                        lines += connection["nodes"]
                        if not connection["pageInfo"]["hasNextPage"]:
                            break
                        cursor = connection["pageInfo"]["endCursor"]
                    orders.append({**header, "store": store, "lines": lines})
        yield orders
    finally:
        sandbox.stop()


def amount(bag: dict[str, Any], side: str) -> Decimal:
    value = Decimal(bag[side]["amount"])
    assert value.as_tuple().exponent >= -2, f"{value} has more than two decimals"  # type: ignore[operator]
    return value


def total(bags: list[dict[str, Any]], side: str) -> Decimal:
    return sum((amount(b, side) for b in bags), Decimal("0"))


def tax_on(net: Decimal, rate: Decimal, included: bool) -> Decimal:
    raw = net * rate / (1 + rate) if included else net * rate
    return raw.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def check_order(order: dict[str, Any], side: str) -> None:
    """Shopify's arithmetic, as the sandbox documents it, on one order in one currency."""
    included = order["taxesIncluded"]
    currency = order["currencyCode"] if side == "shopMoney" else order["presentmentCurrencyCode"]
    applications = {a["index"]: a for a in order["discountApplications"]["nodes"]}
    lines, shipping = order["lines"], order["shippingLines"]["nodes"]

    line_originals = Decimal("0")
    line_allocations = Decimal("0")
    tax = Decimal("0")
    for line in lines:
        original = amount(line["originalTotalSet"], side)
        assert original == amount(line["originalUnitPriceSet"], side) * line["quantity"]
        allocations = [(a["discountApplication"]["index"], amount(a["allocatedAmountSet"], side))
                       for a in line["discountAllocations"]]
        net = original - sum((a for _, a in allocations), Decimal("0"))
        line_level = [(applications[i], a) for i, a in allocations if applications[i]["targetSelection"] != "ALL"]
        assert amount(line["totalDiscountSet"], side) == sum((a for _, a in line_level), Decimal("0"))
        without_codes = sum((a for app, a in line_level if app["__typename"] != "DiscountCodeApplication"),
                            Decimal("0"))
        assert amount(line["discountedTotalSet"], side) == original - without_codes
        if line["taxable"]:
            (tax_line,) = line["taxLines"]
            assert amount(tax_line["priceSet"], side) == tax_on(net, Decimal(str(tax_line["rate"])), included)
        else:
            assert line["taxLines"] == []
        line_originals += original
        line_allocations += original - net
        tax += total([t["priceSet"] for t in line["taxLines"]], side)
    shipping_original = Decimal("0")
    shipping_allocations = Decimal("0")
    for ship in shipping:
        original = amount(ship["originalPriceSet"], side)
        allocated = total([a["allocatedAmountSet"] for a in ship["discountAllocations"]], side)
        assert amount(ship["discountedPriceSet"], side) == original - allocated
        for tax_line in ship["taxLines"]:
            expected = tax_on(original - allocated, Decimal(str(tax_line["rate"])), included)
            assert amount(tax_line["priceSet"], side) == expected
        shipping_original += original
        shipping_allocations += allocated
        tax += total([t["priceSet"] for t in ship["taxLines"]], side)

    assert amount(order["subtotalPriceSet"], side) == line_originals - line_allocations
    assert amount(order["totalDiscountsSet"], side) == line_allocations + shipping_allocations
    assert amount(order["totalShippingPriceSet"], side) == shipping_original
    assert amount(order["totalTaxSet"], side) == tax == total([t["priceSet"] for t in order["taxLines"]], side)
    expected_total = (line_originals - amount(order["totalDiscountsSet"], side) + shipping_original
                      + (Decimal("0") if included else tax))
    assert amount(order["totalPriceSet"], side) == expected_total

    refunded = Decimal("0")
    refunded_lines = Decimal("0")
    refunded_tax = Decimal("0")
    for refund in order["refunds"]:
        parts = [*refund["refundLineItems"]["nodes"], *refund["refundShippingLines"]["nodes"]]
        subtotals = total([p.get("subtotalSet") or p["subtotalAmountSet"] for p in parts], side)
        taxes = total([p.get("totalTaxSet") or p["taxAmountSet"] for p in parts], side)
        assert amount(refund["totalRefundedSet"], side) == subtotals + (Decimal("0") if included else taxes)
        refunded += amount(refund["totalRefundedSet"], side)
        refunded_lines += total([p["subtotalSet"] for p in refund["refundLineItems"]["nodes"]], side)
        refunded_tax += taxes
    assert amount(order["totalRefundedSet"], side) == refunded
    assert amount(order["currentTotalPriceSet"], side) == amount(order["totalPriceSet"], side) - refunded
    assert amount(order["currentSubtotalPriceSet"], side) == amount(order["subtotalPriceSet"], side) - refunded_lines
    assert amount(order["currentTotalTaxSet"], side) == amount(order["totalTaxSet"], side) - refunded_tax
    assert amount(order["currentTotalPriceSet"], side) >= 0
    assert {order["totalPriceSet"][side]["currencyCode"], order["taxLines"][0]["priceSet"][side]["currencyCode"]
            if order["taxLines"] else currency} == {currency}


def test_every_seeded_order_reconciles_to_the_cent_in_both_currencies(api_orders: list[dict[str, Any]]) -> None:
    for order in api_orders:
        for side in SIDES:
            try:
                check_order(order, side)
            except AssertionError as error:
                raise AssertionError(f"{order['store']} {order['name']} ({side}): {error}") from error
        if order["currencyCode"] == order["presentmentCurrencyCode"]:
            assert order["totalPriceSet"]["shopMoney"] == order["totalPriceSet"]["presentmentMoney"]


def test_the_money_check_itself_catches_a_cent_off(api_orders: list[dict[str, Any]]) -> None:
    order = next(o for o in api_orders if o["lines"] and o["discountApplications"]["nodes"])
    broken = {**order, "totalPriceSet": {**order["totalPriceSet"], "shopMoney": {
        **order["totalPriceSet"]["shopMoney"],
        "amount": str(Decimal(order["totalPriceSet"]["shopMoney"]["amount"]) + Decimal("0.01"))}}}
    with pytest.raises(AssertionError):
        check_order(broken, "shopMoney")


def test_the_seeded_history_covers_what_the_connector_must_handle(api_orders: list[dict[str, Any]]) -> None:
    for store in ("eu", "us"):
        orders = [o for o in api_orders if o["store"] == store]
        applications = [a for o in orders for a in o["discountApplications"]["nodes"]]
        shipping = [s for o in orders for s in o["shippingLines"]["nodes"]]
        refund_lines = [rl for o in orders for r in o["refunds"] for rl in r["refundLineItems"]["nodes"]]
        cases = {
            "test order": any(o["test"] for o in orders),
            "guest checkout": any(o["customer"] is None and o["email"] for o in orders),
            "null email": any(o["email"] is None for o in orders),
            "multi-currency": any(o["currencyCode"] != o["presentmentCurrencyCode"] for o in orders),
            "60+ line items": any(len(o["lines"]) > 60 for o in orders),
            "order-level discount": any(a["targetSelection"] == "ALL" and a["targetType"] == "LINE_ITEM"
                                        for a in applications),
            "line-level discount": any(a["targetSelection"] in ("ENTITLED", "EXPLICIT") for a in applications),
            "code, automatic and manual discounts": {a["__typename"] for a in applications} == {
                "DiscountCodeApplication", "AutomaticDiscountApplication", "ManualDiscountApplication"},
            "discounted shipping": any(s["discountAllocations"] for s in shipping),
            "taxed and untaxed shipping": store == "eu" or ({bool(s["taxLines"]) for s in shipping} == {True, False}),
            "refund with shipping": any(r["refundShippingLines"]["nodes"] for o in orders for r in o["refunds"]),
            "partial refund": any(o["displayFinancialStatus"] == "PARTIALLY_REFUNDED" for o in orders),
            "restock types": {"RETURN", "CANCEL"} <= {rl["restockType"] for rl in refund_lines},
            "cancelled with a reason": any(o["cancelledAt"] and o["cancelReason"] for o in orders),
            "voided": any(o["displayFinancialStatus"] == "VOIDED" for o in orders),
            "pending payment": any(o["displayFinancialStatus"] == "PENDING" for o in orders),
            "partially fulfilled": any(o["displayFulfillmentStatus"] == "PARTIALLY_FULFILLED" for o in orders),
            "fulfilled": any(o["displayFulfillmentStatus"] == "FULFILLED" for o in orders),
            "line without SKU": any(line["sku"] is None for o in orders for line in o["lines"]),
            "SKU unknown to X3": any(line["sku"] == "GIFT-WRAP" for o in orders for line in o["lines"]),
        }
        assert [case for case, present in cases.items() if not present] == [], store


FIXED = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def test_the_same_seed_builds_the_same_stores() -> None:
    config = SandboxConfig(seed=11, clock=lambda: FIXED)
    first, second = SandboxState(config), SandboxState(config)
    for store in config.stores:
        assert first.orders(store) == second.orders(store)
        assert [o.cart for o in first.orders(store)] == [o.cart for o in second.orders(store)]
    assert access_token_for(11, "eu") == access_token_for(11, "eu") != access_token_for(12, "eu")
    other = SandboxState(replace(config, seed=12))
    assert other.orders("eu") != first.orders("eu")


def test_bulk_seed_adds_plain_paid_orders_that_reconcile() -> None:
    state = SandboxState(SandboxConfig(stores=("us",), orders_per_store=0, clock=lambda: FIXED))
    assert state.bulk_seed("us", 3000) == 3000
    orders = state.orders("us")
    assert len({o.legacy_id for o in orders}) == 3000
    assert len({o.number for o in orders}) == 3000
    for order in orders[:: 97]:
        cart = order.cart
        assert order.financial_status == "PAID"
        assert order.updated_at <= FIXED
        lines = sum((line.original_total.shop.amount for line in cart.lines), Decimal("0"))
        expected = lines - cart.total_discounts.shop.amount + cart.total_shipping.shop.amount
        assert cart.total_price.shop.amount == expected + cart.total_tax.shop.amount  # us: taxes excluded
