"""The Shopify client over real HTTP against the Shopify sandbox on a loopback port.

Each test owns a freshly reset sandbox (``fresh_shopify_sandbox``) and moves the store clock to a fixed future
instant, so the orders it creates are the only ones in its window. Rate limits are raised except where a test
is about them, so that the suite does not wait on a 100 points/s bucket.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

pytest.importorskip("x3_shopify_dagster.sandboxes.shopify")

from x3_shopify_dagster.domain.shopify_orders import NormalisedOrder, ShopifyOrder
from x3_shopify_dagster.sandboxes.shopify import ShopifySandbox
from x3_shopify_dagster.shopify import (
    BulkOrderExporter,
    OrderReader,
    RetryPolicy,
    ShopifyAuthError,
    ShopifyClient,
)

STORE = "eu"
T0 = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)  # after every seeded order
WINDOW = (T0, T0 + timedelta(minutes=10))
FAST_RETRY = RetryPolicy(base_delay_s=0.01, max_delay_s=0.05, max_total_s=20.0)


class StoreClock:
    """The sandbox store's clock, set by the test (order timestamps come from it)."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def at(self, moment: datetime) -> StoreClock:
        self.now = moment
        return self


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
def connect(sandbox: ShopifySandbox) -> Iterator[Callable[..., ShopifyClient]]:
    clients: list[ShopifyClient] = []

    def make(**options: Any) -> ShopifyClient:
        options.setdefault("retry", FAST_RETRY)
        options.setdefault("timeout_s", 5.0)
        client = ShopifyClient(sandbox.shop_url(STORE), sandbox.access_token(STORE), **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def held_in_window(sandbox: ShopifySandbox, lo: datetime, hi: datetime) -> set[str]:
    return {f"gid://shopify/Order/{o.legacy_id}" for o in sandbox.state.orders(STORE) if lo <= o.updated_at < hi}


def create_orders(sandbox: ShopifySandbox, clock: StoreClock, offsets_s: list[int]) -> list[str]:
    created = []
    for offset in offsets_s:
        clock.at(T0 + timedelta(seconds=offset))
        created.append(sandbox.state.create_order(STORE))
    return created


def last_versions(orders: list[ShopifyOrder]) -> dict[str, ShopifyOrder]:
    return {order.id: order for order in orders}


def test_paged_pull_returns_exactly_the_orders_held_for_the_window(
    sandbox: ShopifySandbox, clock: StoreClock, connect: Callable[..., ShopifyClient]
) -> None:
    inside = create_orders(sandbox, clock, [0, 1, 61, 599])
    outside = create_orders(sandbox, clock, [-1, 600, 900])
    seeded = sandbox.state.orders(STORE)[0]
    clock.at(T0 + timedelta(seconds=30))
    sandbox.state.touch_order(STORE, seeded.legacy_id)  # an old order changes inside the window

    reader = OrderReader(connect(), page_size=2)
    pulled = list(reader.iter_changed_orders(*WINDOW))

    expected = held_in_window(sandbox, *WINDOW)
    assert {o.id for o in pulled} == expected
    assert expected == {*inside, f"gid://shopify/Order/{seeded.legacy_id}"}
    assert not expected & set(outside)
    assert [o.updated_at for o in pulled] == sorted(o.updated_at for o in pulled)  # oldest change first
    assert len(pulled) == len(expected)  # each version once


def test_sixty_line_order_is_read_completely_with_its_fulfilment_and_refund(
    sandbox: ShopifySandbox, clock: StoreClock, connect: Callable[..., ShopifyClient]
) -> None:
    skus = [v.sku for v in sandbox.state.store(STORE).variants]
    lines = [(skus[i % len(skus)], 1) for i in range(61)]
    clock.at(T0)
    order_id = sandbox.state.create_order(STORE, lines=lines)
    sandbox.state.fulfil(order_id)
    sandbox.state.refund(order_id, [(1, 1), (2, 1)])

    reader = OrderReader(connect(), line_items_page_size=25)
    (order,) = reader.iter_changed_orders(*WINDOW)
    assert len(order.line_items) == 61
    assert len({li.id for li in order.line_items}) == 61
    assert sum(f.quantity or 0 for f in order.fulfillments[0].fulfillment_line_items) == 61
    assert len(order.refunds[0].refund_line_items) == 2
    assert reader.stats.line_item_pages >= 2
    assert reader.stats.after_sales_pages >= 1


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("http_500", {}),
        ("http_502", {}),
        ("http_503", {}),
        ("http_429", {"retry_after": 0.05}),
        ("throttled", {}),
        ("drop_connection", {}),
        ("timeout", {"latency_s": 2.0}),
    ],
)
def test_each_injected_fault_is_survived(
    sandbox: ShopifySandbox,
    clock: StoreClock,
    connect: Callable[..., ShopifyClient],
    kind: str,
    options: dict[str, Any],
) -> None:
    created = create_orders(sandbox, clock, [0, 5, 10])
    sandbox.faults.inject(kind, store=STORE, times=2, operation="OrdersPage", **options)
    client = connect(timeout_s=0.3)

    pulled = list(OrderReader(client, page_size=2).iter_changed_orders(*WINDOW))
    assert {o.id for o in pulled} == set(created)
    assert client.metrics.retries >= 2
    assert sandbox.faults.pending() == []  # both injected faults were actually hit


