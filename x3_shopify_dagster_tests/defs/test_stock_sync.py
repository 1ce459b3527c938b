"""x3_stock_sensor, x3_stock_movements and shopify_inventory_levels against both sandboxes over HTTP.

End to end: a receipt in X3 → the sensor requests the (day, store) partition → the assets stage the movement and
set the Shopify level to X3 stock minus the pending fulfilled units (flows.md §4, §6).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest

from x3_shopify_dagster.definitions import build_definitions
from x3_shopify_dagster.defs.stock import (
    LEVELS_ASSET_NAME,
    MOVEMENTS_ASSET_NAME,
    STOCK_SENSOR_NAME,
    StockCursor,
)
from x3_shopify_dagster.domain.stock import ShopifyRestock
from x3_shopify_dagster.domain.windows import business_day
from x3_shopify_dagster.posting.stock import RestockRecorder
from x3_shopify_dagster.settings import StoreSettings
from x3_shopify_dagster.storage.ledger import RecordKind, SourceVersion
from x3_shopify_dagster.storage.stock import PushOutcome
from x3_shopify_dagster_tests.domain.order_factory import line, order
from x3_shopify_dagster_tests.domain.test_credit_memos import refund, with_refunds

TZ = "Europe/Paris"
DEMO_MAPPING = Path(__file__).resolve().parents[2] / "x3_shopify_dagster" / "demo_mapping.yaml"
SITE = "FR011"


def _stores(shopify_sandbox, **extra_locations: str) -> dict[str, StoreSettings]:
    eu = shopify_sandbox.state.store("eu").default_location.legacy_id
    us = shopify_sandbox.state.store("us").default_location.legacy_id
    return {
        "eu": StoreSettings(shop_url=shopify_sandbox.shop_url("eu"), access_token=shopify_sandbox.access_token("eu"),
                            locations={SITE: f"gid://shopify/Location/{eu}", **extra_locations}),
        "us": StoreSettings(shop_url=shopify_sandbox.shop_url("us"), access_token=shopify_sandbox.access_token("us"),
                            locations={"US011": f"gid://shopify/Location/{us}"}),
    }


@pytest.fixture
def stock_runtime(fresh_shopify_sandbox, fresh_x3_sandbox, runtime_factory, clock):
    return runtime_factory(fresh_shopify_sandbox, x3_sandbox=fresh_x3_sandbox, stores=_stores(fresh_shopify_sandbox),
                           sensor_initial_lookback_hours=1)


def _receipt(x3_sandbox, item: str, quantity: int, site: str = SITE) -> dict[str, Any]:
    response = httpx.post(f"{x3_sandbox.base_url}/_sandbox/{x3_sandbox.folder}/stock-receipts",
                          auth=x3_sandbox.basic_credentials, json={"item": item, "site": site, "quantity": quantity})
    assert response.status_code == 201, response.text
    return response.json()


def _tick(runtime, cursor: str | None):
    defs = build_definitions(runtime.settings, runtime=runtime)
    sensor = defs.resolve_sensor_def(STOCK_SENSOR_NAME)
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"connector": runtime},
                                          definitions=defs)
        return sensor.evaluate_tick(context)


def _run(runtime, request: dg.RunRequest) -> dict[str, dict[str, Any]]:
    """Materialize what a run request asks for, the way the daemon would (same partition, same run config)."""
    defs = build_definitions(runtime.settings, runtime=runtime)
    assets = [defs.resolve_assets_def(MOVEMENTS_ASSET_NAME), defs.resolve_assets_def(LEVELS_ASSET_NAME)]
    with dg.instance_for_test() as instance:
        result = dg.materialize(assets, partition_key=request.partition_key, instance=instance,
                                run_config=request.run_config, tags=request.tags)
        assert result.success
        return {
            name: {k: v.value for k, v in result.asset_materializations_for_node(name)[0].metadata.items()}
            for name in (MOVEMENTS_ASSET_NAME, LEVELS_ASSET_NAME)
        }


def _level(shopify_sandbox, sku: str, store: str = "eu") -> int:
    data = shopify_sandbox.state.store(store)
    variant = data.variant_by_sku(sku)
    return data.inventory[(variant.inventory_item_id, data.default_location.legacy_id)].quantities["on_hand"]


def _requested(result) -> list[tuple[str, str]]:
    return sorted((r.partition_key.keys_by_dimension["date"], r.partition_key.keys_by_dimension["store"])
                  for r in result.run_requests)


def test_receipt_to_sensor_to_assets_sets_x3_stock_minus_pending(
    fresh_shopify_sandbox, fresh_x3_sandbox, stock_runtime, clock
):
    """End to end (flows.md §4): the Shopify level equals X3 stock minus the fulfilled, undelivered units."""
    runtime = stock_runtime
    store = fresh_shopify_sandbox.state.store("eu")
    cups = store.variant_by_sku("CUP-PORC-6")
    location = f"gid://shopify/Location/{store.default_location.legacy_id}"
    payload = {"id": "gid://shopify/Fulfillment/1", "order_id": "gid://shopify/Order/1", "status": "SUCCESS",
               "location_id": location, "updated_at": "2026-11-27T09:00:00Z",
               "lines": [{"line_item_id": "gid://shopify/LineItem/1", "sku": "CUP-PORC-6",
                          "inventory_item_id": f"gid://shopify/InventoryItem/{cups.inventory_item_id}",
                          "quantity": 3}]}
    runtime.ledger().observe(SourceVersion(store="eu", kind=RecordKind.FULFILLMENT, source_id=payload["id"],
                                           updated_at=datetime.now(UTC), content_hash="f1", partition="2026-11-27",
                                           payload=payload), run_id="fulfilments")
    first = _tick(runtime, None)  # establishes the watermark (nothing counted moved in the last hour)
    assert first.run_requests == []

    receipt = _receipt(fresh_x3_sandbox, "CUP-PORC-6", 20)
    _receipt(fresh_x3_sandbox, "DESCALER-1L", 5)  # not sold in Shopify
    _receipt(fresh_x3_sandbox, "CUP-PORC-6", 2, site="US011")  # the us store's site
    clock.offset += timedelta(seconds=5)  # past the safety lag
    tick = _tick(runtime, first.cursor)
    moved_at = datetime.fromisoformat(receipt["updated_at"].replace("Z", "+00:00"))
    day = business_day(moved_at, TZ).isoformat()
    assert _requested(tick) == [(day, "eu"), (day, "us")]
    request = next(r for r in tick.run_requests if r.tags["x3sd/store"] == "eu")
    assert request.tags["x3sd/trigger"] == STOCK_SENSOR_NAME

    metadata = _run(runtime, request)

    physical = fresh_x3_sandbox.state.stock("CUP-PORC-6", SITE).physical
    assert _level(fresh_shopify_sandbox, "CUP-PORC-6") == int(physical) - 3
    staged = metadata[MOVEMENTS_ASSET_NAME]
    assert staged["movements_counted"] == 2
    assert staged["movements_staged"] == 2
    levels = metadata[LEVELS_ASSET_NAME]
    assert (levels["items_moved"], levels["quantities_set"], levels["unmapped_skus"]) == (2, 1, 1)
    assert levels["unmapped_sku_list"] == "DESCALER-1L"
    assert levels["api_points_spent"] > 0
    failures = levels["failures"].records
    assert [(r.data["x3_item"], r.data["reason"]) for r in failures] == [("DESCALER-1L", "sku_not_found")]
    sets = levels["sets"].records
    assert sets[0].data["to"] == str(int(physical) - 3)
    assert sets[0].data["pending_fulfilled"] == "3"
    outcomes = {(r.x3_item, r.outcome) for r in runtime.stock_store().pushes("eu", day)}
    assert outcomes == {("CUP-PORC-6", PushOutcome.SET), ("DESCALER-1L", PushOutcome.FAILED)}
    assert _level(fresh_shopify_sandbox, "CUP-PORC-6", "us") != int(
        fresh_x3_sandbox.state.stock("CUP-PORC-6", "US011").physical)  # the us partition has not run yet

    # A replay of the partition (a backfill, a click in the UI): nothing changes, nothing is sent twice.
    replay = _run(runtime, dg.RunRequest(partition_key=request.partition_key))
    assert replay[LEVELS_ASSET_NAME]["quantities_set"] == 0
    assert replay[LEVELS_ASSET_NAME]["unchanged"] == 1
    assert _level(fresh_shopify_sandbox, "CUP-PORC-6") == int(physical) - 3


def test_sensor_dedupes_the_overlap_and_only_advances_with_its_requests(
    fresh_shopify_sandbox, fresh_x3_sandbox, stock_runtime, clock
):
    """flows.md §6: update-timestamp cursor, overlap deduped on the movement key, cursor moves with requests."""
    runtime = stock_runtime
    first = _tick(runtime, None)
    _receipt(fresh_x3_sandbox, "TAMPER-58", 1)
    clock.offset += timedelta(seconds=5)
    second = _tick(runtime, first.cursor)
    assert len(second.run_requests) == 1
    cursor = StockCursor.parse(second.cursor)
    assert cursor.watermark is not None
    assert cursor.watermark > StockCursor.parse(first.cursor).watermark
    assert len(cursor.seen) == 1  # the receipt is inside the overlap the next tick reads again

    clock.offset += timedelta(seconds=5)
    quiet = _tick(runtime, second.cursor)  # re-reads the receipt in its overlap: deduped, nothing requested
    assert quiet.run_requests == []
    assert "No counted stock movement" in (quiet.skip_message or "")

    # X3 unreachable: the tick keeps its cursor, so the next one reads the same window again.
    fresh_x3_sandbox.faults.clear()
    runtime.settings.x3.server_url = "http://127.0.0.1:9"  # nothing listens there
    clock.offset += timedelta(seconds=5)  # past the whole-second watermark, or the tick has nothing to read
    failed = _tick(runtime, quiet.cursor)
    assert failed.cursor == quiet.cursor
    assert failed.run_requests == []
    assert "X3 stock journal unavailable" in (failed.skip_message or "")


def test_uncounted_transaction_types_and_unmapped_sites_request_nothing(
    fresh_shopify_sandbox, fresh_x3_sandbox, runtime_factory, clock
):
    runtime = runtime_factory(fresh_shopify_sandbox, x3_sandbox=fresh_x3_sandbox,
                              stores=_stores(fresh_shopify_sandbox), stock_transaction_types=[4],
                              sensor_initial_lookback_hours=1)
    first = _tick(runtime, None)
    _receipt(fresh_x3_sandbox, "TAMPER-58", 1)  # TRSTYP 3: not counted here
    clock.offset += timedelta(seconds=5)
    assert _tick(runtime, first.cursor).run_requests == []


def test_a_store_without_mapped_sites_has_nothing_to_do(fresh_shopify_sandbox, fresh_x3_sandbox, runtime_factory):
    runtime = runtime_factory(fresh_shopify_sandbox, x3_sandbox=fresh_x3_sandbox)  # no locations configured
    result = _tick(runtime, None)
    assert result.run_requests == []
    assert "No X3 site is mapped" in (result.skip_message or "")


def _shopify_restock(runtime, refund: int, item: str, *, site: str | None = SITE, quantity: int = 2) -> None:
    """What the invoice posting run records when a refund restocks a line in Shopify (at the connector's clock)."""
    now = runtime.clock()
    runtime.stock_store().record_restocks(
        [ShopifyRestock(restock_key=f"eu|gid://shopify/Refund/{refund}|gid://shopify/LineItem/{refund}", store="eu",
                        order_id=f"gid://shopify/Order/{refund}", refund_id=f"gid://shopify/Refund/{refund}",
                        line_item_id=f"gid://shopify/LineItem/{refund}", restock_type="RETURN", quantity=quantity,
                        item=item, location_id=None, site=site, refunded_at=now,
                        reason_code=None if site else "location_not_mapped")],
        recorded_at=now, day=business_day(now, TZ).isoformat(), run_id="posting")


def test_a_shopify_restock_requests_its_partition_once_and_the_push_brings_shopify_back_to_x3(
    fresh_shopify_sandbox, fresh_x3_sandbox, stock_runtime, clock
):
    """flows.md §4 after a Shopify restock: X3 did not move, the restock marker alone makes the sensor request the
    store's partition (once), and the push sets Shopify back to X3 physical - pending with the usual formula."""
    runtime = stock_runtime
    first = _tick(runtime, None)
    _receipt(fresh_x3_sandbox, "CUP-PORC-6", 20)
    clock.offset += timedelta(seconds=5)
    synced = _tick(runtime, first.cursor)
    for request in synced.run_requests:
        _run(runtime, request)
    synced_push = [r for r in runtime.stock_store().pushes("eu") if r.x3_item == "CUP-PORC-6"][-1]
    target = synced_push.quantity  # X3 physical - pending (the seeded fulfilments the refresh brought in)
    assert synced_push.x3_physical == fresh_x3_sandbox.state.stock("CUP-PORC-6", SITE).physical
    assert _level(fresh_shopify_sandbox, "CUP-PORC-6") == target

    # Shopify's restock: its level goes up by 2, nothing moves in X3.
    store = fresh_shopify_sandbox.state.store("eu")
    cups = store.variant_by_sku("CUP-PORC-6")
    fresh_shopify_sandbox.state.adjust_inventory("eu", cups.inventory_item_id, store.default_location.legacy_id,
                                                 {"available": 2})
    assert _level(fresh_shopify_sandbox, "CUP-PORC-6") == target + 2
    _shopify_restock(runtime, 1, "CUP-PORC-6")
    _shopify_restock(runtime, 2, "TAMPER-58", site=None)  # recorded with its reason: requests nothing
    clock.offset += timedelta(seconds=5)

    tick = _tick(runtime, synced.cursor)
    day = business_day(runtime.clock(), TZ).isoformat()
    assert _requested(tick) == [(day, "eu")]  # only the restocked store
    metadata = _run(runtime, tick.run_requests[0])
    levels = metadata[LEVELS_ASSET_NAME]
    assert (levels["items_moved"], levels["quantities_set"], levels["shopify_restocks"]) == (1, 1, 1)
    assert _level(fresh_shopify_sandbox, "CUP-PORC-6") == target
    push = runtime.stock_store().pushes("eu")[-1]
    assert (push.outcome, push.previous_quantity, push.quantity) == (PushOutcome.SET, target + 2, target)
    assert push.trigger["shopify_restocks"] == ["eu|gid://shopify/Refund/1|gid://shopify/LineItem/1"]

    # The overlap reads the marker again: already seen, nothing requested.
    clock.offset += timedelta(seconds=5)
    assert _tick(runtime, tick.cursor).run_requests == []


def test_a_restocked_sku_x3_never_stocked_is_left_alone(fresh_shopify_sandbox, stock_runtime, clock):
    """A restock names an (item, site) X3 has no stock record for (the SKU may not be an X3 item at all): Shopify's
    level is not wiped to zero; the push fails with the reason."""
    runtime = stock_runtime
    fresh_shopify_sandbox.state.add_product("eu", "NOT-IN-X3", "Gift wrap", price=Decimal("2.00"), on_hand=7)
    first = _tick(runtime, None)
    _shopify_restock(runtime, 1, "NOT-IN-X3")
    clock.offset += timedelta(seconds=5)
    tick = _tick(runtime, first.cursor)
    assert len(tick.run_requests) == 1
    levels = _run(runtime, tick.run_requests[0])[LEVELS_ASSET_NAME]
    assert (levels["quantities_set"], levels["failed"]) == (0, 1)
    assert [r.data["reason"] for r in levels["failures"].records] == ["x3_stock_not_found"]
    assert _level(fresh_shopify_sandbox, "NOT-IN-X3") == 7


def _mapping_with_overrides(tmp_path: Path, overrides: dict[str, str | None]) -> str:
    """The demo mapping with more `defaults.items.overrides` (the file the assets read, X3SD_MAPPING_PATH)."""
    text = DEMO_MAPPING.read_text(encoding="utf-8")
    anchor = "      GIFT-WRAP: null"
    assert anchor in text
    extra = "".join(f"\n      {sku}: {item if item is not None else 'null'}" for sku, item in overrides.items())
    path = tmp_path / "mapping.yaml"
    path.write_text(text.replace(anchor, anchor + extra, 1), encoding="utf-8")
    return str(path)


def test_a_variant_follows_the_x3_item_its_sku_is_overridden_to_and_a_restock_of_it_repushes_the_item(
    fresh_shopify_sandbox, fresh_x3_sandbox, runtime_factory, clock, tmp_path
):
    """docs/mapping.md "Items": `items.overrides: {DESCALER-SHOP: DESCALER-1L}`. A receipt of X3 item DESCALER-1L
    sets the level of the variant with SKU DESCALER-SHOP; a Shopify restock of DESCALER-SHOP (recorded the way the
    invoice run does, through the store's item mapping) marks DESCALER-1L, and its push brings Shopify back."""
    fresh_shopify_sandbox.state.add_product("eu", "DESCALER-SHOP", "Descaler 1 L", on_hand=0)
    runtime = runtime_factory(fresh_shopify_sandbox, x3_sandbox=fresh_x3_sandbox, stores=_stores(fresh_shopify_sandbox),
                              sensor_initial_lookback_hours=1,
                              mapping_path=_mapping_with_overrides(tmp_path, {"DESCALER-SHOP": "DESCALER-1L"}))
    first = _tick(runtime, None)
    _receipt(fresh_x3_sandbox, "DESCALER-1L", 5)
    clock.offset += timedelta(seconds=5)
    synced = _tick(runtime, first.cursor)
    request = next(r for r in synced.run_requests if r.tags["x3sd/store"] == "eu")
    levels = _run(runtime, request)[LEVELS_ASSET_NAME]

    physical = fresh_x3_sandbox.state.stock("DESCALER-1L", SITE).physical
    assert (levels["quantities_set"], levels["failed"], levels["unmapped_skus"]) == (1, 0, 0)
    [row] = levels["sets"].records
    assert (row.data["x3_item"], row.data["shopify_sku"], row.data["to"]) == (
        "DESCALER-1L", "DESCALER-SHOP", str(int(physical)))
    assert _level(fresh_shopify_sandbox, "DESCALER-SHOP") == int(physical)

    # Shopify restocks 2 units of DESCALER-SHOP (a return): its level goes up, X3 does not move.
    store = fresh_shopify_sandbox.state.store("eu")
    variant = store.variant_by_sku("DESCALER-SHOP")
    fresh_shopify_sandbox.state.adjust_inventory("eu", variant.inventory_item_id, store.default_location.legacy_id,
                                                 {"available": 2})
    sold = line("DESCALER-SHOP", 2, "12.00")
    returned = with_refunds(order(lines=[sold], total="24.00"),
                            refund(1, "24.00", lines=[(sold, 2, "20.00", "4.00", "RETURN")]))
    recorder = RestockRecorder(runtime.stock_store(), {"eu": runtime.settings.stores["eu"].locations},
                               clock=runtime.clock, business_timezone=TZ,
                               items={"eu": runtime.mapping().for_customer(None, "eu").items})
    assert recorder.record("eu", [returned], run_id="posting").new == 1
    [marker] = runtime.stock_store().restocks("eu")
    assert (marker.item, marker.site, marker.reason_code) == ("DESCALER-1L", SITE, None)
    assert marker.reason_message == "SKU DESCALER-SHOP is X3 item DESCALER-1L (items.overrides.DESCALER-SHOP)"
    clock.offset += timedelta(seconds=5)

    tick = _tick(runtime, synced.cursor)
    [repush] = tick.run_requests
    levels = _run(runtime, repush)[LEVELS_ASSET_NAME]
    assert (levels["items_moved"], levels["quantities_set"], levels["shopify_restocks"]) == (1, 1, 1)
    assert _level(fresh_shopify_sandbox, "DESCALER-SHOP") == int(physical)
    push = runtime.stock_store().pushes("eu")[-1]
    assert (push.x3_item, push.shopify_sku, push.previous_quantity, push.quantity) == (
        "DESCALER-1L", "DESCALER-SHOP", int(physical) + 2, int(physical))
    assert push.trigger["shopify_restocks"] == [marker.restock_key]


def test_an_item_the_mapping_makes_two_variants_fails_with_its_code_and_touches_no_level(
    fresh_shopify_sandbox, fresh_x3_sandbox, runtime_factory, clock, tmp_path
):
    fresh_shopify_sandbox.state.add_product("eu", "DESC-A", "Descaler 1 L", on_hand=3)
    fresh_shopify_sandbox.state.add_product("eu", "DESC-B", "Descaler 1 L (bundle)", on_hand=4)
    mapping = _mapping_with_overrides(tmp_path, {"DESC-A": "DESCALER-1L", "DESC-B": "DESCALER-1L"})
    runtime = runtime_factory(fresh_shopify_sandbox, x3_sandbox=fresh_x3_sandbox, stores=_stores(fresh_shopify_sandbox),
                              sensor_initial_lookback_hours=1, mapping_path=mapping)
    first = _tick(runtime, None)
    _receipt(fresh_x3_sandbox, "DESCALER-1L", 5)
    clock.offset += timedelta(seconds=5)
    request = next(r for r in _tick(runtime, first.cursor).run_requests if r.tags["x3sd/store"] == "eu")
    levels = _run(runtime, request)[LEVELS_ASSET_NAME]
    assert (levels["quantities_set"], levels["failed"], levels["set_calls"]) == (0, 1, 0)
    [failure] = levels["failures"].records
    assert (failure.data["x3_item"], failure.data["reason"]) == ("DESCALER-1L", "item_mapped_to_several_skus")
    assert "DESC-A (items.overrides.DESC-A), DESC-B (items.overrides.DESC-B)" in failure.data["message"]
    assert levels["unmapped_sku_list"] == "DESCALER-1L"
    assert (_level(fresh_shopify_sandbox, "DESC-A"), _level(fresh_shopify_sandbox, "DESC-B")) == (3, 4)
