"""The posting ledger: one record per source document (a Shopify order now; fulfilments and refunds later),
its state in the life of an order in X3 (flows.md §2), and an append-only history of every step.

A record is created when its source version is first observed (`staged`) and moves along
`staged → matched → validated → invoiced → posted` (then `delivered`, `credited`), or to `failed` (replayable,
with a reason code) or `skipped`. Every move appends an event in the same transaction, so the current state
and its history never disagree. Remote writes themselves are made exactly once by `exactly_once.py`, whose
operation events join the history of the record they belong to.

Nothing here knows about Dagster, X3 or HTTP.
"""

from __future__ import annotations

import enum
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Select, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row

from x3_shopify_dagster.storage.database import ConnectorDatabase
from x3_shopify_dagster.storage.ledger_schema import ledger_events, ledger_records

_RECORDS = ledger_records
_EVENTS = ledger_events
_CODE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class RecordKind(enum.StrEnum):
    ORDER = "order"
    FULFILLMENT = "fulfillment"
    REFUND = "refund"


class RecordState(enum.StrEnum):
    STAGED = "staged"
    MATCHED = "matched"  # the X3 customer is known
    VALIDATED = "validated"  # mapping, GL and totals checked
    INVOICED = "invoiced"  # X3 invoice created, not posted
    POSTED = "posted"  # invoice validated in X3
    DELIVERED = "delivered"  # (partly) delivered through X3 deliveries
    CREDITED = "credited"  # (partly) credited by credit memos
    FAILED = "failed"  # replayable once the data is fixed; see reason_code
    SKIPPED = "skipped"  # deliberately not posted; see reason_code


class FailureReason(enum.StrEnum):
    """Known failure codes; any lower_snake_case code is accepted."""

    CUSTOMER_NOT_FOUND = "customer_not_found"
    CUSTOMER_AMBIGUOUS = "customer_ambiguous"
    GL_INVALID = "gl_invalid"
    MAPPING = "mapping"
    AMOUNT_MISMATCH = "amount_mismatch"
    PERIOD_CLOSED = "period_closed"
    X3_ERROR = "x3_error"
    INVALID_ORDER = "invalid_order"  # the staged Shopify payload does not validate as an order


class SkipReason(enum.StrEnum):
    TEST_ORDER = "test_order"
    OLDER_VERSION = "older_version"
    CANCELLED_BEFORE_INVOICE = "cancelled_before_invoice"
    CANCELLED_BEFORE_POSTING = "cancelled_before_posting"  # the unposted invoice was deleted
    ALREADY_CREDITED = "already_credited"  # a refund of an order whose cancellation was credited in full
    CREDITED_BY_REFUNDS = "credited_by_refunds"  # a cancellation whose refunds are the credit


class LedgerEventType(enum.StrEnum):
    # record events
    FETCHED = "fetched"
    MATCHED = "matched"
    VALIDATED = "validated"
    INVOICED = "invoiced"
    POSTED = "posted"
    DELIVERED = "delivered"
    CREDITED = "credited"
    FAILED = "failed"
    SKIPPED = "skipped"
    REPLAYED = "replayed"
    INVOICE_DELETED = "invoice_deleted"  # an unposted invoice removed in X3 (order cancelled or edited)
    # operation events (exactly_once.py); they also join the history of the operation's record
    CLAIMED = "claimed"
    TAKEN_OVER = "taken_over"
    SENDING = "sending"
    SENT = "sent"
    ADOPTED = "adopted"
    REFUSED = "refused"
    NOT_SENT = "not_sent"
    IN_DOUBT = "in_doubt"
    RELEASED = "released"


