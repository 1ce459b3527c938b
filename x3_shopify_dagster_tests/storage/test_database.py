"""ConnectorDatabase: migrations, transactions, timestamps and URL redaction, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Integer, MetaData, Table, inspect, select, text
from sqlalchemy.exc import StatementError

from x3_shopify_dagster.storage import ConnectorDatabase, OrderStaging
from x3_shopify_dagster.storage.database import (
    MIGRATIONS_DIRECTORY,
    current_revision,
    json_dumps,
    json_loads,
    orjson_dumps,
    postgres_copy,
    stdlib_json_dumps,
)
from x3_shopify_dagster.storage.schema import ALEMBIC_VERSION_TABLE, UtcDateTime, metadata
from x3_shopify_dagster_tests.storage.factories import version

# Every table the package declares (importing the package registers them all on the shared metadata).
CONNECTOR_TABLES = set(metadata.tables)


def head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIRECTORY))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


@pytest.fixture
def fresh_db(fresh_database_url: str) -> Iterator[ConnectorDatabase]:
    db = ConnectorDatabase(fresh_database_url)
    yield db
    db.dispose()


def test_migrate_from_empty_creates_the_schema_at_head(fresh_db: ConnectorDatabase) -> None:
    with fresh_db.transaction() as connection:
        assert current_revision(connection) is None
    fresh_db.migrate()
    tables = set(inspect(fresh_db.engine).get_table_names())
    assert tables == CONNECTOR_TABLES | {ALEMBIC_VERSION_TABLE}
    with fresh_db.transaction() as connection:
        assert current_revision(connection) == head_revision()


def test_migrated_schema_matches_the_declared_metadata(fresh_db: ConnectorDatabase) -> None:
    fresh_db.migrate()
    with fresh_db.transaction() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "compare_type": True,
                "include_name": lambda name, kind, _parent: not (kind == "table" and name == ALEMBIC_VERSION_TABLE),
            },
        )
        assert compare_metadata(context, metadata) == []


def test_migrate_twice_is_a_no_op_and_keeps_data(fresh_db: ConnectorDatabase) -> None:
    fresh_db.migrate()
    OrderStaging(fresh_db).stage([version(1)])
    fresh_db.migrate()
    with fresh_db.transaction() as connection:
        assert current_revision(connection) == head_revision()
        assert connection.execute(text(f"SELECT count(*) FROM {ALEMBIC_VERSION_TABLE}")).scalar_one() == 1
    assert OrderStaging(fresh_db).latest(version(1).store, version(1).order_id) is not None


def test_two_processes_migrating_at_once_both_succeed(fresh_database_url: str) -> None:
    # Two ConnectorDatabase objects (separate pools), as two Dagster processes starting together would have.
    databases = [ConnectorDatabase(fresh_database_url) for _ in range(2)]
    start = threading.Barrier(len(databases))
    errors: list[BaseException] = []

    def migrate(db: ConnectorDatabase) -> None:
        try:
            start.wait(timeout=10)
            db.migrate()
        except BaseException as error:  # surfaced by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=migrate, args=(db,)) for db in databases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        if errors:
            raise errors[0]
        with databases[0].transaction() as connection:
            assert current_revision(connection) == head_revision()
            assert connection.execute(text(f"SELECT count(*) FROM {ALEMBIC_VERSION_TABLE}")).scalar_one() == 1
        assert set(inspect(databases[0].engine).get_table_names()) >= CONNECTOR_TABLES
    finally:
        for db in databases:
            db.dispose()


def test_session_commits_on_success_and_rolls_back_on_error(connector_db: ConnectorDatabase) -> None:
    staged = OrderStaging(connector_db)
    staged.stage([version(1)])
    with connector_db.session() as session:
        session.execute(text("DELETE FROM staged_order_latest"))
    assert staged.latest(version(1).store, version(1).order_id) is None

    staged.stage([version(2)])

    def delete_then_fail() -> None:
        with connector_db.session(write=True) as session:
            session.execute(text("DELETE FROM staged_order_latest"))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        delete_then_fail()
    assert staged.latest(version(2).store, version(2).order_id) is not None


def test_timestamps_are_stored_in_utc_and_returned_aware_utc(connector_db: ConnectorDatabase) -> None:
    paris_winter = timezone(timedelta(hours=1))
    local = datetime(2026, 11, 27, 10, 30, 0, 123456, tzinfo=paris_winter)
    probe = Table("utc_probe", MetaData(), Column("id", Integer, primary_key=True), Column("at", UtcDateTime()))
    with connector_db.transaction(write=True) as connection:
        probe.create(connection)
        try:
            connection.execute(probe.insert(), {"id": 1, "at": local})
            stored = connection.execute(select(probe.c.at)).scalar_one()
        finally:
            probe.drop(connection)
    assert stored == local
    assert stored.tzinfo is UTC
    assert (stored.hour, stored.microsecond) == (9, 123456)


def test_naive_timestamps_are_refused(connector_db: ConnectorDatabase) -> None:
    probe = Table("naive_probe", MetaData(), Column("id", Integer, primary_key=True), Column("at", UtcDateTime()))
    with connector_db.transaction(write=True) as connection:
        probe.create(connection)
        try:
            with pytest.raises(StatementError, match="timezone-aware"):
                connection.execute(probe.insert(), {"id": 1, "at": datetime(2026, 11, 27, 10, 30)})
        finally:
            probe.drop(connection)


def test_sqlite_write_transaction_takes_the_write_lock_at_begin(sqlite_db: ConnectorDatabase) -> None:
    # BEGIN IMMEDIATE: a read-then-write transaction must own the write lock before it reads, or a concurrent
    # writer's commit would make its first write fail with SQLITE_BUSY_SNAPSHOT.
    database_file = sqlite_db.engine.url.database
    assert database_file
    other = sqlite3.connect(database_file, timeout=0, isolation_level=None)
    try:
        with sqlite_db.transaction() as connection:
            connection.execute(text("SELECT 1"))
            other.execute("BEGIN IMMEDIATE")  # a deferred reader leaves the write lock free
            other.execute("ROLLBACK")
        with sqlite_db.transaction(write=True) as connection:
            connection.execute(text("SELECT 1"))
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        with sqlite_db.session(write=True) as session:
            session.execute(text("SELECT 1"))
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
    finally:
        other.close()


def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(sqlite_db: ConnectorDatabase) -> None:
    with sqlite_db.transaction() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar_one() >= 1000


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("postgresql+psycopg2://connector:s3cr%40t-pw@db.example.com:5432/x3sd", "s3cr"),
        ("postgresql://connector@db.example.com/x3sd?password=hunter2&sslmode=verify-full", "hunter2"),
        ("postgresql://connector:pw-in-userinfo@db/x3sd?sslpassword=keypass", "keypass"),
    ],
)
def test_redacted_url_hides_passwords(url: str, secret: str) -> None:
    redacted = ConnectorDatabase.redacted_url(url)
    assert secret not in redacted
    assert "pw-in-userinfo" not in redacted
    assert "db" in redacted
    assert "x3sd" in redacted
    assert "***" in redacted or "%2A%2A%2A" in redacted


def test_redacted_url_keeps_urls_without_secrets_and_never_echoes_garbage() -> None:
    assert ConnectorDatabase.redacted_url("sqlite:////var/lib/x3sd/connector.sqlite") == (
        "sqlite:////var/lib/x3sd/connector.sqlite"
    )
    assert "hunter2" not in ConnectorDatabase.redacted_url("not a url :: hunter2")


def test_database_repr_does_not_leak_the_password() -> None:
    db = ConnectorDatabase("postgresql+psycopg2://connector:hunter2@127.0.0.1:1/x3sd")
    try:
        assert "hunter2" not in repr(db)
        assert "hunter2" not in db.url
        assert "connector" in repr(db)
    finally:
        db.dispose()


def test_unparseable_url_error_does_not_echo_it() -> None:
    with pytest.raises(ValueError, match="could not parse") as raised:
        ConnectorDatabase("postgresql//connector:hunter2@db/x3sd")
    assert "hunter2" not in str(raised.value)
    assert raised.value.__cause__ is None


def test_orjson_and_stdlib_serializers_agree_on_json_safe_payloads() -> None:
    pytest.importorskip("orjson")
    payload = {"amount": "19.90", "note": 'Ünï "✓" \\ \t\n', "n": [1, -2, 2**62], "ok": True, "none": None}
    assert json.loads(orjson_dumps(payload)) == json.loads(stdlib_json_dumps(payload)) == payload
    assert json_loads(json_dumps(payload)) == payload


def test_postgres_copy_loads_every_supported_value_type(postgres_db: ConnectorDatabase) -> None:
    at = datetime(2026, 11, 27, 10, 30, 0, 5, tzinfo=timezone(timedelta(hours=1)))
    rows = [
        ("a\tb\nc\\d \\N", 7, Decimal("19.90"), True, at, {"amount": "0.10", "lines": [1, None]}),
        (None, None, None, None, None, None),
    ]
    columns = ("label", "quantity", "amount", "flag", "at", "doc")
    with postgres_db.transaction(write=True) as connection:
        connection.exec_driver_sql(
            "CREATE TEMPORARY TABLE copy_probe (label text, quantity bigint, amount numeric(12, 2), flag boolean,"
            " at timestamptz, doc jsonb) ON COMMIT DROP"
        )
        postgres_copy(connection, "copy_probe", columns, rows)
        loaded = connection.exec_driver_sql(f"SELECT {', '.join(columns)} FROM copy_probe").all()
        with pytest.raises(ValueError, match="timezone-aware"):
            postgres_copy(connection, "copy_probe", ("at",), [(datetime(2026, 11, 27),)])
        with pytest.raises(TypeError, match="float"):
            postgres_copy(connection, "copy_probe", ("amount",), [(19.9,)])
    assert [tuple(row) for row in loaded] == rows


@pytest.mark.parametrize("attempt", [1, 2])
def test_database_url_fixture_is_migrated_and_empty_for_each_test(database_url: str, attempt: int) -> None:
    # Runs twice per engine, so data left by the first attempt would show in the second.
    db = ConnectorDatabase(database_url)
    try:
        db.migrate()  # a no-op: already at head
        staging = OrderStaging(db)
        assert staging.versions(version(1).store, version(1).order_id) == []
        staging.stage([version(1)])
    finally:
        db.dispose()


def test_postgres_sessions_run_in_utc_and_keep_options_from_the_url(postgres_database_url: str) -> None:
    db = ConnectorDatabase(f"{postgres_database_url}?options=-c%20statement_timeout%3D12345")
    try:
        with db.transaction() as connection:
            assert connection.exec_driver_sql("SHOW timezone").scalar_one() == "UTC"
            assert connection.exec_driver_sql("SHOW statement_timeout").scalar_one() == "12345ms"
    finally:
        db.dispose()