def test_a_wrong_token_is_reported_clearly_and_not_retried(sandbox: ShopifySandbox) -> None:
    wrong = "shpat_wrong_token_for_this_store"
    sandbox.clear_requests_log()
    with (
        ShopifyClient(sandbox.shop_url(STORE), wrong, retry=FAST_RETRY) as client,
        pytest.raises(ShopifyAuthError) as caught,
    ):
        client.shop_info()
    assert caught.value.status_code == 401
    assert "refused" in str(caught.value)
    assert wrong not in str(caught.value)
    assert client.metrics.requests == 1


def test_a_tiny_bucket_is_paced_and_the_pull_completes(
    sandbox: ShopifySandbox, clock: StoreClock, connect: Callable[..., ShopifyClient]
) -> None:
    created = create_orders(sandbox, clock, list(range(0, 60, 5)))
    # Smaller than one default page query, restoring fast enough to keep the test short.
    sandbox.set_rate_limit(STORE, bucket_size=300, restore_rate=3000)
    client = connect()
    reader = OrderReader(client, page_size=5)

    pulled = list(reader.iter_changed_orders(*WINDOW))
    assert {o.id for o in pulled} == set(created)
    assert reader.stats.page_size_shrinks >= 1  # the query had to fit the 300-point bucket
    assert client.metrics.throttle_waits >= 1  # and the client waited for the bucket instead of failing


def test_max_cost_exceeded_shrinks_the_page(
    sandbox: ShopifySandbox, clock: StoreClock, connect: Callable[..., ShopifyClient]
) -> None:
    created = create_orders(sandbox, clock, [0, 1, 2])
    sandbox.clear_requests_log()
    reader = OrderReader(connect(), page_size=25, line_items_page_size=25)

    pulled = list(reader.iter_changed_orders(*WINDOW))
    assert {o.id for o in pulled} == set(created)
    statuses = [(r.operation_name, r.status) for r in sandbox.requests_log]
    assert ("OrdersPage", "max_cost_exceeded") in statuses
    assert reader.stats.page_size_shrinks >= 1
    assert reader.sizes.orders < 25
    assert max(r.requested_cost or 0 for r in sandbox.requests_log if r.status == "ok") <= 1000


