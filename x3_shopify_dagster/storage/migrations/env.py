"""Alembic environment for the connector database.

Run through `ConnectorDatabase.migrate()`, which passes an open connection (already in a transaction and
holding the migration lock) in `config.attributes["connection"]`. No alembic.ini is needed.
"""

from __future__ import annotations

from alembic import context

from x3_shopify_dagster.storage.schema import ALEMBIC_VERSION_TABLE, metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through x3_shopify_dagster.storage.ConnectorDatabase.migrate()")

context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=ALEMBIC_VERSION_TABLE,
    # SQLite cannot ALTER most things in place; batch mode rebuilds the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
# The caller's transaction is used as is (Alembic does not nest one inside an external transaction).
with context.begin_transaction():
    context.run_migrations()
