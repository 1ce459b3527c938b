"""Code location entry point: ``dagster dev -m x3_shopify_dagster.definitions`` (or workspace.yaml)."""

from __future__ import annotations

import dagster as dg

from x3_shopify_dagster.defs.connection_check import connection_check
from x3_shopify_dagster.defs.partitions import build_partitions
from x3_shopify_dagster.defs.resources import ConnectorRuntime
from x3_shopify_dagster.defs.shopify.assets import build_shopify_orders_asset
from x3_shopify_dagster.defs.shopify.fulfillments import (
    build_shopify_fulfillments_asset,
    build_shopify_fulfillments_sensor,
)
from x3_shopify_dagster.defs.shopify.sensors import build_shopify_orders_sensor
from x3_shopify_dagster.defs.stock import (
    build_shopify_inventory_levels_asset,
    build_x3_stock_movements_asset,
    build_x3_stock_sensor,
)
from x3_shopify_dagster.defs.x3.deliveries import build_x3_deliveries_asset
from x3_shopify_dagster.defs.x3.postings import build_x3_sales_invoices_asset
from x3_shopify_dagster.defs.x3.sensors import build_master_data_schedule, build_replay_sensor
from x3_shopify_dagster.defs.x3.snapshots import x3_customers, x3_gl_accounts
from x3_shopify_dagster.settings import ConnectorSettings, load_settings


def build_definitions(
    settings: ConnectorSettings | None = None, *, runtime: ConnectorRuntime | None = None
) -> dg.Definitions:
    """All definitions for one configuration. Stores and the business timezone shape the partitions."""
    settings = settings or load_settings()
    runtime = runtime or ConnectorRuntime(settings)
    partitions = build_partitions(settings)
    orders = build_shopify_orders_asset(partitions)
    if not settings.x3.configured:
        # The Shopify side alone (X3 not configured yet): pull and stage orders.
        return dg.Definitions(
            assets=[orders],
            sensors=[build_shopify_orders_sensor(orders, settings)],
            jobs=[connection_check],
            resources={"connector": runtime},
            executor=dg.in_process_executor,
        )
    invoices = build_x3_sales_invoices_asset(partitions, orders)
    fulfillments = build_shopify_fulfillments_asset(partitions)
    deliveries = build_x3_deliveries_asset(partitions, fulfillments, invoices)
    stock_movements = build_x3_stock_movements_asset(partitions)
    inventory_levels = build_shopify_inventory_levels_asset(partitions, stock_movements)
    return dg.Definitions(
        assets=[orders, x3_customers, x3_gl_accounts, invoices, fulfillments, deliveries, stock_movements,
                inventory_levels],
        sensors=[
            # One run per changed partition stages its orders, then posts them.
            build_shopify_orders_sensor(orders, settings, downstream=[invoices]),
            build_replay_sensor(invoices, settings),
            # Fulfilments on their own timestamps: one run per changed partition records them, then delivers them.
            build_shopify_fulfillments_sensor(fulfillments, deliveries, settings),
            # One run per (day, store) whose mapped sites moved in X3: stage the movements, then set the levels.
            build_x3_stock_sensor(stock_movements, inventory_levels, settings),
        ],
        schedules=[build_master_data_schedule(settings)],
        jobs=[connection_check],
        resources={"connector": runtime},
        # One process per run: steps run in the run's process (no per-step process start-up on small machines).
        executor=dg.in_process_executor,
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions()
