"""orders(query:) search syntax, sort order and ties, cursor pagination, nested line item paging, ordersCount."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from x3_shopify_dagster.sandboxes.shopify import ShopifySandbox
from x3_shopify_dagster.sandboxes.shopify.models import gid

if TYPE_CHECKING:
    from x3_shopify_dagster_tests.fixtures.shopify_sandbox import ShopifyRawClient

pytest_plugins = ["x3_shopify_dagster_tests.fixtures.shopify_sandbox"]

Factory = Callable[..., "ShopifyRawClient"]
PAGE = """query Page($first: Int, $last: Int, $after: String, $before: String, $q: String, $sort: OrderSortKeys,
                     $reverse: Boolean) {
  orders(first: $first, last: $last, after: $after, before: $before, query: $q, sortKey: $sort, reverse: $reverse) {
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { id name updatedAt } }
  }
}"""
T0 = datetime(2031, 1, 15, 9, 0, tzinfo=UTC)  # winter: Paris is UTC+1; later than any seeded order


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def timeline(fresh_shopify_sandbox: ShopifySandbox) -> tuple[ShopifySandbox, Clock]:
    """The fresh sandbox on a hand-driven clock (the seeded history is older than T0)."""
    clock = Clock(T0)
    fresh_shopify_sandbox.state.set_clock(clock)
    return fresh_shopify_sandbox, clock


def names(client: ShopifyRawClient, q: str, **variables: Any) -> list[str]:
    data = client.data(PAGE, {"first": 250, "q": q, "sort": "UPDATED_AT", **variables})
    return [edge["node"]["name"] for edge in data["orders"]["edges"]]


def test_quoted_timestamps_filter_to_the_second_and_unquoted_ones_keep_only_the_date(
        timeline: tuple[ShopifySandbox, Clock], shopify_raw_factory: Factory) -> None:
    sandbox, clock = timeline
    created = {}
    for hour in (9, 11, 23):  # 23:00 UTC is already the next day in Paris
        clock.now = T0.replace(hour=hour)
        created[hour] = sandbox.state.order(sandbox.state.create_order("eu")).name
    client = shopify_raw_factory(sandbox, "eu")
    assert names(client, "updated_at:>='2031-01-15T10:00:00Z'") == [created[11], created[23]]
    assert names(client, "updated_at:>'2031-01-15T11:00:00Z'") == [created[23]]
    assert names(client, "updated_at:>='2031-01-15T09:00:00Z' AND updated_at:<'2031-01-15T11:00:00Z'") == [
        created[9]]
    assert names(client, "updated_at:<='2031-01-15T11:00:00Z' updated_at:>='2031-01-15T09:00:01Z'") == [
        created[11]]
    assert names(client, "updated_at:>='2031-01-15T12:00:00+02:00'") == [created[11], created[23]]
    # The pitfall: unquoted, the time is dropped and the date means midnight in the shop's timezone
    # (2031-01-15T00:00 Europe/Paris = 2031-01-14T23:00Z), so the 09:00 order comes back too.
    assert names(client, "updated_at:>=2031-01-15T10:00:00Z") == [created[9], created[11], created[23]]
    assert names(client, "updated_at:2031-01-15") == [created[9], created[11]]  # the Paris day


def test_search_fields(fresh_shopify_sandbox: ShopifySandbox, shopify_raw_factory: Factory) -> None:
    sandbox = fresh_shopify_sandbox
    state = sandbox.state
    test_order = state.order(state.create_order("us", email="emma.jones@jones-diner.example", test=True,
                                                lines=[("KNOCK-BOX-S", 2)]))
    guest = state.order(state.create_order("us", email="walk.in@example.com", guest=True, lines=[("TAMPER-58", 1)]))
    client = shopify_raw_factory(sandbox, "us")
    everything = set(names(client, ""))
    assert test_order.name in everything
    assert names(client, "test:true") == [o.name for o in sorted(state.orders("us"), key=lambda o: (
        o.updated_at, o.legacy_id)) if o.test]
    assert test_order.name not in names(client, "test:false")
    assert names(client, "email:walk.in@example.com") == [guest.name]
    assert names(client, "email:'WALK.IN@example.com'") == [guest.name]
    assert names(client, f"name:{guest.name}") == [guest.name]
    assert names(client, f"name:{guest.number}") == [guest.name]
    assert test_order.name in names(client, "sku:KNOCK-BOX-S")
    assert guest.name not in names(client, "sku:KNOCK-BOX-S")
    assert names(client, f"id:{guest.legacy_id}") == [guest.name]
    assert names(client, f"id:>={test_order.legacy_id} id:<={guest.legacy_id}") == [test_order.name, guest.name]
    assert names(client, f"id:>{test_order.legacy_id}") == [guest.name]
    assert names(client, f"-id:{guest.legacy_id} id:>={test_order.legacy_id}") == [test_order.name]
    assert names(client, f"id:{guest.legacy_id} OR id:{test_order.legacy_id}") == [test_order.name, guest.name]
    cancelled = {o.name for o in state.orders("us") if o.cancelled_at}
    assert cancelled
    assert set(names(client, "status:cancelled")) == cancelled
    assert not cancelled & set(names(client, "status:open"))
    paid = {o.name for o in state.orders("us") if o.financial_status == "PAID"}
    assert set(names(client, "financial_status:paid")) == paid
    assert names(client, "financial_status:no_such_state") == []


def test_unknown_terms_are_ignored_and_logged(shopify_sandbox: ShopifySandbox, shopify_raw_factory: Factory,
                                              caplog: pytest.LogCaptureFixture) -> None:
    client = shopify_raw_factory(shopify_sandbox, "eu")
    with caplog.at_level(logging.WARNING, logger="x3_shopify_dagster.sandboxes.shopify.search"):
        filtered = names(client, "tag:wholesale updated_at:>='2000-01-01T00:00:00Z' espresso")
    assert filtered == names(client, "")
    assert "tag:wholesale" in caplog.text
    assert "espresso" in caplog.text


def test_update_order_with_ties_broken_by_id_and_reverse(timeline: tuple[ShopifySandbox, Clock],
                                                         shopify_raw_factory: Factory) -> None:
    sandbox, clock = timeline
    state = sandbox.state
    clock.now = T0
    tied = [state.order(state.create_order("eu")) for _ in range(3)]  # same second, ids ascending
    clock.now = T0 - timedelta(minutes=1)
    earlier = state.order(state.create_order("eu"))
    clock.now = T0 + timedelta(minutes=1)
    state.touch_order("eu", tied[0].legacy_id)  # moves to the end
    client = shopify_raw_factory(sandbox, "eu")
    window = "updated_at:>='2031-01-15T08:00:00Z'"
    assert names(client, window) == [earlier.name, tied[1].name, tied[2].name, tied[0].name]
    assert names(client, window, reverse=True) == [tied[0].name, tied[2].name, tied[1].name, earlier.name]
    created = client.data(PAGE, {"first": 10, "q": window, "sort": "CREATED_AT"})
    assert [e["node"]["name"] for e in created["orders"]["edges"]] == [earlier.name, *[o.name for o in tied]]


def _walk(client: ShopifyRawClient, q: str, size: int, *, backwards: bool = False) -> Iterator[list[str]]:
    cursor = None
    while True:
        variables: dict[str, Any] = {"q": q, "sort": "UPDATED_AT"}
        variables.update({"last": size, "before": cursor} if backwards else {"first": size, "after": cursor})
        connection = client.data(PAGE, variables)["orders"]
        yield [e["node"]["id"] for e in connection["edges"]]
        info = connection["pageInfo"]
        more = info["hasPreviousPage"] if backwards else info["hasNextPage"]
        if not more:
            return
        cursor = info["startCursor"] if backwards else info["endCursor"]


def test_cursor_pagination_visits_every_order_exactly_once(shopify_sandbox: ShopifySandbox,
                                                           shopify_raw_factory: Factory) -> None:
    client = shopify_raw_factory(shopify_sandbox, "us")
    expected = [gid("Order", o.legacy_id) for o in sorted(shopify_sandbox.state.orders("us"),
                                                           key=lambda o: (o.updated_at, o.legacy_id))]
    forward = [order_id for page in _walk(client, "", 7) for order_id in page]
    assert forward == expected
    backward = [order_id for page in _walk(client, "", 6, backwards=True) for order_id in reversed(page)]
    assert backward == list(reversed(expected))


def test_cursors_are_opaque_base64_of_the_sort_key(shopify_sandbox: ShopifySandbox,
                                                   shopify_raw_factory: Factory) -> None:
    edge = shopify_raw_factory(shopify_sandbox, "eu").data(PAGE, {"first": 1, "sort": "UPDATED_AT"})["orders"][
        "edges"][0]
    decoded = json.loads(base64.b64decode(edge["cursor"]))
    assert decoded == {"last_id": int(edge["node"]["id"].rsplit("/", 1)[1]), "last_value": edge["node"]["updatedAt"]}


@pytest.mark.parametrize(("variables", "message"), [
    ({"first": 251}, "The first argument must be less than or equal to 250."),
    ({"last": 300}, "The last argument must be less than or equal to 250."),
    ({}, "you must provide one of first or last"),
    ({"first": 2, "after": "not-a-cursor"}, "Invalid cursor"),
])
def test_paging_argument_errors(shopify_sandbox: ShopifySandbox, shopify_raw_factory: Factory,
                                variables: dict[str, Any], message: str) -> None:
    body = shopify_raw_factory(shopify_sandbox, "eu").post(PAGE, {"sort": "ID", **variables}).json()
    assert message in body["errors"][0]["message"]


def test_nested_line_items_page_through_a_65_line_order(shopify_sandbox: ShopifySandbox,
                                                        shopify_raw_factory: Factory) -> None:
    big = next(o for o in shopify_sandbox.state.orders("eu") if len(o.cart.lines) > 60)
    client = shopify_raw_factory(shopify_sandbox, "eu")
    query = """query Lines($id: ID!, $after: String) { order(id: $id) { lineItems(first: 20, after: $after) {
                 pageInfo { hasNextPage endCursor } nodes { id sku quantity } } } }"""
    seen: list[str] = []
    pages, cursor = 0, None
    while True:
        connection = client.data(query, {"id": gid("Order", big.legacy_id), "after": cursor})["order"]["lineItems"]
        seen += [node["id"] for node in connection["nodes"]]
        pages += 1
        if not connection["pageInfo"]["hasNextPage"]:
            break
        cursor = connection["pageInfo"]["endCursor"]
    assert pages == 4
    assert seen == [gid("LineItem", big.line_item_id(line.position)) for line in big.cart.lines]


def test_orders_count_is_exact_unless_the_limit_is_reached(shopify_sandbox: ShopifySandbox,
                                                           shopify_raw_factory: Factory) -> None:
    client = shopify_raw_factory(shopify_sandbox, "eu")
    total = len(shopify_sandbox.state.orders("eu"))
    query = "query C($q: String, $limit: Int) { ordersCount(query: $q, limit: $limit) { count precision } }"
    assert client.data(query, {"limit": None})["ordersCount"] == {"count": total, "precision": "EXACT"}
    assert client.data(query, {"limit": 5})["ordersCount"] == {"count": 5, "precision": "AT_LEAST"}
    assert client.data(query, {"q": "test:true"})["ordersCount"]["count"] == sum(
        1 for o in shopify_sandbox.state.orders("eu") if o.test)
