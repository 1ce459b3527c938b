"""Posting ledger: records, their append-only event history, and exactly-once operations.

Revision ID: 0002
Revises: 0001
Create Date: 2026-05-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the types at this revision (never import the live schema into a migration).
_json = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
_big_integer_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_decimal_text = sa.String(40)

_APPEND_ONLY_MESSAGE = "ledger_events is append-only: UPDATE refused"


def _timestamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "ledger_records",
        sa.Column("id", _big_integer_id, primary_key=True, autoincrement=True),
        sa.Column("store", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("source_id", sa.String(255), nullable=False),
        sa.Column("source_name", sa.String(255), nullable=True),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("partition", sa.String(64), nullable=False),
        sa.Column("source_updated_at", _timestamp(), nullable=False),
        sa.Column("source_hash", sa.String(128), nullable=False),
        sa.Column("source_payload", _json, nullable=True),
        sa.Column("amount", _decimal_text, nullable=True),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("reason_code", sa.String(64), nullable=True),
        sa.Column("reason_message", sa.Text(), nullable=True),
        sa.Column("reason_details", _json, nullable=True),
        sa.Column("x3_customer", sa.String(64), nullable=True),
        sa.Column("x3_documents", _json, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.Column("last_run_id", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_records"),
        sa.UniqueConstraint("store", "kind", "source_id", name="uq_ledger_records_source"),
    )
    op.create_index(
        "ix_ledger_records_partition_state", "ledger_records", ["store", "kind", "partition", "state"]
    )
    op.create_index("ix_ledger_records_state_partition", "ledger_records", ["state", "partition"])

    op.create_table(
        "ledger_operations",
        sa.Column("id", _big_integer_id, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("record_id", _big_integer_id, nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(255), nullable=True),
        sa.Column("lease_expires_at", _timestamp(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("remote_reference", sa.String(255), nullable=True),
        sa.Column("request_summary", _json, nullable=True),
        sa.Column("document", sa.String(255), nullable=True),
        sa.Column("result", _json, nullable=True),
        sa.Column("error", _json, nullable=True),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.Column("completed_at", _timestamp(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_operations"),
        sa.UniqueConstraint("key", name="uq_ledger_operations_key"),
        sa.ForeignKeyConstraint(
            ["record_id"], ["ledger_records.id"], name="fk_ledger_operations_record_id_ledger_records"
        ),
        sa.CheckConstraint(
            "state IN ('claimed', 'sending', 'done', 'failed')", name="ck_ledger_operations_state"
        ),
    )
    op.create_index("ix_ledger_operations_state", "ledger_operations", ["state"])
    op.create_index("ix_ledger_operations_record_id", "ledger_operations", ["record_id"])

    op.create_table(
        "ledger_events",
        sa.Column("id", _big_integer_id, primary_key=True, autoincrement=True),
        sa.Column("record_id", _big_integer_id, nullable=True),
        sa.Column("operation_id", _big_integer_id, nullable=True),
        sa.Column("at", _timestamp(), nullable=False),
        sa.Column("run_id", sa.String(255), nullable=True),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("state", sa.String(32), nullable=True),
        sa.Column("detail", _json, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_events"),
        sa.ForeignKeyConstraint(
            ["record_id"], ["ledger_records.id"], name="fk_ledger_events_record_id_ledger_records"
        ),
        sa.ForeignKeyConstraint(
            ["operation_id"], ["ledger_operations.id"], name="fk_ledger_events_operation_id_ledger_operations"
        ),
        sa.CheckConstraint(
            "record_id IS NOT NULL OR operation_id IS NOT NULL", name="ck_ledger_events_subject"
        ),
    )
    op.create_index("ix_ledger_events_record_id", "ledger_events", ["record_id", "id"])
    op.create_index("ix_ledger_events_operation_id", "ledger_events", ["operation_id", "id"])
    _create_append_only_trigger()


def _create_append_only_trigger() -> None:
    # History is evidence: the database itself refuses to rewrite it, whatever code runs against it.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION x3sd_ledger_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN RAISE EXCEPTION '{_APPEND_ONLY_MESSAGE}'; END $$"
        )
        op.execute(
            "CREATE TRIGGER ledger_events_append_only BEFORE UPDATE ON ledger_events "
            "FOR EACH ROW EXECUTE FUNCTION x3sd_ledger_events_append_only()"
        )
    elif op.get_bind().dialect.name == "sqlite":
        op.execute(
            "CREATE TRIGGER ledger_events_append_only BEFORE UPDATE ON ledger_events "
            f"BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY_MESSAGE}'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS ledger_events_append_only ON ledger_events")
        op.execute("DROP FUNCTION IF EXISTS x3sd_ledger_events_append_only()")
    elif op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS ledger_events_append_only")
    op.drop_index("ix_ledger_events_operation_id", table_name="ledger_events")
    op.drop_index("ix_ledger_events_record_id", table_name="ledger_events")
    op.drop_table("ledger_events")
    op.drop_index("ix_ledger_operations_record_id", table_name="ledger_operations")
    op.drop_index("ix_ledger_operations_state", table_name="ledger_operations")
    op.drop_table("ledger_operations")
    op.drop_index("ix_ledger_records_state_partition", table_name="ledger_records")
    op.drop_index("ix_ledger_records_partition_state", table_name="ledger_records")
    op.drop_table("ledger_records")
