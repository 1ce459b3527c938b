"""``shopify_fulfillments`` and its sensor: fulfilments polled on their own timestamps (flows.md §6).

Fulfilments can change without moving their order's ``updatedAt``, so they have their own asset, partitioned like
the orders (business day x store) and fed by their own sensor: a cheap per-store probe of the fulfillment orders
changed since a JSON watermark, a run request per affected (day, store) partition with that sub-window, the
watermark advancing in the same SensorResult (saved only if the tick succeeds: a failed tick replays its window).
Each fetched fulfilment version is recorded in the posting ledger (kind ``fulfillment``), which is its staging.
"""


from datetime import datetime, timedelta

import dagster as dg

from x3_shopify_dagster.defs.backpressure import stores_with_waiting_runs
from x3_shopify_dagster.defs.partitions import LANE_TAG, lane, partition_key, split_partition_key
from x3_shopify_dagster.defs.resources import ConnectorRuntime, shopify_credentials_fix
from x3_shopify_dagster.defs.shopify.assets import ShopifyOrdersConfig, _parse_instant, _window_metadata
from x3_shopify_dagster.defs.shopify.sensors import WatermarkCursor
from x3_shopify_dagster.domain.windows import business_day, day_window, days_between, pull_window
from x3_shopify_dagster.posting.deliveries import observe_fulfillments, waiting_ready
from x3_shopify_dagster.settings import ConnectorSettings
from x3_shopify_dagster.shopify import (
    FulfillmentReader,
    ShopifyAuthError,
    ShopifyClient,
    ShopifyError,
    ShopifyProtocolError,
)
from x3_shopify_dagster.storage.ledger import Observation, ObserveOutcome, RecordKind

FULFILLMENTS_ASSET_NAME = "shopify_fulfillments"
FULFILLMENTS_SENSOR_NAME = "shopify_fulfillments_sensor"


def fulfillment_reader(connector: ConnectorRuntime, client: ShopifyClient) -> FulfillmentReader:
    settings = connector.settings
    return FulfillmentReader(
        client,
        page_size=settings.shopify_fulfillment_orders_page_size,
        fulfillments_per_order=settings.shopify_fulfillments_per_order,
        lines_page_size=settings.shopify_line_items_page_size,
    )


def record_changed_fulfillments(
    connector: ConnectorRuntime, reader: FulfillmentReader, store: str, since: datetime, until: datetime,
    *, run_id: str | None,
) -> list[Observation]:
    """Read the fulfilments changed in [since, until) and record each version in the posting ledger."""
    fulfillments = list(reader.iter_changed_fulfillments(since, until))
    return observe_fulfillments(connector.ledger(), store, fulfillments,
                                business_timezone=connector.settings.partition_timezone, run_id=run_id)


def refresh_fulfillments(connector: ConnectorRuntime, store: str) -> int:
    """Record the store's fulfilments changed since the newest one the ledger holds, up to now.

    The stock sync calls this right before it reads the pending fulfilled quantities (flows.md §4), so a fulfilment
    made in Shopify since the fulfilment sensor's last tick is already subtracted: without it, a stock push racing
    a fulfilment could raise Shopify's level back above the shelf for up to one sensor interval.
    """
    settings = connector.settings
    now = connector.clock()
    latest = connector.ledger().latest_source_update(store, RecordKind.FULFILLMENT)
    # Never less than a few sensor intervals back, even with no initial lookback: that is where the unseen ones are.
    recent = timedelta(seconds=3 * settings.sensor_interval_seconds, minutes=settings.shopify_overlap_minutes)
    floor = now - max(timedelta(hours=settings.sensor_initial_lookback_hours), recent)
    since = max(floor, latest - timedelta(minutes=settings.shopify_overlap_minutes)) if latest else floor
    with connector.shopify_client(store) as client:
        reader = fulfillment_reader(connector, client)
        return len(record_changed_fulfillments(connector, reader, store, since, now, run_id=None))


def build_shopify_fulfillments_asset(partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        name=FULFILLMENTS_ASSET_NAME,
        partitions_def=partitions_def,
        group_name="shopify",
        kinds={"shopify"},
        retry_policy=dg.RetryPolicy(max_retries=3, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.FULL),
        description=(
            "Shopify fulfilments of the fulfillment orders changed in the partition's business day, polled on their "
            "own timestamps and recorded in the posting ledger (one record per fulfilment)."
        ),
    )
    def shopify_fulfillments(
        context: dg.AssetExecutionContext, config: ShopifyOrdersConfig, connector: dg.ResourceParam[ConnectorRuntime]
    ) -> dg.MaterializeResult:
        settings = connector.settings
        day, store = split_partition_key(context.partition_key)
        window = pull_window(
            day_window(day, settings.partition_timezone),
            now=connector.clock(),
            safety_lag=timedelta(seconds=settings.shopify_safety_lag_seconds),
            overlap=timedelta(minutes=settings.shopify_overlap_minutes),
            since=_parse_instant(config.since),
            until=_parse_instant(config.until),
        )
        counts = {outcome.value: 0 for outcome in ObserveOutcome}
        if window.is_empty:
            return dg.MaterializeResult(metadata={**_window_metadata(window), **_count_metadata(counts)})
        try:
            with connector.shopify_client(store) as client:
                reader = fulfillment_reader(connector, client)
                observations = record_changed_fulfillments(
                    connector, reader, store, window.start, window.end, run_id=context.run.run_id
                )
                api = client.metrics.snapshot()
        except ShopifyAuthError as exc:
            raise dg.Failure(
                description=f"Shopify refused the credentials of store {store!r}: {exc}. "
                + shopify_credentials_fix(settings, store, scopes="read_merchant_managed_fulfillment_orders"),
                allow_retries=False,
            ) from exc
        except ShopifyProtocolError as exc:
            raise dg.Failure(description=f"Unexpected answer from Shopify for store {store!r}: {exc}",
                             allow_retries=False) from exc
        for observation in observations:
            counts[observation.outcome.value] += 1
        context.log.info("Fulfilments of %s in [%s, %s): %s", store, window.start, window.end, counts)
        return dg.MaterializeResult(
            metadata={
                **_window_metadata(window),
                **_count_metadata(counts),
                **{f"pull_{key}": value for key, value in reader.stats.snapshot().items()},
                "api_requests": api["requests"],
                "api_retries": api["retries"],
            }
        )

    return shopify_fulfillments


