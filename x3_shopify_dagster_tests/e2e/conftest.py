"""The Dagster-layer fixtures (a shiftable clock, connector runtimes on the sandboxes) for the end-to-end tests."""

from x3_shopify_dagster_tests.defs.conftest import clock, runtime_factory  # noqa: F401 (pytest fixtures)