# Which states a record may enter each state from (flows.md §2). New versions re-stage records through
# `observe`; `replay` takes failed or skipped records back to `staged`, and the exactly-once operations make
# the steps already done in X3 no-ops on the way through again.
_ENTERED_FROM: dict[RecordState, frozenset[RecordState]] = {
    RecordState.MATCHED: frozenset({RecordState.STAGED}),
    RecordState.VALIDATED: frozenset({RecordState.MATCHED}),
    RecordState.INVOICED: frozenset({RecordState.VALIDATED}),
    RecordState.POSTED: frozenset({RecordState.INVOICED}),
    RecordState.DELIVERED: frozenset({RecordState.INVOICED, RecordState.POSTED, RecordState.DELIVERED}),
    RecordState.CREDITED: frozenset(
        {RecordState.INVOICED, RecordState.POSTED, RecordState.DELIVERED, RecordState.CREDITED}
    ),
    RecordState.FAILED: frozenset(
        {
            RecordState.STAGED,
            RecordState.MATCHED,
            RecordState.VALIDATED,
            RecordState.INVOICED,
            RecordState.POSTED,
            RecordState.DELIVERED,
            RecordState.CREDITED,
        }
    ),
    # From `invoiced`: the unposted invoice was deleted in X3, because the order was cancelled (skipped) or
    # edited (staged again, to invoice the new content).
    RecordState.SKIPPED: frozenset(
        {RecordState.STAGED, RecordState.MATCHED, RecordState.VALIDATED, RecordState.INVOICED}
    ),
    RecordState.STAGED: frozenset({RecordState.FAILED, RecordState.SKIPPED, RecordState.INVOICED}),
}
# Fulfilment records (one per Shopify fulfilment) have a shorter life: staged (waiting for the order's invoice
# included) → delivered once their X3 delivery is validated; failed/skipped with a reason; a delivered fulfilment
# cancelled in Shopify is flagged (failed) for a manual customer return.
_FULFILLMENT_ENTERED_FROM: dict[RecordState, frozenset[RecordState]] = {
    RecordState.DELIVERED: frozenset({RecordState.STAGED}),
    RecordState.FAILED: frozenset({RecordState.STAGED, RecordState.DELIVERED}),
    RecordState.SKIPPED: frozenset({RecordState.STAGED}),
    RecordState.STAGED: frozenset({RecordState.FAILED, RecordState.SKIPPED}),
}


def allowed_sources(kind: RecordKind, to: RecordState) -> frozenset[RecordState]:
    """The states a record of `kind` may enter `to` from."""
    table = _FULFILLMENT_ENTERED_FROM if kind is RecordKind.FULFILLMENT else _ENTERED_FROM
    return table.get(to, frozenset())


# A newer source version sends a record back to `staged` from these states; later states keep their state
# (the posting step compares the new content and decides: credit memo, delivery...).
_RESTAGED_BY_NEW_VERSION = frozenset(
    {RecordState.STAGED, RecordState.MATCHED, RecordState.VALIDATED, RecordState.FAILED, RecordState.SKIPPED}
)


class LedgerError(Exception):
    pass


class RecordNotFound(LedgerError, KeyError):
    pass


class InvalidTransition(LedgerError):
    """The record is not in a state the requested state can be entered from (flows.md §2)."""

    def __init__(self, record_id: int, current: str, requested: str) -> None:
        super().__init__(f"ledger record {record_id} is {current}: it cannot become {requested}")
        self.record_id = record_id
        self.current = current
        self.requested = requested


class StaleRecord(LedgerError):
    """The record changed since the caller read it (another run, or a newer source version)."""

    def __init__(self, record_id: int, expected_revision: int, revision: int) -> None:
        super().__init__(
            f"ledger record {record_id} is at revision {revision}, not {expected_revision}: it has changed"
        )
        self.record_id = record_id
        self.expected_revision = expected_revision
        self.revision = revision


class UnbalancedEntry(LedgerError, ValueError):
    pass


def utc_now() -> datetime:
    return datetime.now(UTC)


def require_aware(name: str, value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value!r}")
    return value.astimezone(UTC)


def to_json_safe(value: Any) -> Any:
    """`value` as JSON-safe data: Decimal → its exact text, aware datetime/date → ISO 8601, enums → values."""
    if isinstance(value, enum.Enum):
        return to_json_safe(value.value)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value!r} is not a finite amount")
        return str(value)
    if isinstance(value, float):
        raise TypeError("floats are not stored in the ledger: use Decimal")
    if isinstance(value, datetime):
        return require_aware("timestamp", value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(key): to_json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json_safe(item) for item in value]
    raise TypeError(f"cannot store a {type(value).__name__} in the ledger")


def _code(name: str, value: str) -> str:
    if not _CODE.match(value):
        raise ValueError(f"{name} must be a lower_snake_case code, got {value!r}")
    return value


