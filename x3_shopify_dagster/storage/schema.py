"""Tables of the connector database (SQLAlchemy Core). Alembic revisions under `migrations/` create them;
a test checks that a migrated database matches this metadata."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeEngine

# Distinct from Alembic's default "alembic_version": the connector may share a PostgreSQL database with
# Dagster's own storage, which keeps its revision in "alembic_version".
ALEMBIC_VERSION_TABLE = "x3sd_alembic_version"

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class Base(DeclarativeBase):
    """Declarative base sharing `metadata`, for ORM-mapped tables added later (e.g. the posting ledger)."""

    metadata = metadata


class _SqliteUtcDateTimeText(sqlite.DATETIME):
    """SQLite DATETIME holding text that UtcDateTime renders and parses itself (in the format SQLAlchemy uses,
    'YYYY-MM-DD HH:MM:SS.ffffff', so that text order is time order); skips SQLAlchemy's slower processors."""

    def bind_processor(self, dialect: Dialect) -> None:
        return None

    def result_processor(self, dialect: Dialect, coltype: object) -> None:
        return None


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned timezone-aware UTC.

    PostgreSQL stores TIMESTAMPTZ. SQLite has no timezone-aware type, so values are normalised to UTC text and
    UTC is re-attached on the way out. Naive datetimes are refused rather than guessed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return _SqliteUtcDateTimeText()
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | str | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: connector timestamps must be timezone-aware")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        return value

    def process_result_value(self, value: datetime | str | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Payloads are JSON text on SQLite and JSONB (binary, indexable, TOAST-compressed) on PostgreSQL.
JsonDocument = JSON().with_variant(JSONB(), "postgresql")
# BIGINT on PostgreSQL; INTEGER on SQLite, where only "INTEGER PRIMARY KEY" aliases the auto-increment rowid.
BigIntegerId = BigInteger().with_variant(Integer(), "sqlite")

# Every distinct version of an order ever staged: (store, order_id, updated_at, content_hash) is its identity.
# OLDER versions (met by backfills) are kept here too; they never become the latest.
staged_order_versions = Table(
    "staged_order_versions",
    metadata,
    Column("id", BigIntegerId, primary_key=True, autoincrement=True),
    Column("store", String(255), nullable=False),
    Column("order_id", String(255), nullable=False),
    Column("order_name", String(255), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("content_hash", String(128), nullable=False),
    Column("payload", JsonDocument, nullable=False),
    Column("first_seen_at", UtcDateTime(), nullable=False),
    Column("run_id", String(255), nullable=True),
    UniqueConstraint("store", "order_id", "updated_at", "content_hash", name="uq_staged_order_versions_identity"),
    Index("ix_staged_order_versions_store_updated_at", "store", "updated_at"),
)

# One row per order: which version is the latest, and the newest updatedAt Shopify has shown for it (which
# moves on without a new version when Shopify bumps updatedAt with no content change).
staged_order_latest = Table(
    "staged_order_latest",
    metadata,
    Column("store", String(255), nullable=False),
    Column("order_id", String(255), nullable=False),
    Column("order_name", String(255), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),  # newest updatedAt seen
    Column("version_updated_at", UtcDateTime(), nullable=False),  # with content_hash: the latest version
    Column("content_hash", String(128), nullable=False),
    Column("first_seen_at", UtcDateTime(), nullable=False),
    Column("last_staged_at", UtcDateTime(), nullable=False),
    Column("run_id", String(255), nullable=True),  # the run that last moved this row
    PrimaryKeyConstraint("store", "order_id"),
    # window scans in (updated_at, order_id) order, for keyset paging
    Index("ix_staged_order_latest_store_updated_at", "store", "updated_at", "order_id"),
)
