"""The one partitions definition every store-scoped asset shares: business day x store."""

from __future__ import annotations

from datetime import date

import dagster as dg

from x3_shopify_dagster.settings import ConnectorSettings

DATE_DIMENSION = "date"
STORE_DIMENSION = "store"


def build_partitions(settings: ConnectorSettings) -> dg.MultiPartitionsDefinition:
    """Days in the configured business timezone (today included, so sensors can target it) x configured stores."""
    daily = dg.DailyPartitionsDefinition(
        start_date=settings.partition_start_date.isoformat(),
        timezone=settings.partition_timezone,
        end_offset=1,
    )
    stores = dg.StaticPartitionsDefinition(list(settings.stores))
    return dg.MultiPartitionsDefinition({DATE_DIMENSION: daily, STORE_DIMENSION: stores})


def partition_key(day: date, store: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({DATE_DIMENSION: day.isoformat(), STORE_DIMENSION: store})


def split_partition_key(key: str | dg.MultiPartitionKey) -> tuple[date, str]:
    """(business day, store) of a partition key such as ``2026-11-27|eu``."""
    if isinstance(key, dg.MultiPartitionKey):
        dims = key.keys_by_dimension
    else:
        day_part, store_part = key.split("|", 1)
        dims = {DATE_DIMENSION: day_part, STORE_DIMENSION: store_part}
    return date.fromisoformat(dims[DATE_DIMENSION]), dims[STORE_DIMENSION]


# Runs of one flow on one (day, store) partition run one at a time (dagster.yaml limits this tag per value);
# different flows on the same partition may overlap: every write is exactly-once, whoever runs it.
LANE_TAG = "x3sd/lane"


def lane(flow: str, store: str, day: date | str) -> str:
    return f"{flow}|{store}|{day if isinstance(day, str) else day.isoformat()}"

