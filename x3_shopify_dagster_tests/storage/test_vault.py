"""The secret vault on SQLite and PostgreSQL: encryption at rest, atomic replace, locked updates, rotation."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from x3_shopify_dagster.shopify.errors import ShopifyTokenStoreError
from x3_shopify_dagster.shopify.oauth import ShopifyTokens
from x3_shopify_dagster.storage import ConnectorDatabase
from x3_shopify_dagster.storage.vault import (
    VAULT_KEY_ENV,
    VAULT_OLD_KEYS_ENV,
    Vault,
    VaultKeyError,
    VaultKeys,
    generate_key,
    vault_secrets,
)
from x3_shopify_dagster.storage.vault_token_stores import VaultShopifyTokenStore, VaultTokenStore
from x3_shopify_dagster.x3 import OAuth2Auth, StoredTokens, TokenStoreError

KEY_A, KEY_B, KEY_C = generate_key(), generate_key(), generate_key()


def vault_with(db: ConnectorDatabase, primary: str, old: str | None = None) -> Vault:
    return Vault(db, VaultKeys.from_values(primary, old))


def raw_ciphertexts(db: ConnectorDatabase) -> dict[str, str]:
    with db.transaction() as connection:
        return {row.name: row.ciphertext for row in connection.execute(select(vault_secrets))}


def test_secrets_are_encrypted_at_rest_and_read_back(connector_db: ConnectorDatabase) -> None:
    vault = vault_with(connector_db, KEY_A)
    vault.put("shopify/eu/token", b"shpat_very_secret_value")
    assert vault.get("shopify/eu/token") == b"shpat_very_secret_value"
    assert vault.get("missing") is None
    stored = raw_ciphertexts(connector_db)["shopify/eu/token"]
    assert 'shpat_very_secret_value' not in stored
    assert KEY_A not in stored


def test_put_replaces_atomically_and_counts_versions(connector_db: ConnectorDatabase) -> None:
    vault = vault_with(connector_db, KEY_A)
    vault.put_json("pair", {"access": "a1", "refresh": "r1"})
    vault.put_json("pair", {"access": "a2", "refresh": "r2"})
    assert vault.get_json("pair") == {"access": "a2", "refresh": "r2"}
    [entry] = vault.entries()
    assert (entry.name, entry.version, entry.key) == ("pair", 2, "current")
    assert vault.delete('pair')
    assert vault.get('pair') is None


def test_missing_or_malformed_key_names_the_variable() -> None:
    with pytest.raises(VaultKeyError, match=VAULT_KEY_ENV):
        VaultKeys.from_values(None)
    with pytest.raises(VaultKeyError, match=VAULT_KEY_ENV):
        VaultKeys.from_environ({})
    with pytest.raises(VaultKeyError, match=VAULT_KEY_ENV) as bad:
        VaultKeys.from_values("not-a-key")
    assert "not-a-key" not in str(bad.value)
    with pytest.raises(VaultKeyError, match=VAULT_OLD_KEYS_ENV):
        VaultKeys.from_values(KEY_A, f"{KEY_B},garbage")


def test_wrong_key_is_a_clear_error_and_overwrites_nothing(connector_db: ConnectorDatabase) -> None:
    vault_with(connector_db, KEY_A).put("x3/oauth2", b"pair-1")
    before = raw_ciphertexts(connector_db)
    wrong = vault_with(connector_db, KEY_B)
    with pytest.raises(VaultKeyError, match=f"{VAULT_KEY_ENV}.*{VAULT_OLD_KEYS_ENV}") as error:
        wrong.get("x3/oauth2")
    assert "pair-1" not in str(error.value)
    # update() decrypts before it writes: a wrong key never replaces the only valid pair
    with pytest.raises(VaultKeyError):
        wrong.update("x3/oauth2", lambda _current: b"overwritten")
    with pytest.raises(VaultKeyError, match="rolled back"):
        wrong.rotate()
    assert raw_ciphertexts(connector_db) == before
    assert vault_with(connector_db, KEY_A).get("x3/oauth2") == b"pair-1"
    assert [e.key for e in wrong.entries()] == ["none"]


def test_rotation_re_encrypts_every_secret_under_the_new_key(connector_db: ConnectorDatabase) -> None:
    old = vault_with(connector_db, KEY_A)
    for name in ("shopify/eu/token", "shopify/us/token", "x3/oauth2"):
        old.put(name, name.encode())
    rotating = vault_with(connector_db, KEY_B, old=KEY_A)
    assert {e.key for e in rotating.entries()} == {"old"}
    report = rotating.rotate()
    assert report.rotated == ("shopify/eu/token", "shopify/us/token", "x3/oauth2")
    assert {e.key for e in rotating.entries()} == {"current"}
    new_only = vault_with(connector_db, KEY_B)  # the old key can now be dropped
    assert all(new_only.get(name) == name.encode() for name in report.rotated)
    with pytest.raises(VaultKeyError):
        old.get("x3/oauth2")


def test_rotation_is_all_or_nothing(connector_db: ConnectorDatabase) -> None:
    vault_with(connector_db, KEY_A).put("a", b"under A")
    vault_with(connector_db, KEY_C).put("b", b"under C, a key nobody configured")
    before = raw_ciphertexts(connector_db)
    with pytest.raises(VaultKeyError, match="'b'"):
        vault_with(connector_db, KEY_B, old=KEY_A).rotate()
    assert raw_ciphertexts(connector_db) == before  # "a" was not re-encrypted either


def test_concurrent_updates_are_serialised(connector_db: ConnectorDatabase) -> None:
    """Read-modify-write under the vault lock: no increment is lost (what keeps a refresh token from being spent
    twice by two processes)."""
    vault = vault_with(connector_db, KEY_A)
    vault.put_json("counter", {"n": 0})
    errors: list[BaseException] = []

    def bump() -> None:
        try:
            for _ in range(5):
                vault.update_json("counter", lambda current: {"n": current["n"] + 1})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert vault.get_json("counter") == {"n": 20}


def test_concurrent_saves_leave_one_complete_value(connector_db: ConnectorDatabase) -> None:
    vault = vault_with(connector_db, KEY_A)
    values = {f"pair-{i}".encode() for i in range(6)}
    threads = [threading.Thread(target=vault.put, args=("pair", value)) for value in values]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert vault.get("pair") in values
    assert vault.entries()[0].version == len(values)


def _x3_tokens(access: str) -> StoredTokens:
    now = datetime.now(UTC)
    return StoredTokens(access_token=SecretStr(access), refresh_token=SecretStr("refresh-" + access),
                        access_expires_at=now + timedelta(minutes=5), obtained_at=now)


def test_vault_token_store_keeps_x3_oauth2_pairs(connector_db: ConnectorDatabase) -> None:
    store = VaultTokenStore(vault_with(connector_db, KEY_A))
    assert store.load() is None
    store.save(_x3_tokens("access-1"))
    loaded = store.load()
    assert loaded is not None
    assert loaded.refresh_token.get_secret_value() == 'refresh-access-1'
    # usable wherever the X3 client takes a TokenStore
    auth = OAuth2Auth("http://127.0.0.1:1/token", "client", "secret", store)
    assert auth.refresh_token_expires_at is None
    auth.close()
    with pytest.raises(TokenStoreError, match=VAULT_KEY_ENV):
        VaultTokenStore(vault_with(connector_db, KEY_B)).load()


def test_vault_shopify_token_store_round_trips_and_updates(connector_db: ConnectorDatabase) -> None:
    vault = vault_with(connector_db, KEY_A)
    store = VaultShopifyTokenStore(vault, "eu")
    now = datetime.now(UTC)
    tokens = ShopifyTokens(access_token=SecretStr("shpat_a"), scopes=("read_orders",), expires_at=now,
                           refresh_token=SecretStr("shprt_r"), obtained_at=now, grant="authorization_code")
    store.save(tokens)
    assert store.load() == tokens
    kept = store.update(lambda current: None)
    assert kept == tokens
    renewed = store.update(lambda current: current.model_copy(update={"access_token": SecretStr("shpat_b")}))
    assert renewed is not None
    assert renewed.access_token.get_secret_value() == 'shpat_b'
    assert 'shpat_b' not in repr(renewed)
    assert 'shpat_b' not in raw_ciphertexts(connector_db)['shopify/eu/token']
    with pytest.raises(ShopifyTokenStoreError, match=VAULT_KEY_ENV):
        VaultShopifyTokenStore(vault_with(connector_db, KEY_B), "eu").load()
