"""Shopify orders → X3 sales invoices over both sandboxes (HTTP), with the ledger as the audit trail.

Invariants (flows.md §2, §3, §5): every staged order ends posted, invoiced (awaiting payment), failed with a
reason or skipped with a reason; re-runs and replays never create or post an invoice twice; a fix in X3 followed
by a replay posts the order; GL accounts named by the mapping must be active before anything is posted.
"""

from __future__ import annotations

import copy
import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest

from x3_shopify_dagster.definitions import build_definitions
from x3_shopify_dagster.defs.partitions import partition_key
from x3_shopify_dagster.defs.shopify.assets import order_version
from x3_shopify_dagster.domain.shopify_orders import NormalisedOrder
from x3_shopify_dagster.domain.windows import business_day, day_window
from x3_shopify_dagster.posting.invoices import InvoicePoster, PostingReport

TZ = "Europe/Paris"
DEMO_MAPPING = Path(__file__).resolve().parents[2] / "x3_shopify_dagster" / "demo_mapping.yaml"


@pytest.fixture
def runtime(fresh_shopify_sandbox, fresh_x3_sandbox, runtime_factory):
    return runtime_factory(fresh_shopify_sandbox, x3_sandbox=fresh_x3_sandbox, mapping_path=str(DEMO_MAPPING))


def _materialize(runtime, names, *, day=None, store=None, raise_on_error=True, tags=None):
    defs = build_definitions(runtime.settings, runtime=runtime)
    assets = [defs.resolve_assets_def(name) for name in names]
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            assets, instance=instance, raise_on_error=raise_on_error,
            partition_key=partition_key(day, store) if day else None,
            selection=names,
            tags=tags,
        )
        metadata = {}
        for name in names:
            events = result.asset_materializations_for_node(name)
            if events:
                metadata[name] = {key: value.value for key, value in events[0].metadata.items()}
        return result, metadata


def _post_day(runtime, day, store):
    _materialize(runtime, ["shopify_orders"], day=day, store=store)
    _, metadata = _materialize(runtime, ["x3_sales_invoices"], day=day, store=store)
    return metadata["x3_sales_invoices"]


def _busiest_day(shopify_sandbox, store: str):
    days = Counter(business_day(order.updated_at, TZ) for order in shopify_sandbox.state.orders(store))
    return days.most_common(1)[0][0]


def _invoices_by_reference(x3_sandbox) -> Counter:
    return Counter(invoice.reference for invoice in x3_sandbox.state.invoices())


def test_a_day_of_orders_ends_posted_invoiced_failed_or_skipped_and_reruns_post_nothing_twice(
    runtime, fresh_shopify_sandbox, fresh_x3_sandbox, clock
):
    day = _busiest_day(fresh_shopify_sandbox, "eu")
    first = _post_day(runtime, day, "eu")
    ledger = runtime.ledger()
    records = ledger.records("eu", day.isoformat())
    assert records, "the seeded day should hold orders"
    states = Counter(record.state.value for record in records)
    assert set(states) <= {"posted", "invoiced", "failed", "skipped", "credited"}
    # Posted this run; those with refunds were then credited (their credit memos are the refund records).
    assert first["orders_posted"] == states["posted"] + states["credited"] > 0
    for record in records:
        if record.state.value == "failed":
            assert record.reason_code, record
            assert record.reason_message, record
        if record.state.value in {"posted", "invoiced", "credited"}:
            assert record.x3_documents["invoice"]
    references = _invoices_by_reference(fresh_x3_sandbox)
    assert all(count == 1 for count in references.values()), references
    posted_numbers = {r.x3_documents["invoice"] for r in records if r.state.value in {"posted", "credited"}}
    assert all(fresh_x3_sandbox.state.invoice(n).status.value == 3 for n in posted_numbers)

    # A replay from the UI (re-materialize) and a second one: nothing new in X3.
    invoices_before = len(fresh_x3_sandbox.state.invoices())
    again = _post_day(runtime, day, "eu")
    assert len(fresh_x3_sandbox.state.invoices()) == invoices_before
    assert again["orders_posted"] == 0

    # The audit trail: every posted order has a balanced GL posting event.
    posted = next(r for r in records if r.state.value == "posted")
    events = ledger.history(posted.id)
    posting = [e for e in events if e.event == "posted"][-1]
    lines = posting.gl_lines
    assert sum(line.debit for line in lines) == sum(line.credit for line in lines) > 0


