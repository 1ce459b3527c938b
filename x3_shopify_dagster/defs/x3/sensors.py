"""Replays and refreshes around the X3 postings.

- ``x3_master_data_schedule`` refreshes ``x3_customers`` and ``x3_gl_accounts``.
- ``x3_replay_sensor``: when either snapshot changes (a customer was created, an account reactivated), request
  ``x3_sales_invoices`` for every partition that holds failed orders, so a fix in X3 is followed by a replay
  without anyone clicking. Replays are safe: every X3 write is exactly once.
"""

import json
from datetime import date

import dagster as dg

from x3_shopify_dagster.defs.partitions import LANE_TAG, lane, partition_key
from x3_shopify_dagster.defs.resources import ConnectorRuntime
from x3_shopify_dagster.posting.invoices import failed_partitions
from x3_shopify_dagster.settings import ConnectorSettings

REPLAY_SENSOR_NAME = "x3_replay_sensor"
SNAPSHOT_ASSETS = (dg.AssetKey("x3_customers"), dg.AssetKey("x3_gl_accounts"))


def build_master_data_schedule(settings: ConnectorSettings) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="x3_master_data_schedule",
        target=dg.AssetSelection.assets(*SNAPSHOT_ASSETS),
        cron_schedule=settings.x3_snapshot_cron,
        default_status=dg.DefaultScheduleStatus.RUNNING
        if settings.sensors_running_by_default
        else dg.DefaultScheduleStatus.STOPPED,
        description="Refreshes the X3 customer and GL snapshots the postings are checked against.",
    )


def build_replay_sensor(invoices_asset: dg.AssetsDefinition, settings: ConnectorSettings) -> dg.SensorDefinition:
    @dg.sensor(
        name=REPLAY_SENSOR_NAME,
        target=[invoices_asset],
        minimum_interval_seconds=settings.sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING
        if settings.sensors_running_by_default
        else dg.DefaultSensorStatus.STOPPED,
        description="Re-requests partitions with failed postings whenever the X3 snapshots change.",
    )
    def x3_replay_sensor(
        context: dg.SensorEvaluationContext, connector: dg.ResourceParam[ConnectorRuntime]
    ) -> dg.SensorResult:
        seen = json.loads(context.cursor) if context.cursor else {}
        latest: dict[str, int] = {}
        for key in SNAPSHOT_ASSETS:
            records = context.instance.fetch_materializations(key, limit=1).records
            if records:
                latest[key.to_user_string()] = records[0].storage_id
        if latest == seen:
            return dg.SensorResult(skip_reason="The X3 snapshots have not changed")
        first_day = connector.settings.partition_start_date
        marker = "-".join(str(latest.get(k.to_user_string(), 0)) for k in SNAPSHOT_ASSETS)
        requests = [
            dg.RunRequest(
                run_key=f"replay|{store}|{day}|{marker}",
                partition_key=partition_key(dg_date, store),
                tags={"x3sd/store": store, "x3sd/trigger": REPLAY_SENSOR_NAME, LANE_TAG: lane("orders", store, day)},
            )
            for store, day in failed_partitions(connector.ledger(), connector.settings.stores)
            if (dg_date := date.fromisoformat(day)) >= first_day
        ]
        return dg.SensorResult(
            run_requests=requests,
            cursor=json.dumps(latest, sort_keys=True),
            skip_reason=None if requests else "Snapshots changed; no partition has failed orders",
        )

    return x3_replay_sensor

