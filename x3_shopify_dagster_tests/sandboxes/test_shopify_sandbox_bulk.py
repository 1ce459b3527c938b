"""Bulk query operations: validation, lifecycle, the JSONL shape (``__parentId``, children after parents,
counts), grouping, the bulk_fail fault with partial data, cancellation and the per-shop concurrency limit."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from x3_shopify_dagster.sandboxes.shopify import ShopifySandbox
from x3_shopify_dagster.sandboxes.shopify.models import gid

if TYPE_CHECKING:
    from x3_shopify_dagster_tests.fixtures.shopify_sandbox import ShopifyRawClient

pytest_plugins = ["x3_shopify_dagster_tests.fixtures.shopify_sandbox"]

Factory = Callable[..., "ShopifyRawClient"]
RUN = """mutation Run($q: String!, $group: Boolean!) { bulkOperationRunQuery(query: $q, groupObjects: $group) {
  bulkOperation { id status } userErrors { field message code } } }"""
STATUS = """query Status($id: ID!) { bulkOperation(id: $id) {
  id status errorCode objectCount rootObjectCount fileSize url partialDataUrl createdAt completedAt query } }"""
CANCEL = """mutation Cancel($id: ID!) { bulkOperationCancel(id: $id) {
  bulkOperation { status } userErrors { message } } }"""
ORDERS_WITH_LINES = """{ orders(query: "updated_at:>='2000-01-01T00:00:00Z'", sortKey: UPDATED_AT) { edges { node {
  id name updatedAt
  refunds { id totalRefundedSet { shopMoney { amount } } }
  lineItems { edges { node { id sku quantity } } }
  shippingLines { nodes { id title } } } } } }"""


def start(client: ShopifyRawClient, query: str, group: bool = False) -> dict[str, Any]:
    return client.data(RUN, {"q": query, "group": group})["bulkOperationRunQuery"]  # type: ignore[no-any-return]


def wait(client: ShopifyRawClient, operation_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        operation = client.data(STATUS, {"id": operation_id})["bulkOperation"]
        if operation["status"] in ("COMPLETED", "FAILED", "CANCELED") or time.monotonic() > deadline:
            return operation  # type: ignore[no-any-return]
        time.sleep(0.01)


def download(url: str) -> Iterator[dict[str, Any]]:
    with httpx.stream("GET", url) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line:
                yield json.loads(line)


def test_a_bulk_export_writes_shopify_shaped_jsonl(fresh_shopify_sandbox: ShopifySandbox,
                                                    shopify_raw_factory: Factory) -> None:
    sandbox = fresh_shopify_sandbox
    client = shopify_raw_factory(sandbox, "eu")
    started = start(client, ORDERS_WITH_LINES)
    assert started["userErrors"] == []
    assert started["bulkOperation"]["status"] == "CREATED"
    operation = wait(client, started["bulkOperation"]["id"])
    assert operation["status"] == "COMPLETED"
    assert operation["errorCode"] is None
    assert operation["completedAt"] is not None
    assert operation["query"] == ORDERS_WITH_LINES
    rows = list(download(operation["url"]))
    raw = httpx.get(operation["url"]).content
    assert int(operation["fileSize"]) == len(raw)
    assert int(operation["objectCount"]) == len(rows)

    orders = {gid("Order", o.legacy_id): o for o in sandbox.state.orders("eu")}
    roots = [r for r in rows if "__parentId" not in r]
    assert int(operation["rootObjectCount"]) == len(roots) == len(orders)
    assert [r["id"] for r in roots] == [gid("Order", o.legacy_id) for o in sorted(
        orders.values(), key=lambda o: (o.updated_at, o.legacy_id))]
    seen: set[str] = set()
    adjacent = True
    previous: dict[str, Any] | None = None
    for row in rows:
        if "__parentId" in row:
            assert row["__parentId"] in seen, "a child came before its parent"
            assert list(row)[-1] == "__parentId"
            if previous is not None and previous.get("__parentId", previous["id"]) != row["__parentId"]:
                adjacent = False
        else:
            assert "lineItems" not in row
            assert "shippingLines" not in row
            assert isinstance(row["refunds"], list)  # plain lists stay inline
        seen.add(row["id"])
        previous = row
    assert not adjacent, "children must not always follow their parent directly"
    for order_id, order in orders.items():
        children = [r for r in rows if r.get("__parentId") == order_id]
        line_ids = [r["id"] for r in children if "/LineItem/" in r["id"]]
        assert line_ids == [gid("LineItem", order.line_item_id(line.position)) for line in order.cart.lines]
        assert len([r for r in children if "/ShippingLine/" in r["id"]]) == len(order.cart.shipping_lines)


def test_group_objects_keeps_children_right_after_their_parent(fresh_shopify_sandbox: ShopifySandbox,
                                                               shopify_raw_factory: Factory) -> None:
    client = shopify_raw_factory(fresh_shopify_sandbox, "us")
    operation = wait(client, start(client, ORDERS_WITH_LINES, group=True)["bulkOperation"]["id"])
    current_parent = None
    for row in download(operation["url"]):
        if "__parentId" in row:
            assert row["__parentId"] == current_parent
        else:
            current_parent = row["id"]


def test_bulk_fail_fault_fails_with_half_the_rows_as_partial_data(fresh_shopify_sandbox: ShopifySandbox,
                                                                  shopify_raw_factory: Factory) -> None:
    sandbox = fresh_shopify_sandbox
    client = shopify_raw_factory(sandbox, "eu")
    complete = wait(client, start(client, ORDERS_WITH_LINES)["bulkOperation"]["id"])
    all_rows = list(download(complete["url"]))
    sandbox.faults.inject("bulk_fail", store="eu")
    operation = wait(client, start(client, ORDERS_WITH_LINES)["bulkOperation"]["id"])
    assert operation["status"] == "FAILED"
    assert operation["errorCode"] == "INTERNAL_SERVER_ERROR"
    assert operation["url"] is None
    partial = list(download(operation["partialDataUrl"]))
    assert partial == all_rows[: len(all_rows) // 2]
    # the fault is spent: the next export completes
    assert wait(client, start(client, ORDERS_WITH_LINES)["bulkOperation"]["id"])["status"] == "COMPLETED"


def test_an_export_without_results_has_no_url(shopify_sandbox: ShopifySandbox, shopify_raw_factory: Factory) -> None:
    client = shopify_raw_factory(shopify_sandbox, "eu")
    query = '{ orders(query: "id:1") { edges { node { id } } } }'
    operation = wait(client, start(client, query)["bulkOperation"]["id"])
    assert operation["status"] == "COMPLETED"
    assert operation["url"] is None
    assert operation["objectCount"] == "0"


@pytest.mark.parametrize(("query", "reason"), [
    ("{ orders { edges { node { id } } }", "Syntax Error"),
    ("{ orders { edges { node { id inventedField } } } }", "inventedField"),
    ("{ shop { id } }", "connection"),
    ("{ orders { edges { node { id } } } locations { nodes { id } } }", "exactly one top-level field"),
    ("query($q: String) { orders(query: $q) { edges { node { id } } } }", "variables"),
    ("{ orders { edges { node { id refunds { refundLineItems { nodes { id } } } } } } }", "inside list fields"),
    ("""{ orders { edges { node { id lineItems { nodes { id } } shippingLines { nodes { id } }
          discountApplications { nodes { index } } } } } productVariants { nodes { id } } }""",
     "exactly one top-level field"),
    ("""{ productVariants { nodes { id inventoryItem { inventoryLevels { nodes { id
          item { inventoryLevels { nodes { id } } } } } } } } }""", "nested 3 levels"),
])
def test_invalid_bulk_queries_are_user_errors(shopify_sandbox: ShopifySandbox, shopify_raw_factory: Factory,
                                              query: str, reason: str) -> None:
    result = start(shopify_raw_factory(shopify_sandbox, "eu"), query)
    assert result["bulkOperation"] is None
    (error,) = result["userErrors"]
    assert error["code"] == "INVALID"
    assert reason in error["message"]


def test_more_than_five_connections_is_invalid(shopify_sandbox: ShopifySandbox, shopify_raw_factory: Factory) -> None:
    query = """{ orders { edges { node { id lineItems { nodes { id } } shippingLines { nodes { id } }
                 discountApplications { nodes { index } } a: lineItems { nodes { sku } }
                 b: shippingLines { nodes { title } } } } } }"""
    (error,) = start(shopify_raw_factory(shopify_sandbox, "eu"), query)["userErrors"]
    assert "6 connections" in error["message"]


def test_at_most_five_bulk_queries_run_per_shop_and_cancel_stops_one(fresh_shopify_sandbox: ShopifySandbox,
                                                                     shopify_raw_factory: Factory) -> None:
    sandbox = fresh_shopify_sandbox
    sandbox.bulk.pace_s, sandbox.bulk.chunk_size = 0.05, 1  # slow enough to still be running below
    eu, us = shopify_raw_factory(sandbox, "eu"), shopify_raw_factory(sandbox, "us")
    running = [start(eu, ORDERS_WITH_LINES)["bulkOperation"]["id"] for _ in range(5)]
    refused = start(eu, ORDERS_WITH_LINES)
    assert refused["bulkOperation"] is None
    assert refused["userErrors"][0]["code"] == "LIMIT_REACHED"
    other_shop = start(us, ORDERS_WITH_LINES)["bulkOperation"]["id"]  # the limit is per shop
    for operation_id in [*running, other_shop]:
        cancelled = us.data(CANCEL, {"id": operation_id}) if operation_id == other_shop else eu.data(
            CANCEL, {"id": operation_id})
        assert cancelled["bulkOperationCancel"]["userErrors"] == []
        assert cancelled["bulkOperationCancel"]["bulkOperation"]["status"] == "CANCELING"
    assert [wait(eu, i)["status"] for i in running] == ["CANCELED"] * 5
    assert start(eu, '{ orders { edges { node { id } } } }')["userErrors"] == []
    late = eu.data(CANCEL, {"id": running[0]})["bulkOperationCancel"]
    assert "canceled" in late["userErrors"][0]["message"]


def test_bulk_operations_are_private_to_their_shop(fresh_shopify_sandbox: ShopifySandbox,
                                                   shopify_raw_factory: Factory) -> None:
    eu, us = shopify_raw_factory(fresh_shopify_sandbox, "eu"), shopify_raw_factory(fresh_shopify_sandbox, "us")
    operation_id = start(eu, '{ orders { edges { node { id } } } }')["bulkOperation"]["id"]
    assert us.data(STATUS, {"id": operation_id})["bulkOperation"] is None


def test_variant_exports_work_too(shopify_sandbox: ShopifySandbox, shopify_raw_factory: Factory) -> None:
    client = shopify_raw_factory(shopify_sandbox, "us")
    query = """{ productVariants { edges { node { id sku inventoryItem { id
                 inventoryLevels { edges { node { id location { id } quantities(names: ["available"]) { quantity } } } }
               } } } } }"""
    operation = wait(client, start(client, query)["bulkOperation"]["id"])
    rows = list(download(operation["url"]))
    variants = [r for r in rows if "__parentId" not in r]
    levels = [r for r in rows if "__parentId" in r]
    assert len(variants) == len(shopify_sandbox.state.store("us").variants)
    assert len(levels) == len(variants) * len(shopify_sandbox.state.store("us").locations)
    assert {level["__parentId"] for level in levels} == {v["id"] for v in variants}
