"""``shopify_orders_sensor``: a cheap per-store probe for orders changed since the cursor.

The cursor is a JSON watermark per store. Each tick probes [watermark, now - safety lag) with one small query
per store, requests a run of every affected (day, store) partition handing over that sub-window, and advances
the store's watermark in the same SensorResult (Dagster saves the cursor only if the tick succeeds, so a failed
tick replays its window: at least once, which the idempotent staging makes harmless).
"""


import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import dagster as dg

from x3_shopify_dagster.defs.backpressure import stores_with_waiting_runs
from x3_shopify_dagster.defs.partitions import LANE_TAG, lane, partition_key
from x3_shopify_dagster.defs.resources import ConnectorRuntime
from x3_shopify_dagster.domain.windows import days_between
from x3_shopify_dagster.settings import ConnectorSettings
from x3_shopify_dagster.shopify import ShopifyError

SENSOR_NAME = "shopify_orders_sensor"


@dataclass
class WatermarkCursor:
    """{"v": 1, "stores": {"eu": "2026-11-27T10:00:00+00:00", ...}}"""

    stores: dict[str, datetime] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: str | None) -> "WatermarkCursor":
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls({store: datetime.fromisoformat(value) for store, value in data.get("stores", {}).items()})

    def dumps(self) -> str:
        stores = {store: moment.isoformat() for store, moment in sorted(self.stores.items())}
        return json.dumps({"v": 1, "stores": stores}, sort_keys=True)


def build_shopify_orders_sensor(
    orders_asset: dg.AssetsDefinition,
    settings: ConnectorSettings,
    *,
    downstream: Sequence[dg.AssetsDefinition] = (),
) -> dg.SensorDefinition:
    status = (
        dg.DefaultSensorStatus.RUNNING if settings.sensors_running_by_default else dg.DefaultSensorStatus.STOPPED
    )

    @dg.sensor(
        name=SENSOR_NAME,
        target=[orders_asset, *downstream],
        minimum_interval_seconds=settings.sensor_interval_seconds,
        default_status=status,
        description="Polls each Shopify store for orders changed since its watermark and requests the affected "
        "(day, store) partitions with that sub-window.",
    )
    def shopify_orders_sensor(
        context: dg.SensorEvaluationContext, connector: dg.ResourceParam[ConnectorRuntime]
    ) -> dg.SensorResult:
        cfg = connector.settings
        cursor = WatermarkCursor.parse(context.cursor)
        # Whole seconds: Shopify's updatedAt has second precision, so a watermark inside a second could skip
        # an order updated later in that same second.
        high = (connector.clock() - timedelta(seconds=cfg.shopify_safety_lag_seconds)).replace(microsecond=0)
        first_day = cfg.partition_start_date
        run_requests: list[dg.RunRequest] = []
        problems: list[str] = []
        waiting = stores_with_waiting_runs(context, SENSOR_NAME)
        for store in cfg.stores:
            low = cursor.stores.get(store, high - timedelta(hours=cfg.sensor_initial_lookback_hours))
            if high <= low:
                continue
            if store in waiting:
                context.log.info("Store %s: its last run has not started yet; its window waits for it", store)
                continue
            try:
                with connector.shopify_client(store) as client:
                    probe = connector.order_reader(client).probe(low, high)
            except ShopifyError as exc:
                # One store being down must not hold the others back; its watermark stays put.
                problems.append(f"{store}: {exc}")
                context.log.warning("Probe of store %s failed, will retry next tick: %s", store, exc)
                continue
            if probe.count and probe.oldest_updated_at and probe.newest_updated_at:
                for day in days_between(probe.oldest_updated_at, probe.newest_updated_at, cfg.partition_timezone):
                    if day < first_day:
                        continue
                    run_requests.append(
                        dg.RunRequest(
                            run_key=f"{store}|{day.isoformat()}|{low.isoformat()}|{high.isoformat()}",
                            partition_key=partition_key(day, store),
                            run_config={
                                "ops": {
                                    orders_asset.op.name: {
                                        "config": {"since": low.isoformat(), "until": high.isoformat()}
                                    }
                                }
                            },
                            tags={
                                "x3sd/store": store, "x3sd/trigger": SENSOR_NAME, LANE_TAG: lane("orders", store, day)
                            },
                        )
                    )
                context.log.info("Store %s: %s orders changed in [%s, %s)", store, probe.count, low, high)
            cursor.stores[store] = high
        skip_reason = None
        if not run_requests:
            skip_reason = "No order changed since the last tick" if not problems else "; ".join(problems)
        return dg.SensorResult(run_requests=run_requests, cursor=cursor.dumps(), skip_reason=skip_reason)

    return shopify_orders_sensor
