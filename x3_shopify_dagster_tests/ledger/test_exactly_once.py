"""The exactly-once protocol (flows.md §3) with an in-memory remote, on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from x3_shopify_dagster.storage import ConnectorDatabase
from x3_shopify_dagster.storage.exactly_once import (
    LeaseHeld,
    LeaseLost,
    OperationInDoubt,
    OperationNotSent,
    OperationState,
    OperationStore,
    OutcomeStatus,
    RemoteResult,
    SendFailure,
    get_operation,
    operations_in_doubt,
    renew_lease,
    run_exactly_once,
)
from x3_shopify_dagster.storage.ledger import PostingLedger
from x3_shopify_dagster_tests.ledger._support import ManualClock, order_version

KEY = "x3:invoice:create:eu:gid://shopify/Order/1"
LEASE_S = 60.0


class Refused(Exception):
    pass


class Busy(Exception):
    pass


class Timeout(Exception):
    pass


def classify(error: Exception) -> SendFailure:
    return {Refused: SendFailure.REFUSED, Busy: SendFailure.NOT_EXECUTED}.get(
        type(error), SendFailure.IN_DOUBT
    )


@dataclass
class FakeRemote:
    """A remote system keeping documents by reference. `fail_with` makes the next sends raise: `Refused` and
    `Busy` before writing anything, any other exception after writing (the answer was lost: in doubt)."""

    documents: list[tuple[str, str]] = field(default_factory=list)  # (reference, number)
    sends: int = 0
    lookups: int = 0
    fail_with: list[Exception] = field(default_factory=list)
    during_send: Callable[[], object] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def sender(self, reference: str = "eu:1") -> Callable[[], RemoteResult]:
        def send() -> RemoteResult:
            with self.lock:
                self.sends += 1
                error = self.fail_with.pop(0) if self.fail_with else None
            if isinstance(error, Refused | Busy):
                raise error
            if self.during_send is not None:
                self.during_send()
            with self.lock:
                number = f"INV-{len(self.documents) + 1:05d}"
                self.documents.append((reference, number))
            if error is not None:
                raise error
            return RemoteResult(number, {"total": Decimal("23.88")})

        return send

    def looker(self, reference: str = "eu:1") -> Callable[[], RemoteResult | None]:
        def lookup() -> RemoteResult | None:
            self.lookups += 1
            found = [number for ref, number in self.documents if ref == reference]
            if len(found) > 1:
                raise AssertionError(f"duplicate documents for {reference}: {found}")
            return RemoteResult(found[0], {"found": True}) if found else None

        return lookup


def never_called() -> Any:
    raise AssertionError("must not be called")


@pytest.fixture
def remote() -> FakeRemote:
    return FakeRemote()


def run(ledger: PostingLedger, remote: FakeRemote, owner: str = "run-1", **kwargs: Any) -> Any:
    kwargs.setdefault("send", remote.sender())
    kwargs.setdefault("lookup", remote.looker())
    return run_exactly_once(
        ledger, KEY, owner=owner, lease_s=LEASE_S, remote_reference="eu:1", classify_error=classify, **kwargs
    )


def operation_events(ledger: PostingLedger, record_id: int) -> list[tuple[str, str | None]]:
    return [(e.event, e.run_id) for e in ledger.history(record_id) if e.operation_id is not None]


# ------------------------------------------------------------------------------------------ happy paths
def test_a_fresh_operation_is_claimed_sent_and_recorded(ledger: PostingLedger, remote: FakeRemote) -> None:
    record = ledger.observe(order_version(1), run_id="run-1").record
    steps: list[str] = []
    outcome = run(
        ledger, remote, record_id=record.id, request_summary={"total": Decimal("23.88")}, on_step=steps.append
    )
    assert (outcome.status, outcome.document, outcome.done) == (OutcomeStatus.SENT, "INV-00001", True)
    assert outcome.result == {"total": "23.88"}
    assert steps == ["claimed", "sending", "answered", "recorded"]
    operation = get_operation(ledger, KEY)
    assert operation is not None
    assert (operation.state, operation.attempts, operation.owner) == (OperationState.DONE, 1, "run-1")
    assert (operation.remote_reference, operation.request_summary) == ("eu:1", {"total": "23.88"})
    assert operation.lease_expires_at is None
    assert operation.completed_at == ledger.now()
    # the operation's events join the order's history
    assert operation_events(ledger, record.id) == [
        ("claimed", "run-1"),
        ("sending", "run-1"),
        ("sent", "run-1"),
    ]
    assert ledger.history(record.id)[-1].detail == {
        "key": KEY,
        "document": "INV-00001",
        "result": {"total": "23.88"},
    }


def test_done_returns_the_recorded_result_without_calling_anything(
    ledger: PostingLedger, remote: FakeRemote
) -> None:
    run(ledger, remote)
    again = run(ledger, remote, owner="run-2", send=never_called, lookup=never_called)
    assert (again.status, again.document, again.result) == (
        OutcomeStatus.ALREADY_DONE,
        "INV-00001",
        {"total": "23.88"},
    )
    assert remote.sends == 1


# ---------------------------------------------------------------------------------------------- leases
def test_a_live_lease_of_another_owner_is_never_touched(
    ledger: PostingLedger, remote: FakeRemote, clock: ManualClock
) -> None:
    store = OperationStore(ledger)
    store.claim(
        KEY,
        owner="run-1",
        lease_s=LEASE_S,
        remote_reference="eu:1",
        request_summary=None,
        record_id=None,
        take_failed=True,
    )
    store.mark_sending(KEY, owner="run-1", lease_s=LEASE_S)  # run-1 is sending right now
    before = get_operation(ledger, KEY)
    clock.advance(LEASE_S - 1)
    with pytest.raises(LeaseHeld, match="held by 'run-1'") as raised:
        run(ledger, remote, owner="run-2", send=never_called, lookup=never_called)
    assert raised.value.operation == before
    assert get_operation(ledger, KEY) == before


def test_an_expired_claim_is_taken_over_and_sent_without_a_lookup(
    ledger: PostingLedger, remote: FakeRemote, clock: ManualClock
) -> None:
    OperationStore(ledger).claim(
        KEY,
        owner="crashed",
        lease_s=LEASE_S,
        remote_reference="eu:1",
        request_summary=None,
        record_id=None,
        take_failed=True,
    )
    clock.advance(LEASE_S)
    outcome = run(ledger, remote, owner="run-2", lookup=never_called)
    assert (outcome.status, outcome.operation.owner, remote.sends) == (OutcomeStatus.SENT, "run-2", 1)


def test_an_owner_may_reenter_its_claim_but_not_its_send_in_flight(
    ledger: PostingLedger, remote: FakeRemote
) -> None:
    store = OperationStore(ledger)
    store.claim(
        KEY,
        owner="run-1",
        lease_s=LEASE_S,
        remote_reference="eu:1",
        request_summary=None,
        record_id=None,
        take_failed=True,
    )
    assert run(ledger, remote, owner="run-1", lookup=never_called).status is OutcomeStatus.SENT
    other = "x3:invoice:create:eu:gid://shopify/Order/2"
    store.claim(
        other,
        owner="run-1",
        lease_s=LEASE_S,
        remote_reference="eu:2",
        request_summary=None,
        record_id=None,
        take_failed=True,
    )
    store.mark_sending(other, owner="run-1", lease_s=LEASE_S)
    with pytest.raises(LeaseHeld):
        run_exactly_once(
            ledger, other, owner="run-1", lease_s=LEASE_S, send=never_called, lookup=never_called
        )


def test_lease_renewal_keeps_a_long_send_from_being_taken_over(
    ledger: PostingLedger, remote: FakeRemote, clock: ManualClock
) -> None:
    taken_over: list[BaseException] = []

    def long_send() -> None:
        for _ in range(3):  # 3 x 0.6 lease: longer than the lease, renewed in between
            clock.advance(LEASE_S * 0.6)
            _wait_for(lambda: _lease_left(ledger) > LEASE_S * 0.5)
            try:
                run(ledger, remote, owner="intruder", send=never_called, lookup=never_called)
            except LeaseHeld as held:
                taken_over.append(held)

    remote.during_send = long_send
    outcome = run(ledger, remote, renew_every_s=0.01)
    assert outcome.status is OutcomeStatus.SENT
    assert len(taken_over) == 3  # every intrusion met a live lease
    assert renew_lease(ledger, KEY, owner="run-1", lease_s=LEASE_S) is False  # done: nothing left to renew


def test_renew_lease_extends_only_the_owners_live_lease(ledger: PostingLedger, clock: ManualClock) -> None:
    OperationStore(ledger).claim(
        KEY,
        owner="run-1",
        lease_s=LEASE_S,
        remote_reference=None,
        request_summary=None,
        record_id=None,
        take_failed=True,
    )
    clock.advance(LEASE_S / 2)
    assert renew_lease(ledger, KEY, owner="run-2", lease_s=LEASE_S) is False
    assert renew_lease(ledger, KEY, owner="run-1", lease_s=LEASE_S) is True
    assert _lease_left(ledger) == LEASE_S
    clock.advance(LEASE_S)
    assert renew_lease(ledger, KEY, owner="run-1", lease_s=LEASE_S) is False  # expired: may be taken over


# ------------------------------------------------------------------------------------------ in doubt
def test_an_unknown_outcome_stays_sending_under_the_lease_then_the_lookup_adopts_it(
    ledger: PostingLedger, remote: FakeRemote, clock: ManualClock
) -> None:
    record = ledger.observe(order_version(1), run_id="run-1").record
    remote.fail_with.append(Timeout("read timeout"))
    with pytest.raises(OperationInDoubt) as raised:
        run(ledger, remote, record_id=record.id)
    assert isinstance(raised.value.__cause__, Timeout)
    operation = get_operation(ledger, KEY)
    assert operation is not None
    assert operation.state is OperationState.SENDING
    assert operation.error == {"type": "Timeout", "message": "read timeout", "classification": "in_doubt"}
    assert operations_in_doubt(ledger) == [operation]
    # the write may still be executing remotely: the lease is kept until it expires
    with pytest.raises(LeaseHeld):
        run(ledger, remote, owner="run-2", send=never_called, lookup=never_called)
    clock.advance(LEASE_S)
    adopted = run(ledger, remote, owner="run-2", send=never_called)
    assert (adopted.status, adopted.document, adopted.result) == (
        OutcomeStatus.ADOPTED,
        "INV-00001",
        {"found": True},
    )
    assert (remote.sends, remote.lookups, len(remote.documents)) == (1, 1, 1)
    assert operations_in_doubt(ledger) == []
    assert operation_events(ledger, record.id) == [
        ("claimed", "run-1"),
        ("sending", "run-1"),
        ("in_doubt", "run-1"),
        ("taken_over", "run-2"),
        ("adopted", "run-2"),
    ]


def test_an_unknown_outcome_that_did_not_write_is_sent_again_after_the_lookup(
    ledger: PostingLedger, remote: FakeRemote, clock: ManualClock
) -> None:
    store = OperationStore(ledger)
    store.claim(
        KEY,
        owner="crashed",
        lease_s=LEASE_S,
        remote_reference="eu:1",
        request_summary=None,
        record_id=None,
        take_failed=True,
    )
    store.mark_sending(KEY, owner="crashed", lease_s=LEASE_S)  # killed before its request left
    clock.advance(LEASE_S)
    outcome = run(ledger, remote, owner="run-2")
    assert (outcome.status, remote.lookups, remote.sends, outcome.operation.attempts) == (
        OutcomeStatus.SENT,
        1,
        1,
        2,
    )


def test_any_unclassified_failure_is_treated_as_in_doubt(ledger: PostingLedger, remote: FakeRemote) -> None:
    remote.fail_with.append(Refused("would be a refusal with a classifier"))
    with pytest.raises(OperationInDoubt):
        run_exactly_once(
            ledger, KEY, owner="run-1", lease_s=LEASE_S, send=remote.sender(), lookup=never_called
        )
    assert get_operation(ledger, KEY).state is OperationState.SENDING  # type: ignore[union-attr]


def test_a_failed_lookup_releases_the_lease_and_the_next_run_looks_again(
    ledger: PostingLedger, remote: FakeRemote, clock: ManualClock
) -> None:
    remote.fail_with.append(Timeout("dropped"))
    with pytest.raises(OperationInDoubt):
        run(ledger, remote)
    clock.advance(LEASE_S)

    def broken_lookup() -> RemoteResult | None:
        raise ConnectionError("X3 unreachable")

    with pytest.raises(ConnectionError):
        run(ledger, remote, owner="run-2", lookup=broken_lookup, send=never_called)
    operation = get_operation(ledger, KEY)
    assert operation is not None
    assert (operation.state, operation.lease_expires_at) == (OperationState.SENDING, None)
    assert run(ledger, remote, owner="run-3", send=never_called).status is OutcomeStatus.ADOPTED


# ----------------------------------------------------------------------------------- definite failures
def test_a_refusal_is_recorded_and_a_later_run_retries_after_the_fix(
    ledger: PostingLedger, remote: FakeRemote
) -> None:
    remote.fail_with.append(Refused("BPCINV: customer 'ZZ0001' does not exist"))
    refused = run(ledger, remote)
    assert (refused.status, refused.done) == (OutcomeStatus.REFUSED, False)
    assert isinstance(refused.exception, Refused)
    assert refused.error == {
        "type": "Refused",
        "message": "BPCINV: customer 'ZZ0001' does not exist",
        "classification": "refused",
    }
    assert (refused.operation.state, refused.operation.lease_expires_at) == (OperationState.FAILED, None)
    # a run that only reports does not send again...
    kept = run(ledger, remote, owner="run-2", retry_refused=False, send=never_called, lookup=never_called)
    assert (kept.status, kept.error) == (OutcomeStatus.PREVIOUSLY_REFUSED, refused.error)
    # ...a replay after the data is fixed does, at once (nothing was written: no lookup)
    retried = run(ledger, remote, owner="replay-1", lookup=never_called)
    assert (retried.status, retried.document, retried.operation.attempts) == (
        OutcomeStatus.SENT,
        "INV-00001",
        2,
    )
    assert retried.error is None
    assert (remote.sends, len(remote.documents)) == (2, 1)


def test_a_write_the_remote_did_not_execute_is_released_for_a_plain_resend(
    ledger: PostingLedger, remote: FakeRemote
) -> None:
    remote.fail_with.append(Busy("no web services accepted"))
    with pytest.raises(OperationNotSent) as raised:
        run(ledger, remote)
    assert isinstance(raised.value.__cause__, Busy)
    operation = get_operation(ledger, KEY)
    assert operation is not None
    assert (operation.state, operation.lease_expires_at) == (OperationState.CLAIMED, None)
    assert run(ledger, remote, owner="run-2", lookup=never_called).status is OutcomeStatus.SENT


# ------------------------------------------------------------------------------------------ lost leases
def test_a_run_that_lost_its_lease_during_the_lookup_sends_nothing(
    ledger: PostingLedger, remote: FakeRemote, clock: ManualClock
) -> None:
    store = OperationStore(ledger)
    store.claim(
        KEY,
        owner="crashed",
        lease_s=LEASE_S,
        remote_reference="eu:1",
        request_summary=None,
        record_id=None,
        take_failed=True,
    )
    store.mark_sending(KEY, owner="crashed", lease_s=LEASE_S)
    clock.advance(LEASE_S)
    meanwhile: list[Any] = []

    def stalled_lookup() -> RemoteResult | None:
        clock.advance(LEASE_S)  # stalled past its lease: run-3 takes over and finishes meanwhile
        meanwhile.append(run(ledger, remote, owner="run-3"))
        return None  # what run-2 saw before the stall

    with pytest.raises(LeaseLost, match=r"'run-2' lost the lease on operation .* before sending"):
        run(ledger, remote, owner="run-2", lookup=stalled_lookup, send=never_called)
    assert meanwhile[0].status is OutcomeStatus.SENT
    assert (remote.sends, len(remote.documents)) == (1, 1)


def test_a_result_that_cannot_be_recorded_any_more_is_reported_not_overwritten(
    ledger: PostingLedger, remote: FakeRemote, clock: ManualClock
) -> None:
    send = remote.sender()
    meanwhile: list[Any] = []

    def send_then_stall() -> RemoteResult:
        result = send()
        clock.advance(LEASE_S)  # a lease too short for this send: another run takes over...
        meanwhile.append(run(ledger, remote, owner="run-2", send=never_called))  # ...and adopts the document
        return result

    with pytest.raises(LeaseLost) as raised:
        run(ledger, remote, send=send_then_stall)
    assert raised.value.result == RemoteResult("INV-00001", {"total": Decimal("23.88")})
    assert meanwhile[0].status is OutcomeStatus.ADOPTED
    operation = get_operation(ledger, KEY)
    assert operation is not None
    assert (operation.state, operation.owner, operation.document) == (
        OperationState.DONE,
        "run-2",
        "INV-00001",
    )


# ------------------------------------------------------------------------------------------- concurrency
def test_two_threads_racing_one_key_send_exactly_once(
    connector_db: ConnectorDatabase, clock: ManualClock
) -> None:
    ledgers = [PostingLedger(connector_db, clock=clock) for _ in range(2)]
    remote = FakeRemote()
    loser_done = threading.Event()
    # The sender waits until the other thread has met its lease, so the two really overlap; if both were
    # allowed to send, both would wait here and the count below would be 2.
    remote.during_send = lambda: loser_done.wait(timeout=5)
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def attempt(ledger: PostingLedger, owner: str) -> None:
        start.wait(timeout=10)
        try:
            outcomes.append(run(ledger, remote, owner=owner).status.value)
        except LeaseHeld:
            outcomes.append("lease_held")
            loser_done.set()

    threads = [threading.Thread(target=attempt, args=(lg, f"run-{i}")) for i, lg in enumerate(ledgers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["lease_held", "sent"]
    assert (remote.sends, len(remote.documents)) == (1, 1)


def test_many_concurrent_claims_of_one_key_grant_exactly_one(connector_db: ConnectorDatabase) -> None:
    contenders = 6
    ledger = PostingLedger(connector_db)
    store = OperationStore(ledger)
    start = threading.Barrier(contenders)
    granted: list[str] = []
    held: list[str] = []

    def claim(owner: str) -> None:
        start.wait(timeout=10)
        try:
            store.claim(
                KEY,
                owner=owner,
                lease_s=LEASE_S,
                remote_reference=None,
                request_summary=None,
                record_id=None,
                take_failed=True,
            )
            granted.append(owner)
        except LeaseHeld:
            held.append(owner)

    threads = [threading.Thread(target=claim, args=(f"run-{i}",)) for i in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(granted) == 1
    assert len(held) == contenders - 1
    assert get_operation(ledger, KEY).owner == granted[0]  # type: ignore[union-attr]


def test_expired_leases_are_taken_over_by_exactly_one_of_many(
    connector_db: ConnectorDatabase, clock: ManualClock
) -> None:
    contenders = 6
    store = OperationStore(PostingLedger(connector_db, clock=clock))
    store.claim(
        KEY,
        owner="crashed",
        lease_s=LEASE_S,
        remote_reference=None,
        request_summary=None,
        record_id=None,
        take_failed=True,
    )
    store.mark_sending(KEY, owner="crashed", lease_s=LEASE_S)
    clock.advance(LEASE_S + 1)
    start = threading.Barrier(contenders)
    previous: list[OperationState | None] = []

    def take_over(owner: str) -> None:
        start.wait(timeout=10)
        try:
            claim = store.claim(
                KEY,
                owner=owner,
                lease_s=LEASE_S,
                remote_reference=None,
                request_summary=None,
                record_id=None,
                take_failed=True,
            )
            previous.append(claim.previous_state)
        except LeaseHeld:
            pass

    threads = [threading.Thread(target=take_over, args=(f"run-{i}",)) for i in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert previous == [OperationState.SENDING]  # one winner, who knows it must look up first


# ---------------------------------------------------------------------------------------------- contract
@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"key": ""}, "1 to 255 characters"),
        ({"key": "k" * 256}, "1 to 255 characters"),
        ({"lease_s": 0}, "lease_s must be positive"),
        ({"renew_every_s": LEASE_S}, "shorter than lease_s"),
    ],
)
def test_arguments_are_checked(ledger: PostingLedger, bad: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"key": KEY, "lease_s": LEASE_S, **bad}
    with pytest.raises(ValueError, match=message):
        run_exactly_once(ledger, owner="run-1", send=never_called, lookup=never_called, **arguments)
    assert get_operation(ledger, KEY) is None


def test_the_protocol_modules_import_neither_dagster_nor_httpx_nor_x3() -> None:
    probe = (
        "import sys, x3_shopify_dagster.storage.exactly_once, x3_shopify_dagster.storage.ledger; "
        "print(sorted(m for m in ('dagster', 'httpx', 'x3_shopify_dagster.x3', "
        "'x3_shopify_dagster.sandboxes') if m in sys.modules))"
    )
    imported = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert imported.stdout.strip() == "[]"


# ------------------------------------------------------------------------------------------------ helpers
def _lease_left(ledger: PostingLedger) -> float:
    operation = get_operation(ledger, KEY)
    assert operation is not None
    if operation.lease_expires_at is None:
        return 0.0
    return (operation.lease_expires_at - ledger.now()) / timedelta(seconds=1)


def _wait_for(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    done = threading.Event()
    for _ in range(int(timeout_s / 0.005)):
        if condition():
            return
        done.wait(0.005)
    raise AssertionError("condition not met in time")
