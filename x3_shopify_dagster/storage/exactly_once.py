"""Exactly-once remote writes (flows.md §3), whatever crashes, re-runs, replays or concurrent runs occur.

One `ledger_operations` row per deterministic key (built by the caller, e.g.
`x3:invoice:create:{store}:{order id}`) under a UNIQUE constraint:

    claimed ──► sending ──► done          (result recorded: document number)
                   │   └──► failed        (refused by the remote: replayable once the data is fixed)
                   └──────► (stays sending: outcome unknown, "in doubt")

1. The intent is committed (`claimed`, with a lease owned by the run) before anything is sent.
2. `sending` is committed immediately before `send()`: from then on, the write may have happened.
3. The outcome is committed: `done` with the remote document, or `failed` with the remote messages.
4. A run that finds `sending` under an *expired* lease asks the remote system for the reference first
   (`lookup()`): found → adopt it; not found → send again. A live lease held by another owner is never
   touched (`LeaseHeld`): the caller skips or retries later.

Claims are row-level and race-free on both engines: INSERT … ON CONFLICT DO NOTHING, then a conditional
UPDATE … WHERE the lease has expired; every later step updates only WHERE the caller still owns the row.

Choose `lease_s` longer than the longest a `send()` can take (the client's timeouts and retries): a slow
write still executing remotely must not be looked up, found missing and sent again by a run that took an
expired lease. `renew_every_s` keeps the lease alive during long calls.

`send` and `lookup` are plain callables; this module knows nothing of X3, Shopify or HTTP.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, update
from sqlalchemy.engine import Row

from x3_shopify_dagster.storage.ledger import (
    LedgerEventType,
    PostingLedger,
    dialect_insert,
    insert_event,
    to_json_safe,
)
from x3_shopify_dagster.storage.ledger_schema import ledger_operations

log = logging.getLogger(__name__)

_OPS = ledger_operations
_MAX_KEY_LENGTH = 255
_MAX_ERROR_MESSAGE = 4000


class OperationState(enum.StrEnum):
    CLAIMED = "claimed"  # intent recorded, nothing sent
    SENDING = "sending"  # the write may have been sent: outcome unknown until recorded
    DONE = "done"
    FAILED = "failed"  # refused by the remote; a later run may try again


class OutcomeStatus(enum.StrEnum):
    SENT = "sent"  # this call sent the write and recorded its result
    ALREADY_DONE = "already_done"  # done before: the recorded result, nothing called
    ADOPTED = "adopted"  # an earlier attempt was in doubt and the lookup found its document
    REFUSED = "refused"  # this call's write was refused: the operation is failed (replayable)
    PREVIOUSLY_REFUSED = "previously_refused"  # failed before and retry_refused=False: nothing called


class SendFailure(enum.StrEnum):
    """How an exception raised by `send()` is to be understood (see `classify_error`)."""

    REFUSED = "refused"  # the remote refused the write (business error): nothing was written
    NOT_EXECUTED = "not_executed"  # definitely not executed (busy, connection refused): safe to send again
    IN_DOUBT = "in_doubt"  # may have been executed (timeout, dropped connection): look up before resending


class ProtocolStep(enum.StrEnum):
    """Instants reported to `on_step` (observability; the crash tests kill the process at each)."""

    CLAIMED = "claimed"  # intent committed, nothing sent
    SENDING = "sending"  # `sending` committed; send() comes next
    ANSWERED = "answered"  # send() returned; its outcome is not recorded yet
    RECORDED = "recorded"  # outcome committed


@dataclass(frozen=True)
class RemoteResult:
    """What a write produced (or what a lookup found): the remote document number and JSON-safe details."""

    document: str | None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Operation:
    id: int
    key: str
    record_id: int | None
    state: OperationState
    owner: str | None
    lease_expires_at: datetime | None
    attempts: int
    remote_reference: str | None
    request_summary: Mapping[str, Any] | None
    document: str | None
    result: Mapping[str, Any] | None
    error: Mapping[str, Any] | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None


@dataclass(frozen=True)
class OperationOutcome:
    status: OutcomeStatus
    operation: Operation
    # the exception `send()` raised, for REFUSED from this call (not stored; `operation.error` is)
    exception: Exception | None = field(default=None, repr=False, compare=False)

    @property
    def done(self) -> bool:
        return self.status in {OutcomeStatus.SENT, OutcomeStatus.ALREADY_DONE, OutcomeStatus.ADOPTED}

    @property
    def document(self) -> str | None:
        return self.operation.document

    @property
    def result(self) -> Mapping[str, Any] | None:
        return self.operation.result

    @property
    def error(self) -> Mapping[str, Any] | None:
        return self.operation.error


class ExactlyOnceError(Exception):
    pass


class LeaseHeld(ExactlyOnceError):
    """Another owner holds a live lease on the operation: it is in flight there. Skip or retry later."""

    def __init__(self, operation: Operation) -> None:
        super().__init__(
            f"operation {operation.key!r} is {operation.state} under a lease held by {operation.owner!r} "
            f"until {operation.lease_expires_at:%Y-%m-%dT%H:%M:%S}Z"
            if operation.lease_expires_at
            else f"operation {operation.key!r} is held by {operation.owner!r}"
        )
        self.operation = operation


class LeaseLost(ExactlyOnceError):
    """The caller no longer owns the operation (its lease expired and another run took it over).

    Raised before sending (nothing sent), or after a send whose result could not be recorded: `result` then
    holds it, and the owner now in charge will find it by its reference.
    """

    def __init__(self, key: str, owner: str, result: RemoteResult | None = None) -> None:
        what = "before sending" if result is None else f"after the write produced {result.document!r}"
        super().__init__(f"{owner!r} lost the lease on operation {key!r} {what}")
        self.key = key
        self.owner = owner
        self.result = result


class OperationInDoubt(ExactlyOnceError):
    """The write may or may not have happened; the operation stays `sending` and the next run that holds its
    lease looks the reference up before any resend. The original exception is the cause."""

    def __init__(self, key: str) -> None:
        super().__init__(f"outcome of operation {key!r} is unknown; it will be looked up before any resend")
        self.key = key


class OperationNotSent(ExactlyOnceError):
    """The write was definitely not executed (e.g. the remote was busy); safe to run again. The original
    exception is the cause."""

    def __init__(self, key: str) -> None:
        super().__init__(f"operation {key!r} was not executed by the remote system; it can be run again")
        self.key = key


def assume_in_doubt(error: Exception) -> SendFailure:
    """The default classification: any failure of `send()` may have written something."""
    return SendFailure.IN_DOUBT


def run_exactly_once(
    ledger: PostingLedger,
    key: str,
    *,
    owner: str,
    lease_s: float,
    send: Callable[[], RemoteResult],
    lookup: Callable[[], RemoteResult | None],
    remote_reference: str | None = None,
    request_summary: Mapping[str, Any] | None = None,
    record_id: int | None = None,
    classify_error: Callable[[Exception], SendFailure] = assume_in_doubt,
    retry_refused: bool = True,
    renew_every_s: float | None = None,
    on_step: Callable[[ProtocolStep], None] | None = None,
) -> OperationOutcome:
    """Perform the write `send()` at most once for `key`, and record its result exactly once.

    - done already → the recorded result (ALREADY_DONE); neither `send` nor `lookup` is called;
    - refused before → sent again if `retry_refused` (a replay after a fix), else PREVIOUSLY_REFUSED;
    - in doubt (`sending` under an expired lease) → `lookup()` first: found → ADOPTED, else sent again;
    - a live lease held by another owner → `LeaseHeld`, the operation untouched.

    `send()` raises on failure; `classify_error` says what the exception means: REFUSED → outcome REFUSED
    (operation `failed`); NOT_EXECUTED → `OperationNotSent`; IN_DOUBT (the default for anything) →
    `OperationInDoubt`, the operation left `sending` under the caller's lease until it expires. An exception
    from `lookup()` propagates and releases the lease. `owner` identifies the run (one owner per concurrent
    actor; an owner may re-enter its own live claim, never its own send in flight, which is left to settle
    until the lease expires). Operation events join the history of `record_id`.
    """
    if not key or len(key) > _MAX_KEY_LENGTH:
        raise ValueError(f"operation keys are 1 to {_MAX_KEY_LENGTH} characters")
    if lease_s <= 0:
        raise ValueError("lease_s must be positive")
    if renew_every_s is not None and not 0 < renew_every_s < lease_s:
        raise ValueError("renew_every_s must be positive and shorter than lease_s")
    store = OperationStore(ledger)
    existing = store.get(key)
    if existing is not None and existing.state is OperationState.DONE:
        return OperationOutcome(OutcomeStatus.ALREADY_DONE, existing)  # read-only: no lock, no write

    claim = store.claim(
        key,
        owner=owner,
        lease_s=lease_s,
        remote_reference=remote_reference,
        request_summary=request_summary,
        record_id=record_id,
        take_failed=retry_refused,
    )
    if not claim.claimed:
        done = claim.operation.state is OperationState.DONE
        status = OutcomeStatus.ALREADY_DONE if done else OutcomeStatus.PREVIOUSLY_REFUSED
        return OperationOutcome(status, claim.operation)
    _notify(on_step, ProtocolStep.CLAIMED)

    with _LeaseRenewal(store, key, owner, lease_s, renew_every_s):
        if claim.previous_state is OperationState.SENDING:
            try:
                found = lookup()
            except BaseException:
                store.release(key, owner=owner, why="lookup failed")
                raise
            if found is not None:
                operation = store.record_done(key, owner=owner, result=found, adopted=True)
                _notify(on_step, ProtocolStep.RECORDED)
                return OperationOutcome(OutcomeStatus.ADOPTED, operation)

        store.mark_sending(key, owner=owner, lease_s=lease_s)
        _notify(on_step, ProtocolStep.SENDING)
        try:
            result = send()
        except Exception as error:
            failure = SendFailure(classify_error(error))
            if failure is SendFailure.REFUSED:
                operation = store.record_refused(key, owner=owner, error=error)
                _notify(on_step, ProtocolStep.RECORDED)
                return OperationOutcome(OutcomeStatus.REFUSED, operation, exception=error)
            if failure is SendFailure.NOT_EXECUTED:
                store.record_not_sent(key, owner=owner, error=error)
                raise OperationNotSent(key) from error
            store.record_in_doubt(key, owner=owner, error=error)
            raise OperationInDoubt(key) from error
        _notify(on_step, ProtocolStep.ANSWERED)
        operation = store.record_done(key, owner=owner, result=result, adopted=False)
        _notify(on_step, ProtocolStep.RECORDED)
        return OperationOutcome(OutcomeStatus.SENT, operation)


def get_operation(ledger: PostingLedger, key: str) -> Operation | None:
    return OperationStore(ledger).get(key)


def operations_in_doubt(ledger: PostingLedger) -> list[Operation]:
    """Operations left `sending` (crash or unknown outcome), whoever holds them, oldest first."""
    return OperationStore(ledger).in_state(OperationState.SENDING)


def renew_lease(ledger: PostingLedger, key: str, *, owner: str, lease_s: float) -> bool:
    """Extend `owner`'s lease on an operation in flight; False if it is no longer theirs."""
    return OperationStore(ledger).renew(key, owner=owner, lease_s=lease_s)


