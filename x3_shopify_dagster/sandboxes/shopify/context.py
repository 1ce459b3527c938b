"""What a resolver needs to know about the request it serves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from x3_shopify_dagster.sandboxes.shopify.bulk import BulkRunner
    from x3_shopify_dagster.sandboxes.shopify.state import SandboxState


@dataclass
class BulkScope:
    """Set while a bulk query runs: connections return everything and the root returns one chunk."""

    chunk_start: int = 0
    chunk_size: int = 250
    root_records: list[Any] | None = None  # the snapshot, taken on first use
    root_keys: list[Any] | None = None

    def chunk(self) -> tuple[list[Any], list[Any]]:
        records, keys = self.root_records or [], self.root_keys or []
        end = self.chunk_start + self.chunk_size
        return records[self.chunk_start:end], keys[self.chunk_start:end]


@dataclass
class RequestContext:
    state: SandboxState
    store: str
    api_version: str
    bulk_runner: BulkRunner | None = None
    operation_name: str | None = None
    bulk: BulkScope | None = None
    scopes: frozenset[str] = frozenset()  # of the request's access token
