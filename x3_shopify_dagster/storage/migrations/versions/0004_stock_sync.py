"""Stock sync: staged X3 stock movements, the SKU → Shopify inventory item map, the audit of every push.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the types at this revision (never import the live schema into a migration).
_json = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
_big_integer_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_decimal_text = sa.String(40)


def _timestamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "stock_movements",
        sa.Column("id", _big_integer_id, primary_key=True, autoincrement=True),
        sa.Column("movement_key", sa.String(200), nullable=False),
        sa.Column("site", sa.String(32), nullable=False),
        sa.Column("item", sa.String(64), nullable=False),
        sa.Column("transaction_type", sa.Integer(), nullable=False),
        sa.Column("quantity", _decimal_text, nullable=False),
        sa.Column("voucher", sa.String(64), nullable=False),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("first_seen_at", _timestamp(), nullable=False),
        sa.Column("run_id", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_stock_movements"),
        sa.UniqueConstraint("movement_key", name="uq_stock_movements_movement_key"),
    )
    op.create_index("ix_stock_movements_day_site", "stock_movements", ["day", "site", "updated_at"])

    op.create_table(
        "shopify_inventory_items",
        sa.Column("store", sa.String(255), nullable=False),
        sa.Column("sku", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("inventory_item_id", sa.String(255), nullable=True),
        sa.Column("candidates", _json, nullable=True),
        sa.Column("resolved_at", _timestamp(), nullable=False),
        sa.UniqueConstraint("store", "sku", name="uq_shopify_inventory_items_store_sku"),
    )

    op.create_table(
        "stock_pushes",
        sa.Column("id", _big_integer_id, primary_key=True, autoincrement=True),
        sa.Column("at", _timestamp(), nullable=False),
        sa.Column("run_id", sa.String(255), nullable=True),
        sa.Column("store", sa.String(255), nullable=False),
        sa.Column("partition", sa.String(64), nullable=False),
        sa.Column("x3_item", sa.String(64), nullable=False),
        sa.Column("x3_site", sa.String(32), nullable=False),
        sa.Column("inventory_item_id", sa.String(255), nullable=True),
        sa.Column("location_id", sa.String(255), nullable=True),
        sa.Column("quantity_name", sa.String(16), nullable=False),
        sa.Column("x3_physical", _decimal_text, nullable=True),
        sa.Column("pending_fulfilled", sa.Integer(), nullable=True),
        sa.Column("quantity", sa.Integer(), nullable=True),
        sa.Column("previous_quantity", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason_code", sa.String(64), nullable=True),
        sa.Column("reason_message", sa.Text(), nullable=True),
        sa.Column("trigger", _json, nullable=True),
        sa.Column("operation_key", sa.String(255), nullable=True),
        sa.Column("adjustment_group", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_stock_pushes"),
    )
    op.create_index("ix_stock_pushes_store_partition", "stock_pushes", ["store", "partition", "id"])


def downgrade() -> None:
    op.drop_index("ix_stock_pushes_store_partition", table_name="stock_pushes")
    op.drop_table("stock_pushes")
    op.drop_table("shopify_inventory_items")
    op.drop_index("ix_stock_movements_day_site", table_name="stock_movements")
    op.drop_table("stock_movements")
