"""The Dagster-layer fixtures (a shiftable clock, connector runtimes on the sandboxes) for the end-to-end tests."""

import pytest

from x3_shopify_dagster_tests.defs.conftest import clock, runtime_factory  # noqa: F401 (pytest fixtures)


@pytest.fixture
def database_engine() -> str:
    # SQLite only: each end-to-end test takes ~20 s on a busy machine, and the storage layer's own tests already
    # run on both engines (these also pass on PostgreSQL: `-k postgres` after removing this override).
    return "sqlite"
