"""OrderReader against an in-process fake Shopify: paging, nested paging, batching, dedupe, shrinking."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from x3_shopify_dagster.domain.shopify_orders import ShopifyOrder
from x3_shopify_dagster.shopify.client import ShopifyClient
from x3_shopify_dagster.shopify.errors import MaxCostExceededError
from x3_shopify_dagster.shopify.orders import OrderReader, orders_search_query
from x3_shopify_dagster_tests.shopify.fakes import FakeShopify, full_order

LO = datetime(2026, 11, 27, 10, tzinfo=UTC)
HI = datetime(2026, 11, 27, 11, tzinfo=UTC)
MakeClient = Callable[..., ShopifyClient]


def orders_at(count: int, **options: Any) -> list[dict[str, Any]]:
    return [full_order(n, updated_at=f"2026-11-27T10:{n:02d}:00Z", **options) for n in range(1, count + 1)]


def expected(orders: list[dict[str, Any]]) -> list[ShopifyOrder]:
    return [ShopifyOrder.from_graphql(order) for order in orders]


def test_search_query_quotes_utc_timestamps_to_the_second() -> None:
    paris = timezone(timedelta(hours=1))
    query = orders_search_query(
        datetime(2026, 11, 27, 11, 0, 5, 999_999, tzinfo=paris), datetime(2026, 11, 27, 12, 0, tzinfo=paris)
    )
    assert query == "updated_at:>='2026-11-27T10:00:05Z' AND updated_at:<'2026-11-27T11:00:00Z'"


def test_search_query_refuses_naive_bounds() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        orders_search_query(datetime(2026, 11, 27, 10), HI)


def test_an_empty_window_is_refused(make_client: MakeClient) -> None:
    reader = OrderReader(make_client(FakeShopify().transport()))
    with pytest.raises(ValueError, match="empty window"):
        list(reader.iter_changed_orders(HI, HI + timedelta(milliseconds=500)))


def test_paged_pull_returns_every_order_in_order(make_client: MakeClient) -> None:
    fake = FakeShopify(orders=orders_at(7))
    reader = OrderReader(make_client(fake.transport()), page_size=3)

    assert list(reader.iter_changed_orders(LO, HI)) == expected(fake.orders)
    assert reader.stats.pages == 3
    assert reader.stats.orders == 7
    pages = [s for s in fake.sent if s.operation == "OrdersPage"]
    assert [p.variables["after"] for p in pages] == [None, "3", "6"]
    assert {p.variables["query"] for p in pages} == {orders_search_query(LO, HI)}


def test_nested_line_items_and_shipping_lines_are_paged_to_the_end(make_client: MakeClient) -> None:
    fake = FakeShopify(orders=[full_order(1, line_items=60, shipping_lines=7), full_order(2)])
    reader = OrderReader(make_client(fake.transport()), line_items_page_size=25, shipping_lines_page_size=5)

    big, small = reader.iter_changed_orders(LO, HI)
    assert [li.id for li in big.line_items] == [f"gid://shopify/LineItem/{1000 + i}" for i in range(1, 61)]
    assert len(big.shipping_lines) == 7
    assert big == ShopifyOrder.from_graphql(fake.orders[0])
    assert len(small.line_items) == 2
    assert fake.operations().count("OrderLineItems") == 2  # 25 + 25 + 10
    assert fake.operations().count("OrderShippingLines") == 1
    assert (reader.stats.line_item_pages, reader.stats.shipping_line_pages) == (2, 1)


def test_refunds_and_fulfilments_are_read_in_one_batch_per_page(make_client: MakeClient) -> None:
    fake = FakeShopify(
        orders=[
            full_order(1, refunds=2),
            full_order(2),
            full_order(3, fulfillments=1, line_items=60),  # 60 fulfilled lines: more than one page
            full_order(4, refunds=1, fulfillments=1),
        ]
    )
    reader = OrderReader(make_client(fake.transport()), page_size=10, line_items_page_size=25)

    orders = list(reader.iter_changed_orders(LO, HI))
    assert orders == expected(fake.orders)
    batches = [s.variables["ids"] for s in fake.sent if s.operation == "OrdersAfterSales"]
    assert batches == [["gid://shopify/Order/1", "gid://shopify/Order/3", "gid://shopify/Order/4"]]
    assert len(orders[2].fulfillments[0].fulfillment_line_items) == 60
    assert fake.operations().count("FulfillmentLineItems") == 2


def test_orders_without_refunds_or_fulfilments_cost_no_extra_request(make_client: MakeClient) -> None:
    fake = FakeShopify(orders=orders_at(3))
    list(OrderReader(make_client(fake.transport())).iter_changed_orders(LO, HI))
    assert fake.operations() == ["OrdersPage"]


def test_the_same_version_is_yielded_once_per_pull(make_client: MakeClient) -> None:
    first = full_order(1, updated_at="2026-11-27T10:01:00Z")
    newer = full_order(1, updated_at="2026-11-27T10:05:00Z")
    fake = FakeShopify(orders=[first, full_order(2), first, newer])
    reader = OrderReader(make_client(fake.transport()), page_size=2)

    pulled = [(o.id, o.updated_at.minute) for o in reader.iter_changed_orders(LO, HI)]
    assert pulled == [("gid://shopify/Order/1", 1), ("gid://shopify/Order/2", 0), ("gid://shopify/Order/1", 5)]
    assert reader.stats.duplicates_skipped == 1


def page_cost(operation: str, variables: dict[str, Any]) -> int:
    # A simplified Shopify estimate: each order costs 10 plus 2 per requested line item.
    if operation == "OrdersPage":
        return variables["first"] * (10 + 2 * variables["lineItemsFirst"])
    if operation == "OrderLineItems":
        return 2 + 2 * variables["first"]
    return 10


def test_max_cost_exceeded_shrinks_the_page_and_the_pull_completes(make_client: MakeClient) -> None:
    fake = FakeShopify(orders=orders_at(30), cost_of=page_cost, max_cost=1000)
    reader = OrderReader(make_client(fake.transport()), page_size=25, line_items_page_size=25)

    assert list(reader.iter_changed_orders(LO, HI)) == expected(fake.orders)
    # 25 * 60 = 1500 > 1000: scaled by max(1000/1500, ...) capped at one half -> 12 orders per page
    assert reader.stats.page_size_shrinks == 1
    assert reader.sizes.orders == 12
    assert [s.variables["first"] for s in fake.sent if s.operation == "OrdersPage"] == [25, 12, 12, 12]


def test_shrinking_scales_by_max_cost_over_cost_when_that_is_smaller(make_client: MakeClient) -> None:
    fake = FakeShopify(orders=orders_at(3), cost_of=page_cost, max_cost=300)
    reader = OrderReader(make_client(fake.transport()), page_size=25, line_items_page_size=25)
    list(reader.iter_changed_orders(LO, HI))
    # 1500 vs 300: a fifth -> 5 orders per page (300 points), accepted
    assert [s.variables["first"] for s in fake.sent if s.operation == "OrdersPage"] == [25, 5]


def test_nested_page_sizes_shrink_once_the_order_page_is_down_to_one(make_client: MakeClient) -> None:
    fake = FakeShopify(orders=[full_order(1, line_items=40)], cost_of=page_cost, max_cost=40)
    reader = OrderReader(make_client(fake.transport()), page_size=2, line_items_page_size=25)

    (order,) = reader.iter_changed_orders(LO, HI)
    assert len(order.line_items) == 40
    assert reader.sizes.orders == 1
    assert reader.sizes.line_items <= 15  # 10 + 2 * 15 = 40


def test_a_query_too_expensive_even_at_size_one_raises(make_client: MakeClient) -> None:
    fake = FakeShopify(orders=orders_at(1), cost_of=lambda op, v: 5000, max_cost=1000)
    reader = OrderReader(make_client(fake.transport()), page_size=4, line_items_page_size=4, shipping_lines_page_size=2)
    with pytest.raises(MaxCostExceededError):
        list(reader.iter_changed_orders(LO, HI))
    assert (reader.sizes.orders, reader.sizes.line_items, reader.sizes.shipping_lines) == (1, 1, 1)


def test_probe_reports_count_and_the_first_and_last_change(make_client: MakeClient) -> None:
    fake = FakeShopify(orders=orders_at(4))
    probe = OrderReader(make_client(fake.transport())).probe(LO, HI)
    assert probe.count == 4
    assert probe.oldest_updated_at == datetime(2026, 11, 27, 10, 1, tzinfo=UTC)
    assert probe.newest_updated_at == datetime(2026, 11, 27, 10, 4, tzinfo=UTC)
    assert fake.sent[0].variables == {"query": orders_search_query(LO, HI)}


def test_fetch_by_id_skips_and_counts_orders_that_no_longer_exist(make_client: MakeClient) -> None:
    fake = FakeShopify(orders=[full_order(1, refunds=1), full_order(2, line_items=30)])
    reader = OrderReader(make_client(fake.transport()), page_size=2)
    ids = ["gid://shopify/Order/1", "gid://shopify/Order/404", "gid://shopify/Order/2"]

    fetched = list(reader.fetch_orders_by_id(ids))
    assert fetched == expected(fake.orders)
    assert reader.stats.vanished_orders == 1
    assert [s.variables["ids"] for s in fake.sent if s.operation == "OrdersById"] == [ids[:2], ids[2:]]


def test_page_sizes_are_validated(make_client: MakeClient) -> None:
    client = make_client(FakeShopify().transport())
    with pytest.raises(ValueError, match="page_size"):
        OrderReader(client, page_size=251)
    with pytest.raises(ValueError, match="line_items_page_size"):
        OrderReader(client, line_items_page_size=0)


def test_an_order_deleted_while_its_lines_are_paged_is_skipped_and_counted(make_client: MakeClient) -> None:
    doomed = full_order(1, line_items=30)
    fake = FakeShopify(orders=[doomed, full_order(2)])
    original = fake.data_for

    def delete_on_line_paging(operation: str, variables: dict[str, Any]) -> dict[str, Any]:
        if operation == "OrderLineItems" and doomed in fake.orders:
            fake.orders.remove(doomed)
        return original(operation, variables)

    fake.data_for = delete_on_line_paging  # type: ignore[method-assign]
    reader = OrderReader(make_client(fake.transport()), line_items_page_size=25)
    assert [o.id for o in reader.iter_changed_orders(LO, HI)] == ["gid://shopify/Order/2"]
    assert reader.stats.vanished_orders == 1


def test_after_sales_batches_shrink_separately_from_the_order_page(make_client: MakeClient) -> None:
    def cost(operation: str, variables: dict[str, Any]) -> int:
        return 300 * len(variables["ids"]) if operation == "OrdersAfterSales" else 100

    fake = FakeShopify(orders=orders_at(8, refunds=1), cost_of=cost, max_cost=1000)
    reader = OrderReader(make_client(fake.transport()), page_size=8)
    assert len(list(reader.iter_changed_orders(LO, HI))) == 8
    assert (reader.sizes.orders, reader.sizes.batch) == (8, 3)  # 8 * 300 = 2400 -> 3 ids per batch
    assert [len(s.variables["ids"]) for s in fake.sent if s.operation == "OrdersAfterSales"] == [8, 3, 3, 2]
