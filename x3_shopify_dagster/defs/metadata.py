"""Materialization and output metadata pass through here before Dagster stores it (the UI shows it to anyone
who can open the run): every string, JSON value and table cell is scrubbed by the redaction layer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg

from x3_shopify_dagster.redaction import scrub, scrub_value


def redact_metadata_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dg.TextMetadataValue):
        return dg.MetadataValue.text(scrub(value.text))
    if isinstance(value, dg.MarkdownMetadataValue):
        return dg.MetadataValue.md(scrub(value.md_str))
    if isinstance(value, dg.JsonMetadataValue):
        return dg.MetadataValue.json(scrub_value(value.data))
    if isinstance(value, dg.TableMetadataValue):
        records = [dg.TableRecord(scrub_value(dict(record.data))) for record in value.records]
        return dg.MetadataValue.table(records=records, schema=value.schema)
    if isinstance(value, dg.UrlMetadataValue):
        return dg.MetadataValue.url(scrub(value.url))
    if isinstance(value, dg.MetadataValue):
        return value  # numbers, booleans, timestamps, asset keys... (some are tuples underneath: never rebuilt)
    if isinstance(value, Mapping) or type(value) in (list, tuple):
        return scrub_value(value)
    return value  # numbers, booleans, timestamps, asset keys: nothing to hide


def redact_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``metadata`` with every secret masked (keys included, should one ever carry a value)."""
    return {scrub(key): redact_metadata_value(value) for key, value in metadata.items()}
