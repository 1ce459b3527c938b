"""The posting ledger on SQLite and PostgreSQL: records, transitions (flows.md §2), history, queries."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from x3_shopify_dagster.storage import ConnectorDatabase
from x3_shopify_dagster.storage.ledger import (
    FailureReason,
    GlLine,
    InvalidTransition,
    ObserveOutcome,
    PostingLedger,
    RecordKind,
    RecordState,
    SkipReason,
    SourceVersion,
    StaleRecord,
    UnbalancedEntry,
)
from x3_shopify_dagster_tests.ledger._support import PARTITION, STORE, T0, ManualClock, order_version

RUN = "run-1"
INVOICE_LINES = [
    GlLine(account="411000", debit=Decimal("23.88"), credit=Decimal("0")),
    GlLine(account="706000", debit=Decimal("0"), credit=Decimal("19.90"), cost_centre="WEB-EU"),
    GlLine(account="445710", debit=Decimal("0"), credit=Decimal("3.98")),
]


def event_names(ledger: PostingLedger, record_id: int) -> list[str]:
    return [event.event for event in ledger.history(record_id)]


def walk_to(ledger: PostingLedger, record_id: int, state: RecordState) -> None:
    steps = {
        RecordState.MATCHED: lambda: ledger.mark_matched(record_id, customer="FR0001", run_id=RUN),
        RecordState.VALIDATED: lambda: ledger.mark_validated(record_id, run_id=RUN, gl_lines=INVOICE_LINES),
        RecordState.INVOICED: lambda: ledger.mark_invoiced(record_id, invoice="INV2611-00001", run_id=RUN),
    }
    for target, step in steps.items():
        step()
        if target is state:
            return


# ------------------------------------------------------------------------------------------ observing
def test_a_first_version_creates_a_staged_record_with_a_fetched_event(ledger: PostingLedger) -> None:
    observation = ledger.observe(order_version(1), run_id=RUN)
    record = observation.record
    assert observation.outcome is ObserveOutcome.NEW
    assert (record.store, record.kind, record.source_id) == (STORE, RecordKind.ORDER, "gid://shopify/Order/1")
    assert (record.state, record.partition, record.attempts, record.revision) == ("staged", PARTITION, 0, 1)
    assert (record.amount, record.currency, record.source_name) == (Decimal("19.90"), "EUR", "#1001")
    assert record.source_payload == {"id": 1, "content": "v1", "total": "19.90"}
    assert record.source_updated_at == T0
    assert record.source_updated_at.tzinfo is not None
    assert record.created_at.utcoffset().total_seconds() == 0
    [event] = ledger.history(record.id)
    assert (event.event, event.state, event.run_id) == ("fetched", "staged", RUN)
    assert event.detail == {"updated_at": T0.isoformat(), "content_hash": "hash-1-v1", "partition": PARTITION}
    assert ledger.get(STORE, "order", "gid://shopify/Order/1") == record


def test_the_same_version_again_changes_nothing(ledger: PostingLedger) -> None:
    first = ledger.observe(order_version(1), run_id=RUN).record
    again = ledger.observe(order_version(1), run_id="run-2")
    assert again.outcome is ObserveOutcome.UNCHANGED
    assert again.record == first
    assert event_names(ledger, first.id) == ["fetched"]


def test_an_updated_at_bump_without_new_content_is_remembered_silently(ledger: PostingLedger) -> None:
    record = ledger.observe(order_version(1, 0), run_id=RUN).record
    bumped = ledger.observe(order_version(1, 30), run_id=RUN)
    assert bumped.outcome is ObserveOutcome.UNCHANGED
    assert bumped.record.source_updated_at == order_version(1, 30).updated_at
    # an intermediate version met later (a backfill) is older than the bump: skipped
    assert ledger.observe(order_version(1, 10, content="v2"), run_id=RUN).outcome is ObserveOutcome.OLDER
    assert event_names(ledger, record.id) == ["fetched", "skipped"]


def test_a_record_follows_its_latest_observation_to_another_partition_so_its_replay_reaches_it(
    ledger: PostingLedger,
) -> None:
    """A failed order bumped (no new content) to the next day is replayed by that day's partition: the replay
    sensor and the UI must point there, not at a day whose run no longer sees the order."""
    record = ledger.observe(order_version(1, 0), run_id=RUN).record
    ledger.mark_failed(record.id, FailureReason.CUSTOMER_NOT_FOUND, "no X3 customer", run_id=RUN)
    next_day = "2026-11-28"
    assert next_day != PARTITION
    bumped = ledger.observe(order_version(1, 24 * 60, partition=next_day), run_id="run-2")
    assert bumped.outcome is ObserveOutcome.UNCHANGED
    assert (bumped.record.partition, bumped.record.state) == (next_day, RecordState.FAILED)
    failing = {(p.store, p.partition) for p in ledger.partitions_with_failures()}
    assert failing == {(STORE, next_day)}
    assert [r.id for r in ledger.failed_records(STORE, next_day)] == [record.id]
    # The same content seen again at the same instant from its new day keeps it there; an older observation
    # (a backfill of the first day) never pulls it back.
    assert ledger.observe(order_version(1, 24 * 60, partition=next_day), run_id=RUN).record.partition == next_day
    assert ledger.observe(order_version(1, 0), run_id="backfill").record.partition == next_day
    assert event_names(ledger, record.id) == ["fetched", "failed"]


def test_an_older_version_is_recorded_and_skipped_never_rolling_the_record_back(
    ledger: PostingLedger,
) -> None:
    """flows.md §1: backfilling an old day never rolls an order back."""
    newer = ledger.observe(order_version(1, 60, content="v2", amount="25.00"), run_id=RUN).record
    ledger.mark_matched(newer.id, customer="FR0001", run_id=RUN)
    older = ledger.observe(order_version(1, 0, content="v1"), run_id="backfill")
    assert older.outcome is ObserveOutcome.OLDER
    record = ledger.get_by_id(newer.id)
    assert (record.state, record.source_hash, record.amount) == ("matched", "hash-1-v2", Decimal("25.00"))
    skipped = ledger.history(newer.id)[-1]
    assert (skipped.event, skipped.run_id, skipped.state) == ("skipped", "backfill", "matched")
    assert skipped.detail["reason"] == SkipReason.OLDER_VERSION
    assert skipped.detail["content_hash"] == "hash-1-v1"


def test_a_newer_version_restages_a_failed_record(ledger: PostingLedger) -> None:
    record = ledger.observe(order_version(1, 0), run_id=RUN).record
    ledger.mark_failed(record.id, FailureReason.MAPPING, "SKU MUG-01 is not mapped", run_id=RUN)
    newer = ledger.observe(order_version(1, 5, content="v2", partition="2026-11-28"), run_id="run-2")
    assert newer.outcome is ObserveOutcome.NEWER
    assert (newer.record.state, newer.record.reason_code, newer.record.reason_message) == (
        "staged",
        None,
        None,
    )
    assert newer.record.partition == "2026-11-28"
    assert newer.record.source_payload == {"id": 1, "content": "v2", "total": "19.90"}
    fetched = ledger.history(record.id)[-1]
    assert fetched.event == "fetched"
    assert fetched.detail["previous"] == {"updated_at": T0.isoformat(), "content_hash": "hash-1-v1"}


def test_a_newer_version_of_an_invoiced_record_keeps_its_state(ledger: PostingLedger) -> None:
    record = ledger.observe(order_version(1, 0), run_id=RUN).record
    walk_to(ledger, record.id, RecordState.INVOICED)
    newer = ledger.observe(order_version(1, 5, content="v2"), run_id="run-2").record
    assert newer.state == "invoiced"  # the posting step decides (credit memo...), not the ledger
    assert newer.source_hash == "hash-1-v2"
    assert newer.x3_documents == {"invoice": "INV2611-00001"}


def test_observe_many_returns_outcomes_in_input_order(ledger: PostingLedger) -> None:
    ledger.observe(order_version(2), run_id=RUN)
    outcomes = ledger.observe_many(
        [order_version(3), order_version(2), order_version(1), order_version(3, 1, content="v2")], run_id=RUN
    )
    assert [o.outcome for o in outcomes] == ["new", "unchanged", "new", "newer"]
    assert [o.record.source_id[-1] for o in outcomes] == ["3", "2", "1", "3"]


def test_naive_timestamps_and_float_amounts_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        SourceVersion(STORE, RecordKind.ORDER, "1", datetime(2026, 11, 27), "h", PARTITION)
    with pytest.raises(TypeError, match="Decimal"):
        SourceVersion(STORE, RecordKind.ORDER, "1", T0, "h", PARTITION, amount=19.9)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------- transitions
def test_the_happy_path_keeps_every_step_with_gl_lines_and_documents(ledger: PostingLedger) -> None:
    record = ledger.observe(order_version(1), run_id=RUN).record
    ledger.mark_matched(record.id, customer="FR0001", run_id=RUN)
    ledger.mark_validated(record.id, run_id=RUN, gl_lines=INVOICE_LINES)
    ledger.mark_invoiced(record.id, invoice="INV2611-00001", run_id=RUN)
    posted = ledger.mark_posted(
        record.id, run_id="run-2", gl_lines=INVOICE_LINES, x3_documents={"gl_entry": "JE2611-00001"}
    )
    assert (posted.state, posted.x3_customer, posted.attempts) == ("posted", "FR0001", 1)
    assert posted.x3_documents == {"invoice": "INV2611-00001", "gl_entry": "JE2611-00001"}
    assert posted.revision == 5
    assert posted.last_run_id == "run-2"
    history = ledger.history(record.id)
    assert [(e.event, e.state) for e in history] == [
        ("fetched", "staged"),
        ("matched", "matched"),
        ("validated", "validated"),
        ("invoiced", "invoiced"),
        ("posted", "posted"),
    ]
    assert history[1].detail == {"x3_customer": "FR0001"}
    assert history[3].detail == {"x3_documents": {"invoice": "INV2611-00001"}}
    assert history[4].gl_lines == INVOICE_LINES  # Decimal amounts, exactly as given
    assert history[4].detail["gl_lines"][1] == {
        "account": "706000",
        "cost_centre": "WEB-EU",
        "debit": "0",
        "credit": "19.90",
        "description": None,
    }
    assert [e.at for e in history] == sorted(e.at for e in history)


@pytest.mark.parametrize(
    ("reached", "target"),
    [
        (RecordState.STAGED, RecordState.VALIDATED),
        (RecordState.STAGED, RecordState.INVOICED),
        (RecordState.MATCHED, RecordState.POSTED),
        (RecordState.INVOICED, RecordState.MATCHED),  # back only through staged (invoice deleted)
        (RecordState.STAGED, RecordState.STAGED),
    ],
)
def test_moves_that_flows_do_not_allow_are_refused_and_leave_no_trace(
    ledger: PostingLedger, reached: RecordState, target: RecordState
) -> None:
    record = ledger.observe(order_version(1), run_id=RUN).record
    if reached is not RecordState.STAGED:
        walk_to(ledger, record.id, reached)
    before = (ledger.get_by_id(record.id), ledger.history(record.id))
    reason = ("test_order", "", None) if target is RecordState.SKIPPED else None
    with pytest.raises(InvalidTransition, match=f"is {reached.value}: it cannot become {target.value}"):
        ledger.transition(record.id, target, run_id=RUN, reason=reason)
    assert (ledger.get_by_id(record.id), ledger.history(record.id)) == before


def test_a_failure_keeps_its_full_reason_and_the_record_is_replayable(ledger: PostingLedger) -> None:
    record = ledger.observe(order_version(1), run_id=RUN).record
    failed = ledger.mark_failed(
        record.id,
        FailureReason.AMOUNT_MISMATCH,
        "invoice total 23.87 != order total 23.88",
        run_id=RUN,
        details={"x3_total": Decimal("23.87"), "shopify_total": Decimal("23.88")},
    )
    assert failed.replayable
    assert (failed.state, failed.reason_code, failed.attempts) == ("failed", "amount_mismatch", 1)
    assert failed.reason_details == {"x3_total": "23.87", "shopify_total": "23.88"}
    event = ledger.history(record.id)[-1]
    assert event.detail == {
        "reason": "amount_mismatch",
        "message": "invoice total 23.87 != order total 23.88",
        "details": {"x3_total": "23.87", "shopify_total": "23.88"},
    }
    replayed = ledger.replay(record.id, run_id="replay-1")
    assert (replayed.state, replayed.reason_code, replayed.reason_details) == ("staged", None, None)
    assert replayed.source_payload == {"id": 1, "content": "v1", "total": "19.90"}  # nothing to re-fetch
    ledger.mark_matched(record.id, customer="FR0001", run_id="replay-1")
    assert ledger.get_by_id(record.id).attempts == 2
    assert event_names(ledger, record.id) == ["fetched", "failed", "replayed", "matched"]


def test_a_record_failed_after_invoicing_keeps_its_documents(ledger: PostingLedger) -> None:
    record = ledger.observe(order_version(1), run_id=RUN).record
    walk_to(ledger, record.id, RecordState.INVOICED)
    failed = ledger.mark_failed(
        record.id, FailureReason.PERIOD_CLOSED, "ACCDAT: period 2026-11 is closed", run_id=RUN
    )
    assert failed.x3_documents == {"invoice": "INV2611-00001"}


def test_skipping_needs_a_reason_code(ledger: PostingLedger) -> None:
    record = ledger.observe(order_version(1), run_id=RUN).record
    with pytest.raises(ValueError, match="reason is required"):
        ledger.transition(record.id, RecordState.SKIPPED, run_id=RUN)
    with pytest.raises(ValueError, match="lower_snake_case"):
        ledger.mark_skipped(record.id, "Test Order", run_id=RUN)
    skipped = ledger.mark_skipped(record.id, SkipReason.TEST_ORDER, "Shopify test order", run_id=RUN)
    assert (skipped.state, skipped.reason_code, skipped.reason_message) == (
        "skipped",
        "test_order",
        "Shopify test order",
    )


def test_unbalanced_gl_lines_are_refused_before_anything_is_written(ledger: PostingLedger) -> None:
    record = ledger.observe(order_version(1), run_id=RUN).record
    walk_to(ledger, record.id, RecordState.INVOICED)
    lopsided = [*INVOICE_LINES[:2], GlLine(account="445710", debit=Decimal("0"), credit=Decimal("3.97"))]
    with pytest.raises(UnbalancedEntry, match=r"debit 23\.88 != credit 23\.87"):
        ledger.mark_posted(record.id, run_id=RUN, gl_lines=lopsided)
    assert ledger.get_by_id(record.id).state == "invoiced"
    with pytest.raises(ValueError, match="non-negative Decimal"):
        GlLine(account="706000", debit=Decimal("-1"), credit=Decimal("0"))


def test_a_stale_revision_is_refused(ledger: PostingLedger) -> None:
    record = ledger.observe(order_version(1), run_id=RUN).record
    ledger.observe(order_version(1, 5, content="v2"), run_id="run-2")  # moved on meanwhile
    with pytest.raises(StaleRecord, match="revision 2, not 1"):
        ledger.transition(record.id, RecordState.MATCHED, run_id=RUN, expected_revision=record.revision)


def test_notes_are_appended_without_changing_the_state(ledger: PostingLedger) -> None:
    record = ledger.observe(order_version(1), run_id=RUN).record
    note = ledger.record_event(record.id, "customer_warning", run_id=RUN, detail={"email": "shared address"})
    assert (note.event, note.state, note.detail) == (
        "customer_warning",
        "staged",
        {"email": "shared address"},
    )
    assert ledger.get_by_id(record.id).revision == record.revision
    with pytest.raises(TypeError, match="floats"):
        ledger.record_event(record.id, "note", run_id=RUN, detail={"total": 19.9})


def test_two_runs_moving_one_record_at_once_cannot_both_succeed(
    connector_db: ConnectorDatabase, clock: ManualClock
) -> None:
    ledgers = [PostingLedger(connector_db, clock=clock) for _ in range(2)]
    record = ledgers[0].observe(order_version(1), run_id=RUN).record
    start = threading.Barrier(len(ledgers))
    results: list[str] = []

    def match(ledger: PostingLedger, run_id: str) -> None:
        start.wait(timeout=10)
        try:
            ledger.mark_matched(record.id, customer="FR0001", run_id=run_id)
            results.append("matched")
        except InvalidTransition:
            results.append("refused")

    threads = [threading.Thread(target=match, args=(lg, f"run-{i}")) for i, lg in enumerate(ledgers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == ["matched", "refused"]
    assert event_names(ledgers[0], record.id) == ["fetched", "matched"]


# -------------------------------------------------------------------------------------------- history
def test_events_are_append_only_in_the_database(
    ledger: PostingLedger, connector_db: ConnectorDatabase
) -> None:
    record = ledger.observe(order_version(1), run_id=RUN).record
    with pytest.raises(DBAPIError, match="append-only"), connector_db.transaction(write=True) as connection:
        connection.execute(
            text("UPDATE ledger_events SET event = 'posted' WHERE record_id = :id"), {"id": record.id}
        )
    assert event_names(ledger, record.id) == ["fetched"]


# -------------------------------------------------------------------------------------------- queries
def test_records_failures_and_summary_of_a_partition(ledger: PostingLedger) -> None:
    ids = [
        ledger.observe(order_version(n, amount=amount), run_id=RUN).record.id
        for n, amount in [(1, "0.10"), (2, "0.20"), (3, "5.00"), (4, "7.00"), (5, None)]
    ]
    ledger.observe(order_version(6), run_id=RUN)
    other_day = ledger.observe(order_version(7, partition="2026-11-28"), run_id=RUN).record
    ledger.observe(order_version(8, store="us", currency="USD"), run_id=RUN)
    ledger.observe(order_version(9, amount="1.00", currency="USD"), run_id=RUN)
    ledger.mark_failed(ids[0], FailureReason.CUSTOMER_NOT_FOUND, "no customer", run_id=RUN)
    ledger.mark_failed(ids[1], FailureReason.CUSTOMER_NOT_FOUND, "no customer", run_id=RUN)
    ledger.mark_failed(ids[2], FailureReason.GL_INVALID, "706900 inactive", run_id=RUN)
    ledger.mark_skipped(ids[3], SkipReason.TEST_ORDER, run_id=RUN)
    ledger.mark_matched(ids[4], customer="FR0002", run_id=RUN)
    ledger.mark_failed(other_day.id, FailureReason.MAPPING, "unmapped", run_id=RUN)

    failed = ledger.failed_records(STORE, PARTITION)
    assert [r.id for r in failed] == ids[:3]
    assert [r.id for r in ledger.records(STORE, PARTITION, states=["matched", RecordState.SKIPPED])] == ids[
        3:5
    ]
    assert len(ledger.records(STORE, PARTITION)) == 7
    assert ledger.records(STORE, PARTITION, kind=RecordKind.REFUND) == []

    assert [(p.store, p.partition, p.failed) for p in ledger.partitions_with_failures()] == [
        (STORE, "2026-11-27", 3),
        (STORE, "2026-11-28", 1),
    ]
    assert ledger.partitions_with_failures(store="us") == []

    summary = ledger.summary(STORE, PARTITION)
    assert summary.records == 7
    assert summary.by_state == {"failed": 3, "matched": 1, "skipped": 1, "staged": 2}
    assert summary.failures_by_reason == {"customer_not_found": 2, "gl_invalid": 1}
    assert summary.skips_by_reason == {"test_order": 1}
    # exact decimal arithmetic: 0.10 + 0.20 + 5.00 is 5.30, not 5.3000000000000001
    assert summary.totals_by_state == {
        "failed": {"EUR": Decimal("5.30")},
        "skipped": {"EUR": Decimal("7.00")},
        "staged": {"EUR": Decimal("19.90"), "USD": Decimal("1.00")},
    }
    metadata = summary.as_metadata()
    assert metadata["totals_by_state"]["failed"] == {"EUR": "5.30"}
    json.dumps(metadata)  # JSON-safe for Dagster metadata


def test_history_lists_only_the_records_own_events(ledger: PostingLedger) -> None:
    first = ledger.observe(order_version(1), run_id=RUN).record
    second = ledger.observe(order_version(2), run_id=RUN).record
    ledger.mark_matched(second.id, customer="FR0001", run_id=RUN)
    assert event_names(ledger, first.id) == ["fetched"]
    assert event_names(ledger, second.id) == ["fetched", "matched"]
    assert all(
        e.at.tzinfo is not None and e.at.utcoffset().total_seconds() == 0 for e in ledger.history(second.id)
    )


def test_the_clock_must_be_timezone_aware(connector_db: ConnectorDatabase) -> None:
    naive = PostingLedger(connector_db, clock=lambda: datetime(2026, 11, 27, 9, 0))
    with pytest.raises(ValueError, match="timezone-aware"):
        naive.observe(order_version(1), run_id=RUN)
    aware = PostingLedger(connector_db, clock=lambda: datetime(2026, 11, 27, 10, 0, tzinfo=UTC))
    assert aware.observe(order_version(1), run_id=RUN).record.created_at == datetime(
        2026, 11, 27, 10, tzinfo=UTC
    )
