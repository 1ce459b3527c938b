"""State helpers as clients see them (updatedAt bumps, lifecycle), the injectable clock, the traffic generator,
the CLI, and the sandbox's own lifecycle (start/stop/reset)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import httpx
import pytest

from x3_shopify_dagster.sandboxes.shopify import SandboxConfig, ShopifySandbox
from x3_shopify_dagster.sandboxes.shopify.lifecycle import LifecycleError
from x3_shopify_dagster.sandboxes.shopify.models import gid
from x3_shopify_dagster.sandboxes.shopify.state import SandboxState
from x3_shopify_dagster.sandboxes.shopify.traffic import TrafficGenerator

if TYPE_CHECKING:
    from x3_shopify_dagster_tests.fixtures.shopify_sandbox import ShopifyRawClient

pytest_plugins = ["x3_shopify_dagster_tests.fixtures.shopify_sandbox"]

Factory = Callable[..., "ShopifyRawClient"]
ORDER = """query One($id: ID!) { order(id: $id) { updatedAt displayFinancialStatus displayFulfillmentStatus
  cancelledAt cancelReason closedAt currentTotalPriceSet { shopMoney { amount } }
  lineItems(first: 5) { nodes { id quantity currentQuantity } }
  fulfillments(first: 5) { name status trackingInfo(first: 2) { company number url } }
  refunds(first: 5) { refundLineItems(first: 5) { nodes { quantity restockType } } } } }"""


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def tick(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def test_helpers_change_orders_like_shopify_and_bump_updated_at(fresh_shopify_sandbox: ShopifySandbox,
                                                                shopify_raw_factory: Factory) -> None:
    sandbox, state = fresh_shopify_sandbox, fresh_shopify_sandbox.state
    clock = Clock(datetime(2031, 2, 1, 8, 0, tzinfo=UTC))
    state.set_clock(clock)
    client = shopify_raw_factory(sandbox, "eu")
    order_id = state.create_order("eu", email="claire.martin@bistro-lyon.example", financial_status="PENDING",
                                  lines=[("BEANS-HOUSE-1KG", 3), ("CUP-PORC-6", 1)])

    def read() -> dict[str, object]:
        return client.data(ORDER, {"id": order_id})["order"]  # type: ignore[no-any-return]

    assert read()["updatedAt"] == "2031-02-01T08:00:00Z"
    assert read()["displayFinancialStatus"] == "PENDING"
    clock.tick(minutes=5)
    state.mark_paid(order_id)
    assert read()["displayFinancialStatus"] == "PAID"
    assert read()["updatedAt"] == "2031-02-01T08:05:00Z"

    clock.tick(hours=1)
    before = state.order(order_id)
    state.touch_order("eu", order_id)
    touched = state.order(order_id)
    assert touched.updated_at == clock.now
    assert touched.version == before.version  # content did not change
    assert read()["updatedAt"] == "2031-02-01T09:05:00Z"

    clock.tick(hours=2)
    first_line = read()["lineItems"]["nodes"][0]["id"]  # type: ignore[index]
    state.fulfil(order_id, [(first_line, 2)], tracking=("UPS", "1Z999", "https://ups.example/1Z999"))
    shipped = read()
    assert shipped["displayFulfillmentStatus"] == "PARTIALLY_FULFILLED"
    assert shipped["fulfillments"] == [{"name": f"{state.order(order_id).name}.1", "status": "SUCCESS",
                                        "trackingInfo": [{"company": "UPS", "number": "1Z999",
                                                          "url": "https://ups.example/1Z999"}]}]
    clock.tick(hours=1)
    state.refund(order_id, [(first_line, 1)], shipping=Decimal("2.00"))
    refunded = read()
    assert refunded["displayFinancialStatus"] == "PARTIALLY_REFUNDED"
    assert refunded["lineItems"]["nodes"][0]["currentQuantity"] == 2  # type: ignore[index]
    assert refunded["refunds"][0]["refundLineItems"]["nodes"] == [{"quantity": 1, "restockType": "RETURN"}]
    with pytest.raises(LifecycleError):
        state.refund(order_id, [(first_line, 5)])  # more than is left

    clock.tick(days=1)
    state.cancel(order_id, reason="INVENTORY")
    cancelled = read()
    assert cancelled["cancelledAt"] == "2031-02-02T12:05:00Z"
    assert cancelled["cancelReason"] == "INVENTORY"
    assert cancelled["displayFinancialStatus"] == "REFUNDED"
    assert cancelled["currentTotalPriceSet"]["shopMoney"]["amount"] == "0.0"
    assert cancelled["closedAt"] is not None


def test_helpers_refuse_what_shopify_would_refuse(fresh_shopify_sandbox: ShopifySandbox) -> None:
    state = fresh_shopify_sandbox.state
    pending = state.create_order("us", financial_status="PENDING", lines=[("TAMPER-58", 1)])
    with pytest.raises(LifecycleError, match="only paid orders"):
        state.refund(pending, [(0, 1)])
    state.cancel(pending)
    assert state.order(pending).financial_status == "VOIDED"
    with pytest.raises(LifecycleError, match="cancelled"):
        state.fulfil(pending)
    with pytest.raises(KeyError):
        state.create_order("us", lines=[("NOT-A-SKU", 1)])
    with pytest.raises(KeyError):
        state.touch_order("eu", pending)  # the order belongs to the us store


def test_the_clock_must_be_timezone_aware(fresh_shopify_sandbox: ShopifySandbox) -> None:
    fresh_shopify_sandbox.state.set_clock(lambda: datetime(2031, 1, 1))  # naive on purpose
    with pytest.raises(ValueError, match="timezone-aware"):
        fresh_shopify_sandbox.state.create_order("eu")


def test_traffic_makes_the_same_moves_for_the_same_seed() -> None:
    fixed = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    runs = []
    for _ in range(2):
        state = SandboxState(SandboxConfig(seed=3, orders_per_store=10, clock=lambda: fixed))
        traffic = TrafficGenerator(state, seed=3, interval_s=1.0)
        for _ in range(60):
            traffic.step()
        runs.append((traffic.actions_done, [state.orders(s) for s in state.store_keys]))
    assert runs[0] == runs[1]
    assert {action for _, action, _ in runs[0][0]} >= {"create", "fulfil", "touch"}


def test_traffic_runs_in_the_background_while_clients_page(fresh_shopify_sandbox: ShopifySandbox,
                                                           shopify_raw_factory: Factory) -> None:
    sandbox = fresh_shopify_sandbox
    client = shopify_raw_factory(sandbox, "eu")
    traffic = sandbox.start_traffic(interval_s=0.001)
    try:
        for _ in range(30):
            page = client.data("{ orders(first: 20, sortKey: UPDATED_AT, reverse: true) { nodes { id "
                               "currentTotalPriceSet { shopMoney { amount } } } } }")
            assert len(page["orders"]["nodes"]) == 20
        done = threading.Event()
        for _ in range(500):
            if len(traffic.actions_done) >= 5:
                break
            done.wait(0.002)
    finally:
        sandbox.stop_traffic()
    assert len(traffic.actions_done) >= 5
    assert not traffic.running


def test_reset_restores_the_seeded_state(fresh_shopify_sandbox: ShopifySandbox, shopify_raw_factory: Factory) -> None:
    sandbox = fresh_shopify_sandbox
    seeded = sandbox.state.orders("eu")
    sandbox.state.create_order("eu")
    sandbox.faults.inject("http_500", times=None)
    sandbox.reset()
    assert [o.name for o in sandbox.state.orders("eu")] == [o.name for o in seeded]
    assert sandbox.faults.pending() == []
    assert shopify_raw_factory(sandbox).post("{ shop { id } }").status_code == 200


def test_start_and_stop_on_an_ephemeral_port() -> None:
    sandbox = ShopifySandbox(SandboxConfig(stores=("us",), orders_per_store=3))
    with pytest.raises(RuntimeError, match="not started"):
        _ = sandbox.base_url
    with sandbox:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", sandbox.base_url)
        assert sandbox.shop_url("us") == f"{sandbox.base_url}/stores/us"
        assert httpx.get(f"{sandbox.base_url}/_sandbox/health").json() == {"ok": True}
        url = sandbox.base_url
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/_sandbox/health")
    with pytest.raises(KeyError):
        sandbox.access_token("eu")  # not served by this sandbox


def test_the_cli_prints_urls_and_tokens_and_serves_until_stopped() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "x3_shopify_dagster.sandboxes.shopify", "--port", "0", "--stores", "us",
         "--orders-per-store", "4", "--traffic-interval", "0.5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(3)]
        match = re.search(r"store us: shop_url=(\S+) access_token=(shpat_[0-9a-f]{32})", "".join(lines))
        assert match, lines
        response = httpx.post(f"{match[1]}/admin/api/2026-07/graphql.json", json={"query": "{ shop { name } }"},
                              headers={"X-Shopify-Access-Token": match[2]})
        assert response.json()["data"]["shop"]["name"] == "Acme US"
        assert "traffic" in lines[2]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


def test_order_ids_are_gids_and_names_count_per_store(shopify_sandbox: ShopifySandbox) -> None:
    for store in ("eu", "us"):
        orders = shopify_sandbox.state.orders(store)
        assert [o.name for o in orders[:3]] == ["#1001", "#1002", "#1003"]
        assert gid("Order", orders[0].legacy_id).startswith("gid://shopify/Order/")
