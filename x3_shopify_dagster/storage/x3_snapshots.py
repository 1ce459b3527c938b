"""Snapshots of X3 master data (customers by e-mail, GL accounts, cost centres, ...) in the connector database.

A snapshot of one kind is replaced whole in one transaction, so readers always see a complete snapshot: either
the previous one or the new one. Revision 0003 creates the tables; a test checks the migrated schema against them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, Integer, String, Table, delete, func, insert, select
from sqlalchemy.dialects.postgresql import JSONB

from x3_shopify_dagster.storage.database import ConnectorDatabase
from x3_shopify_dagster.storage.schema import UtcDateTime, metadata

_json = JSON().with_variant(JSONB(), "postgresql")

x3_snapshot_rows = Table(
    "x3_snapshot_rows",
    metadata,
    Column("kind", String(32), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("data", _json, nullable=False),
)

x3_snapshots = Table(
    "x3_snapshots",
    metadata,
    Column("kind", String(32), primary_key=True),
    Column("taken_at", UtcDateTime(), nullable=False),
    Column("row_count", Integer, nullable=False),
    Column("run_id", String(64), nullable=True),
)

_BATCH = 1000


@dataclass(frozen=True)
class SnapshotInfo:
    kind: str
    taken_at: datetime
    row_count: int
    run_id: str | None


class X3SnapshotStore:
    """Replace and read master-data snapshots by kind (``customers``, ``gl_accounts``, ``dimensions``, ...)."""

    def __init__(self, db: ConnectorDatabase) -> None:
        self._db = db

    def replace(self, kind: str, rows: Iterable[tuple[str, Any]], *, run_id: str | None = None) -> SnapshotInfo:
        """Swap the whole snapshot of ``kind`` for ``rows`` ((key, JSON-safe data) pairs) atomically."""
        taken_at = datetime.now(UTC)
        count = 0
        with self._db.transaction(write=True) as connection:
            connection.execute(delete(x3_snapshot_rows).where(x3_snapshot_rows.c.kind == kind))
            batch: list[dict[str, Any]] = []
            for key, data in rows:
                batch.append({"kind": kind, "key": key, "data": data})
                if len(batch) >= _BATCH:
                    connection.execute(insert(x3_snapshot_rows), batch)
                    count += len(batch)
                    batch = []
            if batch:
                connection.execute(insert(x3_snapshot_rows), batch)
                count += len(batch)
            connection.execute(delete(x3_snapshots).where(x3_snapshots.c.kind == kind))
            connection.execute(
                insert(x3_snapshots).values(kind=kind, taken_at=taken_at, row_count=count, run_id=run_id)
            )
        return SnapshotInfo(kind, taken_at, count, run_id)

    def get(self, kind: str, key: str) -> Any | None:
        with self._db.transaction() as connection:
            return connection.execute(
                select(x3_snapshot_rows.c.data).where(
                    x3_snapshot_rows.c.kind == kind, x3_snapshot_rows.c.key == key
                )
            ).scalar_one_or_none()

    def items(self, kind: str) -> Iterator[tuple[str, Any]]:
        with self._db.transaction() as connection:
            rows = connection.execute(
                select(x3_snapshot_rows.c.key, x3_snapshot_rows.c.data)
                .where(x3_snapshot_rows.c.kind == kind)
                .order_by(x3_snapshot_rows.c.key)
            ).all()
        yield from ((key, data) for key, data in rows)

    def keys(self, kind: str) -> set[str]:
        with self._db.transaction() as connection:
            return set(
                connection.execute(select(x3_snapshot_rows.c.key).where(x3_snapshot_rows.c.kind == kind)).scalars()
            )

    def info(self, kind: str) -> SnapshotInfo | None:
        with self._db.transaction() as connection:
            row = connection.execute(select(x3_snapshots).where(x3_snapshots.c.kind == kind)).first()
        return None if row is None else SnapshotInfo(row.kind, row.taken_at, row.row_count, row.run_id)

    def count(self, kind: str) -> int:
        with self._db.transaction() as connection:
            return int(
                connection.execute(
                    select(func.count()).select_from(x3_snapshot_rows).where(x3_snapshot_rows.c.kind == kind)
                ).scalar_one()
            )
