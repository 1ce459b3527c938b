"""shopify_orders_sensor against the Shopify sandbox over HTTP: cheap probe, partitions, run keys, cursor."""

from __future__ import annotations

import json
from datetime import timedelta

import dagster as dg
import pytest

from x3_shopify_dagster.definitions import build_definitions
from x3_shopify_dagster.defs.shopify.sensors import SENSOR_NAME, WatermarkCursor
from x3_shopify_dagster.domain.windows import business_day, days_between

TZ = "Europe/Paris"


@pytest.fixture
def database_url(tmp_path) -> str:
    """The sensor never touches the connector database: one engine is enough here."""
    return f"sqlite:///{tmp_path / 'connector.db'}"


def _tick(runtime, cursor: str | None):
    defs = build_definitions(runtime.settings, runtime=runtime)
    sensor = defs.resolve_sensor_def(SENSOR_NAME)
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(
            instance=instance, cursor=cursor, resources={"connector": runtime}, definitions=defs
        )
        return sensor.evaluate_tick(context)


def _requested(result) -> set[tuple[str, str]]:
    out = set()
    for request in result.run_requests:
        key = request.partition_key
        dims = key.keys_by_dimension if isinstance(key, dg.MultiPartitionKey) else dict(
            zip(("date", "store"), key.split("|"), strict=True))
        out.add((dims["date"], dims["store"]))
    return out


def test_first_tick_requests_every_day_with_changes_per_store(fresh_shopify_sandbox, runtime_factory):
    runtime = runtime_factory(fresh_shopify_sandbox)
    result = _tick(runtime, None)

    expected: set[tuple[str, str]] = set()
    for store in ("eu", "us"):
        stamps = [order.updated_at for order in fresh_shopify_sandbox.state.orders(store)]
        for day in days_between(min(stamps), max(stamps), TZ):
            expected.add((day.isoformat(), store))
    assert _requested(result) == expected
    # Every request hands over the probed window and carries a run key unique to it.
    keys = [request.run_key for request in result.run_requests]
    assert len(keys) == len(set(keys))
    cursor = WatermarkCursor.parse(result.cursor)
    assert set(cursor.stores) == {"eu", "us"}
    some = result.run_requests[0]
    config = some.run_config["ops"]["shopify_orders"]["config"]
    store = some.tags["x3sd/store"]
    assert config["until"] == cursor.stores[store].isoformat()


def test_quiet_tick_requests_nothing_and_new_order_requests_only_its_partition(
    fresh_shopify_sandbox, runtime_factory, clock
):
    fresh_shopify_sandbox.state.set_clock(clock)  # both sides see the same (shiftable) time
    runtime = runtime_factory(fresh_shopify_sandbox)
    first = _tick(runtime, None)
    clock.offset += timedelta(seconds=2)
    quiet = _tick(runtime, first.cursor)
    assert quiet.run_requests == []
    assert "No order changed" in (quiet.skip_message or "")

    order_id = fresh_shopify_sandbox.state.create_order("eu")
    created = fresh_shopify_sandbox.state.order(order_id).updated_at
    clock.offset += timedelta(seconds=2)
    third = _tick(runtime, quiet.cursor)
    assert _requested(third) == {(business_day(created, TZ).isoformat(), "eu")}
    request = third.run_requests[0]
    before = WatermarkCursor.parse(quiet.cursor).stores["eu"]
    assert request.run_config["ops"]["shopify_orders"]["config"]["since"] == before.isoformat()
    assert before.isoformat() in request.run_key
    # The other store's watermark moved on too, with nothing requested for it.
    assert WatermarkCursor.parse(third.cursor).stores["us"] > WatermarkCursor.parse(quiet.cursor).stores["us"]


def test_a_failing_store_keeps_its_watermark_and_does_not_block_the_others(fresh_shopify_sandbox, runtime_factory):
    runtime = runtime_factory(fresh_shopify_sandbox)
    bad_token = runtime.settings.stores["us"].model_copy(update={"access_token": "shpat_revoked"})
    runtime.settings.stores["us"] = bad_token
    previous = WatermarkCursor()
    result = _tick(runtime, previous.dumps())
    stores = {store for _, store in _requested(result)}
    assert stores == {"eu"}
    assert "us" not in WatermarkCursor.parse(result.cursor).stores
    assert "shpat_revoked" not in json.dumps(result.run_requests[0].run_config)


def test_cursor_round_trips_and_tolerates_an_empty_cursor():
    assert WatermarkCursor.parse(None).stores == {}
    assert WatermarkCursor.parse("").stores == {}
    cursor = WatermarkCursor.parse('{"v": 1, "stores": {"eu": "2026-11-27T10:00:00+00:00"}}')
    assert WatermarkCursor.parse(cursor.dumps()) == cursor


@pytest.mark.parametrize("days_ago", [60])
def test_changes_before_the_first_partition_are_not_requested(fresh_shopify_sandbox, runtime_factory, days_ago):
    # The first partition is tomorrow-ish: nothing the sandbox holds may be requested (it would fail the tick).
    from datetime import UTC, datetime

    first_day = (datetime.now(UTC) + timedelta(days=2)).date()
    runtime = runtime_factory(fresh_shopify_sandbox, partition_start_date=first_day,
                              sensor_initial_lookback_hours=24 * days_ago)
    result = _tick(runtime, None)
    assert result.run_requests == []


def test_a_store_whose_last_run_is_still_queued_gets_no_new_run_and_keeps_its_window(
    fresh_shopify_sandbox, runtime_factory
):
    """Back-pressure: a queued run of the eu store holds its watermark; us goes on; nothing is lost."""
    from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus

    runtime = runtime_factory(fresh_shopify_sandbox)
    defs = build_definitions(runtime.settings, runtime=runtime)
    sensor = defs.resolve_sensor_def(SENSOR_NAME)
    with dg.instance_for_test() as instance:
        first = sensor.evaluate_tick(dg.build_sensor_context(
            instance=instance, cursor=None, resources={"connector": runtime}, definitions=defs))
        instance.add_run(DagsterRun(job_name="__ASSET_JOB", run_id="queued-eu", status=DagsterRunStatus.NOT_STARTED,
                                    tags={"dagster/sensor_name": SENSOR_NAME, "x3sd/store": "eu"}))
        fresh_shopify_sandbox.state.create_order("eu")
        fresh_shopify_sandbox.state.create_order("us")
        runtime.clock.offset += timedelta(minutes=5)
        held = sensor.evaluate_tick(dg.build_sensor_context(
            instance=instance, cursor=first.cursor, resources={"connector": runtime}, definitions=defs))
        assert {store for _day, store in _requested(held)} == {"us"}
        before, after = WatermarkCursor.parse(first.cursor), WatermarkCursor.parse(held.cursor)
        assert after.stores["eu"] == before.stores["eu"]  # eu's window waits for its queued run
        assert after.stores["us"] > before.stores["us"]

        # The queued run left the queue: the next tick requests one run for everything eu missed meanwhile.
        instance.delete_run("queued-eu")
        runtime.clock.offset += timedelta(seconds=5)
        resumed = sensor.evaluate_tick(dg.build_sensor_context(
            instance=instance, cursor=held.cursor, resources={"connector": runtime}, definitions=defs))
        eu_requests = [r for r in resumed.run_requests if r.tags["x3sd/store"] == "eu"]
        assert eu_requests
        since = eu_requests[0].run_config["ops"]["shopify_orders"]["config"]["since"]
        assert since == before.stores["eu"].isoformat()
