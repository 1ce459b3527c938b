"""Shopify restock markers: refund lines that put units back on hand, so the stock sync pushes X3's figure again.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the types at this revision (never import the live schema into a migration).
_big_integer_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _timestamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "stock_restocks",
        sa.Column("id", _big_integer_id, primary_key=True, autoincrement=True),
        sa.Column("restock_key", sa.String(255), nullable=False),
        sa.Column("store", sa.String(255), nullable=False),
        sa.Column("order_id", sa.String(255), nullable=False),
        sa.Column("refund_id", sa.String(255), nullable=False),
        sa.Column("line_item_id", sa.String(255), nullable=False),
        sa.Column("restock_type", sa.String(32), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("item", sa.String(255), nullable=True),
        sa.Column("location_id", sa.String(255), nullable=True),
        sa.Column("site", sa.String(32), nullable=True),
        sa.Column("refunded_at", _timestamp(), nullable=True),
        sa.Column("recorded_at", _timestamp(), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("reason_code", sa.String(64), nullable=True),
        sa.Column("reason_message", sa.Text(), nullable=True),
        sa.Column("run_id", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_stock_restocks"),
        sa.UniqueConstraint("restock_key", name="uq_stock_restocks_restock_key"),
    )
    op.create_index("ix_stock_restocks_recorded_at", "stock_restocks", ["recorded_at"])
    op.create_index("ix_stock_restocks_store_day", "stock_restocks", ["store", "day", "recorded_at"])


def downgrade() -> None:
    op.drop_index("ix_stock_restocks_store_day", table_name="stock_restocks")
    op.drop_index("ix_stock_restocks_recorded_at", table_name="stock_restocks")
    op.drop_table("stock_restocks")