def test_bulk_export_equals_the_paged_pull(
    sandbox: ShopifySandbox, clock: StoreClock, connect: Callable[..., ShopifyClient]
) -> None:
    created = create_orders(sandbox, clock, [0, 3, 7, 20, 40])
    sandbox.state.fulfil(created[1])
    sandbox.state.refund(created[2], [(0, 1)], shipping=True)  # first line (0-based position) and shipping
    client = connect()

    paged = list(OrderReader(client).iter_changed_orders(*WINDOW))
    exporter = BulkOrderExporter(client, poll_interval_s=0.02, timeout_s=30)
    bulk = list(exporter.iter_changed_orders(*WINDOW))

    assert exporter.stats.bulk_status == "COMPLETED"
    assert exporter.stats.fallbacks == 0
    assert sorted(bulk, key=lambda o: o.id) == sorted(paged, key=lambda o: o.id)
    assert {o.id for o in bulk} == held_in_window(sandbox, *WINDOW)


def test_bulk_and_paged_pulls_build_byte_identical_staging_payloads_and_hashes(
    sandbox: ShopifySandbox, clock: StoreClock, connect: Callable[..., ShopifyClient]
) -> None:
    """What the asset stages (NormalisedOrder, no model) is the same in both pull modes and equals the validated
    model's payload and hash (flows.md §6: dedupe on (id, updatedAt, content hash) across modes)."""
    created = create_orders(sandbox, clock, [0, 3, 7, 20, 40])
    sandbox.state.fulfil(created[1])
    sandbox.state.refund(created[2], [(0, 1)], shipping=True)
    client = connect()

    paged = list(OrderReader(client).iter_changed_orders(*WINDOW, build=NormalisedOrder.from_graphql))
    exporter = BulkOrderExporter(client, poll_interval_s=0.02, timeout_s=30)
    bulk = list(exporter.iter_changed_orders(*WINDOW, build=NormalisedOrder.from_graphql))
    models = {order.id: order for order in OrderReader(client).iter_changed_orders(*WINDOW)}

    assert exporter.stats.fallbacks == 0
    assert len(paged) == len(bulk) == len(models) == len(created)
    assert {o.id: o.encoded() for o in bulk} == {o.id: o.encoded() for o in paged}
    for order in paged:
        model = models[order.id]
        assert order.payload == model.to_payload()
        assert order.encoded()[1] == model.content_hash()
        assert order.to_model() == model
    assert any(o.payload["refunds"] for o in paged)
    assert any(o.payload["fulfillments"] for o in paged)


def test_bulk_with_a_one_order_buffer_rereads_orphans_and_ends_complete(
    sandbox: ShopifySandbox, clock: StoreClock, connect: Callable[..., ShopifyClient]
) -> None:
    create_orders(sandbox, clock, [0, 1, 2, 3])
    client = connect()
    paged = last_versions(list(OrderReader(client).iter_changed_orders(*WINDOW)))
    exporter = BulkOrderExporter(client, poll_interval_s=0.02, max_buffered_orders=1)

    bulk = last_versions(list(exporter.iter_changed_orders(*WINDOW)))
    assert bulk == paged  # the last version yielded for each order is the complete one
    assert exporter.stats.orphans_refetched >= 1


def test_a_failed_bulk_job_falls_back_and_yields_every_order_once(
    sandbox: ShopifySandbox, clock: StoreClock, connect: Callable[..., ShopifyClient]
) -> None:
    created = create_orders(sandbox, clock, [0, 10, 20, 30, 40, 50, 60, 70])
    sandbox.faults.inject("bulk_fail", store=STORE)
    client = connect()
    paged = list(OrderReader(client).iter_changed_orders(*WINDOW))
    exporter = BulkOrderExporter(client, poll_interval_s=0.02, max_buffered_orders=2)

    pulled = list(exporter.iter_changed_orders(*WINDOW, fallback=OrderReader(client)))
    assert exporter.stats.bulk_status == "FAILED"
    assert exporter.stats.fallbacks == 1
    keys = [(o.id, o.updated_at) for o in pulled]
    assert len(keys) == len(set(keys)) == len(created)
    assert sorted(pulled, key=lambda o: o.id) == sorted(paged, key=lambda o: o.id)
