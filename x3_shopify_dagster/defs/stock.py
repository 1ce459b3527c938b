"""Stock sync: X3 stock movements → Shopify stock levels, near real time (flows.md §4, §6).

- ``x3_stock_sensor`` polls X3's stock journal on its update timestamp (UPDDATTIM) every
  ``X3SD_STOCK_SENSOR_INTERVAL_SECONDS``, and requests a run of each (day, store) partition whose sites moved,
  handing over the sub-window.
- ``x3_stock_movements`` stages the partition's counted movements (receipts, issues, deliveries...: the
  configured transaction types) at the store's mapped sites.
- ``shopify_inventory_levels`` sets, for every (item, site) that moved, Shopify's quantity at the mapped
  location to X3's physical stock minus the units fulfilled in Shopify whose X3 delivery is not validated yet.
  The variant is found by the SKU the mapping's store-level ``items`` section gives the item (``items.overrides``
  read backwards; SKU = item code without a mapping file).
- Shopify restocks (refund lines of type RETURN, CANCEL, LEGACY_RESTOCK) raise Shopify's level while X3 does not
  move: the invoice posting run records a marker for each, and the sensor also requests the (day, store) partition
  of every marker recorded since its watermark, so the (item, site) is pushed again (X3 stays the authority).
"""

import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any

import dagster as dg

from x3_shopify_dagster.defs.backpressure import stores_with_waiting_runs
from x3_shopify_dagster.defs.partitions import LANE_TAG, lane, partition_key, split_partition_key
from x3_shopify_dagster.defs.resources import ConnectorRuntime, shopify_credentials_fix
from x3_shopify_dagster.defs.shopify.fulfillments import refresh_fulfillments
from x3_shopify_dagster.domain.mapping import ItemMapping, MappingError
from x3_shopify_dagster.domain.windows import Window, business_day, day_window
from x3_shopify_dagster.posting.stock import MovedItemSite, StockPusher, StockPushReport, moved_item_sites
from x3_shopify_dagster.settings import ConnectorSettings
from x3_shopify_dagster.shopify import ShopifyAuthError
from x3_shopify_dagster.shopify.inventory import InventoryGateway
from x3_shopify_dagster.storage.stock import PushOutcome, StockMovementRow
from x3_shopify_dagster.x3 import X3Error, X3StockMovement

MOVEMENTS_ASSET_NAME = "x3_stock_movements"
LEVELS_ASSET_NAME = "shopify_inventory_levels"
STOCK_SENSOR_NAME = "x3_stock_sensor"
_TABLE_LIMIT = 20


class StockWindowConfig(dg.Config):
    """Set by ``x3_stock_sensor``; leave empty to handle the whole partition (a backfill or a replay)."""

    since: str | None = None
    until: str | None = None


def _instant(value: str | None) -> datetime | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise dg.Failure(f"since/until must carry a UTC offset, got {value!r}", allow_retries=False)
    return moment


def stock_window(settings: ConnectorSettings, day_key: Any, config: StockWindowConfig) -> Window:
    """The sensor's sub-window widened by the overlap, or the whole business day; always inside the day."""
    day = day_window(day_key, settings.partition_timezone)
    since, until = _instant(config.since), _instant(config.until)
    overlap = timedelta(seconds=settings.stock_overlap_seconds)
    return Window(day.start if since is None else since - overlap, day.end if until is None else until).clamp(day)


def counted(movement: X3StockMovement, settings: ConnectorSettings) -> bool:
    return movement.transaction_type in settings.stock_transaction_types


def _movement_row(movement: X3StockMovement, timezone: str) -> StockMovementRow:
    return StockMovementRow(
        movement_key=movement.key, site=movement.site, item=movement.item,
        transaction_type=movement.transaction_type, quantity=movement.quantity, voucher=movement.voucher,
        updated_at=movement.updated_at, day=business_day(movement.updated_at, timezone).isoformat(),
    )


