"""Stock sync state in the connector database: staged X3 stock movements, the persisted SKU → Shopify inventory
item map, the audit row of every push, and the pending fulfilled quantities read from the ledger.

Revision 0004 (`migrations/versions/0004_stock_sync.py`) creates the tables; a test checks the migrated schema
against these definitions.

- `stock_movements`: every X3 stock journal (STOJOU) row met, once (unique on its X3 key), with the business day
  of its update timestamp: the moved (item, site) pairs of a partition are read from here.
- `shopify_inventory_items`: per store and Shopify SKU (not X3 item: the mapping's `items.overrides` may make SKU
  `A` carry item `B`), the Shopify inventory item it maps to, or why it does not (no variant, several variants):
  looked up once, never guessed.
- `stock_pushes`: append-only, one row per (item, location) a run considered: what was set, from what, X3's
  figure and the pending units subtracted, the X3 movements that triggered it and the Shopify adjustment group.
  When the mapping makes another SKU carry the X3 item, that SKU is kept in the trigger JSON as `shopify_sku`
  (no column: `StockPushRow.shopify_sku` reads it back).
- `stock_restocks` (revision 0008): one marker per Shopify refund line that put units back on hand (restock
  type RETURN, CANCEL, LEGACY_RESTOCK), recorded by the invoice posting run: Shopify raised its level but X3 did
  not move, so the stock sync pushes the item's X3 figure again (the sensor picks the markers up by
  `recorded_at`). `item` is the X3 item of the line's SKU under the store-level item mapping (a note in
  `reason_message` names the SKU when they differ). A marker whose item or site cannot be told keeps its reason
  and triggers nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Column, Index, Integer, String, Table, Text, UniqueConstraint, select

from x3_shopify_dagster.domain.stock import ShopifyRestock, sum_pending_lines
from x3_shopify_dagster.storage.database import ConnectorDatabase
from x3_shopify_dagster.storage.ledger import (
    PostingLedger,
    RecordKind,
    RecordState,
    dialect_insert,
    to_json_safe,
    utc_now,
)
from x3_shopify_dagster.storage.ledger_schema import DecimalText, NullableJson, ledger_records
from x3_shopify_dagster.storage.schema import BigIntegerId, UtcDateTime, metadata

stock_movements = Table(
    "stock_movements",
    metadata,
    Column("id", BigIntegerId, primary_key=True, autoincrement=True),
    Column("movement_key", String(200), nullable=False),  # STOFCY|VCRTYP|VCRNUM|VCRLIN|MVTSEQ
    Column("site", String(32), nullable=False),  # STOFCY
    Column("item", String(64), nullable=False),  # ITMREF
    Column("transaction_type", Integer(), nullable=False),  # TRSTYP
    Column("quantity", DecimalText(), nullable=False),  # QTYSTU, signed
    Column("voucher", String(64), nullable=False),  # VCRNUM
    Column("updated_at", UtcDateTime(), nullable=False),  # UPDDATTIM
    Column("day", String(10), nullable=False),  # business day of updated_at (the partition's date)
    Column("first_seen_at", UtcDateTime(), nullable=False),
    Column("run_id", String(255), nullable=True),
    UniqueConstraint("movement_key", name="uq_stock_movements_movement_key"),
    Index("ix_stock_movements_day_site", "day", "site", "updated_at"),
)

shopify_inventory_items = Table(
    "shopify_inventory_items",
    metadata,
    Column("store", String(255), nullable=False),
    Column("sku", String(255), nullable=False),
    Column("status", String(16), nullable=False),  # mapped, not_found, ambiguous
    Column("inventory_item_id", String(255), nullable=True),  # set when mapped
    Column("candidates", NullableJson, nullable=True),  # the variants found, when ambiguous
    Column("resolved_at", UtcDateTime(), nullable=False),
    UniqueConstraint("store", "sku", name="uq_shopify_inventory_items_store_sku"),
)

stock_pushes = Table(
    "stock_pushes",
    metadata,
    Column("id", BigIntegerId, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime(), nullable=False),
    Column("run_id", String(255), nullable=True),
    Column("store", String(255), nullable=False),
    Column("partition", String(64), nullable=False),  # business day of the movements that triggered it
    Column("x3_item", String(64), nullable=False),
    Column("x3_site", String(32), nullable=False),
    Column("inventory_item_id", String(255), nullable=True),
    Column("location_id", String(255), nullable=True),
    Column("quantity_name", String(16), nullable=False),  # on_hand or available
    Column("x3_physical", DecimalText(), nullable=True),
    Column("pending_fulfilled", Integer(), nullable=True),
    Column("quantity", Integer(), nullable=True),  # what was (or would have been) set
    Column("previous_quantity", Integer(), nullable=True),  # Shopify's quantity read before (changeFromQuantity)
    Column("outcome", String(16), nullable=False),  # set, unchanged, failed
    Column("reason_code", String(64), nullable=True),
    Column("reason_message", Text(), nullable=True),
    Column("trigger", NullableJson, nullable=True),  # the X3 movements that moved this (item, site)
    Column("operation_key", String(255), nullable=True),  # ledger_operations.key of the write
    Column("adjustment_group", String(255), nullable=True),  # Shopify InventoryAdjustmentGroup GID
    Index("ix_stock_pushes_store_partition", "store", "partition", "id"),
)

stock_restocks = Table(
    "stock_restocks",
    metadata,
    Column("id", BigIntegerId, primary_key=True, autoincrement=True),
    Column("restock_key", String(255), nullable=False),  # store|refund id|line item id
    Column("store", String(255), nullable=False),
    Column("order_id", String(255), nullable=False),
    Column("refund_id", String(255), nullable=False),
    Column("line_item_id", String(255), nullable=False),
    Column("restock_type", String(32), nullable=False),  # RETURN, CANCEL, LEGACY_RESTOCK
    Column("quantity", Integer(), nullable=False),
    Column("item", String(255), nullable=True),  # the X3 item of the line's SKU; None: none (see reason)
    Column("location_id", String(255), nullable=True),  # the Shopify location restocked
    Column("site", String(32), nullable=True),  # the X3 site that location follows; None: not mapped (see reason)
    Column("refunded_at", UtcDateTime(), nullable=True),
    Column("recorded_at", UtcDateTime(), nullable=False),  # the connector's clock: what the stock sensor polls
    Column("day", String(10), nullable=False),  # business day of recorded_at (the stock partition's date)
    Column("reason_code", String(64), nullable=True),
    Column("reason_message", Text(), nullable=True),
    Column("run_id", String(255), nullable=True),
    UniqueConstraint("restock_key", name="uq_stock_restocks_restock_key"),
    Index("ix_stock_restocks_recorded_at", "recorded_at"),
    Index("ix_stock_restocks_store_day", "store", "day", "recorded_at"),
)


# ------------------------------------------------------------------------------------------ pending quantities
def pending_fulfilled_quantities(ledger: PostingLedger, store: str) -> dict[tuple[str, str], int]:
    """Units fulfilled in Shopify whose X3 delivery is not validated yet, per (inventory item GID, location GID).

    Sums the `source_payload` lines of the store's FULFILLMENT records whose state is neither `delivered` nor
    `skipped` (a failed delivery still counts: its units have left the shelf but X3 still holds them); a
    CANCELLED fulfilment counts zero. flows.md §4.
    """
    query = select(ledger_records.c.source_payload).where(
        ledger_records.c.store == store,
        ledger_records.c.kind == RecordKind.FULFILLMENT.value,
        ledger_records.c.state.not_in([RecordState.DELIVERED.value, RecordState.SKIPPED.value]),
    )
    with ledger.database.transaction() as connection:
        payloads = [row[0] for row in connection.execute(query) if isinstance(row[0], Mapping)]
    return sum_pending_lines(payloads)


# ------------------------------------------------------------------------------------------ movements
@dataclass(frozen=True)
class StockMovementRow:
    movement_key: str
    site: str
    item: str
    transaction_type: int
    quantity: Decimal
    voucher: str
    updated_at: datetime
    day: str


@dataclass(frozen=True)
class RestockRow:
    """A recorded Shopify restock marker (see `stock_restocks`)."""

    restock_key: str
    store: str
    order_id: str
    refund_id: str
    line_item_id: str
    restock_type: str
    quantity: int
    item: str | None
    location_id: str | None
    site: str | None
    refunded_at: datetime | None
    recorded_at: datetime
    day: str
    reason_code: str | None = None
    reason_message: str | None = None

    @property
    def actionable(self) -> bool:
        """It names an (item, site) to push again."""
        return self.item is not None and self.site is not None and self.reason_code is None


@dataclass(frozen=True)
class MovementCounts:
    new: int = 0
    already_staged: int = 0


class SkuStatus(enum.StrEnum):
    MAPPED = "mapped"
    NOT_FOUND = "not_found"
    AMBIGUOUS = "ambiguous"


@dataclass(frozen=True)
class SkuMapping:
    store: str
    sku: str
    status: SkuStatus
    inventory_item_id: str | None
    candidates: Sequence[Mapping[str, Any]] = field(default_factory=tuple)
    resolved_at: datetime | None = None


class PushOutcome(enum.StrEnum):
    SET = "set"
    UNCHANGED = "unchanged"
    FAILED = "failed"


@dataclass(frozen=True)
class StockPushRow:
    """One audit row (see `stock_pushes`)."""

    store: str
    partition: str
    x3_item: str
    x3_site: str
    quantity_name: str
    outcome: PushOutcome
    inventory_item_id: str | None = None
    location_id: str | None = None
    x3_physical: Decimal | None = None
    pending_fulfilled: int | None = None
    quantity: int | None = None
    previous_quantity: int | None = None
    reason_code: str | None = None
    reason_message: str | None = None
    trigger: Mapping[str, Any] | None = None
    operation_key: str | None = None
    adjustment_group: str | None = None
    at: datetime | None = None
    run_id: str | None = None
    shopify_sku: str | None = None  # the Shopify SKU when the mapping makes it differ from x3_item

    def trigger_json(self) -> dict[str, Any] | None:
        """What the `trigger` column holds: the trigger, plus `shopify_sku` when it differs from the item."""
        if self.trigger is None and self.shopify_sku is None:
            return None
        data = dict(self.trigger or {})
        if self.shopify_sku is not None:
            data["shopify_sku"] = self.shopify_sku
        return data


class StockStore:
    """Movements, the SKU map and the push audit. Thread-safe (each call is its own transaction)."""

    def __init__(self, db: ConnectorDatabase) -> None:
        self.database = db

    # -- movements ---------------------------------------------------------------------------------------
    def stage_movements(self, movements: Iterable[StockMovementRow], *, run_id: str | None) -> MovementCounts:
        """Keep each X3 movement once (overlapping windows and re-runs meet the same rows again)."""
        rows = [
            {
                "movement_key": m.movement_key, "site": m.site, "item": m.item,
                "transaction_type": m.transaction_type, "quantity": m.quantity, "voucher": m.voucher,
                "updated_at": m.updated_at, "day": m.day, "first_seen_at": utc_now(), "run_id": run_id,
            }
            for m in {m.movement_key: m for m in movements}.values()
        ]
        return self._insert_absent(stock_movements, "movement_key", rows)

    def movements(
        self, day: str, sites: Iterable[str], *, since: datetime | None = None, until: datetime | None = None
    ) -> list[StockMovementRow]:
        """Movements of a business day at these sites (optionally only those updated in [since, until))."""
        c = stock_movements.c
        query = select(stock_movements).where(c.day == day, c.site.in_(sorted(set(sites))))
        if since is not None:
            query = query.where(c.updated_at >= since)
        if until is not None:
            query = query.where(c.updated_at < until)
        with self.database.transaction() as connection:
            rows = connection.execute(query.order_by(c.updated_at, c.movement_key)).all()
        return [
            StockMovementRow(r.movement_key, r.site, r.item, r.transaction_type, r.quantity, r.voucher,
                             r.updated_at, r.day)
            for r in rows
        ]

    # -- Shopify restocks -----------------------------------------------------------------------------------
    def record_restocks(
        self, restocks: Iterable[ShopifyRestock], *, recorded_at: datetime, day: str, run_id: str | None
    ) -> MovementCounts:
        """Keep one marker per restocked refund line: a re-run, a replay or a later version of the order meets
        the same lines again and records nothing new (the first marker keeps its time)."""
        rows = [
            {
                "restock_key": r.restock_key, "store": r.store, "order_id": r.order_id, "refund_id": r.refund_id,
                "line_item_id": r.line_item_id, "restock_type": r.restock_type, "quantity": r.quantity,
                "item": r.item, "location_id": r.location_id, "site": r.site, "refunded_at": r.refunded_at,
                "recorded_at": recorded_at, "day": day, "reason_code": r.reason_code,
                "reason_message": r.reason_message, "run_id": run_id,
            }
            for r in {r.restock_key: r for r in restocks}.values()
        ]
        return self._insert_absent(stock_restocks, "restock_key", rows)

    def _insert_absent(self, table: Table, key: str, rows: list[dict[str, Any]]) -> MovementCounts:
        """Insert the rows whose `key` is not stored yet (one transaction, 500 rows a statement); count both."""
        if not rows:
            return MovementCounts()
        new = 0
        with self.database.transaction(write=True) as connection:
            for start in range(0, len(rows), 500):
                statement = dialect_insert(connection, table).values(rows[start:start + 500])
                statement = statement.on_conflict_do_nothing(index_elements=[key])
                new += len(connection.execute(statement.returning(table.c.id)).all())
        return MovementCounts(new=new, already_staged=len(rows) - new)

    def restocks_recorded(
        self, since: datetime, until: datetime, *, store: str | None = None, day: str | None = None,
        sites: Iterable[str] | None = None,
    ) -> list[RestockRow]:
        """Markers recorded in [since, until), oldest first (optionally one store's, one day's, these sites')."""
        c = stock_restocks.c
        query = select(stock_restocks).where(c.recorded_at >= since, c.recorded_at < until)
        if store is not None:
            query = query.where(c.store == store)
        if day is not None:
            query = query.where(c.day == day)
        if sites is not None:
            query = query.where(c.site.in_(sorted(set(sites))))
        with self.database.transaction() as connection:
            rows = connection.execute(query.order_by(c.recorded_at, c.restock_key)).all()
        return [_restock_row(r) for r in rows]

    def restocks(self, store: str, day: str | None = None) -> list[RestockRow]:
        """A store's markers (optionally one business day's), oldest first: the audit."""
        c = stock_restocks.c
        query = select(stock_restocks).where(c.store == store)
        if day is not None:
            query = query.where(c.day == day)
        with self.database.transaction() as connection:
            rows = connection.execute(query.order_by(c.recorded_at, c.restock_key)).all()
        return [_restock_row(r) for r in rows]

    # -- SKU map -----------------------------------------------------------------------------------------
    def sku_mapping(self, store: str, sku: str) -> SkuMapping | None:
        c = shopify_inventory_items.c
        with self.database.transaction() as connection:
            row = connection.execute(
                select(shopify_inventory_items).where(c.store == store, c.sku == sku)
            ).one_or_none()
        if row is None:
            return None
        return SkuMapping(row.store, row.sku, SkuStatus(row.status), row.inventory_item_id,
                          tuple(row.candidates or ()), row.resolved_at)

    def save_sku_mapping(self, mapping: SkuMapping) -> SkuMapping:
        """Insert or replace the store's mapping of one SKU."""
        resolved_at = mapping.resolved_at or utc_now()
        values = {
            "store": mapping.store, "sku": mapping.sku, "status": mapping.status.value,
            "inventory_item_id": mapping.inventory_item_id,
            "candidates": to_json_safe(list(mapping.candidates)) if mapping.candidates else None,
            "resolved_at": resolved_at,
        }
        with self.database.transaction(write=True) as connection:
            statement = dialect_insert(connection, shopify_inventory_items).values(values)
            statement = statement.on_conflict_do_update(
                index_elements=["store", "sku"],
                set_={k: statement.excluded[k] for k in ("status", "inventory_item_id", "candidates", "resolved_at")},
            )
            connection.execute(statement)
        return SkuMapping(mapping.store, mapping.sku, mapping.status, mapping.inventory_item_id,
                          tuple(mapping.candidates), resolved_at)

    def forget_sku_mapping(self, store: str, sku: str) -> None:
        """Drop a mapping Shopify no longer accepts (the inventory item was deleted): the next run looks it up."""
        c = shopify_inventory_items.c
        with self.database.transaction(write=True) as connection:
            connection.execute(shopify_inventory_items.delete().where(c.store == store, c.sku == sku))

    # -- audit -------------------------------------------------------------------------------------------
    def record_pushes(self, rows: Sequence[StockPushRow], *, run_id: str | None) -> None:
        if not rows:
            return
        now = utc_now()
        values = [
            {
                "at": r.at or now, "run_id": r.run_id or run_id, "store": r.store, "partition": r.partition,
                "x3_item": r.x3_item, "x3_site": r.x3_site, "inventory_item_id": r.inventory_item_id,
                "location_id": r.location_id, "quantity_name": r.quantity_name, "x3_physical": r.x3_physical,
                "pending_fulfilled": r.pending_fulfilled, "quantity": r.quantity,
                "previous_quantity": r.previous_quantity, "outcome": r.outcome.value, "reason_code": r.reason_code,
                "reason_message": r.reason_message,
                "trigger": to_json_safe(trigger) if (trigger := r.trigger_json()) is not None else None,
                "operation_key": r.operation_key, "adjustment_group": r.adjustment_group,
            }
            for r in rows
        ]
        with self.database.transaction(write=True) as connection:
            connection.execute(stock_pushes.insert(), values)

    def pushes(self, store: str, partition: str | None = None) -> list[StockPushRow]:
        c = stock_pushes.c
        query = select(stock_pushes).where(c.store == store)
        if partition is not None:
            query = query.where(c.partition == partition)
        with self.database.transaction() as connection:
            rows = connection.execute(query.order_by(c.id)).all()
        return [
            StockPushRow(
                store=r.store, partition=r.partition, x3_item=r.x3_item, x3_site=r.x3_site,
                quantity_name=r.quantity_name, outcome=PushOutcome(r.outcome), inventory_item_id=r.inventory_item_id,
                location_id=r.location_id, x3_physical=r.x3_physical, pending_fulfilled=r.pending_fulfilled,
                quantity=r.quantity, previous_quantity=r.previous_quantity, reason_code=r.reason_code,
                reason_message=r.reason_message, trigger=r.trigger, operation_key=r.operation_key,
                adjustment_group=r.adjustment_group, at=r.at, run_id=r.run_id,
                shopify_sku=(r.trigger or {}).get("shopify_sku"),
            )
            for r in rows
        ]


def _restock_row(r: Any) -> RestockRow:
    return RestockRow(
        restock_key=r.restock_key, store=r.store, order_id=r.order_id, refund_id=r.refund_id,
        line_item_id=r.line_item_id, restock_type=r.restock_type, quantity=r.quantity, item=r.item,
        location_id=r.location_id, site=r.site, refunded_at=r.refunded_at, recorded_at=r.recorded_at, day=r.day,
        reason_code=r.reason_code, reason_message=r.reason_message,
    )
