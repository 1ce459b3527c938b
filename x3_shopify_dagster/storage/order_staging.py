"""Staging of Shopify order versions in the connector database.

Every distinct version of an order is stored once, identified by (store, order_id, updated_at, content_hash);
one "latest" row per order points at the version the posting step should act on. Staging the same versions
again (re-runs, overlapping windows, two concurrent runs of one partition) changes nothing, and a version
older than what is already known is kept in history but never becomes the latest.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any, Protocol

from sqlalchemy import Connection, Dialect, Select, and_, column, or_, select, table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row as ResultRow

from x3_shopify_dagster.storage.database import ConnectorDatabase, json_dumps, postgres_copy, postgres_supports_lz4
from x3_shopify_dagster.storage.schema import UtcDateTime, staged_order_latest, staged_order_versions

_LATEST = staged_order_latest
_VERSIONS = staged_order_versions
_LATEST_COLUMNS_MOVED_BY_UPSERT = (
    "order_name",
    "updated_at",
    "version_updated_at",
    "content_hash",
    "last_staged_at",
    "run_id",
)  # first_seen_at stays as first written
DialectInsert = postgresql.Insert | sqlite.Insert

# Columns read back as a StagedOrder (plus the latest row's updated_at as order_updated_at).
_VERSION_COLUMNS = (
    _VERSIONS.c.id,
    _VERSIONS.c.store,
    _VERSIONS.c.order_id,
    _VERSIONS.c.order_name,
    _VERSIONS.c.updated_at,
    _VERSIONS.c.content_hash,
    _VERSIONS.c.payload,
    _VERSIONS.c.first_seen_at,
    _VERSIONS.c.run_id,
)
# Columns written by staging, in the order of the row tuples built below.
_VERSION_COLUMNS_WRITTEN = (
    "store",
    "order_id",
    "order_name",
    "updated_at",
    "content_hash",
    "payload",
    "first_seen_at",
    "run_id",
)
_LATEST_COLUMNS_WRITTEN = (
    "store",
    "order_id",
    "order_name",
    "updated_at",
    "version_updated_at",
    "content_hash",
    "first_seen_at",
    "last_staged_at",
    "run_id",
)
Row = tuple[Any, ...]

OrderKey = tuple[str, str]  # (store, order_id)
VersionIdentity = tuple[str, str, datetime, str]  # (store, order_id, updated_at, content_hash)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _require_aware(name: str, value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value!r}")
    return value.astimezone(UTC)


@dataclass(frozen=True)
class OrderVersion:
    """One observed state of a Shopify order, as fetched."""

    store: str
    order_id: str
    order_name: str
    updated_at: datetime  # Shopify's Order.updatedAt; normalised to UTC, naive values are refused
    content_hash: str
    # JSON-safe order (money as Decimal strings); None when only `payload_json` is known (the bulk worker
    # process sends the encoded text, not the dict).
    payload: dict[str, Any] | None = field(repr=False)
    # `payload` already encoded with storage's json_dumps, when the caller has it: what gets stored. Encoding
    # right after the dict is built is cheaper than in the writer, when a batch of dicts is out of the cache.
    payload_json: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.payload is None and self.payload_json is None:
            raise ValueError(f"order {self.order_id}: a version needs its payload or its encoded payload_json")
        object.__setattr__(self, "updated_at", _require_aware("updated_at", self.updated_at))

    @property
    def identity(self) -> VersionIdentity:
        return (self.store, self.order_id, self.updated_at, self.content_hash)


class StageOutcome(enum.StrEnum):
    NEW = "new"  # order never seen
    CHANGED = "changed"  # different content, updated_at >= the newest known: becomes the latest
    UNCHANGED = "unchanged"  # same content as the latest: no new version, the newest updatedAt is remembered
    OLDER = "older"  # different content but older than the newest known: kept in history, never the latest


@dataclass
class StagingCounts:
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    older: int = 0

    def __add__(self, other: StagingCounts) -> StagingCounts:
        return StagingCounts(
            new=self.new + other.new,
            changed=self.changed + other.changed,
            unchanged=self.unchanged + other.unchanged,
            older=self.older + other.older,
        )

    @property
    def total(self) -> int:
        return self.new + self.changed + self.unchanged + self.older

    def record(self, outcome: StageOutcome) -> None:
        setattr(self, outcome.value, getattr(self, outcome.value) + 1)

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class StagedOrder:
    """A stored order version, with the order's newest updatedAt seen at read time."""

    version_id: int
    store: str
    order_id: str
    order_name: str
    updated_at: datetime  # this version's updatedAt
    content_hash: str
    payload: dict[str, Any] = field(repr=False)
    first_seen_at: datetime  # when this version was first staged
    run_id: str | None  # the run that first staged this version
    # Newest updatedAt Shopify has shown for the order: >= updated_at of the latest version, later when
    # Shopify bumped updatedAt without a content change. Window queries filter on this timestamp.
    order_updated_at: datetime