# ----------------------------------------------------------------------------------------------- values
@dataclass(frozen=True)
class GlLine:
    """One general-ledger line of a posting."""

    account: str
    debit: Decimal
    credit: Decimal
    cost_centre: str | None = None
    description: str | None = None

    def __post_init__(self) -> None:
        for name in ("debit", "credit"):
            amount = getattr(self, name)
            if not isinstance(amount, Decimal) or not amount.is_finite() or amount < 0:
                raise ValueError(f"GL {name} must be a non-negative Decimal, got {amount!r}")

    def as_json(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "cost_centre": self.cost_centre,
            "debit": str(self.debit),
            "credit": str(self.credit),
            "description": self.description,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GlLine:
        return cls(
            account=data["account"],
            debit=Decimal(data["debit"]),
            credit=Decimal(data["credit"]),
            cost_centre=data.get("cost_centre"),
            description=data.get("description"),
        )


def check_balanced(lines: Sequence[GlLine]) -> None:
    """GL entries must balance (flows.md §5): Σ debit = Σ credit, to the cent and beyond."""
    debit = sum((line.debit for line in lines), Decimal(0))
    credit = sum((line.credit for line in lines), Decimal(0))
    if debit != credit:
        raise UnbalancedEntry(f"GL lines do not balance: debit {debit} != credit {credit}")


@dataclass(frozen=True)
class SourceVersion:
    """One observed version of a source document (e.g. a Shopify order at one updatedAt)."""

    store: str
    kind: RecordKind
    source_id: str
    updated_at: datetime  # normalised to UTC; naive values are refused
    content_hash: str
    partition: str  # business day (partition key) this version's updatedAt falls in
    name: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    payload: Mapping[str, Any] | None = field(default=None, repr=False)  # JSON-safe; kept for replays

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", RecordKind(self.kind))
        object.__setattr__(self, "updated_at", require_aware("updated_at", self.updated_at))
        if self.amount is not None and not isinstance(self.amount, Decimal):
            raise TypeError(f"amount must be a Decimal, got {type(self.amount).__name__}")


class ObserveOutcome(enum.StrEnum):
    NEW = "new"  # first version: a `staged` record
    NEWER = "newer"  # a newer version: it becomes the record's version
    UNCHANGED = "unchanged"  # the version the record already has (re-read, overlapping window)
    OLDER = "older"  # older than the record's version: recorded as a `skipped` event, record unchanged


@dataclass(frozen=True)
class LedgerRecord:
    id: int
    store: str
    kind: RecordKind
    source_id: str
    source_name: str | None
    state: RecordState
    partition: str
    source_updated_at: datetime
    source_hash: str
    source_payload: Mapping[str, Any] | None = field(repr=False)
    amount: Decimal | None
    currency: str | None
    reason_code: str | None
    reason_message: str | None
    reason_details: Mapping[str, Any] | None
    x3_customer: str | None
    x3_documents: Mapping[str, Any]
    attempts: int
    revision: int
    created_at: datetime
    updated_at: datetime
    last_run_id: str | None

    @property
    def replayable(self) -> bool:
        return self.state is RecordState.FAILED


@dataclass(frozen=True)
class Observation:
    outcome: ObserveOutcome
    record: LedgerRecord


@dataclass(frozen=True)
class LedgerEvent:
    id: int
    at: datetime
    run_id: str | None
    event: str
    state: str | None  # the record's (or operation's) state after the event
    detail: Mapping[str, Any]
    record_id: int | None
    operation_id: int | None

    @property
    def gl_lines(self) -> list[GlLine]:
        return [GlLine.from_json(line) for line in self.detail.get("gl_lines", ())]


@dataclass(frozen=True)
class PartitionFailures:
    store: str
    kind: RecordKind
    partition: str
    failed: int


@dataclass(frozen=True)
class LedgerSummary:
    """Counts and money totals of one store's partition, for materialization metadata."""

    store: str
    kind: RecordKind
    partition: str
    records: int
    by_state: Mapping[str, int]
    failures_by_reason: Mapping[str, int]
    skips_by_reason: Mapping[str, int]
    totals_by_state: Mapping[str, Mapping[str, Decimal]]  # state → currency → Σ amount

    def as_metadata(self) -> dict[str, Any]:
        """JSON-safe (amounts as exact decimal text)."""
        return to_json_safe(
            {
                "records": self.records,
                "by_state": self.by_state,
                "failures_by_reason": self.failures_by_reason,
                "skips_by_reason": self.skips_by_reason,
                "totals_by_state": self.totals_by_state,
            }
        )


# ---------------------------------------------------------------------------------------------- the ledger
class PostingLedger:
    """Records, their history and the queries the Dagster layer needs. Thread-safe; one per process."""

    def __init__(self, db: ConnectorDatabase, *, clock: Callable[[], datetime] = utc_now) -> None:
        if db.dialect_name not in {"postgresql", "sqlite"}:
            raise ValueError(f"the posting ledger supports PostgreSQL and SQLite, not {db.dialect_name}")
        self.database = db
        self._clock = clock

    def __repr__(self) -> str:
        return f"PostingLedger({self.database!r})"

    def now(self) -> datetime:
        return require_aware("clock()", self._clock())

    # -- observing source versions -------------------------------------------------------------------
    def observe(self, version: SourceVersion, *, run_id: str | None) -> Observation:
        """Record that `version` was fetched (see `ObserveOutcome`)."""
        return self.observe_many([version], run_id=run_id)[0]

    def observe_many(self, versions: Iterable[SourceVersion], *, run_id: str | None) -> list[Observation]:
        """`observe` for many versions in one transaction; results in input order."""
        batch = list(versions)
        now = self.now()
        results: dict[int, Observation] = {}
        # Sorted: concurrent batches lock rows in one order, so they cannot deadlock.
        order = sorted(range(len(batch)), key=lambda i: (batch[i].store, batch[i].kind, batch[i].source_id))
        with self.database.transaction(write=True) as connection:
            for index in order:
                results[index] = _observe(connection, batch[index], now, run_id)
        return [results[index] for index in range(len(batch))]

    # -- reading records -----------------------------------------------------------------------------
    def get(self, store: str, kind: RecordKind | str, source_id: str) -> LedgerRecord | None:
        query = select(_RECORDS).where(
            _RECORDS.c.store == store,
            _RECORDS.c.kind == RecordKind(kind).value,
            _RECORDS.c.source_id == source_id,
        )
        with self.database.transaction() as connection:
            row = connection.execute(query).one_or_none()
        return _record(row) if row is not None else None

    def get_by_id(self, record_id: int) -> LedgerRecord:
        with self.database.transaction() as connection:
            return _read_record(connection, record_id)

    def records(
        self,
        store: str,
        partition: str,
        *,
        kind: RecordKind | str = RecordKind.ORDER,
        states: Iterable[RecordState | str] | None = None,
    ) -> list[LedgerRecord]:
        """Records of a store's partition (optionally only in `states`), in creation order."""
        query = _partition_query(store, RecordKind(kind), partition)
        if states is not None:
            query = query.where(_RECORDS.c.state.in_([RecordState(s).value for s in states]))
        with self.database.transaction() as connection:
            return [_record(row) for row in connection.execute(query.order_by(_RECORDS.c.id))]

    def failed_records(
        self, store: str, partition: str, *, kind: RecordKind | str = RecordKind.ORDER
    ) -> list[LedgerRecord]:
        """The replayable records of a partition."""
        return self.records(store, partition, kind=kind, states=[RecordState.FAILED])

    def records_in_states(
        self, store: str, *, kind: RecordKind | str, states: Iterable[RecordState | str]
    ) -> list[LedgerRecord]:
        """A store's records of one kind in `states`, whatever their partition (e.g. fulfilments still waiting)."""
        query = select(_RECORDS).where(
            _RECORDS.c.store == store,
            _RECORDS.c.kind == RecordKind(kind).value,
            _RECORDS.c.state.in_([RecordState(s).value for s in states]),
        )
        with self.database.transaction() as connection:
            return [_record(row) for row in connection.execute(query.order_by(_RECORDS.c.id))]

    def latest_source_update(self, store: str, kind: RecordKind | str) -> datetime | None:
        """The newest source `updatedAt` the ledger holds for a store's records of one kind (a polling floor)."""
        query = select(func.max(_RECORDS.c.source_updated_at)).where(
            _RECORDS.c.store == store, _RECORDS.c.kind == RecordKind(kind).value
        )
        with self.database.transaction() as connection:
            latest = connection.execute(query).scalar()
        return latest.replace(tzinfo=UTC) if latest is not None and latest.tzinfo is None else latest

    def partitions_with_failures(
        self, *, store: str | None = None, kind: RecordKind | str = RecordKind.ORDER
    ) -> list[PartitionFailures]:
        """Partitions holding failed records (for a replay sensor), by store then partition."""
        kind = RecordKind(kind)
        query = (
            select(_RECORDS.c.store, _RECORDS.c.partition, func.count().label("failed"))
            .where(_RECORDS.c.state == RecordState.FAILED.value, _RECORDS.c.kind == kind.value)
            .group_by(_RECORDS.c.store, _RECORDS.c.partition)
            .order_by(_RECORDS.c.store, _RECORDS.c.partition)
        )
        if store is not None:
            query = query.where(_RECORDS.c.store == store)
        with self.database.transaction() as connection:
            return [
                PartitionFailures(row.store, kind, row.partition, row.failed)
                for row in connection.execute(query)
            ]

    def summary(
        self, store: str, partition: str, *, kind: RecordKind | str = RecordKind.ORDER
    ) -> LedgerSummary:
        kind = RecordKind(kind)
        columns = (_RECORDS.c.state, _RECORDS.c.reason_code, _RECORDS.c.currency, _RECORDS.c.amount)
        query = _partition_query(store, kind, partition, columns)
        by_state: Counter[str] = Counter()
        failures: Counter[str] = Counter()
        skips: Counter[str] = Counter()
        totals: defaultdict[str, defaultdict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
        with self.database.transaction() as connection:
            for row in connection.execute(query):
                by_state[row.state] += 1
                if row.state == RecordState.FAILED:
                    failures[row.reason_code or "unknown"] += 1
                elif row.state == RecordState.SKIPPED:
                    skips[row.reason_code or "unknown"] += 1
                if row.amount is not None:
                    # exact Decimal sums in Python: SQLite has no exact decimal arithmetic
                    totals[row.state][row.currency or ""] += row.amount
        return LedgerSummary(
            store=store,
            kind=kind,
            partition=partition,
            records=sum(by_state.values()),
            by_state=dict(sorted(by_state.items())),
            failures_by_reason=dict(sorted(failures.items())),
            skips_by_reason=dict(sorted(skips.items())),
            totals_by_state={state: dict(sorted(t.items())) for state, t in sorted(totals.items())},
        )

    def history(self, record_id: int) -> list[LedgerEvent]:
        """Every event of the record, its operations' events included, oldest first."""
        query = select(_EVENTS).where(_EVENTS.c.record_id == record_id).order_by(_EVENTS.c.id)
        with self.database.transaction() as connection:
            return [_event(row) for row in connection.execute(query)]

    # -- moving records ------------------------------------------------------------------------------
    def transition(
        self,
        record_id: int,
        to: RecordState | str,
        *,
        run_id: str | None,
        event: str | None = None,
        detail: Mapping[str, Any] | None = None,
        reason: tuple[str, str, Mapping[str, Any] | None] | None = None,
        x3_customer: str | None = None,
        x3_documents: Mapping[str, Any] | None = None,
        expected_revision: int | None = None,
    ) -> LedgerRecord:
        """Move a record to `to` and append its event, atomically.

        `reason` (code, message, details) is required for `failed` and `skipped` and cleared otherwise;
        `x3_documents` is merged into the record's documents. Raises `InvalidTransition` when flows.md §2 does
        not allow the move, `StaleRecord` when `expected_revision` is given and the record has moved on.
        """
        to = RecordState(to)
        if (to in {RecordState.FAILED, RecordState.SKIPPED}) != (reason is not None):
            raise ValueError(f"a reason is required for {RecordState.FAILED} and {RecordState.SKIPPED} only")
        event_type = _code("event", event or to.value)
        event_detail = to_json_safe(dict(detail or {}))
        if reason is not None:
            code, message, details = reason
            event_detail.update(to_json_safe({"reason": _code("reason", code), "message": message}))
            if details is not None:
                event_detail["details"] = to_json_safe(details)
        if x3_customer is not None:
            event_detail.setdefault("x3_customer", x3_customer)
        if x3_documents:
            event_detail.setdefault("x3_documents", to_json_safe(x3_documents))
        now = self.now()
        with self.database.transaction(write=True) as connection:
            current = _read_record(connection, record_id, for_update=True)
            if expected_revision is not None and current.revision != expected_revision:
                raise StaleRecord(record_id, expected_revision, current.revision)
            if current.state not in allowed_sources(current.kind, to):
                raise InvalidTransition(record_id, current.state, to)
            values: dict[str, Any] = {
                "state": to.value,
                "revision": current.revision + 1,
                "updated_at": now,
                "last_run_id": run_id,
                "reason_code": reason[0] if reason else None,
                "reason_message": reason[1] if reason else None,
                "reason_details": to_json_safe(reason[2]) if reason else None,
            }
            if current.state is RecordState.STAGED:
                values["attempts"] = current.attempts + 1
            if x3_customer is not None:
                values["x3_customer"] = x3_customer
            if x3_documents:
                values["x3_documents"] = {**current.x3_documents, **to_json_safe(x3_documents)}
            connection.execute(update(_RECORDS).where(_RECORDS.c.id == record_id).values(**values))
            insert_event(
                connection,
                at=now,
                run_id=run_id,
                event=event_type,
                state=to.value,
                detail=event_detail,
                record_id=record_id,
            )
            return _read_record(connection, record_id)

    def mark_matched(
        self, record_id: int, *, customer: str, run_id: str | None, detail: Mapping[str, Any] | None = None
    ) -> LedgerRecord:
        return self.transition(
            record_id, RecordState.MATCHED, run_id=run_id, x3_customer=customer, detail=detail
        )

    def mark_validated(
        self,
        record_id: int,
        *,
        run_id: str | None,
        gl_lines: Sequence[GlLine] = (),
        detail: Mapping[str, Any] | None = None,
    ) -> LedgerRecord:
        """Validated; `gl_lines` are the planned posting (checked to balance)."""
        return self.transition(
            record_id, RecordState.VALIDATED, run_id=run_id, detail=_with_gl_lines(detail, gl_lines)
        )

    def mark_invoiced(
        self,
        record_id: int,
        *,
        invoice: str,
        run_id: str | None,
        gl_lines: Sequence[GlLine] = (),
        detail: Mapping[str, Any] | None = None,
    ) -> LedgerRecord:
        return self.transition(
            record_id,
            RecordState.INVOICED,
            run_id=run_id,
            x3_documents={"invoice": invoice},
            detail=_with_gl_lines(detail, gl_lines),
        )

    def mark_posted(
        self,
        record_id: int,
        *,
        run_id: str | None,
        gl_lines: Sequence[GlLine],
        x3_documents: Mapping[str, Any] | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> LedgerRecord:
        """Posted in X3; the event keeps the GL lines (which must balance) and e.g. the GL entry number."""
        if not gl_lines:
            raise ValueError("a posting event needs its GL lines")
        return self.transition(
            record_id,
            RecordState.POSTED,
            run_id=run_id,
            x3_documents=x3_documents,
            detail=_with_gl_lines(detail, gl_lines),
        )

    def mark_failed(
        self,
        record_id: int,
        reason: FailureReason | str,
        message: str,
        *,
        run_id: str | None,
        details: Mapping[str, Any] | None = None,
        x3_documents: Mapping[str, Any] | None = None,
    ) -> LedgerRecord:
        return self.transition(
            record_id,
            RecordState.FAILED,
            run_id=run_id,
            reason=(str(reason), message, details),
            x3_documents=x3_documents,
        )

    def mark_skipped(
        self,
        record_id: int,
        reason: SkipReason | str,
        message: str = "",
        *,
        run_id: str | None,
        details: Mapping[str, Any] | None = None,
    ) -> LedgerRecord:
        return self.transition(
            record_id, RecordState.SKIPPED, run_id=run_id, reason=(str(reason), message, details)
        )

    def replay(self, record_id: int, *, run_id: str | None) -> LedgerRecord:
        """A failed (or skipped) record back to `staged`, to be processed again from its kept input."""
        return self.transition(record_id, RecordState.STAGED, run_id=run_id, event=LedgerEventType.REPLAYED)

    def record_event(
        self,
        record_id: int,
        event: str,
        *,
        run_id: str | None,
        detail: Mapping[str, Any] | None = None,
        x3_documents: Mapping[str, Any] | None = None,
        expected_revision: int | None = None,
    ) -> LedgerEvent:
        """Append an event that does not change the record's state (a note, a warning, an X3 document made by
        another flow); `x3_documents` is merged into the record's documents in the same transaction. Raises
        `StaleRecord` when `expected_revision` is given and the record has moved on."""
        with self.database.transaction(write=True) as connection:
            record = _read_record(connection, record_id, for_update=True)
            if expected_revision is not None and record.revision != expected_revision:
                raise StaleRecord(record_id, expected_revision, record.revision)
            if x3_documents:
                connection.execute(
                    update(_RECORDS)
                    .where(_RECORDS.c.id == record_id)
                    .values(
                        x3_documents={**record.x3_documents, **to_json_safe(x3_documents)},
                        revision=record.revision + 1,
                        updated_at=self.now(),
                        last_run_id=run_id,
                    )
                )
            event_id = insert_event(
                connection,
                at=self.now(),
                run_id=run_id,
                event=_code("event", event),
                state=record.state.value,
                detail=to_json_safe(dict(detail or {})),
                record_id=record_id,
            )
            row = connection.execute(select(_EVENTS).where(_EVENTS.c.id == event_id)).one()
        return _event(row)


# ------------------------------------------------------------------------------------------------ helpers
def dialect_insert(connection: Connection, table: Any) -> postgresql.Insert | sqlite.Insert:
    """INSERT with ON CONFLICT support for the connection's dialect."""
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def insert_event(
    connection: Connection,
    *,
    at: datetime,
    run_id: str | None,
    event: str,
    state: str | None,
    detail: Mapping[str, Any],
    record_id: int | None = None,
    operation_id: int | None = None,
) -> int:
    """Append one history event (JSON-safe `detail`) in the caller's transaction; returns its id."""
    statement = insert(_EVENTS).values(
        record_id=record_id,
        operation_id=operation_id,
        at=at,
        run_id=run_id,
        event=str(event),
        state=str(state) if state is not None else None,
        detail=dict(detail),
    )
    return int(connection.execute(statement.returning(_EVENTS.c.id)).scalar_one())


def _with_gl_lines(detail: Mapping[str, Any] | None, gl_lines: Sequence[GlLine]) -> dict[str, Any]:
    merged = dict(detail or {})
    if gl_lines:
        check_balanced(gl_lines)
        merged["gl_lines"] = [line.as_json() for line in gl_lines]
    return merged


def _observe(
    connection: Connection, version: SourceVersion, now: datetime, run_id: str | None
) -> Observation:
    source = {
        "updated_at": version.updated_at,
        "content_hash": version.content_hash,
        "partition": version.partition,
    }
    inserted = connection.execute(
        dialect_insert(connection, _RECORDS)
        .values(
            store=version.store,
            kind=version.kind.value,
            source_id=version.source_id,
            source_name=version.name,
            state=RecordState.STAGED.value,
            partition=version.partition,
            source_updated_at=version.updated_at,
            source_hash=version.content_hash,
            source_payload=to_json_safe(version.payload),
            amount=version.amount,
            currency=version.currency,
            x3_documents={},
            attempts=0,
            revision=1,
            created_at=now,
            updated_at=now,
            last_run_id=run_id,
        )
        .on_conflict_do_nothing(index_elements=["store", "kind", "source_id"])
        .returning(_RECORDS.c.id)
    ).scalar_one_or_none()
    if inserted is not None:
        detail = to_json_safe(source)
        insert_event(
            connection,
            at=now,
            run_id=run_id,
            event="fetched",
            state="staged",
            detail=detail,
            record_id=inserted,
        )
        return Observation(ObserveOutcome.NEW, _read_record(connection, inserted))

    key = (version.store, version.kind.value, version.source_id)
    current = _record(
        connection.execute(
            select(_RECORDS)
            .where(_RECORDS.c.store == key[0], _RECORDS.c.kind == key[1], _RECORDS.c.source_id == key[2])
            .with_for_update()
        ).one()
    )
    if version.content_hash == current.source_hash:
        moved: dict[str, Any] = {}
        if version.updated_at > current.source_updated_at:
            # Shopify bumps updatedAt without a content change: remember it, so that a version older than this
            # is still recognised as older.
            moved["source_updated_at"] = version.updated_at
        if version.updated_at >= current.source_updated_at and version.partition != current.partition:
            # A record belongs to the partition of its latest observation (an order bumped to another day, a
            # refund following its order): the partition the UI shows it failed in is the one whose replay
            # reaches it.
            moved["partition"] = version.partition
        if moved:
            connection.execute(
                update(_RECORDS)
                .where(_RECORDS.c.id == current.id)
                .values(**moved, revision=current.revision + 1, updated_at=now)
            )
            current = _read_record(connection, current.id)
        return Observation(ObserveOutcome.UNCHANGED, current)
    if version.updated_at < current.source_updated_at:
        detail = to_json_safe(
            {**source, "reason": SkipReason.OLDER_VERSION, "applied_updated_at": current.source_updated_at}
        )
        insert_event(
            connection,
            at=now,
            run_id=run_id,
            event=LedgerEventType.SKIPPED,
            state=current.state.value,
            detail=detail,
            record_id=current.id,
        )
        return Observation(ObserveOutcome.OLDER, current)

    restage = current.state in _RESTAGED_BY_NEW_VERSION
    values: dict[str, Any] = {
        "source_name": version.name if version.name is not None else current.source_name,
        "partition": version.partition,
        "source_updated_at": version.updated_at,
        "source_hash": version.content_hash,
        "source_payload": to_json_safe(version.payload),
        "amount": version.amount,
        "currency": version.currency,
        "revision": current.revision + 1,
        "updated_at": now,
        "last_run_id": run_id,
    }
    if restage:
        values.update(
            state=RecordState.STAGED.value, reason_code=None, reason_message=None, reason_details=None
        )
    connection.execute(update(_RECORDS).where(_RECORDS.c.id == current.id).values(**values))
    previous = {"updated_at": current.source_updated_at, "content_hash": current.source_hash}
    insert_event(
        connection,
        at=now,
        run_id=run_id,
        event=LedgerEventType.FETCHED,
        state=values.get("state", current.state.value),
        detail=to_json_safe({**source, "previous": previous}),
        record_id=current.id,
    )
    return Observation(ObserveOutcome.NEWER, _read_record(connection, current.id))


def _partition_query(
    store: str, kind: RecordKind, partition: str, columns: Sequence[Any] = ()
) -> Select[Any]:
    query = select(*columns) if columns else select(_RECORDS)
    return query.where(
        _RECORDS.c.store == store, _RECORDS.c.kind == kind.value, _RECORDS.c.partition == partition
    )


def _read_record(connection: Connection, record_id: int, *, for_update: bool = False) -> LedgerRecord:
    query = select(_RECORDS).where(_RECORDS.c.id == record_id)
    if for_update:
        query = query.with_for_update()  # row lock on PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises
    row = connection.execute(query).one_or_none()
    if row is None:
        raise RecordNotFound(f"no ledger record {record_id}")
    return _record(row)


def _record(row: Row[Any]) -> LedgerRecord:
    return LedgerRecord(
        id=row.id,
        store=row.store,
        kind=RecordKind(row.kind),
        source_id=row.source_id,
        source_name=row.source_name,
        state=RecordState(row.state),
        partition=row.partition,
        source_updated_at=row.source_updated_at,
        source_hash=row.source_hash,
        source_payload=row.source_payload,
        amount=row.amount,
        currency=row.currency,
        reason_code=row.reason_code,
        reason_message=row.reason_message,
        reason_details=row.reason_details,
        x3_customer=row.x3_customer,
        x3_documents=row.x3_documents or {},
        attempts=row.attempts,
        revision=row.revision,
        created_at=row.created_at,
        updated_at=row.updated_at,
        last_run_id=row.last_run_id,
    )


def _event(row: Row[Any]) -> LedgerEvent:
    return LedgerEvent(
        id=row.id,
        at=row.at,
        run_id=row.run_id,
        event=row.event,
        state=row.state,
        detail=row.detail,
        record_id=row.record_id,
        operation_id=row.operation_id,
    )
