"""Stock sync storage on SQLite and PostgreSQL: pending fulfilled quantities from the ledger (the contract the
fulfilment flow writes to), staged movements, the SKU map and the push audit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from x3_shopify_dagster.domain.stock import ShopifyRestock
from x3_shopify_dagster.storage import ConnectorDatabase
from x3_shopify_dagster.storage.ledger import PostingLedger, RecordKind, SourceVersion
from x3_shopify_dagster.storage.stock import (
    PushOutcome,
    SkuMapping,
    SkuStatus,
    StockMovementRow,
    StockPushRow,
    StockStore,
    pending_fulfilled_quantities,
)

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
ITEM_A, ITEM_B = "gid://shopify/InventoryItem/11", "gid://shopify/InventoryItem/12"
LYON, RENO = "gid://shopify/Location/1", "gid://shopify/Location/2"


def fulfilment_payload(fid: int, lines: list[tuple[str | None, int]], *, status: str = "SUCCESS",
                       location: str = LYON) -> dict[str, Any]:
    return {"id": f"gid://shopify/Fulfillment/{fid}", "order_id": f"gid://shopify/Order/{fid}", "status": status,
            "location_id": location, "updated_at": T0.isoformat(),
            "lines": [{"line_item_id": f"gid://shopify/LineItem/{fid}{n}", "sku": "SKU", "inventory_item_id": item,
                       "quantity": qty} for n, (item, qty) in enumerate(lines)]}


def observe_fulfilment(ledger: PostingLedger, fid: int, payload: dict[str, Any], *, store: str = "eu") -> int:
    version = SourceVersion(store=store, kind=RecordKind.FULFILLMENT, source_id=payload["id"], updated_at=T0,
                            content_hash=f"h{fid}", partition="2026-11-27", payload=payload)
    return ledger.observe(version, run_id="test").record.id


def test_pending_sums_undelivered_fulfilments_per_item_and_location(connector_db: ConnectorDatabase) -> None:
    """flows.md §4: units fulfilled in Shopify whose X3 delivery is not validated yet are pending."""
    ledger = PostingLedger(connector_db)
    observe_fulfilment(ledger, 1, fulfilment_payload(1, [(ITEM_A, 2), (ITEM_B, 1)]))
    observe_fulfilment(ledger, 2, fulfilment_payload(2, [(ITEM_A, 3), (None, 4)]))  # a custom line holds no stock
    observe_fulfilment(ledger, 3, fulfilment_payload(3, [(ITEM_A, 1)], location=RENO))
    observe_fulfilment(ledger, 4, fulfilment_payload(4, [(ITEM_A, 40)], status="CANCELLED"))  # counts zero
    observe_fulfilment(ledger, 5, fulfilment_payload(5, [(ITEM_A, 7)]), store="us")  # another store
    # An order record is not a fulfilment, whatever its payload says.
    ledger.observe(SourceVersion(store="eu", kind=RecordKind.ORDER, source_id="gid://shopify/Order/9", updated_at=T0,
                                 content_hash="o", partition="2026-11-27",
                                 payload=fulfilment_payload(9, [(ITEM_A, 100)])), run_id="test")

    assert pending_fulfilled_quantities(ledger, "eu") == {(ITEM_A, LYON): 5, (ITEM_B, LYON): 1, (ITEM_A, RENO): 1}
    assert pending_fulfilled_quantities(ledger, "us") == {(ITEM_A, LYON): 7}
    assert pending_fulfilled_quantities(ledger, "nowhere") == {}


def test_delivered_and_skipped_fulfilments_are_not_pending(connector_db: ConnectorDatabase) -> None:
    ledger = PostingLedger(connector_db)
    skipped = observe_fulfilment(ledger, 2, fulfilment_payload(2, [(ITEM_A, 3)]))
    failed = observe_fulfilment(ledger, 3, fulfilment_payload(3, [(ITEM_A, 4)]))
    observe_fulfilment(ledger, 4, fulfilment_payload(4, [(ITEM_A, 5)]))  # staged
    assert pending_fulfilled_quantities(ledger, "eu") == {(ITEM_A, LYON): 12}

    ledger.mark_failed(failed, "x3_error", "delivery refused", run_id="t")
    ledger.mark_skipped(skipped, "test_order", "test", run_id="t")
    # Failed: the units left the shelf but X3 still holds them, so they stay pending. Skipped: not pending.
    assert pending_fulfilled_quantities(ledger, "eu") == {(ITEM_A, LYON): 9}


def test_delivered_state_is_not_pending(connector_db: ConnectorDatabase) -> None:
    ledger = PostingLedger(connector_db)
    record = observe_fulfilment(ledger, 1, fulfilment_payload(1, [(ITEM_A, 2)]))
    with connector_db.transaction(write=True) as connection:  # as the delivery flow leaves it, whatever its path
        connection.exec_driver_sql(f"UPDATE ledger_records SET state = 'delivered' WHERE id = {record}")
    assert pending_fulfilled_quantities(ledger, "eu") == {}


def movement(key: str, item: str = "CUP-PORC-6", qty: str = "5", at: datetime = T0) -> StockMovementRow:
    return StockMovementRow(key, "FR011", item, 3, Decimal(qty), f"MR-{key}", at, "2026-11-27")


def test_movements_are_staged_once_and_read_by_day_site_and_window(connector_db: ConnectorDatabase) -> None:
    store = StockStore(connector_db)
    first = store.stage_movements([movement("a"), movement("b", at=T0 + timedelta(minutes=5)), movement("a")],
                                  run_id="r1")
    assert (first.new, first.already_staged) == (2, 0)
    again = store.stage_movements([movement("a"), movement("c", qty="-1.5", at=T0 + timedelta(minutes=9))],
                                  run_id="r2")
    assert (again.new, again.already_staged) == (1, 1)
    rows = store.movements("2026-11-27", ["FR011"])
    assert [r.movement_key for r in rows] == ["a", "b", "c"]
    assert rows[2].quantity == Decimal("-1.5")
    assert rows[0].updated_at == T0
    window = store.movements("2026-11-27", ["FR011"], since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=9))
    assert [r.movement_key for r in window] == ["b"]
    assert store.movements("2026-11-27", ["US011"]) == []
    assert store.movements("2026-11-28", ["FR011"]) == []


def test_sku_mapping_is_persisted_replaced_and_forgotten(connector_db: ConnectorDatabase) -> None:
    store = StockStore(connector_db)
    assert store.sku_mapping("eu", "CUP-PORC-6") is None
    store.save_sku_mapping(SkuMapping("eu", "CUP-PORC-6", SkuStatus.NOT_FOUND, None))
    candidates = ({"variant_id": "gid://shopify/ProductVariant/1"}, {"variant_id": "gid://shopify/ProductVariant/2"})
    store.save_sku_mapping(SkuMapping("eu", "CUP-PORC-6", SkuStatus.AMBIGUOUS, None, candidates))
    found = store.sku_mapping("eu", "CUP-PORC-6")
    assert found is not None
    assert (found.status, list(found.candidates)) == (SkuStatus.AMBIGUOUS, list(candidates))
    store.save_sku_mapping(SkuMapping("eu", "CUP-PORC-6", SkuStatus.MAPPED, ITEM_A))
    mapped = store.sku_mapping("eu", "CUP-PORC-6")
    assert mapped is not None
    assert (mapped.status, mapped.inventory_item_id) == (SkuStatus.MAPPED, ITEM_A)
    assert store.sku_mapping("us", "CUP-PORC-6") is None  # per store
    assert store.sku_mapping("eu", "cup-porc-6") is None  # SKUs are case-sensitive
    store.forget_sku_mapping("eu", "CUP-PORC-6")
    assert store.sku_mapping("eu", "CUP-PORC-6") is None


def test_push_audit_rows_round_trip(connector_db: ConnectorDatabase) -> None:
    store = StockStore(connector_db)
    row = StockPushRow(store="eu", partition="2026-11-27", x3_item="CUP-PORC-6", x3_site="FR011",
                       quantity_name="on_hand", outcome=PushOutcome.SET, inventory_item_id=ITEM_A, location_id=LYON,
                       x3_physical=Decimal("42.5"), pending_fulfilled=3, quantity=39, previous_quantity=40,
                       trigger={"vouchers": ["MR2611-00001"]}, operation_key="k",
                       adjustment_group="gid://shopify/InventoryAdjustmentGroup/1")
    store.record_pushes([row], run_id="run-1")
    (back,) = store.pushes("eu", "2026-11-27")
    assert (back.x3_physical, back.quantity, back.previous_quantity, back.run_id) == (Decimal("42.5"), 39, 40, "run-1")
    assert back.trigger == {"vouchers": ["MR2611-00001"]}
    assert store.pushes("us") == []


def restock(refund: int, *, item: str | None = "CUP-PORC-6", site: str | None = "FR011", store: str = "eu",
            reason: str | None = None) -> ShopifyRestock:
    return ShopifyRestock(
        restock_key=f"{store}|gid://shopify/Refund/{refund}|gid://shopify/LineItem/1", store=store,
        order_id="gid://shopify/Order/1", refund_id=f"gid://shopify/Refund/{refund}",
        line_item_id="gid://shopify/LineItem/1", restock_type="RETURN", quantity=2, item=item, location_id=LYON,
        site=site, refunded_at=T0, reason_code=reason, reason_message="why" if reason else None,
    )


def test_restock_markers_are_recorded_once_and_read_by_window_store_day_and_site(
    connector_db: ConnectorDatabase,
) -> None:
    """flows.md §4: one marker per restocked refund line, however many runs see the refund."""
    store = StockStore(connector_db)
    first = store.record_restocks([restock(1), restock(1)], recorded_at=T0, day="2026-11-27", run_id="r1")
    assert (first.new, first.already_staged) == (1, 0)
    again = store.record_restocks([restock(1)], recorded_at=T0 + timedelta(hours=1), day="2026-11-27", run_id="r2")
    assert (again.new, again.already_staged) == (0, 1)  # a re-run: nothing new, the first time is kept
    store.record_restocks([restock(2, site=None, reason="location_not_mapped"), restock(3, store="us")],
                          recorded_at=T0 + timedelta(minutes=1), day="2026-11-27", run_id="r3")

    [kept] = store.restocks("eu", "2026-11-27")[:1]
    assert (kept.recorded_at, kept.quantity, kept.item, kept.site, kept.actionable) == (T0, 2, "CUP-PORC-6",
                                                                                       "FR011", True)
    window = store.restocks_recorded(T0, T0 + timedelta(minutes=2))
    assert [r.refund_id[-1] for r in window] == ["1", "2", "3"]
    assert [r.actionable for r in window] == [True, False, True]
    assert [r.refund_id[-1] for r in store.restocks_recorded(T0 + timedelta(seconds=1), T0 + timedelta(hours=2))] \
        == ["2", "3"]
    only_eu = store.restocks_recorded(T0, T0 + timedelta(minutes=2), store="eu", day="2026-11-27", sites=["FR011"])
    assert [r.refund_id[-1] for r in only_eu] == ["1"]
    assert store.restocks_recorded(T0, T0 + timedelta(minutes=2), store="eu", day="2026-11-28") == []