@dataclass(frozen=True)
class Claim:
    operation: Operation  # as it is after the attempt to claim it
    claimed: bool  # False: done, or failed and not to be retried (nothing changed)
    previous_state: OperationState | None  # None: this claim created the operation


class OperationStore:
    """The SQL of the protocol; each method is one short transaction."""

    def __init__(self, ledger: PostingLedger) -> None:
        self._db = ledger.database
        self._ledger = ledger

    def get(self, key: str) -> Operation | None:
        with self._db.transaction() as connection:
            row = connection.execute(select(_OPS).where(_OPS.c.key == key)).one_or_none()
        return _operation(row) if row is not None else None

    def in_state(self, state: OperationState) -> list[Operation]:
        query = select(_OPS).where(_OPS.c.state == state.value).order_by(_OPS.c.updated_at, _OPS.c.id)
        with self._db.transaction() as connection:
            return [_operation(row) for row in connection.execute(query)]

    def claim(
        self,
        key: str,
        *,
        owner: str,
        lease_s: float,
        remote_reference: str | None,
        request_summary: Mapping[str, Any] | None,
        record_id: int | None,
        take_failed: bool,
    ) -> Claim:
        now = self._ledger.now()
        expires = now + timedelta(seconds=lease_s)
        summary = to_json_safe(request_summary) if request_summary is not None else None
        with self._db.transaction(write=True) as connection:
            created = connection.execute(
                dialect_insert(connection, _OPS)
                .values(
                    key=key,
                    record_id=record_id,
                    state=OperationState.CLAIMED.value,
                    owner=owner,
                    lease_expires_at=expires,
                    attempts=0,
                    remote_reference=remote_reference,
                    request_summary=summary,
                    created_at=now,
                    updated_at=now,
                )
                .on_conflict_do_nothing(index_elements=["key"])
                .returning(*_OPS.c)
            ).one_or_none()
            if created is not None:
                operation = _operation(created)
                self._event(
                    connection, operation, LedgerEventType.CLAIMED, now, {"lease_expires_at": expires}
                )
                return Claim(operation, claimed=True, previous_state=None)

            takeable = [OperationState.CLAIMED.value, OperationState.SENDING.value]
            if take_failed:
                takeable.append(OperationState.FAILED.value)
            # The lease test is in the UPDATE itself: on PostgreSQL a concurrent claimer blocks on the row and
            # re-evaluates this WHERE against the committed winner, so exactly one of them gets the row.
            taken = connection.execute(
                update(_OPS)
                .where(
                    _OPS.c.key == key,
                    _OPS.c.state.in_(takeable),
                    or_(
                        _OPS.c.lease_expires_at.is_(None),
                        _OPS.c.lease_expires_at <= now,
                        # an owner may re-enter its own claim, but not its own send in flight
                        and_(_OPS.c.owner == owner, _OPS.c.state != OperationState.SENDING.value),
                    ),
                )
                .values(
                    owner=owner,
                    lease_expires_at=expires,
                    updated_at=now,
                    record_id=func.coalesce(_OPS.c.record_id, record_id),
                    remote_reference=func.coalesce(_OPS.c.remote_reference, remote_reference),
                    request_summary=summary if summary is not None else _OPS.c.request_summary,
                )
                .returning(*_OPS.c)
            ).one_or_none()
            if taken is not None:
                operation = _operation(taken)  # the state is unchanged by a takeover: it is the previous one
                detail = {"previous_state": operation.state, "lease_expires_at": expires}
                self._event(connection, operation, LedgerEventType.TAKEN_OVER, now, detail)
                return Claim(operation, claimed=True, previous_state=operation.state)

            current = _operation(connection.execute(select(_OPS).where(_OPS.c.key == key)).one())
        if current.state in {OperationState.DONE, OperationState.FAILED}:
            return Claim(current, claimed=False, previous_state=current.state)
        raise LeaseHeld(current)

    def mark_sending(self, key: str, *, owner: str, lease_s: float) -> Operation:
        """`sending`, committed: from here on the write may have happened. The lease restarts now."""
        now = self._ledger.now()
        with self._db.transaction(write=True) as connection:
            row = connection.execute(
                update(_OPS)
                .where(
                    _OPS.c.key == key,
                    _OPS.c.owner == owner,
                    _OPS.c.state.in_(
                        [
                            OperationState.CLAIMED.value,
                            OperationState.SENDING.value,
                            OperationState.FAILED.value,
                        ]
                    ),
                    _OPS.c.lease_expires_at > now,
                )
                .values(
                    state=OperationState.SENDING.value,
                    attempts=_OPS.c.attempts + 1,
                    lease_expires_at=now + timedelta(seconds=lease_s),
                    updated_at=now,
                )
                .returning(*_OPS.c)
            ).one_or_none()
            if row is None:
                raise LeaseLost(key, owner)
            operation = _operation(row)
            self._event(connection, operation, LedgerEventType.SENDING, now, {"attempt": operation.attempts})
        return operation

    def record_done(self, key: str, *, owner: str, result: RemoteResult, adopted: bool) -> Operation:
        now = self._ledger.now()
        details = to_json_safe(dict(result.details))
        with self._db.transaction(write=True) as connection:
            row = self._update_own_sending(
                connection,
                key,
                owner,
                state=OperationState.DONE.value,
                document=result.document,
                result=details,
                error=None,
                lease_expires_at=None,
                completed_at=now,
                updated_at=now,
            )
            if row is None:
                raise LeaseLost(key, owner, result)
            operation = _operation(row)
            event = LedgerEventType.ADOPTED if adopted else LedgerEventType.SENT
            self._event(connection, operation, event, now, {"document": result.document, "result": details})
        return operation

    def record_refused(self, key: str, *, owner: str, error: Exception) -> Operation:
        now = self._ledger.now()
        error_detail = _error_detail(error, SendFailure.REFUSED)
        with self._db.transaction(write=True) as connection:
            row = self._update_own_sending(
                connection,
                key,
                owner,
                state=OperationState.FAILED.value,
                error=error_detail,
                lease_expires_at=None,
                updated_at=now,
            )
            if row is None:
                raise LeaseLost(key, owner)
            operation = _operation(row)
            self._event(connection, operation, LedgerEventType.REFUSED, now, {"error": error_detail})
        return operation

    def record_not_sent(self, key: str, *, owner: str, error: Exception) -> None:
        """Back to `claimed`, lease released: nothing was written, the next run sends without a lookup."""
        now = self._ledger.now()
        error_detail = _error_detail(error, SendFailure.NOT_EXECUTED)
        with self._db.transaction(write=True) as connection:
            row = self._update_own_sending(
                connection,
                key,
                owner,
                state=OperationState.CLAIMED.value,
                error=error_detail,
                lease_expires_at=None,
                updated_at=now,
            )
            if row is not None:
                self._event(
                    connection, _operation(row), LedgerEventType.NOT_SENT, now, {"error": error_detail}
                )

    def record_in_doubt(self, key: str, *, owner: str, error: Exception) -> None:
        """Stays `sending`, and the lease is kept until it expires: a write still executing remotely must not
        be looked up and resent by another run in the meantime."""
        now = self._ledger.now()
        error_detail = _error_detail(error, SendFailure.IN_DOUBT)
        with self._db.transaction(write=True) as connection:
            row = self._update_own_sending(connection, key, owner, error=error_detail, updated_at=now)
            if row is not None:
                self._event(
                    connection, _operation(row), LedgerEventType.IN_DOUBT, now, {"error": error_detail}
                )

    def release(self, key: str, *, owner: str, why: str) -> None:
        """Give the lease up (state unchanged): the next run may take the operation at once."""
        now = self._ledger.now()
        with self._db.transaction(write=True) as connection:
            row = connection.execute(
                update(_OPS)
                .where(_OPS.c.key == key, _OPS.c.owner == owner, _OPS.c.lease_expires_at.is_not(None))
                .values(lease_expires_at=None, updated_at=now)
                .returning(*_OPS.c)
            ).one_or_none()
            if row is not None:
                self._event(connection, _operation(row), LedgerEventType.RELEASED, now, {"why": why})

    def renew(self, key: str, *, owner: str, lease_s: float) -> bool:
        now = self._ledger.now()
        with self._db.transaction(write=True) as connection:
            row = connection.execute(
                update(_OPS)
                .where(
                    _OPS.c.key == key,
                    _OPS.c.owner == owner,
                    _OPS.c.state.in_([OperationState.CLAIMED.value, OperationState.SENDING.value]),
                    _OPS.c.lease_expires_at > now,
                )
                .values(lease_expires_at=now + timedelta(seconds=lease_s), updated_at=now)
                .returning(_OPS.c.id)
            ).one_or_none()
        return row is not None

    @staticmethod
    def _update_own_sending(connection: Connection, key: str, owner: str, **values: Any) -> Row[Any] | None:
        statement = (
            update(_OPS)
            .where(_OPS.c.key == key, _OPS.c.owner == owner, _OPS.c.state == OperationState.SENDING.value)
            .values(**values)
            .returning(*_OPS.c)
        )
        return connection.execute(statement).one_or_none()

    @staticmethod
    def _event(
        connection: Connection, operation: Operation, event: str, at: datetime, detail: Mapping[str, Any]
    ) -> None:
        insert_event(
            connection,
            at=at,
            run_id=operation.owner,
            event=event,
            state=operation.state.value,
            detail=to_json_safe({"key": operation.key, **detail}),
            record_id=operation.record_id,
            operation_id=operation.id,
        )