# ----------------------------------------------------------------------------------------------- assets
def build_x3_stock_movements_asset(partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        name=MOVEMENTS_ASSET_NAME,
        partitions_def=partitions_def,
        group_name="stock",
        kinds={"sage_x3"},
        retry_policy=dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.FULL),
        description=(
            "X3 stock journal rows (receipts, issues, deliveries, adjustments: the configured transaction types) "
            "updated in the partition's business day at the store's mapped sites, staged once each."
        ),
    )
    def x3_stock_movements(
        context: dg.AssetExecutionContext, config: StockWindowConfig, connector: dg.ResourceParam[ConnectorRuntime]
    ) -> dg.MaterializeResult:
        settings = connector.settings
        day, store = split_partition_key(context.partition_key)
        sites = set(settings.stores[store].locations)
        window = stock_window(settings, day, config)
        if not sites or window.is_empty:
            reason = "no X3 site is mapped to a location of this store" if not sites else "the window is empty"
            context.log.info("Nothing to read for %s %s: %s", store, day, reason)
            return dg.MaterializeResult(metadata={"movements_read": 0, "movements_staged": 0, "note": reason})
        read = ignored = 0
        rows: list[StockMovementRow] = []
        with connector.x3_client() as x3:
            for movement in x3.stock_movements_changed(window.start, window.end):
                read += 1
                if movement.site not in sites:
                    continue
                if not counted(movement, settings):
                    ignored += 1
                    continue
                rows.append(_movement_row(movement, settings.partition_timezone))
            calls = x3.metrics.snapshot()["total_calls"]
        counts = connector.stock_store().stage_movements(rows, run_id=context.run.run_id)
        context.log.info("Stock movements %s %s in [%s, %s): %s read, %s counted, %s new", store, day,
                         window.start, window.end, read, len(rows), counts.new)
        return dg.MaterializeResult(metadata={
            "window_start": window.start.isoformat(),
            "window_end": window.end.isoformat(),
            "movements_read": read,
            "movements_counted": len(rows),
            "movements_ignored_transaction_type": ignored,
            "movements_staged": counts.new,
            "movements_already_staged": counts.already_staged,
            "sites": ", ".join(sorted(sites)),
            "x3_calls": calls,
        })

    return x3_stock_movements


def _failures_table(report: StockPushReport) -> dg.MetadataValue:
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord({"x3_item": r.x3_item, "shopify_sku": r.shopify_sku or "", "x3_site": r.x3_site,
                            "reason": r.reason_code or "", "message": (r.reason_message or "")[:300]})
            for r in report.failures[:_TABLE_LIMIT]
        ],
        schema=dg.TableSchema(columns=[dg.TableColumn(n, "string") for n in ("x3_item", "shopify_sku", "x3_site",
                                                                            "reason", "message")]),
    )


def _sets_table(report: StockPushReport) -> dg.MetadataValue:
    rows = [r for r in report.rows if r.outcome is PushOutcome.SET][:_TABLE_LIMIT]
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord({
                "x3_item": r.x3_item, "shopify_sku": r.shopify_sku or "", "x3_site": r.x3_site,
                "location": r.location_id or "",
                "from": str(r.previous_quantity), "to": str(r.quantity), "x3_physical": str(r.x3_physical),
                "pending_fulfilled": str(r.pending_fulfilled), "adjustment_group": r.adjustment_group or "",
            })
            for r in rows
        ],
        schema=dg.TableSchema(columns=[dg.TableColumn(n, "string") for n in (
            "x3_item", "shopify_sku", "x3_site", "location", "from", "to", "x3_physical", "pending_fulfilled",
            "adjustment_group")]),
    )


def report_metadata(report: StockPushReport, api: dict[str, Any]) -> dict[str, Any]:
    return {
        "items_moved": report.items_moved,
        "quantities_set": report.quantities_set,
        "unchanged": report.unchanged,
        "failed": len(report.failures),
        "unmapped_skus": len(report.unmapped_skus),
        "unmapped_sku_list": ", ".join(report.unmapped_skus[:50]),
        "stale_retries": report.stale_retries,
        "in_doubt": report.in_doubt,
        "set_calls": report.calls,
        "quantity_name": report.quantity_name,
        "adjustment_groups": ", ".join(report.adjustment_groups[:20]),
        "api_requests": api["requests"],
        "api_points_spent": api["points_spent"],
        "sets": _sets_table(report),
        "failures": _failures_table(report),
    }


def store_item_mapping(connector: ConnectorRuntime, store: str) -> ItemMapping | None:
    """The store-level `items` mapping (defaults + stores.<store>) the stock sync follows, like the invoices and
    deliveries; customer-level overrides cannot drive one stock level. None without a mapping file: the SKU is
    the X3 item code, as before mapping files existed."""
    if not connector.settings.mapping_path:
        return None
    try:
        return connector.mapping().for_customer(None, store).items
    except (MappingError, ValueError, OSError) as exc:
        raise dg.Failure(description=f"The mapping cannot be used: {exc}", allow_retries=False) from exc


