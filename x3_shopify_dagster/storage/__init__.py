"""The connector's own database (SQLite file by default, PostgreSQL by URL): order staging now, the posting
ledger later. Knows nothing of Dagster."""

from x3_shopify_dagster.storage.database import ConnectorDatabase
from x3_shopify_dagster.storage.order_staging import (
    OrderStaging,
    OrderVersion,
    StagedOrder,
    StageOutcome,
    StagingCounts,
)

__all__ = [
    "ConnectorDatabase",
    "OrderStaging",
    "OrderVersion",
    "StageOutcome",
    "StagedOrder",
    "StagingCounts",
]
