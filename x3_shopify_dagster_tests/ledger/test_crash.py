"""Processes killed at the dangerous instants of an X3 write, and processes racing for one write: the X3
sandbox over real HTTP, the ledger on a SQLite file and on PostgreSQL. Whatever happens, exactly one invoice
carries the reference and the ledger records it as done (flows.md §3)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

import pytest

from x3_shopify_dagster.sandboxes.x3 import X3Sandbox
from x3_shopify_dagster.storage import ConnectorDatabase
from x3_shopify_dagster.storage.exactly_once import (
    LeaseHeld,
    OperationOutcome,
    OperationState,
    OutcomeStatus,
    ProtocolStep,
    get_operation,
    run_exactly_once,
)
from x3_shopify_dagster.storage.ledger import PostingLedger
from x3_shopify_dagster.x3 import X3Client
from x3_shopify_dagster_tests.ledger._support import (
    InvoiceWriter,
    Job,
    OffsetClock,
    Worker,
    X3Endpoint,
    classify_x3_error,
    order_version,
)
from x3_shopify_dagster_tests.ledger.crash_worker import CRASH_EXIT_CODE

LEASE_S = 60.0
StartWorker = Callable[[Job], Worker]

# crash point → (operation state and invoices left behind, outcome of the next run, its sends, its lookups)
AFTER_CRASH = {
    # (a0) intent recorded, nothing sent: the next run sends without asking X3
    ProtocolStep.CLAIMED: (OperationState.CLAIMED, 0, OutcomeStatus.SENT, 1, 0),
    # (a) `sending` recorded, killed before the call: X3 is asked, has nothing, the invoice is sent
    ProtocolStep.SENDING: (OperationState.SENDING, 0, OutcomeStatus.SENT, 1, 1),
    # (b) X3 answered, killed before recording it: X3 is asked and its invoice adopted, nothing resent
    ProtocolStep.ANSWERED: (OperationState.SENDING, 1, OutcomeStatus.ADOPTED, 0, 1),
    # (c) outcome recorded: the next run returns it without calling X3 at all
    ProtocolStep.RECORDED: (OperationState.DONE, 1, OutcomeStatus.ALREADY_DONE, 0, 0),
}


def invoices_with(sandbox: X3Sandbox, reference: str) -> list[str]:
    return [invoice.number for invoice in sandbox.state.invoices() if invoice.reference == reference]


def job(
    database_url: str,
    endpoint: X3Endpoint,
    reference: str,
    owner: str,
    *,
    record_id: int | None = None,
    crash_at: ProtocolStep | None = None,
    wait_for_go: bool = False,
) -> Job:
    return Job(
        database_url=database_url,
        x3=asdict(endpoint),
        key=f"x3:invoice:create:eu:{reference}",
        reference=reference,
        owner=owner,
        lease_s=LEASE_S,
        record_id=record_id,
        crash_at=crash_at.value if crash_at else None,
        wait_for_go=wait_for_go,
    )


@pytest.mark.parametrize("crash_at", list(AFTER_CRASH), ids=[step.value for step in AFTER_CRASH])
def test_a_write_killed_at_any_instant_ends_as_exactly_one_invoice(
    crash_at: ProtocolStep,
    database_url: str,
    connector_db: ConnectorDatabase,
    x3_sandbox: X3Sandbox,
    x3_endpoint: X3Endpoint,
    x3_client: X3Client,
    reference: str,
    start_worker: StartWorker,
) -> None:
    state_left, invoices_left, next_status, next_sends, next_lookups = AFTER_CRASH[crash_at]
    record = PostingLedger(connector_db).observe(order_version(1), run_id="killed-run").record
    worker = start_worker(
        job(database_url, x3_endpoint, reference, "killed-run", record_id=record.id, crash_at=crash_at)
    )
    code, lines, stderr = worker.finish()
    assert (code, lines) == (CRASH_EXIT_CODE, ["ready", f"crash:{crash_at.value}"]), stderr[-2000:]

    key = f"x3:invoice:create:eu:{reference}"
    left = get_operation(PostingLedger(connector_db), key)
    assert left is not None
    assert (left.state, left.owner) == (state_left, "killed-run")
    assert len(invoices_with(x3_sandbox, reference)) == invoices_left

    def run_again(ledger: PostingLedger, writer: InvoiceWriter, owner: str) -> OperationOutcome:
        return run_exactly_once(
            ledger,
            key,
            owner=owner,
            lease_s=LEASE_S,
            send=writer.send,
            lookup=writer.lookup,
            remote_reference=reference,
            record_id=record.id,
            classify_error=classify_x3_error,
        )

    if state_left is not OperationState.DONE:
        # Right after the crash the dead run's lease is still live: no one may resolve its operation yet.
        with pytest.raises(LeaseHeld):
            run_again(PostingLedger(connector_db), InvoiceWriter(x3_client, reference), "impatient-run")
        assert get_operation(PostingLedger(connector_db), key) == left

    writer = InvoiceWriter(x3_client, reference)
    later = PostingLedger(connector_db, clock=OffsetClock(LEASE_S + 1))  # a run after the lease expired
    outcome = run_again(later, writer, "next-run")

    numbers = invoices_with(x3_sandbox, reference)
    assert len(numbers) == 1, f"invoices carrying {reference}: {numbers}"
    number = numbers[0]
    assert (outcome.status, outcome.document) == (next_status, number)
    assert (writer.sends, writer.lookups) == (next_sends, next_lookups)
    done = get_operation(later, key)
    assert done is not None
    assert (done.state, done.document, done.remote_reference) == (OperationState.DONE, number, reference)
    closing_events = {
        OutcomeStatus.SENT: ["taken_over", "sending", "sent"],
        OutcomeStatus.ADOPTED: ["taken_over", "adopted"],
        OutcomeStatus.ALREADY_DONE: ["sending", "sent"],  # all written by the killed run
    }[next_status]
    history = [event.event for event in later.history(record.id)]
    assert history[-len(closing_events) :] == closing_events


def test_two_processes_started_at_once_create_one_invoice(
    database_url: str,
    connector_db: ConnectorDatabase,
    x3_sandbox: X3Sandbox,
    x3_endpoint: X3Endpoint,
    reference: str,
    start_worker: StartWorker,
) -> None:
    # the first save takes 0.3 s more, so the other process usually meets its live lease
    x3_sandbox.faults.inject("latency", latency_s=0.3, path_contains="save/YSIH")
    workers = [
        start_worker(job(database_url, x3_endpoint, reference, f"racer-{n}", wait_for_go=True))
        for n in range(2)
    ]
    for worker in workers:
        worker.wait_ready()
    for worker in workers:
        worker.go()
    reports = [worker.report() for worker in workers]

    statuses = sorted(report["status"] for report in reports)
    assert statuses in (["lease_held", "sent"], ["already_done", "sent"]), reports
    assert sum(report["sends"] for report in reports) == 1
    numbers = invoices_with(x3_sandbox, reference)
    assert len(numbers) == 1, f"invoices carrying {reference}: {numbers}"
    number = numbers[0]
    assert [report["document"] for report in reports if report["status"] == "sent"] == [number]
    operation = get_operation(PostingLedger(connector_db), f"x3:invoice:create:eu:{reference}")
    assert operation is not None
    assert (operation.state, operation.document, operation.attempts) == (OperationState.DONE, number, 1)
