"""Revision 0002 (ledger tables) on SQLite and PostgreSQL: matches the declared tables, downgrades cleanly."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, inspect, text

from x3_shopify_dagster.storage import ConnectorDatabase
from x3_shopify_dagster.storage.database import MIGRATIONS_DIRECTORY
from x3_shopify_dagster.storage.ledger import PostingLedger
from x3_shopify_dagster.storage.ledger_schema import ledger_events, ledger_operations, ledger_records
from x3_shopify_dagster_tests.ledger._support import order_version

LEDGER_TABLES = (ledger_records, ledger_operations, ledger_events)


@pytest.fixture
def fresh_db(fresh_database_url: str) -> Iterator[ConnectorDatabase]:
    db = ConnectorDatabase(fresh_database_url)
    yield db
    db.dispose()


def alembic(db: ConnectorDatabase, action: str, revision: str) -> None:
    with db.transaction(write=True) as connection:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIRECTORY))
        config.attributes["connection"] = connection
        getattr(command, action)(config, revision)


def test_the_migrated_ledger_tables_match_their_definitions(fresh_db: ConnectorDatabase) -> None:
    fresh_db.migrate()
    ledger_only = MetaData(naming_convention=ledger_records.metadata.naming_convention)
    for table in LEDGER_TABLES:
        table.to_metadata(ledger_only)
    names = {table.name for table in LEDGER_TABLES}
    with fresh_db.transaction() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "compare_type": True,
                "include_name": lambda name, kind, _: kind != "table" or name in names,
            },
        )
        assert compare_metadata(context, ledger_only) == []


def test_the_ledger_revision_downgrades_and_upgrades_again(fresh_db: ConnectorDatabase) -> None:
    fresh_db.migrate()
    alembic(fresh_db, "downgrade", "0001")
    tables = set(inspect(fresh_db.engine).get_table_names())
    assert not tables & {table.name for table in LEDGER_TABLES}
    assert "staged_order_versions" in tables
    if fresh_db.dialect_name == "postgresql":
        with fresh_db.transaction() as connection:
            function = "SELECT count(*) FROM pg_proc WHERE proname = 'x3sd_ledger_events_append_only'"
            assert connection.execute(text(function)).scalar_one() == 0
    fresh_db.migrate()
    record = PostingLedger(fresh_db).observe(order_version(1), run_id="run-1").record
    assert record.state == "staged"