def test_missing_customer_fails_with_reason_then_replay_posts_it_once(
    runtime, fresh_shopify_sandbox, fresh_x3_sandbox, clock
):
    fresh_shopify_sandbox.state.set_clock(clock)
    order_id = fresh_shopify_sandbox.state.create_order(
        "eu", email="new.buyer@fresh-start.example", lines=[("TAMPER-58", 2)])
    clock.offset += timedelta(seconds=2)
    day = business_day(clock(), TZ)
    _post_day(runtime, day, "eu")
    record = runtime.ledger().get("eu", "order", order_id)
    assert record.state.value == "failed"
    assert record.reason_code == "customer_not_found"
    assert "new.buyer@fresh-start.example" in record.reason_message

    # A routine change-driven run leaves the failed order alone (no replay event, still failed).
    _materialize(runtime, ["x3_sales_invoices"], day=day, store="eu", tags={"x3sd/trigger": "shopify_orders_sensor"})
    assert "replayed" not in [event.event for event in runtime.ledger().history(record.id)]
    assert runtime.ledger().get("eu", "order", order_id).state.value == "failed"

    # Fix the master data in X3, refresh the snapshot, replay the partition.
    fresh_x3_sandbox.state.add_customer("FR0100", "Nina Novak", "new.buyer@fresh-start.example")
    _materialize(runtime, ["x3_customers"])
    _post_day(runtime, day, "eu")
    record = runtime.ledger().get("eu", "order", order_id)
    assert record.state.value in {"posted", "invoiced"}
    assert record.x3_customer == "FR0100"
    reference = f"SHOPIFY:eu:{order_id.rsplit('/', 1)[-1]}"
    assert _invoices_by_reference(fresh_x3_sandbox)[reference] == 1
    assert "replayed" in [event.event for event in runtime.ledger().history(record.id)]


def test_a_staged_payload_that_does_not_validate_fails_that_order_naming_the_field(
    runtime, fresh_shopify_sandbox, fresh_x3_sandbox, clock
):
    """Staging stores payloads unvalidated (docs/performance.md); posting validates each one and a bad one ends
    failed with a reason naming the field (flows.md §2: every fetched record ends posted, failed or skipped with a
    reason), while the partition's other orders are posted."""
    fresh_shopify_sandbox.state.set_clock(clock)
    good_id = fresh_shopify_sandbox.state.create_order("eu", lines=[("TAMPER-58", 1)])
    clock.offset += timedelta(seconds=2)
    day = business_day(clock(), TZ)
    _materialize(runtime, ["shopify_orders"], day=day, store="eu")
    staging = runtime.order_staging()
    good = staging.latest("eu", good_id)
    payload = copy.deepcopy(good.payload)
    bad_id = "gid://shopify/Order/990001"
    payload.update(id=bad_id, legacy_resource_id=990001, name="#BAD-1")
    payload["line_items"][0]["quantity"] = "two"
    payload["total_price_set"]["shop_money"]["amount"] = 12.5
    staging.stage([order_version("eu", NormalisedOrder.from_payload(payload))], run_id="test")

    _, metadata = _materialize(runtime, ["x3_sales_invoices"], day=day, store="eu")
    assert metadata["x3_sales_invoices"]["orders_failed"] >= 1
    bad = runtime.ledger().get("eu", "order", bad_id)
    assert bad.state.value == "failed"
    assert bad.reason_code == "invalid_order"
    assert "line_items[0].quantity" in bad.reason_message
    assert "total_price_set.shop_money.amount" in bad.reason_message
    assert "Fix:" in bad.reason_message
    assert runtime.ledger().get("eu", "order", good_id).state.value in {"posted", "invoiced"}
    assert _invoices_by_reference(fresh_x3_sandbox)["SHOPIFY:eu:990001"] == 0


def test_inactive_gl_account_blocks_posting(runtime, fresh_shopify_sandbox, fresh_x3_sandbox, clock):
    fresh_x3_sandbox.state.set_account_active("CHART1", "708500", False)
    check_run, _ = _materialize(runtime, ["x3_gl_accounts"], raise_on_error=False)
    # The blocking check fails (and names the account): downstream postings in that run would be skipped.
    evaluation = check_run.get_asset_check_evaluations()[0]
    assert not evaluation.passed
    assert "708500" in evaluation.description
    day = business_day(clock() - timedelta(days=1), TZ)
    _materialize(runtime, ["shopify_orders"], day=day, store="eu")
    result, _ = _materialize(runtime, ["x3_sales_invoices"], day=day, store="eu", raise_on_error=False)
    assert not result.success
    failure = result.get_step_failure_events()[0]
    assert "708500" in str(failure.event_specific_data.error)
    assert fresh_x3_sandbox.state.invoices() == []


