"""The connector's own database (SQLite file by default, PostgreSQL by URL): order staging now, the posting
ledger later. Knows nothing of Dagster."""

from x3_shopify_dagster.storage import ledger_schema as _ledger_schema  # noqa: F401  (registers tables)
from x3_shopify_dagster.storage import stock as _stock  # noqa: F401  (registers tables)
from x3_shopify_dagster.storage.database import ConnectorDatabase
from x3_shopify_dagster.storage.order_staging import (
    OrderStaging,
    OrderVersion,
    StagedOrder,
    StageOutcome,
    StagingCounts,
)
from x3_shopify_dagster.storage.vault import Vault, VaultError, VaultKeyError, VaultKeys
from x3_shopify_dagster.storage.x3_snapshots import SnapshotInfo, X3SnapshotStore

__all__ = [
    "ConnectorDatabase",
    "OrderStaging",
    "OrderVersion",
    "SnapshotInfo",
    "StageOutcome",
    "StagedOrder",
    "StagingCounts",
    "Vault",
    "VaultError",
    "VaultKeyError",
    "VaultKeys",
    "X3SnapshotStore",
]
