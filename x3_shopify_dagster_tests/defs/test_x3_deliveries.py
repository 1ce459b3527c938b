"""Shopify fulfilments → validated X3 deliveries over both sandboxes (HTTP), with the ledger as the audit trail.

Invariants: flows.md §2 (one fulfilment = one delivery; the order is delivered partly / fully), §3 (a re-run, a
replay or a crash between create and record never creates a second delivery), §1 (the delivery date is the
fulfilment date), §4 (the fulfilment record is `delivered` only once its X3 delivery is validated).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest

from x3_shopify_dagster.definitions import build_definitions
from x3_shopify_dagster.defs.partitions import partition_key
from x3_shopify_dagster.domain.fulfillments import delivery_reference
from x3_shopify_dagster.domain.windows import business_day
from x3_shopify_dagster.posting.deliveries import create_key
from x3_shopify_dagster.settings import StoreSettings
from x3_shopify_dagster.storage.exactly_once import OperationInDoubt, RemoteResult, get_operation, run_exactly_once
from x3_shopify_dagster.storage.ledger import PostingLedger, RecordKind, RecordState

TZ = "Europe/Paris"
STORE = "eu"
DEMO_MAPPING = Path(__file__).resolve().parents[2] / "x3_shopify_dagster" / "demo_mapping.yaml"
CUSTOMER_EMAIL = "claire.martin@bistro-lyon.example"  # FR0001 in the X3 sandbox


LEASE_S = 30  # the shortest posting lease the settings accept


def _stores(sandbox):
    return {
        key: StoreSettings(
            shop_url=sandbox.shop_url(key), access_token=sandbox.access_token(key),
            location_sites={str(sandbox.state.store(key).default_location.legacy_id):
                            "FR011" if key == "eu" else "US011"},
        )
        for key in ("eu", "us")
    }


@pytest.fixture
def runtime(fresh_shopify_sandbox, fresh_x3_sandbox, runtime_factory):
    return runtime_factory(fresh_shopify_sandbox, x3_sandbox=fresh_x3_sandbox, mapping_path=str(DEMO_MAPPING),
                           stores=_stores(fresh_shopify_sandbox))


def _materialize(runtime, names, *, day, store=STORE, tags=None):
    # Shopify's search has one-second precision: step past the second of the last sandbox change.
    runtime.clock.offset += timedelta(seconds=2)
    defs = build_definitions(runtime.settings, runtime=runtime)
    assets = [defs.resolve_assets_def(name) for name in names]
    with dg.instance_for_test() as instance:
        result = dg.materialize(assets, instance=instance, partition_key=partition_key(day, store), selection=names,
                                tags=tags)
        metadata = {}
        for name in names:
            events = result.asset_materializations_for_node(name)
            if events:
                metadata[name] = {key: value.value for key, value in events[0].metadata.items()}
        return metadata


def _today(runtime):
    return business_day(runtime.clock(), TZ)


def _sku_lines(sandbox, count, quantity=2):
    skus = ["ESP-GRINDER-01", "CUP-PORC-6", "MILK-JUG-35"][:count]
    return [(sku, quantity) for sku in skus]


def _invoice_today(runtime):
    _materialize(runtime, ["shopify_orders", "x3_sales_invoices"], day=_today(runtime))


def _deliver_today(runtime, **kwargs):
    return _materialize(runtime, ["shopify_fulfillments", "x3_deliveries"], day=_today(runtime), **kwargs)


def _deliveries_for(x3_sandbox, reference):
    return [d for d in x3_sandbox.state.deliveries() if d.reference == reference]


def _legacy(gid):
    return int(gid.rsplit("/", 1)[1])


def test_one_fulfilment_becomes_one_validated_delivery_with_stock_issue_and_cogs(
    runtime, fresh_shopify_sandbox, fresh_x3_sandbox
):
    shop, x3 = fresh_shopify_sandbox, fresh_x3_sandbox
    order = shop.state.create_order(STORE, email=CUSTOMER_EMAIL, lines=_sku_lines(shop, 2))
    _invoice_today(runtime)
    stock_before = x3.state.stock("ESP-GRINDER-01", "FR011").physical
    movements_before = len(x3.state.stock_movements())
    fulfillment = shop.state.fulfil(order, tracking=("UPS", "1Z999", "https://ups.example/1Z999"))

    metadata = _deliver_today(runtime)["x3_deliveries"]

    assert metadata["fulfillments_delivered"] >= 1  # the seeded history fulfils some orders today too
    assert any(row.data["x3_delivery"] for row in metadata["deliveries"].records)
    (delivery,) = _deliveries_for(x3, delivery_reference(STORE, _legacy(fulfillment)))
    assert delivery.validated
    assert delivery.site == "FR011"
    assert delivery.tracking == "UPS 1Z999"
    assert {(line.item, line.quantity) for line in delivery.lines} == {("ESP-GRINDER-01", 2), ("CUP-PORC-6", 2)}
    ledger = runtime.ledger()
    order_record = ledger.get(STORE, RecordKind.ORDER, order)
    assert delivery.invoice_number == order_record.x3_documents["invoice"]
    assert delivery.ship_date == business_day(shop.state.order(order).fulfillments[0].created_at, TZ)  # flows.md §1
    issues = [m for m in x3.state.stock_movements() if m.voucher_number == delivery.number]
    expected_issues = [("CUP-PORC-6", Decimal(-2)), ("ESP-GRINDER-01", Decimal(-2))]
    assert sorted((m.item, m.quantity) for m in issues) == expected_issues
    # X3's stock moved by exactly the issue rows (ours and those of the seeded orders fulfilled today).
    issued = sum(m.quantity for m in x3.state.stock_movements()[movements_before:]
                 if (m.item, m.site) == ("ESP-GRINDER-01", "FR011"))
    assert issued <= -2
    assert x3.state.stock("ESP-GRINDER-01", "FR011").physical == stock_before + issued
    cogs = x3.state.gl_entry(delivery.gl_entry)
    assert cogs is not None
    assert cogs.origin_document == delivery.number
    record = ledger.get(STORE, RecordKind.FULFILLMENT, fulfillment)
    assert record.state is RecordState.DELIVERED
    assert record.x3_documents["delivery"] == delivery.number
    assert record.source_payload["order_id"] == order
    assert record.source_payload["status"] == "SUCCESS"
    order_record = ledger.get(STORE, RecordKind.ORDER, order)
    assert order_record.state is RecordState.DELIVERED
    assert [d["delivery"] for d in order_record.x3_documents["deliveries"]] == [delivery.number]
    assert ledger.history(order_record.id)[-1].detail["delivered"] == "fully"

    # flows.md §3: a re-run and a replay create nothing twice.
    _deliver_today(runtime)
    _materialize(runtime, ["shopify_fulfillments", "x3_deliveries"], day=_today(runtime))
    assert len(_deliveries_for(x3, delivery_reference(STORE, _legacy(fulfillment)))) == 1
    assert len([m for m in x3.state.stock_movements() if m.voucher_number == delivery.number]) == 2


def test_partial_fulfilments_make_partial_deliveries(runtime, fresh_shopify_sandbox, fresh_x3_sandbox):
    shop, x3 = fresh_shopify_sandbox, fresh_x3_sandbox
    order = shop.state.create_order(STORE, email=CUSTOMER_EMAIL, lines=_sku_lines(shop, 1, quantity=3))
    _invoice_today(runtime)
    first = shop.state.fulfil(order, [(0, 1)])
    _deliver_today(runtime)
    ledger = runtime.ledger()
    assert ledger.history(ledger.get(STORE, RecordKind.ORDER, order).id)[-1].detail["delivered"] == "partly"
    runtime.clock.offset += timedelta(seconds=2)
    second = shop.state.fulfil(order)  # the remaining 2
    _deliver_today(runtime)

    quantities = [sum(line.quantity for line in d.lines)
                  for f in (first, second) for d in _deliveries_for(x3, delivery_reference(STORE, _legacy(f)))]
    assert quantities == [1, 2]
    order_record = ledger.get(STORE, RecordKind.ORDER, order)
    assert len(order_record.x3_documents["deliveries"]) == 2
    assert ledger.history(order_record.id)[-1].detail["delivered"] == "fully"


def test_a_fulfilment_before_the_invoice_waits_then_goes_through(runtime, fresh_shopify_sandbox, fresh_x3_sandbox):
    shop, x3 = fresh_shopify_sandbox, fresh_x3_sandbox
    order = shop.state.create_order(STORE, email=CUSTOMER_EMAIL, lines=_sku_lines(shop, 1))
    fulfillment = shop.state.fulfil(order)

    metadata = _deliver_today(runtime)["x3_deliveries"]
    assert metadata["fulfillments_waiting"] >= 1
    record = runtime.ledger().get(STORE, RecordKind.FULFILLMENT, fulfillment)
    assert record.state is RecordState.STAGED
    assert runtime.ledger().history(record.id)[-1].event == "waiting_for_invoice"
    assert _deliveries_for(x3, delivery_reference(STORE, _legacy(fulfillment))) == []

    _invoice_today(runtime)
    _materialize(runtime, ["x3_deliveries"], day=_today(runtime))
    (delivery,) = _deliveries_for(x3, delivery_reference(STORE, _legacy(fulfillment)))
    assert delivery.validated


def test_an_order_delivered_while_its_invoice_waits_for_payment_is_delivered_once_posted(
    runtime, fresh_shopify_sandbox, fresh_x3_sandbox
):
    """flows.md §2: invoiced → posted → delivered. A delivery made while the invoice waits for the posting moment
    (on_paid) is listed on the order at once, and posting moves the order on to delivered, not just posted."""
    shop, x3 = fresh_shopify_sandbox, fresh_x3_sandbox
    order = shop.state.create_order(STORE, email=CUSTOMER_EMAIL, lines=_sku_lines(shop, 1, quantity=3),
                                    financial_status="PENDING")
    _invoice_today(runtime)
    ledger = runtime.ledger()
    assert ledger.get(STORE, RecordKind.ORDER, order).state is RecordState.INVOICED
    first = shop.state.fulfil(order, [(0, 1)])
    _deliver_today(runtime)

    (delivery,) = _deliveries_for(x3, delivery_reference(STORE, _legacy(first)))
    order_record = ledger.get(STORE, RecordKind.ORDER, order)
    assert order_record.state is RecordState.INVOICED  # the invoice still waits for the payment
    assert [d["delivery"] for d in order_record.x3_documents["deliveries"]] == [delivery.number]
    assert ledger.history(order_record.id)[-1].event == "delivered"

    shop.state.mark_paid(order)
    _invoice_today(runtime)
    order_record = ledger.get(STORE, RecordKind.ORDER, order)
    assert order_record.state is RecordState.DELIVERED
    assert x3.state.invoice(order_record.x3_documents["invoice"]).status.value == 3  # posted
    events = [(e.event, e.state) for e in ledger.history(order_record.id)]
    assert events[-2:] == [("posted", "posted"), ("delivered", "delivered")]
    assert ledger.history(order_record.id)[-1].detail["delivered"] == "partly"

    runtime.clock.offset += timedelta(seconds=2)
    second = shop.state.fulfil(order)  # the remaining 2, after posting
    _deliver_today(runtime)
    order_record = ledger.get(STORE, RecordKind.ORDER, order)
    assert len(order_record.x3_documents["deliveries"]) == 2
    assert ledger.history(order_record.id)[-1].detail["delivered"] == "fully"
    assert len(_deliveries_for(x3, delivery_reference(STORE, _legacy(second)))) == 1


def test_a_crash_between_create_and_record_adopts_the_existing_delivery(
    runtime, fresh_shopify_sandbox, fresh_x3_sandbox
):
    shop, x3 = fresh_shopify_sandbox, fresh_x3_sandbox
    order = shop.state.create_order(STORE, email=CUSTOMER_EMAIL, lines=_sku_lines(shop, 1))
    _invoice_today(runtime)
    fulfillment = shop.state.fulfil(order)
    _materialize(runtime, ["shopify_fulfillments"], day=_today(runtime))
    ledger = runtime.ledger()
    record = ledger.get(STORE, RecordKind.FULFILLMENT, fulfillment)
    invoice = ledger.get(STORE, RecordKind.ORDER, order).x3_documents["invoice"]
    reference = delivery_reference(STORE, _legacy(fulfillment))

    # A run creates the delivery in X3 and dies before recording the answer: the operation stays in doubt.
    def send_then_crash() -> RemoteResult:
        with runtime.x3_client() as x3_client:
            header = {"BPCORD": "FR0001", "STOFCY": "FR011", "SIHNUM": invoice, "BPRVCR": reference}
            x3_client.save("YSDH", {"SDH0_1": header, "SDH1_4": [{"ITMREF": "ESP-GRINDER-01", "QTY": "2"}]})
        raise TimeoutError("connection dropped after the write")

    # The crashed run's clock is an hour behind, so its lease has expired for every run after it.
    crashed = PostingLedger(runtime.database, clock=lambda: datetime.now(UTC) - timedelta(hours=1))
    with pytest.raises(OperationInDoubt):
        run_exactly_once(crashed, create_key(STORE, fulfillment), owner="crashed-run", lease_s=60,
                         send=send_then_crash, lookup=lambda: None, remote_reference=reference, record_id=record.id)
    assert len(_deliveries_for(x3, reference)) == 1

    _materialize(runtime, ["x3_deliveries"], day=_today(runtime))

    (delivery,) = _deliveries_for(x3, reference)  # adopted, not created again
    assert delivery.validated
    assert get_operation(ledger, create_key(STORE, fulfillment)).document == delivery.number
    assert ledger.get(STORE, RecordKind.FULFILLMENT, fulfillment).x3_documents["delivery"] == delivery.number


def test_a_cancelled_fulfilment_is_skipped_before_delivery_and_flagged_after(
    runtime, fresh_shopify_sandbox, fresh_x3_sandbox
):
    shop = fresh_shopify_sandbox
    order = shop.state.create_order(STORE, email=CUSTOMER_EMAIL, lines=_sku_lines(shop, 2, quantity=1))
    _invoice_today(runtime)
    early = shop.state.fulfil(order, [(0, 1)])
    shop.state.cancel_fulfillment(early)
    runtime.clock.offset += timedelta(seconds=2)
    _deliver_today(runtime)
    ledger = runtime.ledger()
    skipped = ledger.get(STORE, RecordKind.FULFILLMENT, early)
    assert (skipped.state, skipped.reason_code) == (RecordState.SKIPPED, "fulfillment_cancelled")

    late = shop.state.fulfil(order, [(1, 1)])
    _deliver_today(runtime)
    assert ledger.get(STORE, RecordKind.FULFILLMENT, late).state is RecordState.DELIVERED
    runtime.clock.offset += timedelta(seconds=2)
    shop.state.cancel_fulfillment(late)  # the order's updatedAt does not move
    _deliver_today(runtime)
    flagged = ledger.get(STORE, RecordKind.FULFILLMENT, late)
    assert (flagged.state, flagged.reason_code) == (RecordState.FAILED, "fulfillment_cancelled_after_delivery")
    assert flagged.x3_documents["delivery"] in flagged.reason_message
    assert flagged.source_payload["status"] == "CANCELLED"


def test_failures_are_specific_and_replayable_without_a_second_delivery(
    fresh_shopify_sandbox, fresh_x3_sandbox, runtime_factory
):
    shop, x3 = fresh_shopify_sandbox, fresh_x3_sandbox
    runtime = runtime_factory(shop, x3_sandbox=x3, mapping_path=str(DEMO_MAPPING), stores=_stores(shop),
                              posting_lease_seconds=LEASE_S)
    order = shop.state.create_order(STORE, email=CUSTOMER_EMAIL, lines=_sku_lines(shop, 1))
    _invoice_today(runtime)
    fulfillment = shop.state.fulfil(order)
    x3.state.close_period(_today(runtime).strftime("%Y-%m"))
    _deliver_today(runtime)
    ledger = runtime.ledger()
    failed = ledger.get(STORE, RecordKind.FULFILLMENT, fulfillment)
    assert (failed.state, failed.reason_code) == (RecordState.FAILED, "period_closed")
    replayed = ledger.failed_records(STORE, _today(runtime).isoformat(), kind=RecordKind.FULFILLMENT)
    assert fulfillment in {r.source_id for r in replayed}  # with today's seeded fulfilments

    x3.state.reopen_period(_today(runtime).strftime("%Y-%m"))
    # X3 answers one delivery save of the replay with a bare HTTP 500 (whichever fulfilment's comes first): its
    # outcome is unknown, so that fulfilment waits for its lease; the next run after it looks the reference up
    # (not found: the 500 came before processing) and sends it once.
    x3.faults.inject("http_500", times=1, path_contains="save/YSDH")
    metadata = _materialize(runtime, ["x3_deliveries"], day=_today(runtime))["x3_deliveries"]
    assert metadata["fulfillments_in_doubt"] == 1
    runtime.clock.offset += timedelta(seconds=LEASE_S + 1)
    _materialize(runtime, ["x3_deliveries"], day=_today(runtime))
    for record in replayed:
        assert ledger.get_by_id(record.id).state is RecordState.DELIVERED, record.source_id
        reference = delivery_reference(STORE, _legacy(record.source_id))
        assert len(_deliveries_for(x3, reference)) == 1, record.source_id


def test_an_unmapped_location_fails_with_the_setting_to_fix(
    fresh_shopify_sandbox, fresh_x3_sandbox, runtime_factory
):
    runtime = runtime_factory(fresh_shopify_sandbox, x3_sandbox=fresh_x3_sandbox, mapping_path=str(DEMO_MAPPING))
    shop = fresh_shopify_sandbox
    order = shop.state.create_order(STORE, email=CUSTOMER_EMAIL, lines=_sku_lines(shop, 1))
    _invoice_today(runtime)
    fulfillment = shop.state.fulfil(order)
    _deliver_today(runtime)
    record = runtime.ledger().get(STORE, RecordKind.FULFILLMENT, fulfillment)
    assert (record.state, record.reason_code) == (RecordState.FAILED, "site_not_mapped")
    assert "X3SD_STORES__EU__LOCATION_SITES" in record.reason_message
