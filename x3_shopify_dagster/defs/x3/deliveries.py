"""``x3_deliveries``: each Shopify fulfilment of a (day, store) partition as a validated X3 delivery.

The work is in ``x3_shopify_dagster.posting.deliveries``; this module wires it to Dagster and turns the run's report
and the ledger summary into small materialization metadata (the full trail is the ledger).
"""

import dagster as dg

from x3_shopify_dagster.defs.partitions import split_partition_key
from x3_shopify_dagster.defs.resources import ConnectorRuntime
from x3_shopify_dagster.defs.x3.postings import posting_workers
from x3_shopify_dagster.domain.mapping import MappingError
from x3_shopify_dagster.posting.deliveries import DeliveryPoster, DeliveryReport
from x3_shopify_dagster.storage.ledger import RecordKind

DELIVERIES_ASSET_NAME = "x3_deliveries"
_TABLE_LIMIT = 20


def _deliveries_table(report: DeliveryReport) -> dg.MetadataValue:
    rows = [o for o in report.outcomes if o.outcome == "delivered"][:_TABLE_LIMIT]
    columns = ("fulfillment", "order", "x3_delivery", "x3_invoice", "lines", "tracking")
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord({
                "fulfillment": o.fulfillment_name,
                "order": o.order_name,
                "x3_delivery": o.delivery or "",
                "x3_invoice": o.invoice or "",
                "lines": "; ".join(f"{quantity} x {item}" for item, quantity in o.lines),
                "tracking": o.tracking,
            })
            for o in rows
        ],
        schema=dg.TableSchema(columns=[dg.TableColumn(name, "string") for name in columns]),
    )


def _failures_table(report: DeliveryReport) -> dg.MetadataValue:
    rows = [o for o in report.outcomes if o.outcome in {"failed", "waiting"}][:_TABLE_LIMIT]
    columns = ("fulfillment", "order", "outcome", "reason", "message")
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord({"fulfillment": o.fulfillment_name, "order": o.order_name, "outcome": o.outcome,
                            "reason": o.reason or "", "message": (o.message or "")[:300]})
            for o in rows
        ],
        schema=dg.TableSchema(columns=[dg.TableColumn(name, "string") for name in columns]),
    )


def build_x3_deliveries_asset(
    partitions_def: dg.PartitionsDefinition, fulfillments_asset: dg.AssetsDefinition,
    invoices_asset: dg.AssetsDefinition,
) -> dg.AssetsDefinition:
    @dg.asset(
        name=DELIVERIES_ASSET_NAME,
        partitions_def=partitions_def,
        group_name="x3",
        kinds={"sage_x3"},
        deps=[fulfillments_asset, invoices_asset],
        retry_policy=dg.RetryPolicy(max_retries=2, delay=15, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.FULL),
        description=(
            "Shopify fulfilments of the partition as validated Sage X3 deliveries (stock issued, COGS posted), exactly "
            "once, linked to the order's invoice. Fulfilments whose order is not invoiced yet wait and are retried by "
            "every run of the store; re-materializing a partition replays its failed fulfilments."
        ),
    )
    def x3_deliveries(
        context: dg.AssetExecutionContext, connector: dg.ResourceParam[ConnectorRuntime]
    ) -> dg.MaterializeResult:
        settings = connector.settings
        day, store = split_partition_key(context.partition_key)
        try:
            mapping = connector.mapping()
        except (MappingError, ValueError, OSError) as exc:
            raise dg.Failure(description=f"The mapping cannot be used: {exc}", allow_retries=False) from exc
        ledger = connector.ledger()
        with connector.x3_client() as x3:
            poster = DeliveryPoster(
                ledger=ledger, x3=x3, mapping=mapping,
                location_sites={key: s.location_sites for key, s in settings.stores.items()},
                owner=context.run.run_id, business_timezone=settings.partition_timezone,
                lease_s=settings.posting_lease_seconds, workers=posting_workers(settings.x3.pool_size),
                cancel_action=settings.fulfillment_cancel_action,
            )
            # Sensor runs deliver what changed (and what waited); a re-materialization also replays failures.
            replay_failed = context.run.tags.get("x3sd/trigger") != "shopify_fulfillments_sensor"
            report = poster.post_partition(store, day.isoformat(), replay_failed=replay_failed)
            x3_metrics = x3.metrics.snapshot()
        summary = ledger.summary(store, day.isoformat(), kind=RecordKind.FULFILLMENT)
        counts = report.counts()
        context.log.info("Deliveries %s %s: %s", store, day, counts)
        return dg.MaterializeResult(
            metadata={
                **{f"fulfillments_{key}": value for key, value in counts.items()},
                "deliveries": _deliveries_table(report),
                "failures": _failures_table(report),
                "ledger": dg.MetadataValue.json(summary.as_metadata()),
                "x3_calls": x3_metrics["total_calls"],
                "x3_retries": x3_metrics["total_retries"],
            }
        )

    return x3_deliveries