def build_shopify_inventory_levels_asset(
    partitions_def: dg.PartitionsDefinition, movements_asset: dg.AssetsDefinition
) -> dg.AssetsDefinition:
    @dg.asset(
        name=LEVELS_ASSET_NAME,
        partitions_def=partitions_def,
        group_name="stock",
        kinds={"shopify"},
        deps=[movements_asset],
        retry_policy=dg.RetryPolicy(max_retries=3, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.FULL),
        description=(
            "Shopify stock levels of the items that moved in X3 (or that a Shopify refund restocked): X3's "
            "physical stock per (item, site) minus the "
            "units fulfilled in Shopify whose X3 delivery is not validated yet, set exactly once with "
            "inventorySetQuantities (compare-and-swap on the quantity read). Never oversells."
        ),
    )
    def shopify_inventory_levels(
        context: dg.AssetExecutionContext, config: StockWindowConfig, connector: dg.ResourceParam[ConnectorRuntime]
    ) -> dg.MaterializeResult:
        settings = connector.settings
        day, store = split_partition_key(context.partition_key)
        store_settings = settings.stores[store]
        window = stock_window(settings, day, config)
        movements = connector.stock_store().movements(
            day.isoformat(), store_settings.locations, since=window.start, until=window.end
        )
        # Shopify restocks recorded in the window: pushed again although X3 did not move (flows.md §4).
        restocks = connector.stock_store().restocks_recorded(
            window.start, window.end, store=store, day=day.isoformat(), sites=store_settings.locations
        )
        moved: list[MovedItemSite] = moved_item_sites(movements, restocks)
        items = store_item_mapping(connector, store)
        try:
            with connector.shopify_client(store) as client, connector.x3_client() as x3:
                pusher = StockPusher(
                    ledger=connector.ledger(), stock_store=connector.stock_store(), x3=x3,
                    inventory=InventoryGateway(client), store=store, locations=store_settings.locations,
                    owner=context.run.run_id, quantity_name=settings.stock_quantity_name, reason=settings.stock_reason,
                    lease_s=settings.stock_lease_seconds, stale_retries=settings.stock_stale_retries,
                    refresh_pending=connector.refresh_pending or partial(refresh_fulfillments, connector),
                    items=items,
                )
                report = pusher.push(moved, day.isoformat())
                api = client.metrics.snapshot()
        except ShopifyAuthError as exc:
            raise dg.Failure(
                description=f"Shopify refused the credentials of store {store!r}: {exc}. "
                + shopify_credentials_fix(settings, store, scopes="read_products, read_inventory and write_inventory"),
                allow_retries=False,
            ) from exc
        except X3Error as exc:
            raise dg.Failure(description=f"X3 stock could not be read: {exc}", allow_retries=True) from exc
        metadata = report_metadata(report, api)
        metadata["shopify_restocks"] = sum(1 for r in restocks if r.actionable)
        context.log.info("Stock %s %s: %s moved, %s set, %s unchanged, %s failed", store, day, report.items_moved,
                         report.quantities_set, report.unchanged, len(report.failures))
        if report.in_doubt:
            # The audit rows are written; the retry looks each in-doubt write up by its key before resending.
            raise dg.Failure(
                description=f"{report.in_doubt} quantities were sent to Shopify without a known outcome; the "
                "retry looks them up by idempotency key before anything is sent again.",
                metadata=metadata, allow_retries=True,
            )
        return dg.MaterializeResult(metadata=metadata)

    return shopify_inventory_levels


# ----------------------------------------------------------------------------------------------- sensor
@dataclass
class StockCursor:
    """{"v": 1, "watermark": iso, "seen": [X3 movement and Shopify restock keys in the overlap before the watermark]}"""

    watermark: datetime | None = None
    seen: set[str] = field(default_factory=set)

    @classmethod
    def parse(cls, raw: str | None) -> "StockCursor":
        if not raw:
            return cls()
        data = json.loads(raw)
        mark = data.get("watermark")
        return cls(datetime.fromisoformat(mark) if mark else None, set(data.get("seen", [])))

    def dumps(self) -> str:
        return json.dumps({"v": 1, "watermark": self.watermark.isoformat() if self.watermark else None,
                           "seen": sorted(self.seen)}, sort_keys=True)


def build_x3_stock_sensor(
    movements_asset: dg.AssetsDefinition, levels_asset: dg.AssetsDefinition, settings: ConnectorSettings
) -> dg.SensorDefinition:
    status = (
        dg.DefaultSensorStatus.RUNNING if settings.sensors_running_by_default else dg.DefaultSensorStatus.STOPPED
    )

    @dg.sensor(
        name=STOCK_SENSOR_NAME,
        target=[movements_asset, levels_asset],
        minimum_interval_seconds=settings.stock_sensor_interval_seconds,
        default_status=status,
        description="Polls X3's stock journal on its update timestamp, and the Shopify restocks the invoice runs "
        "recorded, and requests the (day, store) partitions whose mapped sites moved, with that sub-window.",
    )
    def x3_stock_sensor(
        context: dg.SensorEvaluationContext, connector: dg.ResourceParam[ConnectorRuntime]
    ) -> dg.SensorResult:
        return evaluate_stock_sensor(context, connector, movements_asset, levels_asset)

    return x3_stock_sensor


