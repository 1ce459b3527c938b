"""X3 stock → Shopify stock levels for the (item, site) pairs that moved, never overselling (flows.md §4).

For one store:

1. `refresh_pending(store)` (optional hook: bring the fulfilment records up to date), then read the pending
   fulfilled quantities from the ledger — BEFORE X3's stock. If a delivery is validated in X3 between the two
   reads, its units are subtracted twice (once as pending, once by X3's lower stock): Shopify shows fewer units
   than it could, which under-sells safely. Reading X3 first would, in the same race, subtract them zero times
   and oversell.
2. Read X3's authoritative stock (ITMMVT) for the moved pairs: never a running sum of movement deltas.
3. Map each X3 item to its Shopify SKU through the mapping's store-level `items` section (reverse of
   `items.overrides` / `items.identity`: SKU `A` overridden to item `B` carries `B`'s stock; no mapping file: the
   SKU is the item code), the SKU to a Shopify inventory item (persisted per SKU; zero or several matches fail
   with a reason, never a guess) and each site to the store's location (configuration).
4. Read Shopify's current quantity, compute X3 physical - pending (floored, ≥ 0), and set what differs with
   `inventorySetQuantities` (≤ 250 per call, `changeFromQuantity` = what was read), exactly once through
   `run_exactly_once`. CHANGE_FROM_QUANTITY_STALE (something moved Shopify in between) re-reads and retries.
5. Record one audit row per (item, location): set, unchanged or failed with reason.

Shopify restocks (a refund of type RETURN, CANCEL or LEGACY_RESTOCK) raise Shopify's level while X3 does not move:
the posting run records a marker per restocked line (`RestockRecorder`), and the (item, site) it names is pushed
again like a moved one, with the same formula, so Shopify comes back to X3 physical - pending.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from x3_shopify_dagster.domain.mapping import ItemMapping
from x3_shopify_dagster.domain.shopify_orders import ShopifyOrder
from x3_shopify_dagster.domain.stock import (
    StockSkuReason,
    StockSkus,
    StockTarget,
    sellable_quantity,
    shopify_restocks,
    stock_skus,
)
from x3_shopify_dagster.domain.windows import business_day
from x3_shopify_dagster.shopify.errors import (
    ShopifyAuthError,
    ShopifyError,
    ShopifyThrottledError,
    ShopifyUserErrors,
)
from x3_shopify_dagster.shopify.inventory import (
    MAX_QUANTITIES_PER_CALL,
    InventoryGateway,
    LevelReading,
    QuantityToSet,
    set_quantities_input,
)
from x3_shopify_dagster.storage.exactly_once import (
    ExactlyOnceError,
    OutcomeStatus,
    RemoteResult,
    SendFailure,
    run_exactly_once,
)
from x3_shopify_dagster.storage.ledger import PostingLedger
from x3_shopify_dagster.storage.stock import (
    MovementCounts,
    PushOutcome,
    RestockRow,
    SkuMapping,
    SkuStatus,
    StockMovementRow,
    StockPushRow,
    StockStore,
    pending_fulfilled_quantities,
)
from x3_shopify_dagster.x3.models import X3ItemSiteStock

log = logging.getLogger(__name__)

APP_URI = "gid://x3-shopify-dagster"
_KEY_NAMESPACE = uuid.UUID("5b0f3f0c-6f1e-4a53-9d4e-7c1a3f0b2d11")
STALE = "CHANGE_FROM_QUANTITY_STALE"


class FailureCode:
    SKU_NOT_FOUND = "sku_not_found"
    SKU_AMBIGUOUS = "sku_ambiguous"
    ITEM_NOT_MAPPED_TO_SKU = StockSkuReason.ITEM_NOT_MAPPED_TO_SKU
    ITEM_MAPPED_TO_SEVERAL_SKUS = StockSkuReason.ITEM_MAPPED_TO_SEVERAL_SKUS
    LOCATION_NOT_MAPPED = "location_not_mapped"
    NOT_STOCKED = "not_stocked_at_location"
    INVENTORY_ITEM_MISSING = "inventory_item_missing"
    STALE_RETRIES_EXHAUSTED = "stale_retries_exhausted"
    SHOPIFY_REFUSED = "shopify_refused"
    OUTCOME_UNKNOWN = "outcome_unknown"
    X3_STOCK_NOT_FOUND = "x3_stock_not_found"


class X3StockReader(Protocol):
    def stock_by_item_site(self, pairs: Iterable[tuple[str, str]]) -> Mapping[tuple[str, str], X3ItemSiteStock]: ...


@dataclass(frozen=True)
class MovedItemSite:
    """An X3 (item, site) to push: the X3 movements that moved it and the Shopify restocks that put units back on
    Shopify's shelf without X3 moving (the push's trigger)."""

    item: str
    site: str
    movement_keys: tuple[str, ...]
    vouchers: tuple[str, ...]
    latest_updated_at: datetime
    restock_keys: tuple[str, ...] = ()
    refunds: tuple[str, ...] = ()
    latest_key: str = ""  # the latest trigger, X3 movement or restock (part of the write's idempotency key)

    @property
    def restock_only(self) -> bool:
        """Nothing moved in X3: only Shopify restocks ask for this push."""
        return not self.movement_keys

    @property
    def trigger(self) -> dict[str, Any]:
        trigger: dict[str, Any] = {
            "movements": list(self.movement_keys[-20:]), "movement_count": len(self.movement_keys),
            "vouchers": list(self.vouchers[-20:]), "latest_updated_at": self.latest_updated_at.isoformat(),
        }
        if self.restock_keys:
            trigger.update(shopify_restocks=list(self.restock_keys[-20:]), restock_count=len(self.restock_keys),
                           refunds=list(self.refunds[-20:]))
        return trigger


def moved_item_sites(
    movements: Iterable[StockMovementRow], restocks: Iterable[RestockRow] = ()
) -> list[MovedItemSite]:
    """Group X3 movements and Shopify restock markers by (item, site), oldest first within each pair, pairs in key
    order. Markers that name no (item, site) (recorded with a reason) trigger nothing."""
    grouped: dict[tuple[str, str], list[StockMovementRow]] = {}
    restocked: dict[tuple[str, str], list[RestockRow]] = {}
    for movement in movements:
        grouped.setdefault((movement.item, movement.site), []).append(movement)
    for restock in restocks:
        if restock.actionable and restock.item is not None and restock.site is not None:
            restocked.setdefault((restock.item, restock.site), []).append(restock)
    moved = []
    for item, site in sorted(grouped.keys() | restocked.keys()):
        rows = sorted(grouped.get((item, site), []), key=lambda m: (m.updated_at, m.movement_key))
        marks = sorted(restocked.get((item, site), []), key=lambda r: (r.recorded_at, r.restock_key))
        vouchers = tuple(dict.fromkeys(m.voucher for m in rows))
        triggers = sorted([(m.updated_at, m.movement_key) for m in rows] + [(r.recorded_at, r.restock_key)
                                                                           for r in marks])
        moved.append(MovedItemSite(
            item, site, tuple(m.movement_key for m in rows), vouchers, triggers[-1][0],
            restock_keys=tuple(r.restock_key for r in marks), refunds=tuple(dict.fromkeys(r.refund_id for r in marks)),
            latest_key=triggers[-1][1],
        ))
    return moved


class RestockRecorder:
    """Records a marker for each restocked line of the refunds a posting run sees (flows.md §4): Shopify put the
    units back on hand, X3 did not move, so the stock sync must push the item's X3 figure again. Idempotent: a
    marker per (store, refund, line item), whatever the number of runs that see it.

    ``items`` is each store's store-level item mapping (``Mapping.for_customer(None, store).items``): a restock of
    SKU `A` overridden to X3 item `B` marks `B`; a SKU mapped to no item is recorded with its reason. A store
    without one (no mapping file) keeps SKU = X3 item code."""

    def __init__(
        self, stock_store: StockStore, locations: Mapping[str, Mapping[str, str]], *, clock: Callable[[], datetime],
        business_timezone: str, items: Mapping[str, ItemMapping] | None = None,
    ) -> None:
        self.stock_store = stock_store
        self.locations = {store: dict(sites) for store, sites in locations.items()}
        self.items = dict(items or {})
        self.clock = clock
        self.timezone = business_timezone

    def record(self, store: str, orders: Iterable[ShopifyOrder], *, run_id: str | None) -> MovementCounts:
        sites, items = self.locations.get(store, {}), self.items.get(store)
        restocks = [r for order in orders for r in shopify_restocks(store, order, sites, items)]
        if not restocks:
            return MovementCounts()
        # The connector's clock, not Shopify's refund time: the stock sensor's watermark may already be past it.
        now = self.clock()
        return self.stock_store.record_restocks(
            restocks, recorded_at=now, day=business_day(now, self.timezone).isoformat(), run_id=run_id
        )


@dataclass
class _Plan:
    """One (item, location) on its way to Shopify."""

    moved: MovedItemSite
    sku: str  # the Shopify SKU carrying the X3 item (the item code itself unless the mapping says otherwise)
    inventory_item_id: str
    location_id: str
    target: StockTarget
    reading: LevelReading | None = None

    @property
    def shopify_sku(self) -> str | None:
        """The SKU when it differs from the X3 item code (audit rows show both then)."""
        return self.sku if self.sku != self.moved.item else None


@dataclass
class StockPushReport:
    store: str
    partition: str
    quantity_name: str
    items_moved: int = 0
    rows: list[StockPushRow] = field(default_factory=list)
    stale_retries: int = 0
    calls: int = 0
    adjustment_groups: list[str] = field(default_factory=list)
    in_doubt: int = 0

    def count(self, outcome: PushOutcome) -> int:
        return sum(1 for r in self.rows if r.outcome is outcome)

    @property
    def quantities_set(self) -> int:
        return self.count(PushOutcome.SET)

    @property
    def unchanged(self) -> int:
        return self.count(PushOutcome.UNCHANGED)

    @property
    def failures(self) -> list[StockPushRow]:
        return [r for r in self.rows if r.outcome is PushOutcome.FAILED]

    @property
    def unmapped_skus(self) -> list[str]:
        """The X3 items with no single Shopify variant to carry their stock (`ITEM (SKU s)` when the mapping
        names another SKU)."""
        codes = {FailureCode.SKU_NOT_FOUND, FailureCode.SKU_AMBIGUOUS, FailureCode.ITEM_NOT_MAPPED_TO_SKU,
                 FailureCode.ITEM_MAPPED_TO_SEVERAL_SKUS}
        return sorted({f"{r.x3_item} (SKU {r.shopify_sku})" if r.shopify_sku else r.x3_item
                       for r in self.failures if r.reason_code in codes})


def classify_shopify_error(error: Exception) -> SendFailure:
    """userErrors: refused, nothing applied. Auth and exhausted throttling: refused before execution. Anything
    else (timeouts, dropped connections, 5xx): the write may have happened."""
    if isinstance(error, ShopifyUserErrors):
        return SendFailure.REFUSED
    if isinstance(error, ShopifyAuthError | ShopifyThrottledError):
        return SendFailure.NOT_EXECUTED
    return SendFailure.IN_DOUBT


class StockPusher:
    def __init__(
        self,
        *,
        ledger: PostingLedger,
        stock_store: StockStore,
        x3: X3StockReader,
        inventory: InventoryGateway,
        store: str,
        locations: Mapping[str, str],
        owner: str,
        quantity_name: str = "on_hand",
        reason: str = "correction",
        lease_s: float = 900.0,
        stale_retries: int = 3,
        refresh_pending: Callable[[str], None] | None = None,
        items: ItemMapping | None = None,
    ) -> None:
        self.ledger = ledger
        self.stock_store = stock_store
        self.x3 = x3
        self.inventory = inventory
        self.store = store
        self.locations = dict(locations)
        self.owner = owner
        self.quantity_name = quantity_name
        self.reason = reason
        self.lease_s = lease_s
        self.stale_retries = stale_retries
        self.refresh_pending = refresh_pending
        # The store-level item mapping (defaults + stores.<store>): which SKU carries an X3 item. None (no mapping
        # file): the SKU is the X3 item code.
        self.items = items
        self._partition = ""

    # ------------------------------------------------------------------------------------------- the flow
    def push(self, moved: Sequence[MovedItemSite], partition: str) -> StockPushReport:
        report = StockPushReport(self.store, partition, self.quantity_name, items_moved=len(moved))
        self._partition = partition
        if not moved:
            return report
        if self.refresh_pending is not None:
            self.refresh_pending(self.store)
        # Pending FIRST, X3 second: a delivery validated between the two reads is then subtracted twice
        # (under-sells, safe) instead of not at all (oversells). See the module docstring.
        pending = pending_fulfilled_quantities(self.ledger, self.store)
        x3_stock = self.x3.stock_by_item_site((m.item, m.site) for m in moved)

        plans: list[_Plan] = []
        for entry in moved:
            plan = self._plan(entry, x3_stock, pending, report)
            if plan is not None:
                plans.append(plan)
        self._read(plans, report)
        to_set = []
        for plan in plans:
            if plan.reading is None:
                continue
            if plan.reading.quantity == plan.target.quantity:
                report.rows.append(self._row(plan, PushOutcome.UNCHANGED, previous=plan.reading.quantity))
            else:
                to_set.append(plan)
        for start in range(0, len(to_set), MAX_QUANTITIES_PER_CALL):
            self._set_batch(to_set[start : start + MAX_QUANTITIES_PER_CALL], partition, report)
        self.stock_store.record_pushes(report.rows, run_id=self.owner)
        return report

    def _plan(
        self, entry: MovedItemSite, x3_stock: Mapping[tuple[str, str], X3ItemSiteStock],
        pending: Mapping[tuple[str, str], int], report: StockPushReport,
    ) -> _Plan | None:
        location = self.locations.get(entry.site)
        if location is None:
            report.rows.append(self._failed(
                entry, FailureCode.LOCATION_NOT_MAPPED,
                f"X3 site {entry.site} has no Shopify location in store {self.store!r}: set "
                f"X3SD_STORES__{self.store.upper()}__LOCATIONS__{entry.site}=gid://shopify/Location/<id>."))
            return None
        resolved = self._resolve_sku(entry, location)
        if isinstance(resolved, StockPushRow):
            report.rows.append(resolved)
            return None
        sku, inventory_item_id = resolved
        stock = x3_stock.get((entry.item, entry.site))
        if stock is None and entry.restock_only:
            # Pushed only because Shopify restocked it, and X3 has never stocked the item there: the SKU may not be
            # an X3 item at all. Setting 0 would wipe a level X3 does not manage: left alone, with the reason.
            report.rows.append(self._failed(
                entry, FailureCode.X3_STOCK_NOT_FOUND,
                f"Shopify restocked SKU {sku}, but X3 has no stock record for item {entry.item} at site "
                f"{entry.site}: Shopify's level is left alone. If it is an X3 item, receive the return in X3 (its "
                "movement syncs the level); if not, nothing to do.", location, sku=sku))
            return None
        physical = stock.physical if stock is not None else Decimal(0)
        target = sellable_quantity(physical, pending.get((inventory_item_id, location), 0))
        return _Plan(entry, sku, inventory_item_id, location, target)

    def _resolve_sku(self, entry: MovedItemSite, location: str) -> tuple[str, str] | StockPushRow:
        """(SKU, inventory item GID) carrying the X3 item, or the failed audit row saying why there is none.

        The mapping names the candidate SKUs (domain.stock.stock_skus); each is looked up in Shopify (persisted
        per SKU). Exactly one on a variant carries the stock: a candidate on no variant is normal (the item code
        next to an override, an old SKU kept for old orders' refunds); several on variants are never guessed."""
        skus = stock_skus(self.items, entry.item, self.store)
        if skus.reason_code is not None:
            return self._failed(entry, skus.reason_code, skus.reason_message or "", location)
        looked_up = [(sku, self._sku_mapping(sku)) for sku in skus.candidates]
        on_variants = [(sku, m) for sku, m in looked_up if m.status is not SkuStatus.NOT_FOUND]
        if len(on_variants) > 1:
            return self._failed(entry, FailureCode.ITEM_MAPPED_TO_SEVERAL_SKUS,
                                skus.several_on_variants([sku for sku, _ in on_variants]), location)
        if not on_variants:
            return self._not_found(entry, location, skus)
        sku, mapping = on_variants[0]
        if mapping.status is not SkuStatus.MAPPED or mapping.inventory_item_id is None:
            return self._ambiguous(entry, location, skus, mapping)
        return sku, mapping.inventory_item_id

    def _sku_mapping(self, sku: str) -> SkuMapping:
        """The persisted mapping when it is a match; otherwise (first time, or not found / ambiguous before: the
        merchant may have fixed it since) ask Shopify and persist the answer."""
        known = self.stock_store.sku_mapping(self.store, sku)
        if known is not None and known.status is SkuStatus.MAPPED:
            return known
        matches = [m for m in self.inventory.variants_by_sku(sku) if m.inventory_item_id]
        items = {m.inventory_item_id for m in matches}
        if len(items) == 1:
            mapping = SkuMapping(self.store, sku, SkuStatus.MAPPED, matches[0].inventory_item_id)
        elif not items:
            mapping = SkuMapping(self.store, sku, SkuStatus.NOT_FOUND, None)
        else:
            mapping = SkuMapping(self.store, sku, SkuStatus.AMBIGUOUS, None, tuple(m.as_json() for m in matches))
        return self.stock_store.save_sku_mapping(mapping)

    def _read(self, plans: list[_Plan], report: StockPushReport) -> None:
        readings = self.inventory.read_levels(((p.inventory_item_id, p.location_id) for p in plans),
                                              self.quantity_name)
        for plan in plans:
            reading = readings.get((plan.inventory_item_id, plan.location_id))
            if reading is None:
                # The inventory item is gone (variant deleted): forget the mapping so the next run looks it up.
                # The persisted mapping is keyed by SKU (the one looked up), not by X3 item.
                self.stock_store.forget_sku_mapping(self.store, plan.sku)
                report.rows.append(self._row(
                    plan, PushOutcome.FAILED, code=FailureCode.INVENTORY_ITEM_MISSING,
                    message=f"Shopify has no inventory item {plan.inventory_item_id} (SKU {plan.sku}{_of(plan)}) "
                    "any more; the SKU will be looked up again on the next run."))
            elif not reading.stocked or reading.quantity is None:
                report.rows.append(self._row(
                    plan, PushOutcome.FAILED, code=FailureCode.NOT_STOCKED,
                    message=f"SKU {plan.sku}{_of(plan)} is not stocked at location {plan.location_id}: activate it "
                    "at that location in Shopify (Products → Inventory), then re-materialize the partition."))
            else:
                plan.reading = reading

    # ------------------------------------------------------------------------------------------- writes
    def _set_batch(self, batch: list[_Plan], partition: str, report: StockPushReport) -> None:
        attempt = 0
        while batch:
            outcome_rows, stale = self._send(batch, partition, report)
            report.rows.extend(outcome_rows)
            if not stale:
                return
            if attempt >= self.stale_retries:
                for plan in stale:
                    report.rows.append(self._row(
                        plan, PushOutcome.FAILED, previous=plan.reading.quantity if plan.reading else None,
                        code=FailureCode.STALE_RETRIES_EXHAUSTED,
                        message=f"Shopify's quantity kept changing while it was set ({attempt + 1} attempts); "
                        "the next stock movement or a re-materialization sets it again."))
                return
            attempt += 1
            report.stale_retries += 1
            # Something moved Shopify between our read and our write: read again, set again.
            self._read(stale, report)
            batch = []
            for plan in stale:
                if plan.reading is None:
                    continue  # failed in _read
                if plan.reading.quantity == plan.target.quantity:
                    report.rows.append(self._row(plan, PushOutcome.UNCHANGED, previous=plan.reading.quantity))
                else:
                    batch.append(plan)

    def _send(
        self, batch: list[_Plan], partition: str, report: StockPushReport
    ) -> tuple[list[StockPushRow], list[_Plan]]:
        """One exactly-once call for `batch`. Returns the audit rows and the plans to retry after a stale read."""
        quantities = [
            QuantityToSet(p.inventory_item_id, p.location_id, p.target.quantity,
                          p.reading.quantity if p.reading else None)
            for p in batch
        ]
        uri = reference_document_uri(batch_vouchers(batch), batch_refunds(batch))
        idempotency_key = self._idempotency_key(batch, quantities)
        key = f"shopify:inventory_set:{self.store}:{idempotency_key}"

        def send() -> RemoteResult:
            report.calls += 1
            group = self.inventory.set_quantities(
                name=self.quantity_name, reason=self.reason, reference_document_uri=uri, quantities=quantities,
                idempotency_key=idempotency_key,
            )
            return RemoteResult(group.id, {"adjustment_group": group.id, "created_at": group.created_at,
                                           "changes": len(group.changes)})

        def lookup() -> RemoteResult | None:
            # An earlier attempt's outcome is unknown: if every level already shows its target, it was applied.
            # Otherwise the write is sent again with the SAME key: Shopify answers a repeated key with the first
            # result instead of applying it twice, and changeFromQuantity refuses it if anything moved since.
            now = self.inventory.read_levels(((q.inventory_item_id, q.location_id) for q in quantities),
                                             self.quantity_name)
            if all((r := now.get((q.inventory_item_id, q.location_id))) is not None and r.quantity == q.quantity
                   for q in quantities):
                return RemoteResult(None, {"adopted": "every level already at its target"})
            return None

        summary = {
            "input": set_quantities_input(self.quantity_name, self.reason, uri, quantities),
            "triggers": {f"{p.moved.item}@{p.moved.site}": p.moved.trigger for p in batch},
            "partition": partition,
        }
        try:
            outcome = run_exactly_once(
                self.ledger, key, owner=self.owner, lease_s=self.lease_s, send=send, lookup=lookup,
                remote_reference=idempotency_key, request_summary=summary,
                classify_error=classify_shopify_error, retry_refused=False,
            )
        except (ExactlyOnceError, ShopifyError) as exc:
            report.in_doubt += len(batch)
            message = (f"The write's outcome is not known yet ({exc}); the next run looks it up with key "
                       f"{idempotency_key} before anything is sent again.")
            return [self._row(p, PushOutcome.FAILED, previous=q.change_from, code=FailureCode.OUTCOME_UNKNOWN,
                              message=message, operation_key=key)
                    for p, q in zip(batch, quantities, strict=True)], []
        if outcome.done:
            group = outcome.document
            if group:
                report.adjustment_groups.append(group)
            return [self._row(p, PushOutcome.SET, previous=q.change_from, operation_key=key, group=group)
                    for p, q in zip(batch, quantities, strict=True)], []
        error = outcome.exception
        codes = error.codes if isinstance(error, ShopifyUserErrors) else ()
        if outcome.status is OutcomeStatus.REFUSED and codes and all(c == STALE for c in codes):
            return [], batch
        message = str(error) if error is not None else str((outcome.error or {}).get("message", "refused"))
        return [self._row(p, PushOutcome.FAILED, previous=q.change_from, code=FailureCode.SHOPIFY_REFUSED,
                          message=f"Shopify refused the quantity: {message}", operation_key=key)
                for p, q in zip(batch, quantities, strict=True)], []

    def _idempotency_key(self, batch: list[_Plan], quantities: list[QuantityToSet]) -> str:
        """Deterministic: the same read of Shopify and the same X3 trigger give the same key, so a re-run after a
        crash finds the operation in doubt and looks it up; a later change (another read) gives a new key."""
        material = {
            "store": self.store, "name": self.quantity_name, "reason": self.reason,
            "quantities": sorted(
                [q.inventory_item_id, q.location_id, q.quantity, q.change_from,
                 p.reading.updated_at if p.reading else None, p.moved.latest_key]
                for p, q in zip(batch, quantities, strict=True)
            ),
        }
        digest = hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()
        return str(uuid.uuid5(_KEY_NAMESPACE, digest))

    # ------------------------------------------------------------------------------------------- audit rows
    def _row(
        self, plan: _Plan, outcome: PushOutcome, *, previous: int | None = None, code: str | None = None,
        message: str | None = None, operation_key: str | None = None, group: str | None = None,
    ) -> StockPushRow:
        return StockPushRow(
            store=self.store, partition=self._partition, x3_item=plan.moved.item, x3_site=plan.moved.site,
            quantity_name=self.quantity_name, outcome=outcome, inventory_item_id=plan.inventory_item_id,
            location_id=plan.location_id, x3_physical=plan.target.x3_physical,
            pending_fulfilled=plan.target.pending_fulfilled, quantity=plan.target.quantity,
            previous_quantity=previous, reason_code=code, reason_message=message, trigger=plan.moved.trigger,
            operation_key=operation_key, adjustment_group=group, shopify_sku=plan.shopify_sku,
        )

    def _failed(self, entry: MovedItemSite, code: str, message: str, location: str | None = None, *,
                sku: str | None = None) -> StockPushRow:
        return StockPushRow(
            store=self.store, partition=self._partition, x3_item=entry.item, x3_site=entry.site,
            quantity_name=self.quantity_name, outcome=PushOutcome.FAILED, location_id=location,
            reason_code=code, reason_message=message, trigger=entry.trigger,
            shopify_sku=sku if sku is not None and sku != entry.item else None,
        )

    def _ambiguous(self, entry: MovedItemSite, location: str, skus: StockSkus, mapping: SkuMapping) -> StockPushRow:
        sku = mapping.sku
        found = ", ".join(f"{c.get('display_name') or c.get('variant_id')} ({c.get('variant_id')})"
                          for c in mapping.candidates)
        carries = ("the X3 item code" if sku == entry.item
                   else f"SKU {sku} (X3 item {entry.item} in store {self.store!r} through {skus.key_of(sku)})")
        return self._failed(
            entry, FailureCode.SKU_AMBIGUOUS,
            f"SKU {sku}{'' if sku == entry.item else f' (X3 item {entry.item})'} is on {len(mapping.candidates)} "
            f"Shopify variants ({found}); the connector never guesses: give each variant its own SKU in Shopify so "
            f"exactly one carries {carries}.", location, sku=sku)

    def _not_found(self, entry: MovedItemSite, location: str, skus: StockSkus) -> StockPushRow:
        if skus.candidates == (entry.item,):
            message = (f"No Shopify variant has SKU {entry.item} (SKUs are case-sensitive): set the X3 item code as "
                       "the variant's SKU in Shopify, or ignore this item if it is not sold online.")
            return self._failed(entry, FailureCode.SKU_NOT_FOUND, message, location)
        named = " or ".join(f"{sku} ({skus.key_of(sku)})" for sku in skus.candidates)
        message = (f"No Shopify variant has SKU {named}, the SKU(s) the mapping makes X3 item {entry.item} in store "
                   f"{self.store!r} (SKUs are case-sensitive): set that SKU on the variant in Shopify or correct "
                   f"items.overrides (under defaults or stores.{self.store}); or ignore this item if it is not "
                   "sold online.")
        only = skus.candidates[0] if len(skus.candidates) == 1 else None
        return self._failed(entry, FailureCode.SKU_NOT_FOUND, message, location, sku=only)


def _of(plan: _Plan) -> str:
    """`, X3 item B` after a SKU that is not the item code, for messages."""
    return f", X3 item {plan.moved.item}" if plan.shopify_sku else ""


def batch_vouchers(batch: Sequence[_Plan]) -> list[str]:
    return list(dict.fromkeys(v for p in batch for v in p.moved.vouchers))


def batch_refunds(batch: Sequence[_Plan]) -> list[str]:
    return list(dict.fromkeys(r for p in batch for r in p.moved.refunds))


def reference_document_uri(vouchers: Sequence[str], refunds: Sequence[str] = ()) -> str:
    """Names the document behind the change, in the merchant's inventory history: the X3 voucher when one document
    moved the batch, the latest voucher plus a count otherwise (the audit rows list them all); the Shopify refund
    whose restock X3 overrides when nothing moved in X3."""
    if not vouchers and refunds:
        latest_refund = _uri_safe(refunds[-1].rsplit("/", 1)[-1])
        more = f"?and_more={len(refunds) - 1}" if len(refunds) > 1 else ""
        return f"{APP_URI}/ShopifyRestock/{latest_refund}{more}"
    if not vouchers:
        return f"{APP_URI}/X3StockSync/unknown"
    latest = _uri_safe(vouchers[-1])
    if len(vouchers) == 1:
        return f"{APP_URI}/X3StockDocument/{latest}"
    return f"{APP_URI}/X3StockDocument/{latest}?and_more={len(vouchers) - 1}"


def _uri_safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text) or "_"
