"""Shared fixtures: the sandbox servers (one per test session) and the connector database (SQLite and PostgreSQL)."""

pytest_plugins = [
    "x3_shopify_dagster_tests.fixtures.database",
    "x3_shopify_dagster_tests.fixtures.shopify_sandbox",
    "x3_shopify_dagster_tests.fixtures.x3_sandbox",
]
