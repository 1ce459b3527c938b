"""The life of an order in X3 after invoicing, over both sandboxes (HTTP): posting moment, cancellations,
refunds as credit memos, crashes, closed periods and edits (flows.md §1, §2, §3, §5).

Each test drives one order through the Shopify sandbox's own lifecycle (pay, refund, cancel) and runs the
`x3_sales_invoices` asset of the day the order changed in, then checks X3's documents and GL entries and the
ledger's trail.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from x3_shopify_dagster.domain.shopify_orders import ShopifyOrder
from x3_shopify_dagster.domain.windows import business_day
from x3_shopify_dagster.storage.ledger import RecordKind
from x3_shopify_dagster.storage.order_staging import OrderVersion
from x3_shopify_dagster_tests.defs.test_x3_sales_invoices import DEMO_MAPPING, TZ, _materialize

CLAIRE = "claire.martin@bistro-lyon.example"  # FR0001 in X3, eu store, posting on_paid (demo mapping)
AVA = "ava.davis@davis-catering.example"  # US0005 in X3, posting on_create (demo mapping)


@pytest.fixture
def runtime(fresh_shopify_sandbox, fresh_x3_sandbox, runtime_factory, clock):
    fresh_shopify_sandbox.state.set_clock(clock)
    return runtime_factory(fresh_shopify_sandbox, x3_sandbox=fresh_x3_sandbox, mapping_path=str(DEMO_MAPPING))


def _run(runtime, clock, store, *, fetch=True):
    """Stage and post the business day the sandbox clock is in (after stepping past the last change)."""
    clock.offset += timedelta(seconds=2)
    day = business_day(clock(), TZ)
    if fetch:
        _materialize(runtime, ["shopify_orders"], day=day, store=store)
    _, metadata = _materialize(runtime, ["x3_sales_invoices"], day=day, store=store)
    return metadata["x3_sales_invoices"]


def _documents(x3, reference_prefix):
    return [i for i in x3.state.invoices() if i.reference.startswith(reference_prefix)]


def _reference(order_id, marker=""):
    store_and_id = order_id.rsplit("/", 1)[-1]
    return f"{marker}{store_and_id}"


def _gl_net(x3, numbers):
    """Net debit minus credit per account over the GL entries of the given invoices and credit memos."""
    net: dict[str, Decimal] = defaultdict(Decimal)
    for (_, _), entry in x3.state.tables.gl_entries.items():
        if entry.origin_document in numbers:
            for line in entry.lines:
                net[line.account] += line.debit - line.credit
    return net


# ------------------------------------------------------------------------------------------- posting moment
def test_an_unpaid_order_is_invoiced_and_posted_by_the_run_that_sees_it_paid(
    runtime, fresh_shopify_sandbox, fresh_x3_sandbox, clock
):
    shop = fresh_shopify_sandbox.state
    order_id = shop.create_order("eu", email=CLAIRE, lines=[("TAMPER-58", 2)], financial_status="PENDING")
    first = _run(runtime, clock, "eu")  # the day also holds the sandbox's seeded orders
    record = runtime.ledger().get("eu", "order", order_id)
    assert record.state.value == "invoiced"
    assert first["orders_invoiced"] >= 1
    number = record.x3_documents["invoice"]
    assert fresh_x3_sandbox.state.invoice(number).status.value == 1  # created, not posted: posting is on_paid

    shop.mark_paid(order_id)
    second = _run(runtime, clock, "eu")
    record = runtime.ledger().get("eu", "order", order_id)
    assert (record.state.value, second["orders_posted"]) == ("posted", 1)  # only what changed is processed
    assert record.x3_documents["invoice"] == number  # the same invoice, now posted
    assert fresh_x3_sandbox.state.invoice(number).status.value == 3
    assert len(_documents(fresh_x3_sandbox, f"SHOPIFY:eu:{_reference(order_id)}")) == 1


# ---------------------------------------------------------------------------------------------- cancellations
def test_cancelled_before_posting_deletes_the_unposted_invoice_and_nothing_reaches_the_gl(
    runtime, fresh_shopify_sandbox, fresh_x3_sandbox, clock
):
    shop = fresh_shopify_sandbox.state
    order_id = shop.create_order("eu", email=CLAIRE, lines=[("CUP-PORC-6", 1)], financial_status="PENDING")
    _run(runtime, clock, "eu")
    number = runtime.ledger().get("eu", "order", order_id).x3_documents["invoice"]
    assert fresh_x3_sandbox.state.invoice(number) is not None

    shop.cancel(order_id)  # unpaid: voided, no refund
    report = _run(runtime, clock, "eu")
    record = runtime.ledger().get("eu", "order", order_id)
    assert (record.state.value, record.reason_code) == ("skipped", "cancelled_before_posting")
    assert number in record.reason_message
    assert report["orders_skipped"] == 1  # this run processed only the cancelled order
    assert fresh_x3_sandbox.state.invoice(number) is None  # deleted in X3
    assert not _gl_net(fresh_x3_sandbox, {number})  # never posted: no GL entry
    assert "invoice_deleted" in [e.event for e in runtime.ledger().history(record.id)]

    again = _run(runtime, clock, "eu")  # a re-run deletes nothing more and creates nothing
    assert again["orders_skipped"] == 0
    assert _documents(fresh_x3_sandbox, f"SHOPIFY:eu:{_reference(order_id)}") == []


def test_cancelled_after_posting_is_credited_in_full_and_invoice_and_credit_net_to_zero(
    runtime, fresh_shopify_sandbox, fresh_x3_sandbox, clock
):
    shop = fresh_shopify_sandbox.state
    order_id = shop.create_order("us", email=AVA, lines=[("TAMPER-58", 1), ("CUP-PORC-6", 2)],
                                 financial_status="PENDING")
    _run(runtime, clock, "us")  # US0005 posts on creation
    record = runtime.ledger().get("us", "order", order_id)
    assert record.state.value == "posted"
    invoice = fresh_x3_sandbox.state.invoice(record.x3_documents["invoice"])

    shop.cancel(order_id)  # never paid: voided, no refund; the posted invoice is credited in full
    report = _run(runtime, clock, "us")
    assert report["credit_memos_credited"] == 1
    [memo] = _documents(fresh_x3_sandbox, f"SHOPIFY:us:{_reference(order_id, 'C')}")
    assert (memo.invoice_type.value, memo.origin_invoice, memo.status.value) == (2, invoice.number, 3)
    assert memo.amount_incl_tax == invoice.amount_incl_tax
    net = _gl_net(fresh_x3_sandbox, {invoice.number, memo.number})
    assert net, "both documents have GL entries"
    assert set(net.values()) == {Decimal(0)}, net  # every account back to zero
    cancellation = runtime.ledger().get("us", RecordKind.REFUND, f"{order_id}#cancel")
    assert (cancellation.state.value, cancellation.x3_documents["credit_memo"]) == ("credited", memo.number)
    order = runtime.ledger().get("us", "order", order_id)
    assert (order.state.value, order.x3_documents["credit_memos"]) == ("credited", [memo.number])
    # The asset shows the credit memo.
    rows = [row.data for row in report["credit_memos"].records]
    assert [(row["kind"], row["credit_memo"], row["outcome"]) for row in rows] == [
        ("cancellation", memo.number, "credited")]

    again = _run(runtime, clock, "us")
    assert again["credit_memos_credited"] == 0
    assert len([i for i in fresh_x3_sandbox.state.invoices() if i.origin_invoice == invoice.number]) == 1


def test_refunds_become_credit_memos_and_a_cancellation_with_refunds_never_double_credits(
    runtime, fresh_shopify_sandbox, fresh_x3_sandbox, clock
):
    shop = fresh_shopify_sandbox.state
    order_id = shop.create_order("eu", email=CLAIRE, lines=[("TAMPER-58", 2), ("CUP-PORC-6", 1)])
    _run(runtime, clock, "eu")
    invoice = fresh_x3_sandbox.state.invoice(runtime.ledger().get("eu", "order", order_id).x3_documents["invoice"])
    assert invoice.status.value == 3

    refund_id = shop.refund(order_id, [(0, 1)], restock_type="RETURN")  # one tamper back
    report = _run(runtime, clock, "eu")
    assert report["credit_memos_credited"] == 1
    staged = ShopifyOrder.model_validate(runtime.order_staging().latest("eu", order_id).payload)
    refund = next(r for r in staged.refunds if r.id == refund_id)
    [memo] = _documents(fresh_x3_sandbox, f"SHOPIFY:eu:{_reference(refund_id, 'R')}")
    assert memo.amount_incl_tax == refund.total_refunded_set.shop_money.amount  # to the cent
    assert (memo.origin_invoice, memo.status.value) == (invoice.number, 3)
    [row] = [r.data for r in report["credit_memos"].records if r.data["credit_memo"] == memo.number]
    assert row["restock"] == "1 x TAMPER-58 RETURN"
    # Shopify put the tamper back on hand: one restock marker for the stock sync (flows.md §4), recorded once.
    [restock] = [r for r in runtime.stock_store().restocks("eu") if r.order_id == order_id]
    assert (restock.refund_id, restock.item, restock.quantity, restock.restock_type) == (
        refund_id, "TAMPER-58", 1, "RETURN")
    assert "411000" in row["gl_lines"]
    record = runtime.ledger().get("eu", RecordKind.REFUND, refund_id)
    credited = [e for e in runtime.ledger().history(record.id) if e.event == "credited"][-1]
    assert sum(g.debit for g in credited.gl_lines) == sum(g.credit for g in credited.gl_lines) == memo.amount_incl_tax

    shop.cancel(order_id)  # paid: Shopify refunds everything left (restock CANCEL)
    report = _run(runtime, clock, "eu")
    assert report["credit_memos_credited"] == 1  # the cancellation's refund; no separate cancellation memo
    cancellation = runtime.ledger().get("eu", RecordKind.REFUND, f"{order_id}#cancel")
    assert (cancellation.state.value, cancellation.reason_code) == ("skipped", "credited_by_refunds")
    memos = [i for i in fresh_x3_sandbox.state.invoices() if i.origin_invoice == invoice.number]
    assert len(memos) == 2
    assert sum(m.amount_incl_tax for m in memos) == invoice.amount_incl_tax  # credited exactly once in full
    net = _gl_net(fresh_x3_sandbox, {invoice.number, *(m.number for m in memos)})
    assert set(net.values()) == {Decimal(0)}, net

    # Re-runs and a replay of the day: nothing new anywhere.
    before = len(fresh_x3_sandbox.state.invoices())
    again = _run(runtime, clock, "eu")
    assert again["credit_memos_credited"] == again["credit_memos_failed"] == 0
    assert len(fresh_x3_sandbox.state.invoices()) == before


def test_a_refund_after_a_full_cancellation_credit_is_skipped(runtime, fresh_shopify_sandbox, fresh_x3_sandbox,
                                                              clock):
    # Cancelled unpaid after posting: credited in full by the cancellation memo. A refund Shopify shows later
    # (staged as the next version: the sandbox only refunds paid orders) must not credit the invoice again.
    shop = fresh_shopify_sandbox.state
    order_id = shop.create_order("us", email=AVA, lines=[("TAMPER-58", 1)], financial_status="PENDING")
    _run(runtime, clock, "us")
    shop.cancel(order_id)
    _run(runtime, clock, "us")
    invoice = runtime.ledger().get("us", "order", order_id).x3_documents["invoice"]
    assert len([i for i in fresh_x3_sandbox.state.invoices() if i.origin_invoice == invoice]) == 1

    cancelled = ShopifyOrder.model_validate(runtime.order_staging().latest("us", order_id).payload)
    item = cancelled.line_items[0]
    clock.offset += timedelta(seconds=2)
    refund = {
        "id": "gid://shopify/Refund/9900000000001", "created_at": clock(), "processed_at": clock(),
        "total_refunded_set": cancelled.total_price_set,
        "refund_line_items": [{"quantity": 1, "restock_type": "RETURN", "line_item_id": item.id, "sku": item.sku,
                               "subtotal_set": item.discounted_total_set, "total_tax_set": cancelled.total_tax_set}],
    }
    _stage(runtime, "us", cancelled.model_copy(update={"updated_at": clock(), "refunds": (refund,)}))
    _run(runtime, clock, "us", fetch=False)
    record = runtime.ledger().get("us", RecordKind.REFUND, refund["id"])
    assert (record.state.value, record.reason_code) == ("skipped", "already_credited")
    assert len([i for i in fresh_x3_sandbox.state.invoices() if i.origin_invoice == invoice]) == 1


def _stage(runtime, store: str, order: ShopifyOrder) -> None:
    """Stage ``order`` as the next version Shopify shows (as shopify_orders would)."""
    order = ShopifyOrder.model_validate(order.model_dump())  # validate what model_copy was given
    payload = order.to_payload()
    version = OrderVersion(store, order.id, order.name, order.updated_at, order.content_hash(payload), payload)
    runtime.order_staging().stage([version])


# ------------------------------------------------------------------------------------ crashes and periods
def test_a_crash_after_the_credit_memo_was_created_adopts_it(runtime, fresh_shopify_sandbox, fresh_x3_sandbox,
                                                             clock):
    shop = fresh_shopify_sandbox.state
    order_id = shop.create_order("eu", email=CLAIRE, lines=[("TAMPER-58", 2)])
    _run(runtime, clock, "eu")
    refund_id = shop.refund(order_id, [(0, 1)], restock_type="NO_RESTOCK")
    fresh_x3_sandbox.faults.inject("drop_connection", path_contains="save/YSIH")  # X3 saves, the answer is lost
    report = _run(runtime, clock, "eu")
    assert [r for r in runtime.stock_store().restocks("eu") if r.order_id == order_id] == []  # kept: no restock
    assert report["credit_memos_in_doubt"] == 1
    reference = f"SHOPIFY:eu:{_reference(refund_id, 'R')}"
    [memo] = _documents(fresh_x3_sandbox, reference)
    assert memo.status.value == 1  # created, never recorded

    _expire_leases(runtime)  # as if posting_lease_seconds had passed: the crashed run's lease has ended
    report = _run(runtime, clock, "eu", fetch=False)
    assert report["credit_memos_credited"] == 1
    assert [m.number for m in _documents(fresh_x3_sandbox, reference)] == [memo.number]  # adopted, not re-created
    record = runtime.ledger().get("eu", RecordKind.REFUND, refund_id)
    assert (record.state.value, record.x3_documents["credit_memo"]) == ("credited", memo.number)
    assert "adopted" in [e.event for e in runtime.ledger().history(record.id)]
    assert fresh_x3_sandbox.state.invoice(memo.number).status.value == 3


def test_a_refund_in_a_closed_period_fails_and_is_credited_once_after_reopening(
    runtime, fresh_shopify_sandbox, fresh_x3_sandbox, clock
):
    shop = fresh_shopify_sandbox.state
    order_id = shop.create_order("eu", email=CLAIRE, lines=[("CUP-PORC-6", 2)])
    _run(runtime, clock, "eu")
    refund_id = shop.refund(order_id, [(0, 1)], shipping=True)
    period = business_day(clock(), TZ).strftime("%Y-%m")  # the refund's business day, not the run's
    fresh_x3_sandbox.state.close_period(period)
    report = _run(runtime, clock, "eu")
    record = runtime.ledger().get("eu", RecordKind.REFUND, refund_id)
    assert (record.state.value, record.reason_code, report["credit_memos_failed"]) == ("failed", "period_closed", 1)
    assert period in record.reason_message
    assert _documents(fresh_x3_sandbox, f"SHOPIFY:eu:{_reference(refund_id, 'R')}") == []
    day = business_day(clock(), TZ).isoformat()
    assert ("eu", day) in {(p.store, p.partition) for p in runtime.ledger().partitions_with_failures(kind="refund")}

    fresh_x3_sandbox.state.reopen_period(period)
    report = _run(runtime, clock, "eu", fetch=False)  # the replay: re-materializing the partition
    assert report["credit_memos_credited"] == 1
    [memo] = _documents(fresh_x3_sandbox, f"SHOPIFY:eu:{_reference(refund_id, 'R')}")
    assert memo.status.value == 3
    assert runtime.ledger().get("eu", RecordKind.REFUND, refund_id).state.value == "credited"
    _run(runtime, clock, "eu", fetch=False)
    assert len(_documents(fresh_x3_sandbox, f"SHOPIFY:eu:{_reference(refund_id, 'R')}")) == 1


def test_a_failed_refund_follows_its_order_to_the_next_day_and_that_days_replay_credits_it(
    runtime, fresh_shopify_sandbox, fresh_x3_sandbox, clock
):
    """The order changes again the next day (here: only its updatedAt): its failed refund moves with it, so the
    partition the replay sensor and the UI name is one whose re-materialization reaches the refund."""
    shop = fresh_shopify_sandbox.state
    clock.offset -= timedelta(days=1)  # yesterday: today's partition is the newest there is
    order_id = shop.create_order("eu", email=CLAIRE, lines=[("CUP-PORC-6", 2)])
    _run(runtime, clock, "eu")
    refund_id = shop.refund(order_id, [(0, 1)], shipping=True)
    first_day = business_day(clock(), TZ)
    period = first_day.strftime("%Y-%m")  # the refund's business day's period
    fresh_x3_sandbox.state.close_period(period)
    _run(runtime, clock, "eu")
    assert runtime.ledger().get("eu", RecordKind.REFUND, refund_id).reason_code == "period_closed"

    clock.offset += timedelta(days=1)
    shop.touch_order("eu", order_id)
    _run(runtime, clock, "eu")  # the next day's routine run: replays nothing
    next_day = business_day(clock(), TZ).isoformat()
    record = runtime.ledger().get("eu", RecordKind.REFUND, refund_id)
    assert (record.state.value, record.partition) == ("failed", next_day)
    assert runtime.ledger().get("eu", RecordKind.ORDER, order_id).partition == next_day
    failing = {(p.store, p.partition) for p in runtime.ledger().partitions_with_failures(kind="refund")}
    assert failing == {("eu", next_day)}

    fresh_x3_sandbox.state.reopen_period(period)
    _run(runtime, clock, "eu", fetch=False)  # re-materializing the partition the UI shows as failed
    assert runtime.ledger().get("eu", RecordKind.REFUND, refund_id).state.value == "credited"
    assert len(_documents(fresh_x3_sandbox, f"SHOPIFY:eu:{_reference(refund_id, 'R')}")) == 1
    assert first_day.isoformat() != next_day


# ------------------------------------------------------------------------------------------------- edits
def test_an_order_edited_after_invoicing_is_reinvoiced_and_posts_the_lines_of_the_invoice_x3_holds(
    runtime, fresh_shopify_sandbox, fresh_x3_sandbox, clock
):
    shop = fresh_shopify_sandbox.state
    order_id = shop.create_order("eu", email=CLAIRE, lines=[("TAMPER-58", 1)], financial_status="PENDING")
    _run(runtime, clock, "eu")
    first = runtime.ledger().get("eu", "order", order_id).x3_documents["invoice"]
    # The order is edited (a second tamper) and paid. The sandbox has no order edits: the edited content is
    # another order's (same customer, two tampers, paid), staged as the next version of this one.
    other_id = shop.create_order("eu", email=CLAIRE, lines=[("TAMPER-58", 2)])
    clock.offset += timedelta(seconds=2)
    _materialize(runtime, ["shopify_orders"], day=business_day(clock(), TZ), store="eu")
    other = ShopifyOrder.model_validate(runtime.order_staging().latest("eu", other_id).payload)
    original = ShopifyOrder.model_validate(runtime.order_staging().latest("eu", order_id).payload)
    clock.offset += timedelta(seconds=2)
    edited = other.model_copy(update={"id": original.id, "legacy_resource_id": original.legacy_resource_id,
                                      "name": original.name, "updated_at": clock()})
    _stage(runtime, "eu", edited)
    _run(runtime, clock, "eu", fetch=False)

    record = runtime.ledger().get("eu", "order", order_id)
    assert record.state.value == "posted"
    assert fresh_x3_sandbox.state.invoice(first) is None  # the stale unposted invoice was deleted
    [invoice] = _documents(fresh_x3_sandbox, f"SHOPIFY:eu:{_reference(order_id)}")
    assert invoice.amount_incl_tax == edited.total_price_set.shop_money.amount
    assert record.x3_documents["invoice"] == invoice.number
    posting = [e for e in runtime.ledger().history(record.id) if e.event == "posted"][-1]
    receivable = sum(g.debit for g in posting.gl_lines if g.account.endswith("411000"))
    assert receivable == invoice.amount_incl_tax  # the GL recorded is the invoice X3 posted
    assert "invoice_deleted" in [e.event for e in runtime.ledger().history(record.id)]


def _expire_leases(runtime) -> None:
    from sqlalchemy import update

    from x3_shopify_dagster.storage.ledger_schema import ledger_operations

    with runtime.database.transaction(write=True) as connection:
        connection.execute(update(ledger_operations).values(lease_expires_at=datetime(2000, 1, 1, tzinfo=UTC)))
