"""Calculated query cost and the leaky bucket: requested cost from the AST, actual cost from the response,
MAX_COST_EXCEEDED above 1000, THROTTLED when the bucket cannot hold the requested cost, and recovery."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from graphql import OperationDefinitionNode, parse

from x3_shopify_dagster.sandboxes.shopify import SandboxConfig, ShopifySandbox
from x3_shopify_dagster.sandboxes.shopify.cost import CostCalculator, QueryCostError
from x3_shopify_dagster.sandboxes.shopify.schema import sandbox_schema
from x3_shopify_dagster.sandboxes.shopify.throttle import LeakyBucket

if TYPE_CHECKING:
    from x3_shopify_dagster_tests.fixtures.shopify_sandbox import ShopifyRawClient

pytest_plugins = ["x3_shopify_dagster_tests.fixtures.shopify_sandbox"]

TEN_IDS = "query TenIds { orders(first: 10) { nodes { id } } }"  # requested 2 + 10 x 1 = 12


def requested(query: str, variables: dict[str, Any] | None = None) -> int:
    document = parse(query)
    operation = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
    return CostCalculator(sandbox_schema(), document, operation, variables).requested()


@pytest.mark.parametrize(("query", "cost"), [
    ("{ shop { id name currencyCode } }", 1),  # object 1, scalars and enums 0
    ("{ orders(first: 10) { nodes { id name } } }", 2 + 10 * 1),
    ("{ orders(first: 5) { pageInfo { hasNextPage } edges { cursor node { id "
     "lineItems(first: 3) { nodes { id sku } } } } } }", 2 + 5 * (1 + 2 + 3 * 1)),
    # nodes and edges { node } select the same nodes: counted once
    ("{ orders(first: 4) { nodes { id } edges { node { id customer { id } } } } }", 2 + 4 * (1 + 1)),
    ('{ order(id: "gid://shopify/Order/1") { totalPriceSet { shopMoney { amount } presentmentMoney { amount } } } }',
     1 + (1 + 1 + 1)),
    # a plain list costs like one element, whatever its `first`
    ('{ order(id: "x") { refunds(first: 20) { id totalRefundedSet { shopMoney { amount } } } } }', 1 + (1 + 1 + 1)),
    # union and interface: the most expensive possible selection
    ('{ order(id: "x") { discountApplications(first: 2) { nodes { index '
     "value { ... on MoneyV2 { amount } ... on PricingPercentageValue { percentage } } "
     "... on DiscountCodeApplication { code } } } } }", 1 + 2 + 2 * (1 + 1)),
    ('{ nodes(ids: ["a", "b", "c"]) { ... on Order { id customer { id } } } }', 3 * (1 + 1)),
    ('mutation { bulkOperationRunQuery(query: "{ orders { edges { node { id } } } }") '
     "{ bulkOperation { id status } userErrors { message } } }", 10),
])
def test_requested_cost_of_known_queries(query: str, cost: int) -> None:
    assert requested(query) == cost


def test_requested_cost_reads_page_sizes_from_variables() -> None:
    query = "query($n: Int!) { orders(first: $n) { nodes { id lineItems(last: 4) { nodes { id } } } } }"
    assert requested(query, {"n": 7}) == 2 + 7 * (1 + 2 + 4)


def test_connections_need_first_or_last_and_at_most_250() -> None:
    with pytest.raises(QueryCostError, match="you must provide one of first or last"):
        requested("{ orders { nodes { id } } }")
    with pytest.raises(QueryCostError, match="less than or equal to 250"):
        requested("{ orders(first: 251) { nodes { id } } }")


def test_leaky_bucket_admits_on_requested_refunds_to_actual_and_refills_on_its_clock() -> None:
    now = [100.0]
    bucket = LeakyBucket(50, 10, clock=lambda: now[0])
    assert bucket.try_take(40)
    assert not bucket.try_take(11)  # 10 left
    bucket.give_back(30)  # the query actually cost 10
    assert bucket.status().currently_available == 40
    now[0] += 0.5  # +5 points
    assert bucket.status().currently_available == 45
    now[0] += 100
    assert bucket.status().currently_available == 50  # never above the bucket size


def _cost(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return response.json()["extensions"]["cost"]  # type: ignore[no-any-return]


def test_every_response_carries_requested_actual_and_throttle_status(
        fresh_shopify_sandbox: ShopifySandbox, shopify_raw_factory: Callable[..., ShopifyRawClient]) -> None:
    sandbox = fresh_shopify_sandbox
    sandbox.set_rate_limit("eu", bucket_size=1000, restore_rate=0.0001)  # no measurable refill in a test
    client = shopify_raw_factory(sandbox, "eu")
    name = sandbox.state.orders("eu")[0].name
    response = client.post("query One($q: String!) { orders(first: 10, query: $q) { nodes { id } } }",
                           {"q": f"name:{name}"})
    cost = _cost(response)
    assert cost["requestedQueryCost"] == 12
    assert cost["actualQueryCost"] == 2 + 1  # one order came back
    assert cost["throttleStatus"] == {"maximumAvailable": 1000.0, "currentlyAvailable": 1000 - 3,
                                      "restoreRate": 0.0001}
    assert sandbox.requests_log[-1] == ("eu", "One", 12, 3, "ok")


def test_a_query_over_1000_points_is_refused_before_execution(
        fresh_shopify_sandbox: ShopifySandbox, shopify_raw_factory: Callable[..., ShopifyRawClient]) -> None:
    client = shopify_raw_factory(fresh_shopify_sandbox, "eu")
    query = "{ orders(first: 250) { nodes { id lineItems(first: 250) { nodes { id } } } } }"
    body = client.post(query).json()
    expected = 2 + 250 * (1 + 2 + 250)
    assert "data" not in body
    assert body["errors"] == [{
        "message": f"Query cost is {expected}, which exceeds the single query max cost limit (1000).",
        "extensions": {"code": "MAX_COST_EXCEEDED", "cost": expected, "maxCost": 1000}}]
    assert body["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 2000  # nothing charged


def test_throttled_when_the_bucket_cannot_hold_the_requested_cost_then_recovers(
        fresh_shopify_sandbox: ShopifySandbox, shopify_raw_factory: Callable[..., ShopifyRawClient]) -> None:
    sandbox = fresh_shopify_sandbox
    sandbox.set_rate_limit("eu", bucket_size=20, restore_rate=8)  # refilling 4 points takes 0.5 s
    eu, us = shopify_raw_factory(sandbox, "eu"), shopify_raw_factory(sandbox, "us")
    assert _cost(eu.post(TEN_IDS))["actualQueryCost"] == 12  # 8 points left

    throttled = eu.post(TEN_IDS)
    assert throttled.status_code == 200
    body = throttled.json()
    assert "data" not in body
    assert body["errors"][0]["message"] == "Throttled"
    assert body["errors"][0]["extensions"]["code"] == "THROTTLED"
    status = body["extensions"]["cost"]["throttleStatus"]
    assert body["extensions"]["cost"]["requestedQueryCost"] == 12
    assert body["extensions"]["cost"]["actualQueryCost"] is None
    assert status["currentlyAvailable"] < 12
    assert sandbox.requests_log[-1].status == "throttled"

    assert "errors" not in us.post(TEN_IDS).json()  # buckets are per store token

    deadline = time.monotonic() + 5
    while True:  # wait as long as the throttle status says, no longer
        body = eu.post(TEN_IDS).json()
        if "errors" not in body:
            break
        assert time.monotonic() < deadline, body
        status = body["extensions"]["cost"]["throttleStatus"]
        time.sleep(max(0.005, (12 - status["currentlyAvailable"]) / status["restoreRate"]))
    assert len(body["data"]["orders"]["nodes"]) == 10


@pytest.mark.parametrize("fresh_shopify_sandbox", [SandboxConfig(stores=("us",), orders_per_store=5,
                                                                  bucket_size=20000.0, restore_rate=1000.0)],
                         indirect=True)
def test_the_plan_comes_from_the_config(fresh_shopify_sandbox: ShopifySandbox,
                                        shopify_raw_factory: Callable[..., ShopifyRawClient]) -> None:
    status = _cost(shopify_raw_factory(fresh_shopify_sandbox, "us").post("{ shop { id } }"))["throttleStatus"]
    assert status["maximumAvailable"] == 20000.0
    assert status["restoreRate"] == 1000.0
