"""shopify_orders against the Shopify sandbox over HTTP, staging into SQLite and PostgreSQL.

Invariants (flows.md §1, §6): a partition holds the versions whose updatedAt falls in its business day; a re-run,
a replay or an overlapping window never stages a version twice; an updatedAt bump with no change is 'unchanged'.
"""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import pytest

from x3_shopify_dagster.definitions import build_definitions
from x3_shopify_dagster.defs.partitions import partition_key
from x3_shopify_dagster.domain.windows import business_day

TZ = "Europe/Paris"


def _materialize(runtime, day, store, run_config=None) -> dict:
    defs = build_definitions(runtime.settings, runtime=runtime)
    asset = defs.resolve_assets_def("shopify_orders")
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [asset],
            partition_key=partition_key(day, store),
            instance=instance,
            run_config=run_config,
        )
        assert result.success
        materialization = result.asset_materializations_for_node("shopify_orders")[0]
        return {key: value.value for key, value in materialization.metadata.items()}


@pytest.fixture(params=["single", "split"])
def bulk_process_mode(request, monkeypatch):
    """Bulk pulls with the result file processed in the run process, then by the worker process
    (shopify/bulk_split.py) whatever the file's size; the split run checks that the worker did run."""
    from x3_shopify_dagster.shopify import bulk, bulk_split

    calls = []
    if request.param == "split":
        real = bulk_split.iter_encoded_file

        def counting(*args, **kwargs):
            calls.append(args[0])
            return real(*args, **kwargs)

        monkeypatch.setattr(bulk_split, "iter_encoded_file", counting)
    monkeypatch.setattr(bulk, "DEFAULT_SPLIT_MIN_ROWS", 0 if request.param == "split" else None)
    yield request.param
    assert bool(calls) == (request.param == "split")


def _orders_on(sandbox, store, day):
    return [o for o in sandbox.state.orders(store) if business_day(o.updated_at, TZ) == day]


def test_backfill_of_a_day_stages_exactly_that_days_versions_once(fresh_shopify_sandbox, runtime_factory, clock):
    runtime = runtime_factory(fresh_shopify_sandbox)
    day = business_day(clock() - timedelta(days=2), TZ)
    expected = _orders_on(fresh_shopify_sandbox, "eu", day)
    assert expected, "the seeded history should have orders two days ago"

    first = _materialize(runtime, day, "eu")
    assert first["mode"] == "paged"
    assert first["orders_new"] == len(expected)
    assert first["orders_changed"] == first["orders_older"] == 0
    assert first["api_points_spent"] > 0
    staged = {row.order_id for row in runtime.order_staging().latest_changed_between(
        "eu", *_bounds(first))}
    assert staged == {f"gid://shopify/Order/{o.legacy_id}" for o in expected}

    again = _materialize(runtime, day, "eu")  # a replay from the UI
    assert again["orders_new"] == 0
    assert again["orders_unchanged"] == len(expected)


def _bounds(metadata: dict):
    from datetime import datetime

    return datetime.fromisoformat(metadata["window_start"]), datetime.fromisoformat(metadata["window_end"])


def test_touch_is_unchanged_and_a_real_change_is_changed(fresh_shopify_sandbox, runtime_factory, clock):
    fresh_shopify_sandbox.state.set_clock(clock)
    runtime = runtime_factory(fresh_shopify_sandbox)
    today = business_day(clock(), TZ)
    touched = fresh_shopify_sandbox.state.create_order("eu", financial_status="PENDING")
    changed = fresh_shopify_sandbox.state.create_order("eu", financial_status="PENDING")
    clock.offset += timedelta(seconds=2)
    baseline = _materialize(runtime, today, "eu")
    assert baseline["orders_new"] >= 2

    clock.offset += timedelta(seconds=2)
    fresh_shopify_sandbox.state.touch_order("eu", touched)
    fresh_shopify_sandbox.state.mark_paid(changed)
    clock.offset += timedelta(seconds=2)
    after = _materialize(runtime, today, "eu")
    assert after["orders_new"] == 0
    assert after["orders_changed"] == 1
    assert after["orders_unchanged"] == baseline["orders_new"] + baseline["orders_changed"] + \
        baseline["orders_unchanged"] - 1
    versions = runtime.order_staging().versions("eu", changed)
    assert len(versions) == 2
    assert len(runtime.order_staging().versions("eu", touched)) == 1


