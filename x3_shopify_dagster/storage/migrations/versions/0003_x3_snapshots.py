"""Snapshots of X3 master data: customers by e-mail, GL accounts, cost centres, tax codes, items, sites.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_json_document = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "x3_snapshot_rows",
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("data", _json_document, nullable=False),
    )
    op.create_table(
        "x3_snapshots",
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("row_count", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("x3_snapshots")
    op.drop_table("x3_snapshot_rows")
