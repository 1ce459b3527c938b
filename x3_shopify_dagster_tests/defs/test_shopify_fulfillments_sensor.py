"""shopify_fulfillments_sensor against the Shopify sandbox over HTTP: probe on fulfillment orders, cursor, waiting.

flows.md §6: fulfilments are polled on their own timestamps; the cursor advances only with the run requests of the
tick (a failed probe leaves the store's watermark where it was).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dagster as dg

from x3_shopify_dagster.definitions import build_definitions
from x3_shopify_dagster.defs.shopify.fulfillments import FULFILLMENTS_SENSOR_NAME
from x3_shopify_dagster.defs.shopify.sensors import WatermarkCursor
from x3_shopify_dagster.domain.fulfillments import ShopifyFulfillment
from x3_shopify_dagster.domain.windows import business_day
from x3_shopify_dagster.posting.deliveries import observe_fulfillments
from x3_shopify_dagster.storage.ledger import RecordKind, SourceVersion

TZ = "Europe/Paris"
DEMO_MAPPING = Path(__file__).resolve().parents[2] / "x3_shopify_dagster" / "demo_mapping.yaml"


def _tick(runtime, cursor):
    defs = build_definitions(runtime.settings, runtime=runtime)
    sensor = defs.resolve_sensor_def(FULFILLMENTS_SENSOR_NAME)
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"connector": runtime},
                                          definitions=defs)
        return sensor.evaluate_tick(context)


def test_a_cancelled_fulfilment_requests_its_day_and_the_cursor_advances(
    fresh_shopify_sandbox, fresh_x3_sandbox, runtime_factory
):
    shop = fresh_shopify_sandbox
    runtime = runtime_factory(shop, x3_sandbox=fresh_x3_sandbox, mapping_path=str(DEMO_MAPPING))
    shop.state.set_clock(runtime.clock)  # the store and the sensor share one (shiftable) clock
    order = shop.state.create_order("eu", lines=[("CUP-PORC-6", 1)])
    fulfillment = shop.state.fulfil(order)
    runtime.clock.offset += timedelta(seconds=2)
    first = _tick(runtime, None)
    cursor = WatermarkCursor.parse(first.cursor)
    assert set(cursor.stores) == {"eu", "us"}
    today = business_day(runtime.clock(), TZ).isoformat()
    eu_requests = [r for r in first.run_requests if r.tags["x3sd/store"] == "eu"]
    assert today in {r.partition_key.keys_by_dimension["date"] for r in eu_requests}

    # Nothing changed: no run request, the watermark moves on.
    runtime.clock.offset += timedelta(seconds=2)
    second = _tick(runtime, first.cursor)
    assert second.run_requests == []
    assert WatermarkCursor.parse(second.cursor).stores["eu"] > cursor.stores["eu"]

    # The fulfilment is cancelled: the order's updatedAt stays, the fulfilment sensor still sees it.
    order_updated_at = shop.state.order(order).updated_at
    shop.state.cancel_fulfillment(fulfillment)
    assert shop.state.order(order).updated_at == order_updated_at
    runtime.clock.offset += timedelta(seconds=2)
    third = _tick(runtime, second.cursor)
    (request,) = [r for r in third.run_requests if r.tags["x3sd/store"] == "eu"]
    config = request.run_config["ops"]["shopify_fulfillments"]["config"]
    assert config["since"] == WatermarkCursor.parse(second.cursor).stores["eu"].isoformat()


def test_a_failed_probe_keeps_the_store_watermark(fresh_shopify_sandbox, fresh_x3_sandbox, runtime_factory):
    shop = fresh_shopify_sandbox
    runtime = runtime_factory(shop, x3_sandbox=fresh_x3_sandbox, mapping_path=str(DEMO_MAPPING),
                              shopify_timeout_seconds=0.5)
    first = _tick(runtime, None)
    shop.faults.inject("http_500", store="eu", times=None, operation="FulfillmentOrdersProbe")
    runtime.clock.offset += timedelta(seconds=5)
    second = _tick(runtime, first.cursor)
    shop.faults.clear()
    before, after = WatermarkCursor.parse(first.cursor), WatermarkCursor.parse(second.cursor)
    assert after.stores["eu"] == before.stores["eu"]
    assert after.stores["us"] > before.stores["us"]


def test_waiting_fulfilments_whose_order_is_invoiced_are_requested_again(
    fresh_shopify_sandbox, fresh_x3_sandbox, runtime_factory
):
    shop = fresh_shopify_sandbox
    runtime = runtime_factory(shop, x3_sandbox=fresh_x3_sandbox, mapping_path=str(DEMO_MAPPING))
    first = _tick(runtime, None)
    order = shop.state.create_order("eu", lines=[("CUP-PORC-6", 1)])
    shop.state.fulfil(order)
    node = shop.state.order(order).fulfillments[0]
    ledger = runtime.ledger()
    fulfillment = ShopifyFulfillment(
        id=f"gid://shopify/Fulfillment/{node.legacy_id}", order_id=order, status="SUCCESS",
        location_id="gid://shopify/Location/1", updated_at=node.updated_at, created_at=node.created_at, lines=(),
    )
    observe_fulfillments(ledger, "eu", [fulfillment], business_timezone=TZ, run_id="test")
    runtime.clock.offset += timedelta(seconds=1)
    second = _tick(runtime, first.cursor)
    assert [r for r in second.run_requests if r.asset_selection] == []  # not invoiced yet

    ledger.observe(SourceVersion(store="eu", kind=RecordKind.ORDER, source_id=order, updated_at=node.updated_at,
                                 content_hash="h", partition="2026-01-01"), run_id="test")
    record = ledger.get("eu", RecordKind.ORDER, order)
    ledger.mark_matched(record.id, customer="FR0001", run_id="test")
    ledger.mark_validated(record.id, run_id="test")
    ledger.mark_invoiced(record.id, invoice="SIH-1", run_id="test")
    runtime.clock.offset += timedelta(seconds=1)
    # No fulfilment changed since the second tick: the waiting one alone makes the sensor request a delivery run.
    waiting = [r for r in _tick(runtime, second.cursor).run_requests if r.asset_selection]
    assert [r.asset_selection for r in waiting] == [[dg.AssetKey("x3_deliveries")]]
