"""Fixtures for the storage tests (database fixtures: x3_shopify_dagster_tests.fixtures.database)."""

from __future__ import annotations

import pytest

from x3_shopify_dagster.storage import ConnectorDatabase, OrderStaging
from x3_shopify_dagster_tests.storage.factories import FixedClock


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def staging(connector_db: ConnectorDatabase, clock: FixedClock) -> OrderStaging:
    return OrderStaging(connector_db, clock=clock)