class _LeaseRenewal:
    """Renews the lease every `every_s` seconds from a daemon thread while the block runs (no-op if None)."""

    def __init__(
        self, store: OperationStore, key: str, owner: str, lease_s: float, every_s: float | None
    ) -> None:
        self._store = store
        self._key = key
        self._owner = owner
        self._lease_s = lease_s
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _LeaseRenewal:
        if self._every_s is not None:
            self._thread = threading.Thread(target=self._run, name=f"lease-renewal:{self._key}", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        assert self._every_s is not None
        while not self._stop.wait(self._every_s):
            try:
                if not self._store.renew(self._key, owner=self._owner, lease_s=self._lease_s):
                    log.warning("lease on operation %r is no longer held by %r", self._key, self._owner)
                    return
            except Exception:  # a database hiccup: the next tick tries again; the lease has margin
                log.exception("could not renew the lease on operation %r", self._key)


def _notify(on_step: Callable[[ProtocolStep], None] | None, step: ProtocolStep) -> None:
    if on_step is not None:
        on_step(step)


def _error_detail(error: Exception, failure: SendFailure) -> dict[str, Any]:
    message = str(error)
    if len(message) > _MAX_ERROR_MESSAGE:
        message = message[:_MAX_ERROR_MESSAGE] + "…"
    return {"type": type(error).__name__, "message": message, "classification": failure.value}


def _operation(row: Row[Any]) -> Operation:
    return Operation(
        id=row.id,
        key=row.key,
        record_id=row.record_id,
        state=OperationState(row.state),
        owner=row.owner,
        lease_expires_at=row.lease_expires_at,
        attempts=row.attempts,
        remote_reference=row.remote_reference,
        request_summary=row.request_summary,
        document=row.document,
        result=row.result,
        error=row.error,
        created_at=row.created_at,
        updated_at=row.updated_at,
        completed_at=row.completed_at,
    )
