"""FulfillmentReader over real HTTP against the Shopify sandbox: fulfilments polled on their own timestamps.

flows.md §6: "Fulfilments are polled on their own timestamps" — a fulfilment cancelled without the order's
updatedAt moving is still seen in the window of its change. The ledger payload shape is the contract the stock
sync reads (flows.md §4).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from x3_shopify_dagster.sandboxes.shopify import ShopifySandbox
from x3_shopify_dagster.shopify import FulfillmentReader, OrderReader, RetryPolicy, ShopifyClient

STORE = "eu"
T0 = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)  # after every seeded order
FAST_RETRY = RetryPolicy(base_delay_s=0.01, max_delay_s=0.05, max_total_s=20.0)


class StoreClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def at(self, seconds: int) -> None:
        self.now = T0 + timedelta(seconds=seconds)


@pytest.fixture
def sandbox(fresh_shopify_sandbox: ShopifySandbox) -> ShopifySandbox:
    fresh_shopify_sandbox.set_rate_limit(STORE, bucket_size=2000, restore_rate=1_000_000)
    return fresh_shopify_sandbox


@pytest.fixture
def clock(sandbox: ShopifySandbox) -> StoreClock:
    store_clock = StoreClock(T0)
    sandbox.state.set_clock(store_clock)
    return store_clock


@pytest.fixture
def client(sandbox: ShopifySandbox) -> Iterator[ShopifyClient]:
    with ShopifyClient(sandbox.shop_url(STORE), sandbox.access_token(STORE), retry=FAST_RETRY, timeout_s=5.0) as c:
        yield c


def window(start_s: int, end_s: int) -> tuple[datetime, datetime]:
    return T0 + timedelta(seconds=start_s), T0 + timedelta(seconds=end_s)


def sku_lines(sandbox: ShopifySandbox, count: int) -> list[tuple[str, int]]:
    skus = [v.sku for v in sandbox.state.store(STORE).variants if v.sku][:count]
    return [(sku, 3) for sku in skus]


def test_paged_pull_returns_each_fulfilment_of_the_window_with_the_contract_payload(
    sandbox: ShopifySandbox, clock: StoreClock, client: ShopifyClient
) -> None:
    fulfilled: list[str] = []
    for offset in (0, 10, 20):
        clock.at(offset)
        order = sandbox.state.create_order(STORE, lines=sku_lines(sandbox, 2))
        clock.at(offset + 1)
        fulfilled.append(sandbox.state.fulfil(order, [(0, 1)], tracking=("UPS", f"1Z{offset}", "https://ups.example")))
    clock.at(700)
    later = sandbox.state.fulfil(sandbox.state.create_order(STORE), tracking=None)  # outside the window

    reader = FulfillmentReader(client, page_size=1, fulfillments_per_order=2, lines_page_size=1)
    pulled = list(reader.iter_changed_fulfillments(*window(0, 600)))

    assert [f.id for f in pulled] == fulfilled
    assert later not in {f.id for f in pulled}
    assert reader.stats.pages >= 3  # one fulfillment order per page
    first = pulled[0]
    payload = first.to_payload()
    assert {"id", "order_id", "status", "location_id", "updated_at", "lines"} <= set(payload)
    assert payload["status"] == "SUCCESS"
    assert payload["location_id"].startswith("gid://shopify/Location/")
    (line,) = payload["lines"]
    assert set(line) == {"line_item_id", "sku", "inventory_item_id", "quantity"}
    assert (line["sku"], line["quantity"]) == (sku_lines(sandbox, 1)[0][0], 1)
    assert payload["lines"][0]["inventory_item_id"].startswith("gid://shopify/InventoryItem/")
    assert first.tracking_text() == "UPS 1Z0"


def test_line_items_beyond_the_first_page_are_read(
    sandbox: ShopifySandbox, clock: StoreClock, client: ShopifyClient
) -> None:
    order = sandbox.state.create_order(STORE, lines=sku_lines(sandbox, 3))
    clock.at(5)
    sandbox.state.fulfil(order)
    reader = FulfillmentReader(client, lines_page_size=1)
    (pulled,) = list(reader.iter_changed_fulfillments(*window(0, 60)))
    assert [line.quantity for line in pulled.lines] == [3, 3, 3]
    assert reader.stats.line_pages == 2


def test_a_cancelled_fulfilment_is_seen_although_the_order_updated_at_does_not_move(
    sandbox: ShopifySandbox, clock: StoreClock, client: ShopifyClient
) -> None:
    order = sandbox.state.create_order(STORE, lines=sku_lines(sandbox, 1))
    clock.at(5)
    fulfillment = sandbox.state.fulfil(order)
    order_updated_at = sandbox.state.order(order).updated_at
    clock.at(3600)
    sandbox.state.cancel_fulfillment(fulfillment)
    assert sandbox.state.order(order).updated_at == order_updated_at  # the order did not move

    # An order-based poll of that window misses the change ...
    assert OrderReader(client).probe(*window(3000, 4000)).count == 0

    # ... the fulfillment-order poll sees it.
    reader = FulfillmentReader(client)
    probe = reader.probe(*window(3000, 4000))
    assert probe.changed
    assert probe.newest_updated_at == T0 + timedelta(seconds=3600)
    (pulled,) = list(reader.iter_changed_fulfillments(*window(3000, 4000)))
    assert (pulled.id, pulled.status) == (fulfillment, "CANCELLED")
    assert pulled.updated_at == T0 + timedelta(seconds=3600)
    assert list(reader.iter_changed_fulfillments(*window(4000, 5000))) == []


@pytest.mark.parametrize(("kind", "options"), [("http_500", {}), ("throttled", {})])
def test_server_errors_and_throttling_are_retried(
    sandbox: ShopifySandbox, clock: StoreClock, client: ShopifyClient, kind: str, options: dict[str, Any]
) -> None:
    order = sandbox.state.create_order(STORE, lines=sku_lines(sandbox, 1))
    clock.at(5)
    fulfillment = sandbox.state.fulfil(order)
    sandbox.faults.inject(kind, store=STORE, times=2, operation="FulfillmentOrdersPage", **options)
    pulled = list(FulfillmentReader(client).iter_changed_fulfillments(*window(0, 60)))
    assert [f.id for f in pulled] == [fulfillment]
    assert sandbox.faults.pending() == []
    assert client.metrics.retries >= 2

