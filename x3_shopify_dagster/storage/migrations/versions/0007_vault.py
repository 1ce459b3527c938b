"""Secret vault: Shopify and X3 tokens encrypted at rest (Fernet), one row per secret.

Revision ID: 0007
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "vault_secrets",
        sa.Column("name", sa.String(200), nullable=False),
        # A Fernet token: url-safe base64 text; the plaintext never reaches the database.
        sa.Column("ciphertext", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_vault_secrets"),
    )


def downgrade() -> None:
    op.drop_table("vault_secrets")