def test_two_concurrent_runs_of_one_partition_create_each_invoice_once(
    runtime, fresh_shopify_sandbox, fresh_x3_sandbox, clock
):
    # Two runs of one partition at once (a sensor run racing a backfill), each with its own X3 client and
    # owner, through the posting service the asset calls (two in-process Dagster runs in threads would only
    # exercise Dagster's own logging set-up).
    day = _busiest_day(fresh_shopify_sandbox, "us")
    _materialize(runtime, ["shopify_orders"], day=day, store="us")
    _materialize(runtime, ["x3_customers", "x3_gl_accounts"])
    mapping = runtime.mapping()
    results: list[object] = []

    def post(owner: str) -> None:
        with runtime.x3_client() as x3:
            poster = InvoicePoster(
                ledger=runtime.ledger(), staging=runtime.order_staging(), snapshots=runtime.snapshots(), x3=x3,
                mapping=mapping, owner=owner, business_timezone=TZ, workers=4,
            )
            try:
                results.append(poster.post_partition("us", day_window(day, TZ), day.isoformat()))
            except Exception as exc:  # surfaced below
                results.append(exc)

    threads = [threading.Thread(target=post, args=(f"run-{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(isinstance(r, PostingReport) for r in results), results
    references = _invoices_by_reference(fresh_x3_sandbox)
    assert references
    assert all(count == 1 for count in references.values()), references
    # Whatever one run met in flight ("busy") the other finished; a third run leaves nothing pending.
    third = _post_day(runtime, day, "us")
    assert third["orders_busy"] == third["orders_in_doubt"] == 0
    assert _invoices_by_reference(fresh_x3_sandbox) == references


def test_replay_sensor_requests_failed_partitions_when_snapshots_change(
    runtime, fresh_shopify_sandbox, fresh_x3_sandbox, clock
):
    from x3_shopify_dagster.defs.x3.sensors import REPLAY_SENSOR_NAME

    fresh_shopify_sandbox.state.set_clock(clock)
    fresh_shopify_sandbox.state.create_order("eu", email="pierre.lefevre@lefevre-traiteur.example",
                                             lines=[("CUP-PORC-6", 1)])
    clock.offset += timedelta(seconds=2)
    day = business_day(clock(), TZ)
    _post_day(runtime, day, "eu")
    assert ("eu", day.isoformat()) in {(p.store, p.partition) for p in runtime.ledger().partitions_with_failures()}

    defs = build_definitions(runtime.settings, runtime=runtime)
    sensor = defs.resolve_sensor_def(REPLAY_SENSOR_NAME)
    invoices = defs.resolve_assets_def("x3_sales_invoices")
    with dg.instance_for_test() as instance:
        def tick(cursor):
            context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs,
                                              resources={"connector": runtime})
            return sensor.evaluate_tick(context)

        dg.materialize([defs.resolve_assets_def("x3_customers")], instance=instance)
        first = tick(None)
        requested = {r.partition_key for r in first.run_requests}
        assert partition_key(day, "eu") in requested
        assert all(r.asset_selection is None or r.asset_selection == [invoices.key] for r in first.run_requests)
        # Nothing changed since: no new requests.
        assert tick(first.cursor).run_requests == []
        # A new customer snapshot (the customer was created in X3): the failed partition is requested again.
        fresh_x3_sandbox.state.add_customer("FR0101", "Pierre Lefevre", "pierre.lefevre@lefevre-traiteur.example")
        dg.materialize([defs.resolve_assets_def("x3_customers")], instance=instance)
        again = tick(first.cursor)
        assert partition_key(day, "eu") in {r.partition_key for r in again.run_requests}


def test_audit_metadata_stays_small(runtime, fresh_shopify_sandbox, fresh_x3_sandbox):
    import json

    day = _busiest_day(fresh_shopify_sandbox, "us")
    _materialize(runtime, ["shopify_orders"], day=day, store="us")
    result, _ = _materialize(runtime, ["x3_sales_invoices"], day=day, store="us")
    event = result.asset_materializations_for_node("x3_sales_invoices")[0]
    size = len(json.dumps({k: str(v.value) for k, v in event.metadata.items()}))
    assert 0 < size < 16_000, size
    assert "x3-sandbox-password" not in json.dumps({k: str(v.value) for k, v in event.metadata.items()})
