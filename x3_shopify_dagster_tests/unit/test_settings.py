"""Configuration: typed, from the environment, failing at start-up with the variable name and the fix."""

from __future__ import annotations

import pytest

from x3_shopify_dagster.settings import SettingsError, load_settings

GOOD_STORE = {
    "X3SD_STORES__EU__SHOP_URL": "https://acme-eu.myshopify.com",
    "X3SD_STORES__EU__ACCESS_TOKEN": "shpat_super_secret_value",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch):
    for name in list(__import__("os").environ):
        if name.startswith("X3SD_"):
            monkeypatch.delenv(name)

    def set_env(values: dict[str, str]) -> None:
        for key, value in values.items():
            monkeypatch.setenv(key, value)

    return set_env


def _load():
    return load_settings(_env_file=None)


def test_stores_come_from_environment_groups(env):
    env({**GOOD_STORE, "X3SD_STORES__US__SHOP_URL": "https://acme-us.myshopify.com",
         "X3SD_STORES__US__ACCESS_TOKEN": "t2", "X3SD_STORES__US__API_VERSION": "2026-10"})
    settings = _load()
    assert list(settings.stores) == ["eu", "us"]
    assert settings.stores["us"].api_version == "2026-10"
    assert settings.stores["eu"].api_version == "2026-07"


def test_missing_store_names_the_variables_to_set(env):
    with pytest.raises(SettingsError) as caught:
        _load()
    assert "X3SD_STORES__<KEY>__SHOP_URL" in str(caught.value)


def test_missing_token_names_the_exact_variable(env):
    env({"X3SD_STORES__EU__SHOP_URL": "https://acme-eu.myshopify.com"})
    with pytest.raises(SettingsError) as caught:
        _load()
    assert "X3SD_STORES__EU__ACCESS_TOKEN: is not set" in str(caught.value)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://acme-eu.myshopify.com", "must use https"),
        ("https://acme-eu.example.com", "myshopify.com"),
        ("https://acme-eu.myshopify.com/admin", "myshopify.com"),
        ("https://user:pw@acme-eu.myshopify.com", "must not embed credentials"),
        ("acme-eu.myshopify.com", "absolute http(s) URL"),
    ],
)
def test_bad_shop_url_is_rejected_with_a_reason(env, url, expected):
    env({**GOOD_STORE, "X3SD_STORES__EU__SHOP_URL": url})
    with pytest.raises(SettingsError) as caught:
        _load()
    message = str(caught.value)
    assert "X3SD_STORES__EU__SHOP_URL" in message
    assert expected in message


def test_plain_http_is_allowed_only_on_loopback(env):
    env({**GOOD_STORE, "X3SD_STORES__EU__SHOP_URL": "http://127.0.0.1:8701/stores/eu"})
    assert _load().stores["eu"].shop_url == "http://127.0.0.1:8701/stores/eu"


def test_timezone_and_api_version_are_validated(env):
    env({**GOOD_STORE, "X3SD_PARTITION_TIMEZONE": "Mars/Olympus", "X3SD_STORES__EU__API_VERSION": "2026-05"})
    with pytest.raises(SettingsError) as caught:
        _load()
    message = str(caught.value)
    assert "X3SD_PARTITION_TIMEZONE" in message
    assert "X3SD_STORES__EU__API_VERSION" in message


def test_store_keys_must_be_partition_safe(env):
    env({"X3SD_STORES__E|U__SHOP_URL": "https://acme-eu.myshopify.com", "X3SD_STORES__E|U__ACCESS_TOKEN": "t"})
    with pytest.raises(SettingsError, match="partition keys"):
        _load()


def test_secrets_never_appear_in_errors_or_dumps(env):
    env({**GOOD_STORE, "X3SD_PARTITION_TIMEZONE": "nowhere"})
    with pytest.raises(SettingsError) as caught:
        _load()
    assert "shpat_super_secret_value" not in str(caught.value)
    env({"X3SD_PARTITION_TIMEZONE": "UTC"})
    settings = _load()
    assert "shpat_super_secret_value" not in repr(settings)
    assert "shpat_super_secret_value" not in str(settings.model_dump(mode="json"))