def test_sensor_window_is_honoured_and_bulk_mode_stages_the_same_orders(
    fresh_shopify_sandbox, runtime_factory, clock, bulk_process_mode
):
    runtime = runtime_factory(fresh_shopify_sandbox)
    day = business_day(clock() - timedelta(days=1), TZ)
    expected = _orders_on(fresh_shopify_sandbox, "us", day)
    bulk = _materialize(runtime, day, "us", {"ops": {"shopify_orders": {"config": {"mode": "BULK"}}}})
    assert bulk["mode"] == "bulk"
    assert bulk["orders_new"] == len(expected)

    # A narrow sensor window: since/until inside the day, widened only by the overlap.
    window_start = min(o.updated_at for o in expected)
    narrow = _materialize(runtime, day, "us", {"ops": {"shopify_orders": {"config": {
        "since": (window_start + timedelta(minutes=30)).isoformat(),
        "until": (window_start + timedelta(minutes=31)).isoformat(),
    }}}})
    lo, hi = _bounds(narrow)
    assert lo == window_start + timedelta(minutes=20)  # 10 minutes of overlap
    assert hi == window_start + timedelta(minutes=31)
    assert narrow["orders_new"] == 0  # already staged by the bulk run


def test_a_paged_pull_after_a_bulk_pull_of_the_same_day_finds_every_order_unchanged(
    fresh_shopify_sandbox, runtime_factory, clock, bulk_process_mode
):
    """Both modes stage the same payload and content hash (flows.md §6: dedupe on (id, updatedAt, content hash)):
    a paged re-run after a bulk run stages no second version of any order."""
    runtime = runtime_factory(fresh_shopify_sandbox)
    day = business_day(clock() - timedelta(days=1), TZ)
    expected = _orders_on(fresh_shopify_sandbox, "eu", day)
    assert expected
    bulk = _materialize(runtime, day, "eu", {"ops": {"shopify_orders": {"config": {"mode": "BULK"}}}})
    assert (bulk["mode"], bulk["orders_new"]) == ("bulk", len(expected))
    staged_by_bulk = {o.order_id: (o.content_hash, o.payload) for o in runtime.order_staging().latest_changed_between(
        "eu", *_bounds(bulk))}

    paged = _materialize(runtime, day, "eu", {"ops": {"shopify_orders": {"config": {"mode": "PAGED"}}}})
    assert paged["mode"] == "paged"
    assert (paged["orders_new"], paged["orders_changed"], paged["orders_unchanged"]) == (0, 0, len(expected))
    for order in expected:
        assert len(runtime.order_staging().versions("eu", f"gid://shopify/Order/{order.legacy_id}")) == 1
    assert {o.order_id: (o.content_hash, o.payload) for o in runtime.order_staging().latest_changed_between(
        "eu", *_bounds(bulk))} == staged_by_bulk


@pytest.mark.parametrize("store", ["eu"])
def test_unauthorised_store_fails_the_run_without_leaking_the_token(fresh_shopify_sandbox, runtime_factory, clock,
                                                                    store):
    runtime = runtime_factory(fresh_shopify_sandbox)
    runtime.settings.stores[store] = runtime.settings.stores[store].model_copy(
        update={"access_token": "shpat_wrong_and_secret"})
    defs = build_definitions(runtime.settings, runtime=runtime)
    asset = defs.resolve_assets_def("shopify_orders")
    with dg.instance_for_test() as instance:
        result = dg.materialize([asset], partition_key=partition_key(business_day(clock(), TZ), store),
                                instance=instance, raise_on_error=False)
        assert not result.success
        failure = result.get_step_failure_events()[0]
        text = str(failure.event_specific_data.error)
        assert "401" in text or "access token" in text.lower()
        assert "shpat_wrong_and_secret" not in text
