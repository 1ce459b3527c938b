"""``x3sd shopify connect`` and ``x3sd vault ...`` as an operator runs them, against the sandbox over HTTP; then
the orders asset of an oauth-mode store reads its token from the vault."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import httpx
import pytest

from x3_shopify_dagster import cli
from x3_shopify_dagster.definitions import build_definitions
from x3_shopify_dagster.defs.partitions import partition_key
from x3_shopify_dagster.defs.resources import ConnectorRuntime
from x3_shopify_dagster.domain.windows import business_day
from x3_shopify_dagster.settings import ConnectorSettings, StoreSettings
from x3_shopify_dagster.storage.vault import generate_key


def _scripted_browser(url: str) -> None:
    with httpx.Client(timeout=10.0) as http:
        assert http.get(url, follow_redirects=True).status_code == 200


@pytest.fixture
def oauth_env(monkeypatch, fresh_shopify_sandbox, tmp_path):
    key = generate_key()
    env = {
        "X3SD_STORES__EU__SHOP_URL": fresh_shopify_sandbox.shop_url("eu"),
        "X3SD_STORES__EU__AUTH_MODE": "oauth",
        "X3SD_STORES__EU__CLIENT_ID": fresh_shopify_sandbox.app_client_id,
        "X3SD_STORES__EU__CLIENT_SECRET": fresh_shopify_sandbox.app_client_secret,
        "X3SD_VAULT_KEY": key,
        "X3SD_DATABASE_URL": f"sqlite:///{tmp_path / 'connector.db'}",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # no stray .env
    return env


def test_connect_then_list_then_rotate_the_vault_key(oauth_env, monkeypatch, capsys):
    assert cli.main(["shopify", "connect", "eu", "--port", "0", "--timeout", "30"], open_url=_scripted_browser) == 0
    out = capsys.readouterr().out
    assert '/admin/oauth/authorize?' in out
    assert 'Store eu connected' in out
    assert 'read_orders' in out

    assert cli.main(["vault", "list"]) == 0
    assert "shopify/eu/token" in capsys.readouterr().out

    old_key, new_key = oauth_env["X3SD_VAULT_KEY"], generate_key()
    monkeypatch.setenv("X3SD_VAULT_KEY", new_key)
    assert cli.main(["vault", "list"]) == 1  # the new key alone cannot read it yet
    assert "key: none" in capsys.readouterr().out
    monkeypatch.setenv("X3SD_VAULT_OLD_KEYS", old_key)
    assert cli.main(["vault", "rotate-key"]) == 0
    assert "Re-encrypted 1 secret(s)" in capsys.readouterr().out
    monkeypatch.delenv("X3SD_VAULT_OLD_KEYS")
    assert cli.main(["vault", "list"]) == 0
    listing = capsys.readouterr().out
    assert 'key: current' in listing
    assert old_key not in listing
    assert new_key not in listing


def test_rotate_with_a_wrong_key_fails_naming_the_variable(oauth_env, monkeypatch, capsys):
    assert cli.main(["shopify", "connect", "eu", "--port", "0", "--timeout", "30"], open_url=_scripted_browser) == 0
    monkeypatch.setenv("X3SD_VAULT_KEY", generate_key())
    assert cli.main(["vault", "rotate-key"]) == 1
    err = capsys.readouterr().err
    assert 'X3SD_VAULT_KEY' in err
    assert 'nothing was changed' in err


def test_oauth_store_without_vault_key_fails_at_start_up_naming_it(oauth_env, monkeypatch, capsys):
    monkeypatch.delenv("X3SD_VAULT_KEY")
    assert cli.main(["settings"]) == 2
    assert "X3SD_VAULT_KEY" in capsys.readouterr().err


def test_orders_asset_runs_with_an_oauth_store(fresh_shopify_sandbox, database_url):
    """The asset's runtime builds an OAuth client from the vault; the token was written by a connect."""
    from x3_shopify_dagster.shopify.oauth_connect import ShopifyConnector, run_in_thread
    from x3_shopify_dagster.storage.vault_token_stores import VaultShopifyTokenStore

    stores = {
        "eu": StoreSettings(shop_url=fresh_shopify_sandbox.shop_url("eu"), auth_mode="oauth",
                            client_id=fresh_shopify_sandbox.app_client_id,
                            client_secret=fresh_shopify_sandbox.app_client_secret),
        "us": StoreSettings(shop_url=fresh_shopify_sandbox.shop_url("us"),
                            access_token=fresh_shopify_sandbox.access_token("us")),
    }
    fresh_shopify_sandbox.set_rate_limit("eu", bucket_size=20_000.0, restore_rate=1_000.0)
    settings = ConnectorSettings(_env_file=None, stores=stores, database_url=database_url, vault_key=generate_key(),
                                 partition_timezone="Europe/Paris", shopify_safety_lag_seconds=0,
                                 partition_start_date=(datetime.now(UTC) - timedelta(days=30)).date())
    runtime = ConnectorRuntime(settings)
    try:
        ShopifyConnector(fresh_shopify_sandbox.shop_url("eu"), fresh_shopify_sandbox.app_client_id,
                         fresh_shopify_sandbox.app_client_secret, VaultShopifyTokenStore(runtime.vault(), "eu"),
                         store_key="eu", port=0).connect(lambda url: run_in_thread(lambda: _scripted_browser(url)))
        day = business_day(datetime.now(UTC) - timedelta(days=2), "Europe/Paris")
        expected = [o for o in fresh_shopify_sandbox.state.orders("eu")
                    if business_day(o.updated_at, "Europe/Paris") == day]
        assert expected
        asset = build_definitions(settings, runtime=runtime).resolve_assets_def("shopify_orders")
        with dg.instance_for_test() as instance:
            result = dg.materialize([asset], partition_key=partition_key(day, "eu"), instance=instance)
        assert result.success
        metadata = result.asset_materializations_for_node("shopify_orders")[0].metadata
        assert metadata["orders_new"].value == len(expected)
        assert str(metadata).count("shpat_") == 0  # no token in the UI
    finally:
        runtime.close()
