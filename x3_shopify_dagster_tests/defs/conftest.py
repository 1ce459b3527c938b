"""Connector settings and runtime pointed at the session Shopify sandbox and a per-test database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from x3_shopify_dagster.defs.resources import ConnectorRuntime
from x3_shopify_dagster.settings import ConnectorSettings, StoreSettings, X3Settings


class ShiftableClock:
    """Real time plus an offset, so tests can step past the safety lag without sleeping."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


def x3_settings(x3_sandbox) -> X3Settings:
    user, password = x3_sandbox.basic_credentials
    return X3Settings(server_url=x3_sandbox.base_url, folder=x3_sandbox.folder, user=user, password=password)


def make_settings(sandbox, database_url: str, **overrides: object) -> ConnectorSettings:
    stores = {
        key: StoreSettings(shop_url=sandbox.shop_url(key), access_token=sandbox.access_token(key))
        for key in ("eu", "us")
    }
    values: dict[str, object] = {
        "stores": stores,
        "database_url": database_url,
        "partition_timezone": "Europe/Paris",
        "partition_start_date": (datetime.now(UTC) - timedelta(days=30)).date(),
        "shopify_safety_lag_seconds": 0,
        "shopify_overlap_minutes": 10,
        "sensor_initial_lookback_hours": 24 * 14,
    }
    values.update(overrides)
    return ConnectorSettings(_env_file=None, **values)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> ShiftableClock:
    return ShiftableClock()


@pytest.fixture
def runtime_factory(database_url: str, clock: ShiftableClock) -> Iterator[Callable[..., ConnectorRuntime]]:
    created: list[ConnectorRuntime] = []

    def factory(sandbox, *, x3_sandbox=None, **overrides: object) -> ConnectorRuntime:
        # Plus-plan buckets: these tests are about the Dagster layer; pacing has its own client tests.
        for store in ("eu", "us"):
            sandbox.set_rate_limit(store, bucket_size=20_000.0, restore_rate=1_000.0)
        if x3_sandbox is not None:
            overrides.setdefault("x3", x3_settings(x3_sandbox))
        runtime = ConnectorRuntime(make_settings(sandbox, database_url, **overrides), clock=clock)
        created.append(runtime)
        return runtime

    yield factory
    for runtime in created:
        runtime.close()
