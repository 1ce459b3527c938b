"""Issue 4 end to end: orders → invoices, fulfilments → deliveries and X3 stock → Shopify levels, chained through
the real Dagster definitions (sensors evaluated, their run requests materialized in-process) over HTTP against
both sandboxes.

Invariants proven:
- flows.md §4 "Stock never oversells": after every step, Shopify on_hand(X, location) <= X3 physical(X, site)
  - units fulfilled in Shopify whose X3 delivery is not validated yet; a stock push racing a fulfilment already
  subtracts it (the stock sync refreshes fulfilments before it reads the pending quantities).
- flows.md §2: one fulfilment = one validated delivery; a partial refund after posting = one credit memo, which
  moves no stock (docs/mapping.md "Restocks").
- flows.md §4 after a Shopify restock: the refund's restocked line is recorded by the orders run, and the stock
  sensor's next tick pushes X3's figure again, so Shopify comes back to X3 physical - pending with no replay.
- flows.md §3: re-runs, replays of every touched partition and faults injected on both sides create no second
  invoice, delivery, credit memo or inventory adjustment.

The item X is a product the test adds to the eu store (an X3 item the seeded Shopify orders never contain), so
the sandboxes' seeded history cannot blur the figures.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from sqlalchemy import update

from x3_shopify_dagster.definitions import build_definitions
from x3_shopify_dagster.defs.shopify.fulfillments import FULFILLMENTS_SENSOR_NAME
from x3_shopify_dagster.defs.shopify.sensors import SENSOR_NAME as ORDERS_SENSOR_NAME
from x3_shopify_dagster.defs.stock import STOCK_SENSOR_NAME
from x3_shopify_dagster.domain.fulfillments import delivery_reference
from x3_shopify_dagster.settings import StoreSettings
from x3_shopify_dagster.storage.ledger import RecordKind, RecordState
from x3_shopify_dagster.storage.ledger_schema import ledger_operations
from x3_shopify_dagster.storage.stock import PushOutcome, RestockRow, StockPushRow, pending_fulfilled_quantities

DEMO_MAPPING = Path(__file__).resolve().parents[2] / "x3_shopify_dagster" / "demo_mapping.yaml"
STORE, SITE = "eu", "FR011"
ITEM = "DESCALER-1L"  # an X3 item; added to the eu store's catalog by the test
CLAIRE = "claire.martin@bistro-lyon.example"  # FR0001 in X3, posting on_paid (demo mapping)
TARGETS = {
    ORDERS_SENSOR_NAME: ["shopify_orders", "x3_sales_invoices"],
    FULFILLMENTS_SENSOR_NAME: ["shopify_fulfillments", "x3_deliveries"],
    STOCK_SENSOR_NAME: ["x3_stock_movements", "shopify_inventory_levels"],
}


@dataclass
class Flows:
    """The three sensors and their runs, as the daemon would drive them, with the cursors kept between ticks."""

    runtime: Any
    shop: Any
    x3: Any
    instance: dg.DagsterInstance
    cursors: dict[str, str | None] = field(default_factory=dict)
    orders: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.defs = build_definitions(self.runtime.settings, runtime=self.runtime)

    def tick(self, sensor_name: str) -> list[dg.RunRequest]:
        self.runtime.clock.offset += timedelta(seconds=5)  # past the safety lags and the one-second timestamps
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursors.get(sensor_name),
                                          resources={"connector": self.runtime}, definitions=self.defs)
        result = self.defs.resolve_sensor_def(sensor_name).evaluate_tick(context)
        self.cursors[sensor_name] = result.cursor
        return list(result.run_requests or [])

    def run(self, sensor_name: str, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        """Materialize what the request asks for: same partition, run config and tags as a daemon-launched run."""
        names = [key.path[-1] for key in request.asset_selection] if request.asset_selection else TARGETS[sensor_name]
        return dg.materialize([self.defs.resolve_assets_def(name) for name in names], instance=self.instance,
                              partition_key=request.partition_key, selection=names, tags=request.tags,
                              run_config=request.run_config or {}, raise_on_error=False)

    def sync(self, sensor_name: str) -> list[dg.ExecuteInProcessResult]:
        """One tick and every run it requested; each run must succeed."""
        requests = self.tick(sensor_name)
        results = [self.run(sensor_name, request) for request in requests]
        assert all(result.success for result in results), [_failure(result) for result in results]
        return results

    def replay(self, sensor_name: str, partition: dg.MultiPartitionKey) -> dg.ExecuteInProcessResult:
        """A re-materialization of a partition from the UI (whole day, no sensor config or tags)."""
        result = self.run(sensor_name, dg.RunRequest(partition_key=partition))
        assert result.success, _failure(result)
        return result

    # ------------------------------------------------------------------------------------------- state
    def on_hand(self) -> int:
        store = self.shop.state.store(STORE)
        variant = store.variant_by_sku(ITEM)
        return store.inventory[(variant.inventory_item_id, store.default_location.legacy_id)].quantities["on_hand"]

    def physical(self) -> Decimal:
        return self.x3.state.stock(ITEM, SITE).physical

    def fulfilled_not_delivered(self) -> int:
        """The truth from both systems: X units in live Shopify fulfilments without a validated X3 delivery."""
        units = 0
        for order_id in self.orders:
            order = self.shop.state.order(order_id)
            for fulfillment in order.fulfillments:
                if fulfillment.status == "CANCELLED" or any(
                        d.validated for d in self.deliveries(fulfillment.legacy_id)):
                    continue
                units += sum(part.quantity for part in fulfillment.lines
                             if order.cart.lines[part.line_position].item.sku == ITEM)
        return units

    def assert_no_oversell(self, step: str) -> None:
        """flows.md §4, checked against both systems (not the connector's own bookkeeping)."""
        limit = self.physical() - self.fulfilled_not_delivered()
        assert self.on_hand() <= limit, f"{step}: Shopify shows {self.on_hand()}, X3 can ship {limit}"

    def deliveries(self, fulfillment_legacy_id: int) -> list[Any]:
        reference = delivery_reference(STORE, fulfillment_legacy_id)
        return [d for d in self.x3.state.deliveries() if d.reference == reference]

    def documents(self, order_id: str) -> list[Any]:
        """X3 invoices and credit memos of an order (its invoice and its refunds' memos reference it)."""
        invoice = f"SHOPIFY:{STORE}:{order_id.rsplit('/', 1)[-1]}"
        numbers = {i.number for i in self.x3.state.invoices() if i.reference == invoice}
        return [i for i in self.x3.state.invoices() if i.number in numbers or i.origin_invoice in numbers]

    def adjustment_groups(self) -> int:
        """Inventory adjustment groups Shopify applied to X (each idempotency key is applied once)."""
        item = self.shop.state.store(STORE).variant_by_sku(ITEM).inventory_item_id
        return sum(1 for _, result in self.shop.state.store(STORE).idempotency.values()
                   if result["inventoryAdjustmentGroup"] is not None
                   and any(c.inventory_item_id == item for c in result["inventoryAdjustmentGroup"].changes))

    def pending_in_ledger(self) -> int:
        store = self.shop.state.store(STORE)
        item = store.variant_by_sku(ITEM).inventory_item_id
        key = (f"gid://shopify/InventoryItem/{item}", f"gid://shopify/Location/{store.default_location.legacy_id}")
        return pending_fulfilled_quantities(self.runtime.ledger(), STORE).get(key, 0)

    def restocks(self, order_id: str) -> list[RestockRow]:
        """The Shopify restock markers the orders runs recorded for this order's refunds."""
        return [r for r in self.runtime.stock_store().restocks(STORE) if r.order_id == order_id]

    def last_push(self) -> StockPushRow:
        """The stock sync's latest audit row for X (set, unchanged or failed, with X3 physical and pending)."""
        return [row for row in self.runtime.stock_store().pushes(STORE) if row.x3_item == ITEM][-1]

    def receipt(self, quantity: int) -> None:
        self.x3.state.stock_receipt(ITEM, SITE, quantity)


def _failure(result: dg.ExecuteInProcessResult) -> str:
    return "; ".join(str(event.event_specific_data.error.message)[:300] for event in result.all_events
                     if event.is_step_failure) or "ok"


@pytest.fixture
def flows(fresh_shopify_sandbox, fresh_x3_sandbox, runtime_factory, clock) -> Iterator[Flows]:
    shop = fresh_shopify_sandbox
    shop.state.set_clock(clock)  # Shopify's timestamps and the sensors' "now" share one shiftable clock
    shop.state.add_product(STORE, ITEM, "Descaler 1 l", price=Decimal("12.00"), on_hand=50)
    stores = {
        key: StoreSettings(shop_url=shop.shop_url(key), access_token=shop.access_token(key),
                           locations={site: f"gid://shopify/Location/{shop.state.store(key).default_location.legacy_id}"})
        for key, site in ((STORE, SITE), ("us", "US011"))
    }
    runtime = runtime_factory(shop, x3_sandbox=fresh_x3_sandbox, mapping_path=str(DEMO_MAPPING), stores=stores,
                              sensor_initial_lookback_hours=1)
    with dg.instance_for_test() as instance:
        flows = Flows(runtime, shop, fresh_x3_sandbox, instance)
        for sensor_name in TARGETS:  # the sensors' first ticks: watermarks set, the seeded history left alone
            flows.tick(sensor_name)
        # Align Shopify with X3 (it starts with its own 50): a receipt in X3, synced.
        flows.receipt(10)
        flows.sync(STOCK_SENSOR_NAME)
        assert flows.on_hand() == flows.physical()
        flows.assert_no_oversell("X3 stock receipt synced")
        yield flows


def test_order_fulfilment_stock_and_refund_never_oversell_nor_duplicate(flows: Flows) -> None:
    shop = flows.shop

    # 1. An order for 2 x X is created and paid → the orders sensor's run posts its invoice in X3.
    order = shop.state.create_order(STORE, email=CLAIRE, lines=[(ITEM, 2)])
    flows.orders.append(order)
    flows.assert_no_oversell("order created (units committed, on_hand unchanged)")
    flows.sync(ORDERS_SENSOR_NAME)
    (invoice,) = flows.documents(order)
    assert invoice.status.value == 3  # posted
    assert flows.runtime.ledger().get(STORE, RecordKind.ORDER, order).state is RecordState.POSTED

    # 2. Fulfilled in Shopify (its on_hand drops); before the fulfilment sensor ticks, an X3 receipt lands and the
    # stock sync runs: it already subtracts the fulfilment (no oversell window), never pushes X3 physical alone.
    on_hand_before = flows.on_hand()
    fulfillment = shop.state.fulfil(order)
    fulfillment_id = int(fulfillment.rsplit("/", 1)[-1])
    assert flows.on_hand() == on_hand_before - 2
    flows.assert_no_oversell("fulfilled in Shopify")
    flows.receipt(5)
    flows.assert_no_oversell("X3 receipt landed")
    flows.sync(STOCK_SENSOR_NAME)
    assert flows.on_hand() == flows.physical() - 2
    push = flows.last_push()
    assert (push.outcome, push.x3_physical, push.pending_fulfilled) == (PushOutcome.SET, flows.physical(), 2)
    assert flows.pending_in_ledger() == 2
    flows.assert_no_oversell("stock synced before the fulfilment run")

    # 3. The fulfilment run validates the X3 delivery (X3 stock drops by 2); the next stock sync sends nothing.
    physical_before, on_hand_before = flows.physical(), flows.on_hand()
    flows.sync(FULFILLMENTS_SENSOR_NAME)
    (delivery,) = flows.deliveries(fulfillment_id)
    assert delivery.validated
    assert delivery.invoice_number == invoice.number
    assert flows.physical() == physical_before - 2
    flows.assert_no_oversell("X3 delivery validated")
    groups = flows.adjustment_groups()
    flows.sync(STOCK_SENSOR_NAME)  # the delivery's stock issue is a counted movement: X is pushed again
    push = flows.last_push()
    assert (push.outcome, push.x3_physical, push.pending_fulfilled) == (PushOutcome.UNCHANGED, flows.physical(), 0)
    assert flows.adjustment_groups() == groups
    assert flows.on_hand() == on_hand_before == flows.physical()
    assert flows.pending_in_ledger() == 0
    flows.assert_no_oversell("stock synced after the delivery")

    # 4. A replay of every partition touched: nothing is created or sent twice.
    partition = dg.MultiPartitionKey({"date": delivery.ship_date.isoformat(), "store": STORE})
    for sensor_name in TARGETS:
        flows.replay(sensor_name, partition)
    assert [d.number for d in flows.deliveries(fulfillment_id)] == [delivery.number]
    assert [i.number for i in flows.documents(order)] == [invoice.number]
    assert flows.adjustment_groups() == groups
    assert flows.on_hand() == flows.physical()
    flows.assert_no_oversell("every partition replayed")

    # 5. A partial refund with restock after delivery → one credit memo; X3 stock does not move (credit memos never
    # move stock). Shopify's restock raised its on_hand: the orders run records the restock, the stock sensor's
    # next tick requests the partition and the push puts Shopify back to what X3 can ship, with no manual step.
    # (Faults on both sides: the next test.)
    physical_before = flows.physical()
    shop.state.refund(order, [(0, 1)], restock_type="RETURN")
    assert flows.on_hand() == physical_before + 1  # Shopify's own restock, not received in X3
    flows.sync(ORDERS_SENSOR_NAME)
    documents = flows.documents(order)
    (memo,) = [d for d in documents if d.origin_invoice == invoice.number]
    assert (memo.invoice_type.value, memo.status.value) == (2, 3)
    assert flows.physical() == physical_before
    (restock,) = flows.restocks(order)
    assert (restock.item, restock.site, restock.quantity, restock.restock_type) == (ITEM, SITE, 1, "RETURN")
    groups = flows.adjustment_groups()
    assert len(flows.sync(STOCK_SENSOR_NAME)) == 1  # nothing moved in X3: the restock alone requests the partition
    push = flows.last_push()
    assert (push.outcome, push.x3_physical, push.pending_fulfilled) == (PushOutcome.SET, flows.physical(), 0)
    assert (push.previous_quantity, push.quantity) == (physical_before + 1, physical_before)
    assert flows.on_hand() == flows.physical()
    assert flows.adjustment_groups() == groups + 1
    flows.assert_no_oversell("refund restocked in Shopify, stock synced by the sensor")
    assert flows.tick(STOCK_SENSOR_NAME) == []  # the restock is handled once: the next tick requests nothing
    flows.sync(ORDERS_SENSOR_NAME)
    flows.replay(ORDERS_SENSOR_NAME, partition)
    assert flows.restocks(order) == [restock]  # re-runs and replays record no second marker
    assert len(flows.documents(order)) == 2  # the invoice and its one credit memo
    flows.replay(STOCK_SENSOR_NAME, partition)
    assert flows.adjustment_groups() == groups + 1
    assert flows.on_hand() == flows.physical()
    flows.assert_no_oversell("every partition replayed after the restock")


def test_faults_on_both_sides_are_retried_through_and_nothing_is_duplicated(flows: Flows) -> None:
    """flows.md §3 and §4 under faults during the stock and fulfilment runs: X3 answers 500 to the stock read and
    drops the answer of the delivery it created (in doubt; the next run looks it up by reference and adopts it,
    never re-creating it); Shopify
    answers 503, throttles, and drops the answer of the inventory write (looked up by its idempotency key, applied
    once). The runs reach the clean end state, the level never oversells, and a replay sends nothing."""
    shop, x3 = flows.shop, flows.x3
    order = shop.state.create_order(STORE, email=CLAIRE, lines=[(ITEM, 3)])
    flows.orders.append(order)
    flows.sync(ORDERS_SENSOR_NAME)
    (invoice,) = flows.documents(order)
    fulfillment_id = int(shop.state.fulfil(order).rsplit("/", 1)[-1])
    flows.assert_no_oversell("fulfilled in Shopify")

    # An X3 receipt; the stock run meets faults on both sides.
    flows.receipt(4)
    groups_before = flows.adjustment_groups()
    x3.faults.inject("http_500", times=2, path_contains="ITMMVT")
    shop.faults.inject("http_503", store=STORE, operation="InventoryLevels")
    shop.faults.inject("drop_connection", store=STORE, operation="InventorySetQuantities")  # applied, answer lost
    flows.sync(STOCK_SENSOR_NAME)
    assert shop.faults.pending() == []  # every fault was met
    assert x3.faults.pending() == []
    assert x3.count_calls("api1", "$query/ITMMVT", status=500) == 2
    assert flows.adjustment_groups() == groups_before + 1  # the lost answer was not applied a second time
    assert flows.on_hand() == flows.physical() - 3  # the fulfilment is still pending: no oversell window
    flows.assert_no_oversell("stock run under faults")

    # The fulfilment run: Shopify throttles the page read and answers 500 (retried through); X3 creates the
    # delivery and the connection drops before its answer: in doubt, so the run leaves it (and its stock) alone.
    shop.faults.inject("throttled", store=STORE, operation="FulfillmentOrdersPage")
    shop.faults.inject("http_500", store=STORE, operation="FulfillmentOrdersPage")
    x3.faults.inject("drop_connection", times=None, path_contains="save/YSDH")
    flows.sync(FULFILLMENTS_SENSOR_NAME)
    x3.faults.clear()
    assert shop.faults.pending() == []
    (created,) = flows.deliveries(fulfillment_id)
    assert not created.validated
    fulfillment = f"gid://shopify/Fulfillment/{fulfillment_id}"
    assert flows.runtime.ledger().get(STORE, RecordKind.FULFILLMENT, fulfillment).state is not RecordState.DELIVERED
    assert flows.pending_in_ledger() == 3  # still subtracted: X3 has not issued the stock
    flows.assert_no_oversell("delivery in doubt")

    # Once the in-doubt run's lease has run out, the next run (here the replay of the day) looks the delivery up by
    # its reference, adopts it and validates it: never a second delivery.
    _expire_leases(flows.runtime)
    partition = dg.MultiPartitionKey({"date": created.ship_date.isoformat(), "store": STORE})
    flows.replay(FULFILLMENTS_SENSOR_NAME, partition)
    (delivery,) = flows.deliveries(fulfillment_id)
    assert (delivery.number, delivery.validated) == (created.number, True)
    assert delivery.invoice_number == invoice.number
    record = flows.runtime.ledger().get(STORE, RecordKind.FULFILLMENT, fulfillment)
    assert (record.state, record.x3_documents["delivery"]) == (RecordState.DELIVERED, delivery.number)
    assert "adopted" in [event.event for event in flows.runtime.ledger().history(record.id)]
    flows.assert_no_oversell("delivery adopted and validated")

    flows.sync(STOCK_SENSOR_NAME)  # the delivery's stock issue: X pushed again, unchanged
    assert flows.last_push().outcome is PushOutcome.UNCHANGED
    assert flows.pending_in_ledger() == 0
    assert flows.on_hand() == flows.physical()
    flows.assert_no_oversell("converged")

    # A replay of every partition touched sends nothing.
    for sensor_name in TARGETS:
        flows.replay(sensor_name, partition)
    assert len(flows.deliveries(fulfillment_id)) == 1
    assert [i.number for i in flows.documents(order)] == [invoice.number]
    assert flows.adjustment_groups() == groups_before + 1
    assert flows.on_hand() == flows.physical()


def _expire_leases(runtime: Any) -> None:
    """As if posting_lease_seconds had passed since the in-doubt run claimed its operations."""
    with runtime.database.transaction(write=True) as connection:
        connection.execute(update(ledger_operations).values(lease_expires_at=datetime(2000, 1, 1, tzinfo=UTC)))