def test_x3_basic_auth_needs_user_and_password(env):
    env({**GOOD_STORE, "X3SD_X3__SERVER_URL": "https://x3.example.com", "X3SD_X3__FOLDER": "SEED"})
    with pytest.raises(SettingsError, match="X3SD_X3__PASSWORD"):
        _load()


LOC_A, LOC_B = "gid://shopify/Location/101", "gid://shopify/Location/102"


def test_one_site_map_is_enough_the_other_is_derived(env):
    env({**GOOD_STORE, "X3SD_STORES__EU__LOCATIONS__FR011": LOC_A})
    store = _load().stores["eu"]
    assert store.locations == {"FR011": LOC_A}
    assert store.location_sites == {LOC_A: "FR011"}  # fulfilments from that location ship from FR011


def test_location_sites_alone_feed_stock_only_where_one_location_ships_from_a_site(env):
    env({**GOOD_STORE, "X3SD_STORES__EU__LOCATION_SITES": '{"101": "fr011", "102": "FR011", "103": "US011"}'})
    store = _load().stores["eu"]
    assert store.location_sites[LOC_A] == "FR011"  # upper-cased: X3 site codes
    # FR011 ships from two locations: which one follows its stock is a choice the connector does not make.
    assert store.locations == {"US011": "gid://shopify/Location/103"}


def test_two_site_maps_that_disagree_are_refused(env):
    env({**GOOD_STORE, "X3SD_STORES__EU__LOCATIONS__FR011": LOC_A,
         "X3SD_STORES__EU__LOCATION_SITES": '{"101": "US011"}'})
    with pytest.raises(SettingsError, match="must agree"):
        _load()


def test_two_sites_on_one_location_without_location_sites_are_refused(env):
    env({**GOOD_STORE, "X3SD_STORES__EU__LOCATIONS__FR011": LOC_B, "X3SD_STORES__EU__LOCATIONS__FR012": LOC_B})
    with pytest.raises(SettingsError, match="same Shopify location"):
        _load()


def test_the_x3_token_file_key_can_come_from_the_env_file_like_every_setting(env, tmp_path):
    """X3SD_X3_TOKEN_KEY is a setting: a `.env` provides it, and the runtime's token file store encrypts with it."""
    from datetime import UTC, datetime, timedelta

    from cryptography.fernet import Fernet

    from x3_shopify_dagster.defs.resources import ConnectorRuntime
    from x3_shopify_dagster.x3.auth import EncryptedFileTokenStore, StoredTokens

    key = Fernet.generate_key().decode()
    token_file = tmp_path / "x3_tokens.enc"
    env_file = tmp_path / ".env"
    env_file.write_text(
        "".join(f"{name}={value}\n" for name, value in GOOD_STORE.items())
        + f"X3SD_X3_TOKEN_KEY={key}\nX3SD_X3__TOKEN_STORE_PATH={token_file}\n"
        + f"X3SD_DATABASE_URL=sqlite:///{tmp_path / 'connector.sqlite'}\n"
    )
    settings = load_settings(_env_file=env_file)
    assert settings.x3_token_key is not None
    assert key not in repr(settings)
    assert "X3SD_X3_TOKEN_KEY" not in __import__("os").environ

    runtime = ConnectorRuntime(settings)
    try:
        now = datetime.now(UTC)
        tokens = StoredTokens(access_token="access-abcdef123456", refresh_token="refresh-abcdef123456",
                              access_expires_at=now + timedelta(minutes=5), obtained_at=now)
        runtime.x3_token_store().save(tokens)
    finally:
        runtime.close()
    # Encrypted with that key: a store given the same key reads it back; the file holds no token in clear.
    assert b"refresh-abcdef123456" not in token_file.read_bytes()
    loaded = EncryptedFileTokenStore(token_file, environ={"X3SD_X3_TOKEN_KEY": key}).load()
    assert loaded is not None
    assert loaded.refresh_token.get_secret_value() == "refresh-abcdef123456"
