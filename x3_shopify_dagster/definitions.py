"""Code location entry point: ``dagster dev -m x3_shopify_dagster.definitions`` (or workspace.yaml)."""

from __future__ import annotations

import dagster as dg

from x3_shopify_dagster.defs.partitions import build_partitions
from x3_shopify_dagster.defs.resources import ConnectorRuntime
from x3_shopify_dagster.defs.shopify.assets import build_shopify_orders_asset
from x3_shopify_dagster.defs.shopify.sensors import build_shopify_orders_sensor
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
    assets: list[dg.AssetsDefinition] = [orders]
    if settings.x3.configured:
        assets += [x3_customers, x3_gl_accounts]
    return dg.Definitions(
        assets=assets,
        sensors=[build_shopify_orders_sensor(orders, settings)],
        resources={"connector": runtime},
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions()