@dataclass(frozen=True)
class LatestState:
    """What the latest row of an order says: its content hash, and the newest updatedAt seen."""

    content_hash: str
    updated_at: datetime
    version_updated_at: datetime
    order_name: str


def classify(version: OrderVersion, latest: LatestState | None) -> StageOutcome:
    """The staging outcome of `version` given the order's latest state (the product's invariants)."""
    if latest is None:
        return StageOutcome.NEW
    if version.content_hash == latest.content_hash:
        return StageOutcome.UNCHANGED
    if version.updated_at >= latest.updated_at:
        return StageOutcome.CHANGED
    return StageOutcome.OLDER


@dataclass
class _BatchPlan:
    counts: StagingCounts = field(default_factory=StagingCounts)
    version_rows: dict[VersionIdentity, OrderVersion] = field(default_factory=dict)
    latest_states: dict[OrderKey, LatestState] = field(default_factory=dict)


def plan_batch(batch: Sequence[OrderVersion], known: Mapping[OrderKey, LatestState]) -> _BatchPlan:
    """Classify a batch against the stored latest states, in input order (so that outcomes do not depend on
    how the input is cut into batches), and collect the version rows and latest rows to write."""
    plan = _BatchPlan()
    states: dict[OrderKey, LatestState | None] = {}
    for version in batch:
        key = (version.store, version.order_id)
        state = states[key] if key in states else known.get(key)
        outcome = classify(version, state)
        plan.counts.record(outcome)
        if outcome is StageOutcome.UNCHANGED:
            assert state is not None
            if version.updated_at <= state.updated_at:
                continue
            state = dataclasses.replace(state, updated_at=version.updated_at)
        else:
            plan.version_rows.setdefault(version.identity, version)
            if outcome is StageOutcome.OLDER:
                continue
            state = LatestState(
                content_hash=version.content_hash,
                updated_at=version.updated_at,
                version_updated_at=version.updated_at,
                order_name=version.order_name,
            )
        states[key] = state
        plan.latest_states[key] = state
    return plan


