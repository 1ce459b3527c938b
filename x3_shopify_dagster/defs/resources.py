"""The connector's runtime, handed to assets and sensors as a typed resource.

It is a plain object rather than a ConfigurableResource on purpose: access tokens and passwords are read from
the environment inside each process and never become resource or run config, which the Dagster UI displays.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime

from x3_shopify_dagster.domain.mapping import Mapping, load_mapping
from x3_shopify_dagster.settings import ConnectorSettings, StoreSettings, load_settings
from x3_shopify_dagster.shopify import OrderReader, ShopifyClient
from x3_shopify_dagster.shopify.oauth import (
    ClientCredentialsAuth,
    OAuthTokenAuth,
    ShopifyAuth,
    ShopifyTokenEndpoint,
    StaticTokenAuth,
)
from x3_shopify_dagster.storage import ConnectorDatabase, OrderStaging, X3SnapshotStore
from x3_shopify_dagster.storage.ledger import PostingLedger
from x3_shopify_dagster.storage.vault import Vault, VaultKeys
from x3_shopify_dagster.storage.vault_token_stores import VaultShopifyTokenStore, VaultTokenStore
from x3_shopify_dagster.x3 import BasicAuth, EncryptedFileTokenStore, OAuth2Auth, TokenStore, X3Client


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ConnectorRuntime:
    """Settings, clients and the connector database, created lazily once per process."""

    def __init__(
        self,
        settings: ConnectorSettings | None = None,
        *,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._settings = settings
        self.clock = clock
        self._database: ConnectorDatabase | None = None
        self._vault: Vault | None = None
        self._shopify_auths: dict[str, ShopifyAuth] = {}
        self._lock = threading.Lock()

    @property
    def settings(self) -> ConnectorSettings:
        if self._settings is None:
            self._settings = load_settings()
        return self._settings

    @property
    def database(self) -> ConnectorDatabase:
        with self._lock:
            if self._database is None:
                database = ConnectorDatabase(self.settings.database_url)
                database.migrate()
                self._database = database
            return self._database

    def order_staging(self) -> OrderStaging:
        return OrderStaging(self.database)

    def vault(self) -> Vault:
        """The secret vault in the connector database, under X3SD_VAULT_KEY (+ X3SD_VAULT_OLD_KEYS)."""
        database = self.database
        with self._lock:
            if self._vault is None:
                keys = VaultKeys.from_values(self.settings.vault_key, self.settings.vault_old_keys)
                self._vault = Vault(database, keys)
            return self._vault

    def shopify_auth(self, store: str) -> ShopifyAuth:
        """The store's auth object, one per process: it caches the token and renews it when due."""
        store_settings = self._store_settings(store)
        with self._lock:
            auth = self._shopify_auths.get(store)
        if auth is not None:
            return auth
        if store_settings.auth_mode == "token":
            auth = StaticTokenAuth(store_settings.access_token or "")
        else:
            endpoint = ShopifyTokenEndpoint(
                store_settings.shop_url, store_settings.client_id or "", store_settings.client_secret or "",
                timeout_s=self.settings.shopify_timeout_seconds, now=self.clock,
            )
            token_store = VaultShopifyTokenStore(self.vault(), store)
            auth_class = OAuthTokenAuth if store_settings.auth_mode == "oauth" else ClientCredentialsAuth
            auth = auth_class(endpoint, token_store, store_key=store, now=self.clock)
        with self._lock:
            return self._shopify_auths.setdefault(store, auth)

    def shopify_client(self, store: str) -> ShopifyClient:
        store_settings = self._store_settings(store)
        return ShopifyClient(
            store_settings.shop_url,
            auth=self.shopify_auth(store),
            api_version=store_settings.api_version,
            timeout_s=self.settings.shopify_timeout_seconds,
        )

    def _store_settings(self, store: str) -> StoreSettings:
        try:
            return self.settings.stores[store]
        except KeyError:
            known = ", ".join(self.settings.stores)
            raise KeyError(f"store {store!r} is not configured (configured: {known})") from None

    def ledger(self) -> PostingLedger:
        return PostingLedger(self.database)

    def mapping(self) -> Mapping:
        """The validated mapping file (X3SD_MAPPING_PATH); errors name the YAML path and the fix."""
        path = self.settings.mapping_path
        if not path:
            raise ValueError("X3SD_MAPPING_PATH is not set: point it at the YAML mapping (see docs/mapping.md)")
        return load_mapping(path)

    def snapshots(self) -> X3SnapshotStore:
        return X3SnapshotStore(self.database)

    def x3_client(self) -> X3Client:
        """A client for the configured X3 folder; credentials come from the environment, never run config."""
        x3 = self.settings.x3
        config = x3.client_config()
        auth: BasicAuth | OAuth2Auth
        if x3.auth_mode == "basic":
            # X3Settings refuses basic auth without both (checked at start-up).
            auth = BasicAuth(x3.user or "", x3.password or "")
        else:
            store: TokenStore
            if x3.token_store == "vault":  # noqa: S105 (a setting value, not a secret)
                store = VaultTokenStore(self.vault())
            else:
                store = EncryptedFileTokenStore(x3.token_store_path)
            auth = OAuth2Auth.for_config(config, x3.client_id or "", x3.client_secret or "", store,
                                         token_url=x3.token_url)
        return X3Client(config, auth)

    def order_reader(self, client: ShopifyClient) -> OrderReader:
        return OrderReader(
            client,
            page_size=self.settings.shopify_page_size,
            line_items_page_size=self.settings.shopify_line_items_page_size,
            shipping_lines_page_size=self.settings.shopify_shipping_lines_page_size,
        )

    def close(self) -> None:
        with self._lock:
            auths, self._shopify_auths = list(self._shopify_auths.values()), {}
        for auth in auths:
            auth.close()
        if self._database is not None:
            self._database.dispose()