def _count_metadata(counts: dict[str, int]) -> dict[str, int]:
    return {f"fulfillments_{key}": value for key, value in counts.items()}


def build_shopify_fulfillments_sensor(
    fulfillments_asset: dg.AssetsDefinition,
    deliveries_asset: dg.AssetsDefinition,
    settings: ConnectorSettings,
) -> dg.SensorDefinition:
    status = (
        dg.DefaultSensorStatus.RUNNING if settings.sensors_running_by_default else dg.DefaultSensorStatus.STOPPED
    )

    @dg.sensor(
        name=FULFILLMENTS_SENSOR_NAME,
        target=[fulfillments_asset, deliveries_asset],
        minimum_interval_seconds=settings.sensor_interval_seconds,
        default_status=status,
        description="Polls each Shopify store for fulfillment orders changed since its watermark and requests the "
        "affected (day, store) partitions; also re-requests fulfilments that waited for an invoice that now exists.",
    )
    def shopify_fulfillments_sensor(
        context: dg.SensorEvaluationContext, connector: dg.ResourceParam[ConnectorRuntime]
    ) -> dg.SensorResult:
        cfg = connector.settings
        cursor = WatermarkCursor.parse(context.cursor)
        high = (connector.clock() - timedelta(seconds=cfg.shopify_safety_lag_seconds)).replace(microsecond=0)
        run_requests: list[dg.RunRequest] = []
        problems: list[str] = []
        ledger = connector.ledger()
        waiting_runs = stores_with_waiting_runs(context, FULFILLMENTS_SENSOR_NAME)
        for store in cfg.stores:
            if store in waiting_runs:
                context.log.info("Store %s: its last run has not started yet; its window waits for it", store)
                continue
            low = cursor.stores.get(store, high - timedelta(hours=cfg.sensor_initial_lookback_hours))
            requested: set[str] = set()
            if high > low:
                try:
                    with connector.shopify_client(store) as client:
                        probe = fulfillment_reader(connector, client).probe(low, high)
                except ShopifyError as exc:
                    problems.append(f"{store}: {exc}")
                    context.log.warning("Fulfilment probe of store %s failed, will retry next tick: %s", store, exc)
                    continue
                if probe.oldest_updated_at and probe.newest_updated_at:
                    for day in days_between(probe.oldest_updated_at, probe.newest_updated_at, cfg.partition_timezone):
                        if day < cfg.partition_start_date:
                            continue
                        requested.add(day.isoformat())
                        run_requests.append(dg.RunRequest(
                            run_key=f"fulfillments|{store}|{day.isoformat()}|{low.isoformat()}|{high.isoformat()}",
                            partition_key=partition_key(day, store),
                            run_config={"ops": {fulfillments_asset.op.name: {
                                "config": {"since": low.isoformat(), "until": high.isoformat()}}}},
                            tags={"x3sd/store": store, "x3sd/trigger": FULFILLMENTS_SENSOR_NAME,
                                  LANE_TAG: lane("fulfilments", store, day)},
                        ))
                cursor.stores[store] = high
            # Fulfilments that waited for their order's invoice: any run of the store retries them, so one run
            # of today's partition is enough when nothing else is requested for the store.
            ready = waiting_ready(ledger, store)
            if ready and not requested:
                day = business_day(connector.clock(), cfg.partition_timezone)
                marker = ",".join(f"{r.id}:{r.revision}" for r in ready)
                run_requests.append(dg.RunRequest(
                    run_key=f"fulfillments-waiting|{store}|{marker}",
                    partition_key=partition_key(day, store),
                    asset_selection=[deliveries_asset.key],
                    tags={"x3sd/store": store, "x3sd/trigger": FULFILLMENTS_SENSOR_NAME,
                          LANE_TAG: lane("fulfilments", store, day)},
                ))
        skip_reason = None
        if not run_requests:
            skip_reason = "No fulfilment changed since the last tick" if not problems else "; ".join(problems)
        return dg.SensorResult(run_requests=run_requests, cursor=cursor.dumps(), skip_reason=skip_reason)

    return shopify_fulfillments_sensor
