"""Tables of the posting ledger (SQLAlchemy Core), on the connector's shared `metadata`.

Revision 0002 (`migrations/versions/0002_ledger.py`) creates them; a test checks that a migrated database
matches these definitions.

- `ledger_records`: one row per (store, kind, source id) with its current state and outcome.
- `ledger_events`: the append-only history of records and of exactly-once operations.
- `ledger_operations`: one row per remote write (deterministic key), claimed before the write is sent.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Column,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB

from x3_shopify_dagster.storage.schema import BigIntegerId, UtcDateTime, metadata


class DecimalText(TypeDecorator[Decimal]):
    """An exact decimal stored as its text (SQLite has no exact NUMERIC; its NUMERIC affinity rounds through a
    float). Floats are refused: money never travels as a float."""

    impl = String(40)
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if not isinstance(value, Decimal) or not value.is_finite():
            raise ValueError(f"expected a finite Decimal, got {value!r}")
        return str(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        try:
            return Decimal(value)
        except InvalidOperation:
            raise ValueError(f"stored amount {value!r} is not a decimal") from None


# Python None is SQL NULL here (SQLAlchemy's default would store the JSON text 'null').
NullableJson = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")

OPERATION_STATES = ("claimed", "sending", "done", "failed")

ledger_records = Table(
    "ledger_records",
    metadata,
    Column("id", BigIntegerId, primary_key=True, autoincrement=True),
    Column("store", String(255), nullable=False),
    Column("kind", String(32), nullable=False),  # order, fulfillment, refund
    Column("source_id", String(255), nullable=False),  # e.g. the Shopify order GID
    Column("source_name", String(255), nullable=True),  # e.g. the order name "#1001", for people
    Column("state", String(32), nullable=False),
    Column("partition", String(64), nullable=False),  # business day of the version applied (a partition key)
    # The source version the record reflects: an older version met later is recorded and skipped.
    Column("source_updated_at", UtcDateTime(), nullable=False),
    Column("source_hash", String(128), nullable=False),
    Column("source_payload", NullableJson, nullable=True),  # full input when the caller keeps it here
    Column("amount", DecimalText(), nullable=True),  # e.g. the order total, in `currency`
    Column("currency", String(3), nullable=True),
    Column("reason_code", String(64), nullable=True),  # set while failed or skipped
    Column("reason_message", Text(), nullable=True),
    Column("reason_details", NullableJson, nullable=True),
    Column("x3_customer", String(64), nullable=True),
    Column("x3_documents", NullableJson, nullable=False),  # {"invoice": "INV2611-00001", ...}
    Column("attempts", Integer(), nullable=False),  # times a run took the record out of `staged`
    Column("revision", Integer(), nullable=False),  # +1 on every change (optimistic concurrency)
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("last_run_id", String(255), nullable=True),
    UniqueConstraint("store", "kind", "source_id", name="uq_ledger_records_source"),
    Index("ix_ledger_records_partition_state", "store", "kind", "partition", "state"),
    Index("ix_ledger_records_state_partition", "state", "partition"),  # partitions with failures
)

ledger_operations = Table(
    "ledger_operations",
    metadata,
    Column("id", BigIntegerId, primary_key=True, autoincrement=True),
    Column("key", String(255), nullable=False),
    Column("record_id", BigIntegerId, ForeignKey("ledger_records.id"), nullable=True),
    Column("state", String(16), nullable=False),
    Column("owner", String(255), nullable=True),  # the run holding (or that last held) the lease
    Column("lease_expires_at", UtcDateTime(), nullable=True),  # NULL: released
    Column("attempts", Integer(), nullable=False),  # times the write was sent
    Column("remote_reference", String(255), nullable=True),  # the key as written into the remote (BPRVCR)
    Column("request_summary", NullableJson, nullable=True),
    Column("document", String(255), nullable=True),  # the remote document number, once done
    Column("result", NullableJson, nullable=True),
    Column("error", NullableJson, nullable=True),  # the last failure: type, message, classification
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("completed_at", UtcDateTime(), nullable=True),
    UniqueConstraint("key", name="uq_ledger_operations_key"),
    CheckConstraint("state IN ('claimed', 'sending', 'done', 'failed')", name="state"),
    Index("ix_ledger_operations_state", "state"),
    Index("ix_ledger_operations_record_id", "record_id"),
)

# Append-only: a database trigger (revision 0002) refuses UPDATE on both engines.
ledger_events = Table(
    "ledger_events",
    metadata,
    Column("id", BigIntegerId, primary_key=True, autoincrement=True),
    Column("record_id", BigIntegerId, ForeignKey("ledger_records.id"), nullable=True),
    Column("operation_id", BigIntegerId, ForeignKey("ledger_operations.id"), nullable=True),
    Column("at", UtcDateTime(), nullable=False),
    Column("run_id", String(255), nullable=True),
    Column("event", String(32), nullable=False),
    Column("state", String(32), nullable=True),  # the record's (or operation's) state after the event
    Column("detail", NullableJson, nullable=False),
    CheckConstraint("record_id IS NOT NULL OR operation_id IS NOT NULL", name="subject"),
    Index("ix_ledger_events_record_id", "record_id", "id"),
    Index("ix_ledger_events_operation_id", "operation_id", "id"),
)
