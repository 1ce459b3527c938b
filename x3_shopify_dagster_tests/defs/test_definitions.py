"""The code location loads, validates, and keeps its asset keys, partitions and sensors stable (snapshot)."""

from __future__ import annotations

import dagster as dg
import pytest

from x3_shopify_dagster.definitions import build_definitions
from x3_shopify_dagster.settings import ConnectorSettings, StoreSettings


@pytest.fixture
def settings() -> ConnectorSettings:
    return ConnectorSettings(
        _env_file=None,  # type: ignore[call-arg]
        stores={
            "eu": StoreSettings(shop_url="https://acme-eu.myshopify.com", access_token="t1"),
            "us": StoreSettings(shop_url="https://acme-us.myshopify.com", access_token="t2"),
        },
        partition_timezone="Europe/Paris",
        database_url="sqlite:///:memory:",
    )


def describe(defs: dg.Definitions) -> dict:
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        partitions = node.partitions_def
        described: dict = {"group": node.group_name, "deps": sorted(p.to_user_string() for p in node.parent_keys)}
        if isinstance(partitions, dg.MultiPartitionsDefinition):
            described["partitions"] = {
                dim.name: (
                    {"type": "daily", "timezone": dim.partitions_def.timezone,
                     "start": dim.partitions_def.start.date().isoformat(),
                     "end_offset": dim.partitions_def.end_offset}
                    if isinstance(dim.partitions_def, dg.TimeWindowPartitionsDefinition)
                    else {"type": "static", "keys": dim.partitions_def.get_partition_keys()}
                )
                for dim in partitions.partitions_defs
            }
        assets[key.to_user_string()] = described
    sensors = {
        sensor.name: {
            "interval_s": sensor.minimum_interval_seconds,
            "default_status": sensor.default_status.value,
            "targets": sorted(
                key.to_user_string()
                for target in sensor.targets
                for assets_def in target.assets_defs
                for key in assets_def.keys
            ),
        }
        for sensor in defs.get_repository_def().sensor_defs
    }
    repository = defs.get_repository_def()
    schedules = {
        schedule.name: {"cron": schedule.cron_schedule, "default_status": schedule.default_status.value}
        for schedule in repository.schedule_defs
    }
    checks = sorted(
        f"{key.asset_key.to_user_string()}:{key.name}"
        for assets_def in repository.assets_defs_by_key.values()
        for key in assets_def.check_keys
    )
    jobs = sorted(job.name for job in repository.get_all_jobs() if not job.name.startswith("__"))
    return {"assets": assets, "sensors": sensors, "schedules": schedules, "checks": checks, "jobs": jobs}


def test_definitions_load_and_validate(settings):
    defs = build_definitions(settings)
    dg.Definitions.validate_loadable(defs)


def test_definitions_snapshot(settings, snapshot):
    assert describe(build_definitions(settings)) == snapshot


def test_definitions_snapshot_with_x3(settings, snapshot):
    from x3_shopify_dagster.settings import X3Settings

    settings.x3 = X3Settings(server_url="https://x3.example.com", port=8124, folder="SEED", user="WS",
                             password="pw")
    defs = build_definitions(settings)
    dg.Definitions.validate_loadable(defs)
    assert describe(defs) == snapshot


def test_stores_are_configuration_not_code(settings):
    settings.stores["ca"] = StoreSettings(shop_url="https://acme-ca.myshopify.com", access_token="t3")
    defs = build_definitions(settings)
    partitions = defs.resolve_assets_def("shopify_orders").partitions_def
    assert isinstance(partitions, dg.MultiPartitionsDefinition)
    stores = next(d for d in partitions.partitions_defs if d.name == "store")
    assert stores.partitions_def.get_partition_keys() == ["eu", "us", "ca"]


def test_module_entry_point_reads_the_environment(monkeypatch):
    from x3_shopify_dagster import definitions

    for name in ("X3SD_STORES__EU__SHOP_URL", "X3SD_STORES__EU__ACCESS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("X3SD_STORES__EU__SHOP_URL", "https://acme-eu.myshopify.com")
    monkeypatch.setenv("X3SD_STORES__EU__ACCESS_TOKEN", "secret-token-value")
    monkeypatch.chdir("/")  # no stray .env
    loaded = definitions.defs()
    assert isinstance(loaded, dg.Definitions)
    assert loaded.resolve_assets_def("shopify_orders") is not None
