"""Configuration of one Shopify sandbox (several stores served by one server)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from x3_shopify_dagster.sandboxes import demo_data

SUPPORTED_API_VERSIONS = ("2026-01", "2026-04", "2026-07", "2026-10")
# From 2026-04 the @idempotent directive is mandatory on inventory writes (optional in 2026-01).
IDEMPOTENCY_REQUIRED_FROM = "2026-04"
MAX_PAGE_SIZE = 250
MAX_QUERY_COST = 1000
MAX_CONCURRENT_BULK_QUERIES = 5  # per shop, API 2026-01 and later


@dataclass(frozen=True)
class SandboxConfig:
    stores: tuple[str, ...] = ("eu", "us")  # keys of demo_data.STORES
    seed: int = 7
    orders_per_store: int = 40  # seeded history, spread over the last `history_days` days
    history_days: int = 5
    bucket_size: float = 2000.0  # per-token leaky bucket; Standard plan. Shopify Plus is 20000 / 1000.
    restore_rate: float = 100.0
    latency_s: float = 0.0  # added to every GraphQL request
    # The clock of the store (order timestamps, updatedAt bumps). Default: real UTC time. The rate-limit
    # bucket always uses the real monotonic clock.
    clock: Callable[[], datetime] | None = None

    def __post_init__(self) -> None:
        known = {s.key for s in demo_data.STORES}
        unknown = [s for s in self.stores if s not in known]
        if unknown:
            raise ValueError(f"unknown store keys {unknown}; known: {sorted(known)}")
        if len(set(self.stores)) != len(self.stores) or not self.stores:
            raise ValueError("stores must be a non-empty tuple of distinct keys")
        if self.orders_per_store < 0 or self.history_days < 1:
            raise ValueError("orders_per_store must be >= 0 and history_days >= 1")
        if self.bucket_size <= 0 or self.restore_rate <= 0:
            raise ValueError("bucket_size and restore_rate must be positive")