def evaluate_stock_sensor(
    context: dg.SensorEvaluationContext, connector: ConnectorRuntime,
    movements_asset: dg.AssetsDefinition, levels_asset: dg.AssetsDefinition,
) -> dg.SensorResult:
    cfg = connector.settings
    cursor = StockCursor.parse(context.cursor)
    # Whole seconds (X3 timestamps have one-second precision), and a safety lag for rows still being committed.
    high = (connector.clock() - timedelta(seconds=cfg.stock_safety_lag_seconds)).replace(microsecond=0)
    low = cursor.watermark or high - timedelta(hours=cfg.sensor_initial_lookback_hours)
    if high <= low:
        return dg.SensorResult(skip_reason="No time has passed since the last tick", cursor=context.cursor)
    if stores_with_waiting_runs(context, STOCK_SENSOR_NAME):
        # One watermark for all stores: wait until the queued run starts, then request one run for all since.
        return dg.SensorResult(skip_reason="The last stock run has not started yet", cursor=context.cursor)
    overlap = timedelta(seconds=cfg.stock_overlap_seconds)
    stores_by_site: dict[str, list[str]] = {}
    for store, store_settings in cfg.stores.items():
        for site in store_settings.locations:
            stores_by_site.setdefault(site, []).append(store)
    if not stores_by_site:
        return dg.SensorResult(skip_reason="No X3 site is mapped to a Shopify location "
                               "(X3SD_STORES__<KEY>__LOCATIONS__<SITE>)", cursor=context.cursor)
    partitions: dict[tuple[str, str], list[datetime]] = {}
    seen_now: set[str] = set()
    try:
        with connector.x3_client() as x3:
            # Overlap on the low side, dedupe on the movement key against the keys already seen there.
            for movement in x3.stock_movements_changed(low - overlap, high):
                if movement.updated_at >= high - overlap:
                    seen_now.add(movement.key)
                if movement.key in cursor.seen or movement.updated_at < low - overlap:
                    continue
                if movement.site not in stores_by_site or not counted(movement, cfg):
                    continue
                day = business_day(movement.updated_at, cfg.partition_timezone)
                if day < cfg.partition_start_date:
                    continue
                for store in stores_by_site[movement.site]:
                    partitions.setdefault((store, day.isoformat()), []).append(movement.updated_at)
        # Shopify restocks (refunds that put units back on hand) recorded since the watermark, deduped the same way:
        # nothing moved in X3, but Shopify's level went up, so the store's (item, site) is pushed again.
        for restock in connector.stock_store().restocks_recorded(low - overlap, high):
            if restock.recorded_at >= high - overlap:
                seen_now.add(restock.restock_key)
            if restock.restock_key in cursor.seen or not restock.actionable:
                continue
            store_settings = cfg.stores.get(restock.store)
            if store_settings is None or restock.site not in store_settings.locations:
                continue
            if date.fromisoformat(restock.day) < cfg.partition_start_date:
                continue
            partitions.setdefault((restock.store, restock.day), []).append(restock.recorded_at)
    except X3Error as exc:
        # The cursor stays where it was: the next tick reads this window again.
        context.log.warning("Reading the X3 stock journal failed, will retry next tick: %s", exc)
        return dg.SensorResult(skip_reason=f"X3 stock journal unavailable: {exc}", cursor=context.cursor)
    run_requests = []
    for (store, day), moments in sorted(partitions.items()):
        since = min(moments)
        window_config = {"config": {"since": since.isoformat(), "until": high.isoformat()}}
        run_requests.append(dg.RunRequest(
            run_key=f"stock|{store}|{day}|{since.isoformat()}|{high.isoformat()}",
            partition_key=partition_key(datetime.fromisoformat(day).date(), store),
            run_config={"ops": {movements_asset.op.name: window_config, levels_asset.op.name: window_config}},
            tags={"x3sd/store": store, "x3sd/trigger": STOCK_SENSOR_NAME, LANE_TAG: lane("stock", store, day)},
        ))
    # Dagster stores the cursor with this tick's run requests, atomically: it only advances once they are recorded
    # (a failed tick keeps the old cursor and reads the window again; the runs are idempotent).
    next_cursor = StockCursor(high, seen_now)
    return dg.SensorResult(
        run_requests=run_requests, cursor=next_cursor.dumps(),
        skip_reason=None if run_requests else "No counted stock movement at a mapped site, nor Shopify restock, "
        "since the last tick",
    )
