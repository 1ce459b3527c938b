"""Order staging: every distinct Shopify order version, and the latest one per order.

Revision ID: 0001
Revises:
Create Date: 2026-05-20
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the types at this revision (never import the live schema into a migration).
_json_document = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_big_integer_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _timestamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _postgres_supports_lz4() -> bool:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return False
    # PostgreSQL >= 14 built with lz4 lists it here; older servers have no such setting (no row).
    query = sa.text("SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'")
    return bool(bind.execute(query).scalar())


def upgrade() -> None:
    op.create_table(
        "staged_order_versions",
        sa.Column("id", _big_integer_id, primary_key=True, autoincrement=True),
        sa.Column("store", sa.String(255), nullable=False),
        sa.Column("order_id", sa.String(255), nullable=False),
        sa.Column("order_name", sa.String(255), nullable=False),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.Column("content_hash", sa.String(128), nullable=False),
        sa.Column("payload", _json_document, nullable=False),
        sa.Column("first_seen_at", _timestamp(), nullable=False),
        sa.Column("run_id", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_staged_order_versions"),
        sa.UniqueConstraint(
            "store", "order_id", "updated_at", "content_hash", name="uq_staged_order_versions_identity"
        ),
    )
    op.create_index(
        "ix_staged_order_versions_store_updated_at", "staged_order_versions", ["store", "updated_at"]
    )
    if _postgres_supports_lz4():
        # LZ4 compresses the ~4 KB JSONB payloads with a fraction of the CPU of the default pglz.
        op.execute("ALTER TABLE staged_order_versions ALTER COLUMN payload SET COMPRESSION lz4")
    op.create_table(
        "staged_order_latest",
        sa.Column("store", sa.String(255), nullable=False),
        sa.Column("order_id", sa.String(255), nullable=False),
        sa.Column("order_name", sa.String(255), nullable=False),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.Column("version_updated_at", _timestamp(), nullable=False),
        sa.Column("content_hash", sa.String(128), nullable=False),
        sa.Column("first_seen_at", _timestamp(), nullable=False),
        sa.Column("last_staged_at", _timestamp(), nullable=False),
        sa.Column("run_id", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("store", "order_id", name="pk_staged_order_latest"),
    )
    op.create_index(
        "ix_staged_order_latest_store_updated_at",
        "staged_order_latest",
        ["store", "updated_at", "order_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_staged_order_latest_store_updated_at", table_name="staged_order_latest")
    op.drop_table("staged_order_latest")
    op.drop_index("ix_staged_order_versions_store_updated_at", table_name="staged_order_versions")
    op.drop_table("staged_order_versions")
