"""OrderStaging: the staging invariants, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from x3_shopify_dagster.storage import (
    ConnectorDatabase,
    OrderStaging,
    OrderVersion,
    StageOutcome,
    StagingCounts,
)
from x3_shopify_dagster.storage.database import postgres_supports_lz4
from x3_shopify_dagster.storage.order_staging import LatestState, classify
from x3_shopify_dagster.storage.schema import staged_order_versions
from x3_shopify_dagster_tests.storage.factories import (
    STORE,
    T0,
    FixedClock,
    order_gid,
    order_payload,
    version,
)


def count_versions(db: ConnectorDatabase, order_number: int | None = None) -> int:
    query = select(func.count()).select_from(staged_order_versions)
    if order_number is not None:
        query = query.where(staged_order_versions.c.order_id == order_gid(order_number))
    with db.transaction() as connection:
        return int(connection.execute(query).scalar_one())


def latest_hash(staging: OrderStaging, number: int) -> str:
    latest = staging.latest(STORE, order_gid(number))
    assert latest is not None
    return latest.content_hash


# --- classification (pure) -------------------------------------------------------------------------------


def test_classify_follows_the_staging_invariants() -> None:
    latest = LatestState(content_hash="h1", updated_at=T0, version_updated_at=T0, order_name="#1001")
    same = OrderVersion(STORE, order_gid(1), "#1001", T0 + timedelta(hours=1), "h1", {})
    newer = OrderVersion(STORE, order_gid(1), "#1001", T0 + timedelta(hours=1), "h2", {})
    same_time_other_content = OrderVersion(STORE, order_gid(1), "#1001", T0, "h2", {})
    older = OrderVersion(STORE, order_gid(1), "#1001", T0 - timedelta(hours=1), "h0", {})
    assert classify(newer, None) is StageOutcome.NEW
    assert classify(same, latest) is StageOutcome.UNCHANGED
    assert classify(newer, latest) is StageOutcome.CHANGED
    assert classify(same_time_other_content, latest) is StageOutcome.CHANGED
    assert classify(older, latest) is StageOutcome.OLDER


def test_order_version_refuses_naive_updated_at_and_normalises_to_utc() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        OrderVersion(STORE, order_gid(1), "#1001", datetime(2026, 11, 27, 9, 0), "h", {})
    local = datetime(2026, 11, 27, 4, 0, tzinfo=timezone(timedelta(hours=-5)))
    normalised = OrderVersion(STORE, order_gid(1), "#1001", local, "h", {})
    assert normalised.updated_at == local
    assert normalised.updated_at.tzinfo is UTC


def test_staging_counts_add_and_serialise() -> None:
    total = StagingCounts(new=1, changed=2) + StagingCounts(unchanged=3, older=4, new=1)
    assert total.as_dict() == {"new": 2, "changed": 2, "unchanged": 3, "older": 4}
    assert total.total == 11


# --- outcomes ----------------------------------------------------------------------------------------------


def test_new_order_is_staged_as_new_and_becomes_latest(
    staging: OrderStaging, connector_db: ConnectorDatabase, clock: FixedClock
) -> None:
    counts = staging.stage([version(1)], run_id="run-1")
    assert counts == StagingCounts(new=1)
    latest = staging.latest(STORE, order_gid(1))
    assert latest is not None
    assert (latest.order_name, latest.updated_at, latest.content_hash) == (
        "#1001",
        T0,
        version(1).content_hash,
    )
    assert latest.order_updated_at == T0
    assert (latest.run_id, latest.first_seen_at) == ("run-1", clock.now)
    assert staging.latest(STORE, order_gid(2)) is None


def test_changed_content_with_newer_updated_at_is_changed_and_replaces_latest(
    staging: OrderStaging, connector_db: ConnectorDatabase
) -> None:
    staging.stage([version(1)])
    assert staging.stage([version(1, 30, total="24.90")]) == StagingCounts(changed=1)
    assert latest_hash(staging, 1) == version(1, 30, total="24.90").content_hash
    assert count_versions(connector_db, 1) == 2


def test_changed_content_with_equal_updated_at_is_changed(
    staging: OrderStaging, connector_db: ConnectorDatabase
) -> None:
    staging.stage([version(1)])
    assert staging.stage([version(1, 0, note="gift")]) == StagingCounts(changed=1)
    assert latest_hash(staging, 1) == version(1, 0, note="gift").content_hash


def test_unchanged_content_stores_no_version_but_remembers_newest_updated_at(
    staging: OrderStaging, connector_db: ConnectorDatabase
) -> None:
    staging.stage([version(1)], run_id="run-1")
    # Shopify moved updatedAt without changing anything we hash
    assert staging.stage([version(1, 45)], run_id="run-2") == StagingCounts(unchanged=1)
    assert count_versions(connector_db, 1) == 1
    latest = staging.latest(STORE, order_gid(1))
    assert latest is not None
    assert latest.updated_at == T0  # the version itself is the one first seen
    assert latest.run_id == "run-1"
    assert latest.order_updated_at == T0 + timedelta(minutes=45)


def test_older_version_is_recorded_but_never_replaces_latest(
    staging: OrderStaging, connector_db: ConnectorDatabase
) -> None:
    staging.stage([version(1, 60, total="30.00")])
    # a backfill of an earlier day meets the order as it was then
    assert staging.stage([version(1, 0, total="19.90")]) == StagingCounts(older=1)
    assert latest_hash(staging, 1) == version(1, 60, total="30.00").content_hash
    history = staging.versions(STORE, order_gid(1))
    assert [item.updated_at for item in history] == [T0, T0 + timedelta(minutes=60)]  # oldest first
    assert history[0].payload["totalPriceSet"]["shopMoney"]["amount"] == "19.90"


def test_older_than_a_remembered_bump_is_older(staging: OrderStaging) -> None:
    # h1 at 0, (unseen h2 at 10), h1 again at 20: content at 20 is h1, so h2 met later is history.
    staging.stage([version(1, 0), version(1, 20)])
    assert staging.stage([version(1, 10, note="reverted later")]) == StagingCounts(older=1)
    assert latest_hash(staging, 1) == version(1, 0).content_hash


def test_outcomes_do_not_depend_on_batch_size(connector_db: ConnectorDatabase, clock: FixedClock) -> None:
    sequence = [
        version(1, 0),
        version(2, 0),
        version(1, 10, total="21.00"),
        version(1, 5, total="20.00"),
        version(2, 15),
        version(1, 10, total="21.00"),
        version(3, 1),
    ]
    expected = StagingCounts(new=3, changed=1, unchanged=2, older=1)
    assert OrderStaging(connector_db, batch_size=1000, clock=clock).stage(sequence) == expected
    from x3_shopify_dagster_tests.fixtures.database import empty_all_tables

    empty_all_tables(connector_db)
    assert OrderStaging(connector_db, batch_size=1, clock=clock).stage(sequence) == expected


# --- idempotency and concurrency ---------------------------------------------------------------------------


def test_restaging_the_same_versions_is_idempotent(staging: OrderStaging, connector_db: ConnectorDatabase) -> None:
    window = [version(n, n) for n in range(1, 6)] + [version(1, 30, total="25.00")]
    first = staging.stage(window, run_id="run-1")
    assert first == StagingCounts(new=5, changed=1)
    before = {n: staging.versions(STORE, order_gid(n)) for n in range(1, 6)}
    again = staging.stage(window, run_id="run-2")
    assert again == StagingCounts(unchanged=5, older=1)
    assert count_versions(connector_db) == 6
    assert {n: staging.versions(STORE, order_gid(n)) for n in range(1, 6)} == before


def test_stale_read_cannot_roll_back_latest(
    staging: OrderStaging, connector_db: ConnectorDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Simulates a concurrent run that committed a newer version after this run read the latest rows: the
    # conditional upsert, not the read, is what protects the latest row.
    staging.stage([version(1, 60, total="30.00")])
    monkeypatch.setattr(staging, "_read_latest_states", lambda _connection, _batch: {})
    assert staging.stage([version(1, 0)]) == StagingCounts(new=1)  # what the stale reader believed
    assert latest_hash(staging, 1) == version(1, 60, total="30.00").content_hash
    assert count_versions(connector_db, 1) == 2


def reversed_within_batches(versions: list[OrderVersion], batch_size: int) -> list[OrderVersion]:
    chunks = [versions[i : i + batch_size] for i in range(0, len(versions), batch_size)]
    return [item for chunk in chunks for item in reversed(chunk)]


@pytest.mark.parametrize("second_run_order", ["same", "reversed", "reversed_within_batches"])
def test_concurrent_runs_store_each_version_once_and_keep_the_newest_latest(
    connector_db: ConnectorDatabase, second_run_order: str
) -> None:
    # Two runs of one partition at once. "reversed_within_batches" makes both transactions meet the same
    # orders in opposite orders at the same time: only a consistent write order keeps them from deadlocking.
    batch_size = 16
    orders = range(1, 121)
    older = [version(n, 0) for n in orders]
    newer = [version(n, 30, total="42.00") for n in orders]
    second_run = {
        "same": older + newer,
        "reversed": newer[::-1] + older[::-1],
        "reversed_within_batches": reversed_within_batches(older + newer, batch_size),
    }[second_run_order]
    runs = [older + newer, second_run]
    start = threading.Barrier(len(runs))
    results: list[StagingCounts] = []
    errors: list[BaseException] = []

    def run(versions: list[OrderVersion], run_id: str) -> None:
        try:
            start.wait(timeout=10)
            results.append(OrderStaging(connector_db, batch_size=batch_size).stage(versions, run_id=run_id))
        except BaseException as error:  # surfaced by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(versions, f"run-{i}")) for i, versions in enumerate(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    if errors:
        raise errors[0]
    assert [counts.total for counts in results] == [2 * len(orders)] * 2
    assert count_versions(connector_db) == 2 * len(orders)
    staging = OrderStaging(connector_db)
    for n in orders:
        assert latest_hash(staging, n) == newer[n - 1].content_hash


def test_stage_consumes_the_iterable_in_batches_and_commits_each(connector_db: ConnectorDatabase) -> None:
    pulled: list[int] = []

    def versions() -> Iterator[OrderVersion]:
        for n in range(1, 100):
            if n == 6:
                raise RuntimeError("Shopify went away")
            pulled.append(n)
            yield version(n)

    staging = OrderStaging(connector_db, batch_size=2)
    with pytest.raises(RuntimeError, match="went away"):
        staging.stage(versions())
    assert pulled == [1, 2, 3, 4, 5]
    assert count_versions(connector_db) == 4  # batches [1, 2] and [3, 4] committed; [5] never completed
    assert staging.latest(STORE, order_gid(5)) is None


# --- reading ----------------------------------------------------------------------------------------------


def test_latest_changed_between_is_half_open_and_ordered(connector_db: ConnectorDatabase) -> None:
    staging = OrderStaging(connector_db, batch_size=2)  # several keyset pages
    lo, hi = T0, T0 + timedelta(hours=1)
    staging.stage(
        [
            version(1, -0.001),  # just before lo
            version(2, 0),  # at lo
            version(3, 30),
            version(4, 30),  # same updatedAt as 3: ordered by order id
            version(5, 59.999),
            version(6, 60),  # at hi: next window
            version(7, 30, store="us"),  # other store
            version(8, 10),
            version(8, 70, total="99.00"),  # latest moved out of the window
        ]
    )
    found = list(staging.latest_changed_between(STORE, lo, hi))
    assert [item.order_id for item in found] == [order_gid(n) for n in (2, 3, 4, 5)]
    assert [item.order_id for item in staging.latest_changed_between(STORE, hi, hi + timedelta(hours=1))] == [
        order_gid(6),
        order_gid(8),
    ]
    assert list(staging.latest_changed_between(STORE, lo, lo)) == []


def test_latest_changed_between_follows_the_newest_updated_at_seen(staging: OrderStaging) -> None:
    staging.stage([version(1, 0)])
    staging.stage([version(1, 90)])  # unchanged content, updatedAt bumped into the next hour
    first_hour = list(staging.latest_changed_between(STORE, T0, T0 + timedelta(hours=1)))
    second_hour = list(staging.latest_changed_between(STORE, T0 + timedelta(hours=1), T0 + timedelta(hours=2)))
    assert first_hour == []
    assert [(item.order_id, item.updated_at) for item in second_hour] == [(order_gid(1), T0)]


def test_latest_changed_between_accepts_any_timezone_and_refuses_naive(staging: OrderStaging) -> None:
    staging.stage([version(1, 0)])
    new_york = timezone(timedelta(hours=-5))
    found = list(staging.latest_changed_between(STORE, T0.astimezone(new_york), T0.astimezone(new_york) + timedelta(1)))
    assert [item.order_id for item in found] == [order_gid(1)]
    with pytest.raises(ValueError, match="timezone-aware"):
        list(staging.latest_changed_between(STORE, datetime(2026, 11, 27), T0))
    with pytest.raises(ValueError, match="after"):
        list(staging.latest_changed_between(STORE, T0 + timedelta(1), T0))


def test_payload_round_trip_keeps_decimal_strings_intact(staging: OrderStaging) -> None:
    payload = order_payload(1, total="1234567890.10")
    payload["lineItems"].append({"sku": "TEA-02", "quantity": 1, "originalUnitPrice": "0.10"})
    payload["discount"] = "-0.00"
    payload["taxRate"] = "0.2000"
    payload["note"] = 'Ünïcødé ✓ "quoted" \\ backslash'
    payload["cancelledAt"] = None
    payload["test"] = False
    staging.stage([version(1, payload=payload)])

    stored = staging.latest(STORE, order_gid(1))
    assert stored is not None
    assert stored.payload == payload
    amount = stored.payload["totalPriceSet"]["shopMoney"]["amount"]
    assert amount == "1234567890.10"
    assert isinstance(amount, str)
    assert Decimal(amount) == Decimal("1234567890.10")
    assert [line["originalUnitPrice"] for line in stored.payload["lineItems"]] == ["1234567890.10", "0.10"]
    assert (stored.payload["discount"], stored.payload["taxRate"]) == ("-0.00", "0.2000")


def test_versions_lists_full_history_oldest_first(staging: OrderStaging) -> None:
    staging.stage([version(1, 10, total="20.00"), version(1, 20, total="21.00")], run_id="run-a")
    staging.stage([version(1, 0, total="19.00"), version(1, 30, total="22.00")], run_id="run-b")
    history = staging.versions(STORE, order_gid(1))
    assert [item.payload["totalPriceSet"]["shopMoney"]["amount"] for item in history] == [
        "19.00",
        "20.00",
        "21.00",
        "22.00",
    ]
    assert [item.run_id for item in history] == ["run-b", "run-a", "run-a", "run-b"]
    assert all(item.order_updated_at == T0 + timedelta(minutes=30) for item in history)
    assert staging.versions(STORE, order_gid(2)) == []


def test_text_with_tabs_newlines_and_backslashes_round_trips(staging: OrderStaging) -> None:
    # PostgreSQL loads rows with COPY, where tab, newline and backslash are syntax.
    tricky = 'tab\there, newline\nthere, CR\r, backslash \\ and \\N and \\t, quote " and unicode Ünï ✓'
    payload = order_payload(1, note=tricky)
    payload["nested"] = {tricky: [tricky, None, 0, True]}
    staged = OrderVersion(STORE, order_gid(1), f"#1001 {tricky}", T0, "hash\\with\ttab", payload)
    staging.stage([staged], run_id=f"run {tricky}")
    stored = staging.latest(STORE, order_gid(1))
    assert stored is not None
    assert (stored.order_name, stored.content_hash, stored.run_id) == (
        f"#1001 {tricky}",
        "hash\\with\ttab",
        f"run {tricky}",
    )
    assert stored.payload == payload


def test_clock_must_be_timezone_aware(connector_db: ConnectorDatabase) -> None:
    naive_clock = FixedClock(datetime(2026, 11, 28, 6, 0))
    with pytest.raises(ValueError, match="timezone-aware"):
        OrderStaging(connector_db, clock=naive_clock).stage([version(1)])
    assert count_versions(connector_db) == 0


def test_in_memory_sqlite_database_works_for_quick_experiments() -> None:
    db = ConnectorDatabase("sqlite://")
    try:
        db.migrate()
        staging = OrderStaging(db)
        assert staging.stage([version(1), version(1, 5, total="1.00")]) == StagingCounts(new=1, changed=1)
        assert latest_hash(staging, 1) == version(1, 5, total="1.00").content_hash
    finally:
        db.dispose()


def test_postgres_payloads_are_jsonb_compressed_with_lz4_when_the_server_can(postgres_db: ConnectorDatabase) -> None:
    with postgres_db.transaction() as connection:
        column_type, compression = connection.exec_driver_sql(
            "SELECT format_type(atttypid, atttypmod), attcompression FROM pg_attribute "
            "WHERE attrelid = 'staged_order_versions'::regclass AND attname = 'payload'"
        ).one()
        lz4_available = postgres_supports_lz4(connection)
    assert column_type == "jsonb"
    assert compression == ("l" if lz4_available else "")


def test_pre_encoded_payload_is_stored_as_the_same_json(connector_db) -> None:
    # The asset encodes each payload once, right after building it; the stored JSON must be the payload itself.
    from dataclasses import replace

    from x3_shopify_dagster.storage.database import json_dumps

    plain = version(41, note="naïve café")
    encoded = replace(version(42, note="naïve café"), payload_json=json_dumps(version(42, note="naïve café").payload))
    staging = OrderStaging(connector_db)
    staging.stage([plain, encoded])
    for staged_version in (plain, encoded):
        stored = staging.latest(staged_version.store, staged_version.order_id)
        assert stored is not None
        assert stored.payload == staged_version.payload
