"""Reassembly of bulk JSONL rows into orders, streaming with a bounded buffer."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from x3_shopify_dagster.domain.shopify_orders import ShopifyOrder
from x3_shopify_dagster.shopify.bulk import BulkAssembler, iter_bulk_jsonl
from x3_shopify_dagster_tests.shopify.fakes import bulk_rows, full_order, jsonl


def row(**fields: object) -> str:
    return json.dumps(fields)


def test_rows_of_one_order_assemble_into_what_from_graphql_accepts() -> None:
    order = full_order(1, line_items=3, shipping_lines=2)
    order["discountApplications"] = [
        {
            "index": 0,
            "allocationMethod": "ACROSS",
            "targetSelection": "ALL",
            "targetType": "LINE_ITEM",
            "value": {"__typename": "PricingPercentageValue", "percentage": 10.0},
        }
    ]
    (assembled,) = iter_bulk_jsonl(jsonl([order]))
    assert [li["id"] for li in assembled["lineItems"]] == [li["id"] for li in order["lineItems"]]
    assert all("__parentId" not in li for li in assembled["lineItems"])
    assert ShopifyOrder.from_graphql(assembled) == ShopifyOrder.from_graphql(order)


def test_interleaved_children_find_their_parent() -> None:
    lines = [
        row(id="gid://shopify/Order/1", updatedAt="2026-11-27T10:00:00Z"),
        row(id="gid://shopify/Order/2", updatedAt="2026-11-27T10:01:00Z"),
        row(id="gid://shopify/LineItem/21", currentQuantity=1, __parentId="gid://shopify/Order/2"),
        row(id="gid://shopify/LineItem/11", currentQuantity=1, __parentId="gid://shopify/Order/1"),
        row(id="gid://shopify/ShippingLine/12", isRemoved=False, __parentId="gid://shopify/Order/1"),
        row(index=0, allocationMethod="ACROSS", __parentId="gid://shopify/Order/2"),
        row(id="gid://shopify/LineItem/22", currentQuantity=1, __parentId="gid://shopify/Order/2"),
    ]
    first, second = iter_bulk_jsonl(lines)
    assert first["id"] == "gid://shopify/Order/1"  # file order is kept
    assert [c["id"] for c in first["lineItems"]] == ["gid://shopify/LineItem/11"]
    assert [c["id"] for c in first["shippingLines"]] == ["gid://shopify/ShippingLine/12"]
    assert [c["id"] for c in second["lineItems"]] == ["gid://shopify/LineItem/21", "gid://shopify/LineItem/22"]
    assert second["discountApplications"] == [{"index": 0, "allocationMethod": "ACROSS"}]


def test_a_child_whose_parent_left_the_buffer_is_reported_as_an_orphan_once() -> None:
    orphans: list[str] = []
    lines = [
        row(id="gid://shopify/Order/1"),
        row(id="gid://shopify/Order/2"),
        row(id="gid://shopify/Order/3"),  # buffer of 2: order 1 is emitted here
        row(id="gid://shopify/LineItem/11", currentQuantity=1, __parentId="gid://shopify/Order/1"),
        row(id="gid://shopify/LineItem/12", currentQuantity=1, __parentId="gid://shopify/Order/1"),
        row(id="gid://shopify/LineItem/31", currentQuantity=1, __parentId="gid://shopify/Order/3"),
    ]
    orders = list(iter_bulk_jsonl(lines, max_buffered_parents=2, on_orphan=orphans.append))
    assert [o["id"] for o in orders] == ["gid://shopify/Order/1", "gid://shopify/Order/2", "gid://shopify/Order/3"]
    assert "lineItems" not in orders[0]
    assert orphans == ["gid://shopify/Order/1"]
    assert len(orders[2]["lineItems"]) == 1


def test_bytes_lines_and_blank_lines_are_accepted() -> None:
    lines = [b'{"id": "gid://shopify/Order/1"}\n', b"\n", "  ", b'{"id": "gid://shopify/Order/2"}']
    assert [o["id"] for o in iter_bulk_jsonl(lines)] == ["gid://shopify/Order/1", "gid://shopify/Order/2"]


def test_an_unknown_child_row_is_an_error_not_silently_dropped() -> None:
    lines = [row(id="gid://shopify/Order/1"), row(id="gid://shopify/Metafield/1", __parentId="gid://shopify/Order/1")]
    with pytest.raises(ValueError, match="unrecognised child row"):
        list(iter_bulk_jsonl(lines))


def synthetic_rows(orders: int, children: int, lag: int) -> Iterator[str]:
    """Each order's children arrive ``lag`` orders later (so up to ``lag + 1`` orders are open at once)."""
    for number in range(orders + lag):
        if number < orders:
            yield f'{{"id": "gid://shopify/Order/{number}", "updatedAt": "2026-11-27T10:00:00Z"}}'
        parent = number - lag
        if 0 <= parent < orders:
            for child in range(children):
                yield (
                    f'{{"id": "gid://shopify/LineItem/{parent}-{child}", "currentQuantity": 1, '
                    f'"__parentId": "gid://shopify/Order/{parent}"}}'
                )


def test_fifty_thousand_rows_stream_through_a_bounded_buffer() -> None:
    bound = 100
    parents_read = 0
    worst_open = 0

    def counted() -> Iterator[str]:
        nonlocal parents_read
        for line in synthetic_rows(orders=10_000, children=4, lag=50):
            if "__parentId" not in line:
                parents_read += 1
            yield line

    orders_out = 0
    orphans: list[str] = []
    for order in iter_bulk_jsonl(counted(), max_buffered_parents=bound, on_orphan=orphans.append):
        orders_out += 1
        worst_open = max(worst_open, parents_read - orders_out)
        assert len(order["lineItems"]) == 4
    assert orders_out == 10_000
    assert worst_open <= bound  # orders read but not yet handed on never exceed the bound
    assert orphans == []


def test_the_assembler_never_buffers_more_than_its_bound_even_with_orphans() -> None:
    assembler = BulkAssembler(max_buffered_parents=20)
    emitted = 0
    for line in synthetic_rows(orders=12_500, children=3, lag=40):  # lag > bound: children arrive too late
        emitted += sum(1 for _ in assembler.feed(json.loads(line)))
        assert assembler.buffered <= 20
    emitted += sum(1 for _ in assembler.finish())
    assert assembler.rows == 50_000
    assert emitted == 12_500
    assert assembler.peak_buffered == 20
    assert len(assembler.orphan_parent_ids) == 12_500 - 20  # all but the last orders lost some children


def test_bulk_rows_fixture_matches_shopify_shape() -> None:
    # Children carry __parentId and are separate rows; lists such as refunds stay inline on the order.
    rows = bulk_rows(full_order(1, line_items=2, refunds=1))
    assert [("__parentId" in r) for r in rows] == [False, True, True, True]
    assert "refunds" in rows[0]
    assert "refundLineItems" not in rows[0]["refunds"][0]