class OrderStaging:
    """Stages order versions and answers what the latest version of each order is."""

    def __init__(
        self,
        db: ConnectorDatabase,
        *,
        batch_size: int = 1000,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if db.dialect_name == "postgresql":
            self._writer: _RowWriter = _PostgresCopyWriter()
        elif db.dialect_name == "sqlite":
            self._writer = _SqliteExecutemanyWriter(db.engine.dialect)
        else:
            raise ValueError(f"order staging supports PostgreSQL and SQLite, not {db.dialect_name}")
        self._db = db
        self._batch_size = batch_size
        self._clock = clock

    def stage(self, versions: Iterable[OrderVersion], *, run_id: str | None = None) -> StagingCounts:
        """Stage `versions`, consuming the iterable `batch_size` at a time, one transaction per batch."""
        counts = StagingCounts()
        iterator = iter(versions)
        while batch := list(islice(iterator, self._batch_size)):
            counts += self._stage_batch(batch, run_id)
        return counts

    def _stage_batch(self, batch: Sequence[OrderVersion], run_id: str | None) -> StagingCounts:
        staged_at = _require_aware("clock()", self._clock())
        with self._db.transaction(write=True) as connection:
            plan = plan_batch(batch, self._read_latest_states(connection, batch))
            # Sorted writes: concurrent transactions take row locks in one order, so they cannot deadlock.
            version_rows = [
                _version_row(plan.version_rows[identity], staged_at, run_id) for identity in sorted(plan.version_rows)
            ]
            latest_rows = [
                _latest_row(key, plan.latest_states[key], staged_at, run_id) for key in sorted(plan.latest_states)
            ]
            self._writer.write(connection, version_rows, latest_rows)
        return plan.counts

    def _read_latest_states(self, connection: Connection, batch: Sequence[OrderVersion]) -> dict[OrderKey, LatestState]:
        order_ids_by_store: dict[str, set[str]] = {}
        for version in batch:
            order_ids_by_store.setdefault(version.store, set()).add(version.order_id)
        states: dict[OrderKey, LatestState] = {}
        for store, order_ids in order_ids_by_store.items():  # one round trip per store (usually one)
            query = select(
                _LATEST.c.order_id,
                _LATEST.c.content_hash,
                _LATEST.c.updated_at,
                _LATEST.c.version_updated_at,
                _LATEST.c.order_name,
            ).where(_LATEST.c.store == store, _LATEST.c.order_id.in_(sorted(order_ids)))
            for row in connection.execute(query):
                states[(store, row.order_id)] = LatestState(
                    content_hash=row.content_hash,
                    updated_at=row.updated_at,
                    version_updated_at=row.version_updated_at,
                    order_name=row.order_name,
                )
        return states

    def latest(self, store: str, order_id: str) -> StagedOrder | None:
        query = _latest_versions_query().where(_LATEST.c.store == store, _LATEST.c.order_id == order_id)
        with self._db.transaction() as connection:
            row = connection.execute(query).one_or_none()
        return None if row is None else _staged_order(row)

    def latest_changed_between(self, store: str, lo: datetime, hi: datetime) -> Iterator[StagedOrder]:
        """The latest version of each order whose newest updatedAt is in [lo, hi), by (updatedAt, order id).

        Reads keyset pages of `batch_size` rows, each in its own short transaction, so that neither memory nor
        an open transaction grows with the window. An order restaged while the iteration runs may move past
        the cursor and be met twice, which the posting step's idempotency absorbs.
        """
        lo = _require_aware("lo", lo)
        hi = _require_aware("hi", hi)
        if lo > hi:
            raise ValueError(f"empty window: lo {lo.isoformat()} is after hi {hi.isoformat()}")
        window = _latest_versions_query().where(
            _LATEST.c.store == store, _LATEST.c.updated_at >= lo, _LATEST.c.updated_at < hi
        )
        after: tuple[datetime, str] | None = None
        while True:
            page_query = window
            if after is not None:
                page_query = page_query.where(
                    or_(
                        _LATEST.c.updated_at > after[0],
                        and_(_LATEST.c.updated_at == after[0], _LATEST.c.order_id > after[1]),
                    )
                )
            page_query = page_query.order_by(_LATEST.c.updated_at, _LATEST.c.order_id).limit(self._batch_size)
            with self._db.transaction() as connection:
                page = [_staged_order(row) for row in connection.execute(page_query)]
            yield from page
            if len(page) < self._batch_size:
                return
            after = (page[-1].order_updated_at, page[-1].order_id)

    def versions(self, store: str, order_id: str) -> list[StagedOrder]:
        """Every stored version of an order, oldest updatedAt first (OLDER versions included)."""
        query = (
            select(*_VERSION_COLUMNS, _LATEST.c.updated_at.label("order_updated_at"))
            .select_from(
                _VERSIONS.join(
                    _LATEST,
                    and_(_LATEST.c.store == _VERSIONS.c.store, _LATEST.c.order_id == _VERSIONS.c.order_id),
                )
            )
            .where(_VERSIONS.c.store == store, _VERSIONS.c.order_id == order_id)
            .order_by(_VERSIONS.c.updated_at, _VERSIONS.c.id)
        )
        with self._db.transaction() as connection:
            return [_staged_order(row) for row in connection.execute(query)]


def _latest_versions_query() -> Select[Any]:
    # The latest row names its version by natural key, so no id has to be read back after an upsert.
    return select(*_VERSION_COLUMNS, _LATEST.c.updated_at.label("order_updated_at")).select_from(
        _LATEST.join(
            _VERSIONS,
            and_(
                _VERSIONS.c.store == _LATEST.c.store,
                _VERSIONS.c.order_id == _LATEST.c.order_id,
                _VERSIONS.c.updated_at == _LATEST.c.version_updated_at,
                _VERSIONS.c.content_hash == _LATEST.c.content_hash,
            ),
        )
    )


def _version_row(version: OrderVersion, staged_at: datetime, run_id: str | None) -> Row:
    """Values in _VERSION_COLUMNS_WRITTEN order, the payload as JSON text."""
    return (
        version.store,
        version.order_id,
        version.order_name,
        version.updated_at,
        version.content_hash,
        version.payload_json if version.payload_json is not None else json_dumps(version.payload),
        staged_at,  # first_seen_at
        run_id,
    )


def _latest_row(key: OrderKey, state: LatestState, staged_at: datetime, run_id: str | None) -> Row:
    """Values in _LATEST_COLUMNS_WRITTEN order."""
    return (
        key[0],
        key[1],
        state.order_name,
        state.updated_at,
        state.version_updated_at,
        state.content_hash,
        staged_at,  # first_seen_at, kept on conflict: only set when the order is first seen
        staged_at,  # last_staged_at
        run_id,
    )


class _RowWriter(Protocol):
    def write(self, connection: Connection, version_rows: list[Row], latest_rows: list[Row]) -> None: ...


def _insert_versions_if_absent(insert: DialectInsert) -> DialectInsert:
    return insert.on_conflict_do_nothing(index_elements=["store", "order_id", "updated_at", "content_hash"])


def _upsert_latest_if_newer(insert: DialectInsert) -> DialectInsert:
    return insert.on_conflict_do_update(
        index_elements=["store", "order_id"],
        set_={name: insert.excluded[name] for name in _LATEST_COLUMNS_MOVED_BY_UPSERT},
        # Conditional: only a newer observation moves the row, so a run working from a stale read (or a
        # concurrent run) can never roll an order back. Equal updatedAt with other content is CHANGED.
        where=or_(
            _LATEST.c.updated_at < insert.excluded.updated_at,
            and_(
                _LATEST.c.updated_at == insert.excluded.updated_at,
                _LATEST.c.content_hash != insert.excluded.content_hash,
            ),
        ),
    )


class _SqliteExecutemanyWriter:
    """DBAPI executemany of the INSERT ... ON CONFLICT statements, compiled once.

    sqlite3 binds and steps each row of a prepared statement in C; going through SQLAlchemy's executemany cost
    more than the inserts themselves (per-row parameter dicts, bind processors, multi-row statement building).
    Values are rendered here exactly as the columns' types render them (UtcDateTime text; the payload comes
    as JSON text from `_version_row`).
    """

    def __init__(self, dialect: Dialect) -> None:
        self._insert_versions = _positional_sql(
            _insert_versions_if_absent(sqlite.insert(_VERSIONS)), _VERSION_COLUMNS_WRITTEN, dialect
        )
        self._upsert_latest = _positional_sql(
            _upsert_latest_if_newer(sqlite.insert(_LATEST)), _LATEST_COLUMNS_WRITTEN, dialect
        )
        render_timestamp = UtcDateTime().process_bind_param
        self._timestamp = lambda value: render_timestamp(value, dialect)

    def write(self, connection: Connection, version_rows: list[Row], latest_rows: list[Row]) -> None:
        timestamp = self._timestamp
        if version_rows:
            first_seen_at = timestamp(version_rows[0][6])  # staged_at: one value per batch
            rows = [
                (store, order_id, name, timestamp(updated_at), content_hash, payload_json, first_seen_at, run)
                for store, order_id, name, updated_at, content_hash, payload_json, _, run in version_rows
            ]
            connection.exec_driver_sql(self._insert_versions, rows)
        if latest_rows:
            staged_at = timestamp(latest_rows[0][6])
            rows = [
                (store, order_id, name, timestamp(updated_at), timestamp(version_updated_at), content_hash,
                 staged_at, staged_at, run)
                for store, order_id, name, updated_at, version_updated_at, content_hash, _, _, run in latest_rows
            ]
            connection.exec_driver_sql(self._upsert_latest, rows)


def _positional_sql(statement: DialectInsert, columns: Sequence[str], dialect: Dialect) -> str:
    """The statement's SQL with one positional parameter per column, in `columns` order."""
    compiled = statement.compile(dialect=dialect, column_keys=list(columns))
    if compiled.positiontup != list(columns):
        raise AssertionError(f"unexpected parameter order {compiled.positiontup}")
    return str(compiled)


class _PostgresCopyWriter:
    """COPY into session temp tables, then one INSERT ... SELECT ... ON CONFLICT per table.

    A multi-row INSERT makes PostgreSQL lex every 4 KB payload as an SQL literal; COPY halves the server's
    work per order (measured: bench/bench_staging_db.py). The temp tables empty themselves at commit and
    disappear with the session; rows keep their sorted COPY order through the INSERT ... SELECT.
    """

    VERSIONS_TABLE = "x3sd_incoming_order_versions"
    LATEST_TABLE = "x3sd_incoming_order_latest"

    def __init__(self) -> None:
        incoming_versions = table(self.VERSIONS_TABLE, *(column(name) for name in _VERSION_COLUMNS_WRITTEN))
        incoming_latest = table(self.LATEST_TABLE, *(column(name) for name in _LATEST_COLUMNS_WRITTEN))
        self._insert_versions = _insert_versions_if_absent(
            postgresql.insert(_VERSIONS).from_select(_VERSION_COLUMNS_WRITTEN, select(incoming_versions))
        )
        self._upsert_latest = _upsert_latest_if_newer(
            postgresql.insert(_LATEST).from_select(_LATEST_COLUMNS_WRITTEN, select(incoming_latest))
        )
        self._payload_compression: str | None = None

    def write(self, connection: Connection, version_rows: list[Row], latest_rows: list[Row]) -> None:
        self._create_temp_tables(connection)
        if version_rows:
            postgres_copy(connection, self.VERSIONS_TABLE, _VERSION_COLUMNS_WRITTEN, version_rows)
            connection.execute(self._insert_versions)
        if latest_rows:
            postgres_copy(connection, self.LATEST_TABLE, _LATEST_COLUMNS_WRITTEN, latest_rows)
            connection.execute(self._upsert_latest)

    def _create_temp_tables(self, connection: Connection) -> None:
        # Every batch: a temp table created in a transaction that later rolled back is gone again.
        if self._payload_compression is None:
            self._payload_compression = " COMPRESSION lz4" if postgres_supports_lz4(connection) else ""
        connection.exec_driver_sql(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {self.VERSIONS_TABLE} (store text, order_id text, "
            f"order_name text, updated_at timestamptz, content_hash text, payload jsonb{self._payload_compression},"
            " first_seen_at timestamptz, run_id text) ON COMMIT DELETE ROWS"
        )
        connection.exec_driver_sql(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {self.LATEST_TABLE} (store text, order_id text, "
            "order_name text, updated_at timestamptz, version_updated_at timestamptz, content_hash text, "
            "first_seen_at timestamptz, last_staged_at timestamptz, run_id text) ON COMMIT DELETE ROWS"
        )


def _staged_order(row: ResultRow[Any]) -> StagedOrder:
    return StagedOrder(
        version_id=row.id,
        store=row.store,
        order_id=row.order_id,
        order_name=row.order_name,
        updated_at=row.updated_at,
        content_hash=row.content_hash,
        payload=row.payload,
        first_seen_at=row.first_seen_at,
        run_id=row.run_id,
        order_updated_at=row.order_updated_at,
    )
