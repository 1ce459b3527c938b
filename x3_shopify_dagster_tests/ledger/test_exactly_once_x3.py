"""Exactly-once invoice creation against the X3 sandbox over real HTTP, in this process: an in-doubt write
(dropped connection), a refusal fixed by a replay, a busy pool. Process kills are in test_crash.py."""

from __future__ import annotations

from typing import Any

import pytest

from x3_shopify_dagster.sandboxes.x3 import X3Sandbox
from x3_shopify_dagster.storage.exactly_once import (
    LeaseHeld,
    OperationInDoubt,
    OperationNotSent,
    OperationOutcome,
    OperationState,
    OutcomeStatus,
    get_operation,
    run_exactly_once,
)
from x3_shopify_dagster.storage.ledger import PostingLedger
from x3_shopify_dagster.x3 import X3BusinessError, X3Client, X3OutcomeUnknownError, X3ServiceBusyError
from x3_shopify_dagster_tests.ledger._support import (
    InvoiceWriter,
    ManualClock,
    classify_x3_error,
    order_version,
)

LEASE_S = 120.0


def invoices_with(sandbox: X3Sandbox, reference: str) -> list[str]:
    return [invoice.number for invoice in sandbox.state.invoices() if invoice.reference == reference]


def create_invoice(
    ledger: PostingLedger, writer: InvoiceWriter, owner: str, **kwargs: Any
) -> OperationOutcome:
    return run_exactly_once(
        ledger,
        f"x3:invoice:create:eu:{writer.reference}",
        owner=owner,
        lease_s=LEASE_S,
        send=writer.send,
        lookup=writer.lookup,
        remote_reference=writer.reference,
        classify_error=classify_x3_error,
        **kwargs,
    )


def test_a_dropped_connection_is_resolved_by_looking_the_reference_up(
    ledger: PostingLedger, clock: ManualClock, x3_sandbox: X3Sandbox, x3_client: X3Client, reference: str
) -> None:
    record = ledger.observe(order_version(1), run_id="run-1").record
    writer = InvoiceWriter(x3_client, reference)
    x3_sandbox.faults.inject("drop_connection", path_contains="save/YSIH")  # X3 saves, the answer is lost
    with pytest.raises(OperationInDoubt) as raised:
        create_invoice(ledger, writer, "run-1", record_id=record.id)
    assert isinstance(raised.value.__cause__, X3OutcomeUnknownError)
    [number] = invoices_with(x3_sandbox, reference)
    with pytest.raises(LeaseHeld):  # the in-doubt write keeps its lease: nobody resends meanwhile
        create_invoice(ledger, writer, "run-2")
    clock.advance(LEASE_S)
    outcome = create_invoice(ledger, writer, "run-2")
    assert (outcome.status, outcome.document) == (OutcomeStatus.ADOPTED, number)
    assert (writer.sends, writer.lookups) == (1, 1)
    assert invoices_with(x3_sandbox, reference) == [number]
    assert [e.event for e in ledger.history(record.id)][-3:] == ["in_doubt", "taken_over", "adopted"]


def test_a_refused_invoice_is_failed_then_created_by_a_replay_after_the_fix(
    ledger: PostingLedger, x3_sandbox: X3Sandbox, x3_client: X3Client, reference: str
) -> None:
    writer = InvoiceWriter(x3_client, reference, customer="ZZ9999")
    refused = create_invoice(ledger, writer, "run-1")
    assert refused.status is OutcomeStatus.REFUSED
    assert isinstance(refused.exception, X3BusinessError)
    assert refused.error is not None
    assert "ZZ9999" in refused.error["message"]
    assert invoices_with(x3_sandbox, reference) == []
    writer.customer = "FR0001"  # the mapping was fixed
    replayed = create_invoice(ledger, writer, "replay-1")
    assert replayed.status is OutcomeStatus.SENT
    assert invoices_with(x3_sandbox, reference) == [replayed.document]
    assert writer.lookups == 0  # a refusal wrote nothing: no lookup needed
    assert replayed.result == {"status": 1, "amount_incl_tax": "120.00", "amount_excl_tax": "100.00"}


def test_a_busy_pool_leaves_the_operation_free_to_send_again(
    ledger: PostingLedger, x3_sandbox: X3Sandbox, x3_client: X3Client, reference: str
) -> None:
    writer = InvoiceWriter(x3_client, reference)
    x3_sandbox.faults.inject("pool_timeout", times=None, path_contains="save/YSIH")
    with pytest.raises(OperationNotSent) as raised:
        create_invoice(ledger, writer, "run-1")
    assert isinstance(raised.value.__cause__, X3ServiceBusyError)
    operation = get_operation(ledger, f"x3:invoice:create:eu:{reference}")
    assert operation is not None
    assert (operation.state, operation.lease_expires_at) == (OperationState.CLAIMED, None)
    x3_sandbox.faults.clear()
    outcome = create_invoice(ledger, writer, "run-2")
    assert outcome.status is OutcomeStatus.SENT
    assert (writer.sends, writer.lookups) == (2, 0)
    assert invoices_with(x3_sandbox, reference) == [outcome.document]
