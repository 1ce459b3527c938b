"""``shopify_orders``: every order version changed in a (business day, store) partition, staged in the connector DB."""


import gc
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from enum import Enum

import dagster as dg

from x3_shopify_dagster.defs.metadata import redact_metadata
from x3_shopify_dagster.defs.partitions import split_partition_key
from x3_shopify_dagster.defs.resources import ConnectorRuntime, shopify_credentials_fix
from x3_shopify_dagster.domain.shopify_orders import EncodedOrder, MalformedOrderError, NormalisedOrder, ShopifyOrder
from x3_shopify_dagster.domain.windows import Window, day_window, pull_window
from x3_shopify_dagster.shopify import BulkOrderExporter, ShopifyAuthError, ShopifyProtocolError
from x3_shopify_dagster.storage import OrderVersion

ORDERS_ASSET_NAME = "shopify_orders"


class PullMode(Enum):
    AUTO = "auto"  # bulk when the window holds at least X3SD_SHOPIFY_BULK_THRESHOLD_ORDERS changes
    PAGED = "paged"
    BULK = "bulk"


class ShopifyOrdersConfig(dg.Config):
    """Set by ``shopify_orders_sensor``; leave empty to pull the whole partition (a backfill or a replay)."""

    since: str | None = None
    until: str | None = None
    mode: PullMode = PullMode.AUTO


def order_version(store: str, order: NormalisedOrder | EncodedOrder | ShopifyOrder) -> OrderVersion:
    """The staged version of a pulled order. The asset pulls ``NormalisedOrder``s (no model is built on the
    staging path: posting validates each staged payload); a ``ShopifyOrder`` gives the same version, and so does
    the ``EncodedOrder`` a bulk worker process sent (stored JSON and hash without the payload dict)."""
    if isinstance(order, EncodedOrder):
        return OrderVersion(
            store=store,
            order_id=order.id,
            order_name=order.name,
            updated_at=order.updated_at,
            content_hash=order.content_hash,
            payload=None,
            payload_json=order.payload_json,
        )
    if isinstance(order, ShopifyOrder):
        order = NormalisedOrder.from_payload(order.to_payload())
    payload_json, content_hash = order.encoded()  # one serialisation gives both
    return OrderVersion(
        store=store,
        order_id=order.id,
        order_name=order.name,
        updated_at=order.updated_at,
        content_hash=content_hash,
        payload=order.payload,
        payload_json=payload_json,
    )


@contextmanager
def fewer_gc_pauses() -> Iterator[None]:
    """Collect less often while a pull stages: it allocates millions of short-lived objects, and each full
    collection also rescans the long-lived heap of Dagster's imports (a third of bulk staging time,
    docs/performance.md)."""
    thresholds = gc.get_threshold()
    gc.freeze()  # everything alive now (imports, resources) is left out of every collection
    # The generation-0 count is allocations minus frees: a pull's live working set (a batch of 1,000 payloads,
    # ~100k containers) kept crossing 50,000 (21 collections per 20,000 orders, 10% of the time); 200,000 leaves
    # one. Cyclic garbage, if any, waits for at most 200,000 net allocations.
    gc.set_threshold(200_000, 20, 100)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _parse_instant(value: str | None) -> datetime | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise dg.Failure(f"since/until must carry a UTC offset, got {value!r}", allow_retries=False)
    return moment


def _window_metadata(window: Window) -> dict[str, dg.MetadataValue]:
    return {
        "window_start": dg.MetadataValue.text(window.start.isoformat()),
        "window_end": dg.MetadataValue.text(window.end.isoformat()),
    }


def build_shopify_orders_asset(partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        name=ORDERS_ASSET_NAME,
        partitions_def=partitions_def,
        group_name="shopify",
        kinds={"shopify"},
        retry_policy=dg.RetryPolicy(
            max_retries=3, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.FULL
        ),
        description=(
            "Shopify order versions whose updatedAt falls in the partition's business day, pulled from the "
            "Admin GraphQL API (paged, or a bulk export for large windows) and staged in the connector database."
        ),
    )
    def shopify_orders(
        context: dg.AssetExecutionContext,
        config: ShopifyOrdersConfig,
        connector: dg.ResourceParam[ConnectorRuntime],
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
        if window.is_empty:
            context.log.info("Nothing to pull yet for %s: the window is empty (%s .. %s)", store, window.start,
                             window.end)
            return dg.MaterializeResult(
                metadata=redact_metadata({**_window_metadata(window), "mode": "none", "orders_new": 0,
                                          "orders_changed": 0, "orders_unchanged": 0, "orders_older": 0})
            )

        try:
            with connector.shopify_client(store) as client:
                reader = connector.order_reader(client)
                mode = config.mode
                expected = None
                if mode is PullMode.AUTO:
                    expected = reader.probe(window.start, window.end).count
                    mode = PullMode.BULK if expected >= settings.shopify_bulk_threshold_orders else PullMode.PAGED
                context.log.info("Pulling %s orders changed in [%s, %s) with a %s pull (expected %s)", store,
                                 window.start, window.end, mode.value, expected)
                if mode is PullMode.BULK:
                    exporter = BulkOrderExporter(client, details_reader=connector.order_reader(client))
                    orders = exporter.iter_changed_orders(
                        window.start, window.end, fallback=reader, build=NormalisedOrder.from_graphql
                    )
                    stats = exporter.stats
                else:
                    orders = reader.iter_changed_orders(window.start, window.end, build=NormalisedOrder.from_graphql)
                    stats = reader.stats
                with fewer_gc_pauses():
                    counts = connector.order_staging().stage(
                        (order_version(store, order) for order in orders), run_id=context.run.run_id
                    )
                api = client.metrics.snapshot()
        except ShopifyAuthError as exc:
            # Retrying cannot help: say which setting to fix, then replay the partition.
            raise dg.Failure(
                description=(
                    f"Shopify refused the credentials of store {store!r}: {exc}. "
                    + shopify_credentials_fix(connector.settings, store)
                ),
                allow_retries=False,
            ) from exc
        except (ShopifyProtocolError, MalformedOrderError) as exc:
            raise dg.Failure(description=f"Unexpected answer from Shopify for store {store!r}: {exc}",
                             allow_retries=False) from exc

        context.log.info("Staged %s: %s", store, counts.as_dict())
        return dg.MaterializeResult(
            metadata=redact_metadata({
                **_window_metadata(window),
                "mode": mode.value,
                "orders_new": counts.new,
                "orders_changed": counts.changed,
                "orders_unchanged": counts.unchanged,
                "orders_older": counts.older,
                "pages": stats.pages,
                "page_size_shrinks": stats.page_size_shrinks,
                "bulk_operation_id": stats.bulk_operation_id or "",
                "bulk_fallbacks": stats.fallbacks,
                "api_requests": api["requests"],
                "api_points_spent": api["points_spent"],
                "api_retries": api["retries"],
                "throttle_waits": api["throttle_waits"],
                "throttle_wait_seconds": dg.MetadataValue.float(float(api["throttle_wait_s"])),
            })
        )

    return shopify_orders
