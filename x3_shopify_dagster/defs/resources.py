"""The connector's runtime, handed to assets and sensors as a typed resource.

It is a plain object rather than a ConfigurableResource on purpose: access tokens and passwords are read from
the environment inside each process and never become resource or run config, which the Dagster UI displays.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from x3_shopify_dagster.domain.mapping import Mapping, load_mapping
from x3_shopify_dagster.redaction import install_log_redaction, register_secret
from x3_shopify_dagster.settings import ConnectorSettings, StoreSettings, load_settings, register_settings_secrets
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
from x3_shopify_dagster.storage.stock import StockStore
from x3_shopify_dagster.storage.vault import Vault, VaultKeys
from x3_shopify_dagster.storage.vault_token_stores import VaultShopifyTokenStore, VaultTokenStore
from x3_shopify_dagster.x3 import (
    BasicAuth,
    EncryptedFileTokenStore,
    JwtAuth,
    OAuth2Auth,
    TokenStore,
    X3Auth,
    X3Client,
)


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
        # Every process that runs connector code scrubs secrets from its logs, Dagster's included.
        install_log_redaction()
        if settings is not None:
            register_settings_secrets(settings)
        # Called with a store key before the stock sync reads the pending fulfilled quantities, to bring the
        # fulfilment records up to date first (wired to the fulfilment refresh; None: use the ledger as it is).
        self.refresh_pending: Callable[[str], None] | None = None

    @property
    def settings(self) -> ConnectorSettings:
        if self._settings is None:
            self._settings = load_settings()
            register_settings_secrets(self._settings)
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
        # The runtime's clock: leases, events and windows read one time source.
        return PostingLedger(self.database, clock=self.clock)

    def mapping(self) -> Mapping:
        """The validated mapping file (X3SD_MAPPING_PATH); errors name the YAML path and the fix."""
        path = self.settings.mapping_path
        if not path:
            raise ValueError("X3SD_MAPPING_PATH is not set: point it at the YAML mapping (see docs/mapping.md)")
        return load_mapping(path)

    def stock_store(self) -> StockStore:
        return StockStore(self.database)

    def snapshots(self) -> X3SnapshotStore:
        return X3SnapshotStore(self.database)

    def x3_token_store(self) -> TokenStore:
        """Where the X3 OAuth2 token pair lives: the connector database's vault, or an encrypted file."""
        if self.settings.x3.token_store == "vault":  # noqa: S105 (a setting value, not a secret)
            return VaultTokenStore(self.vault())
        key = self.settings.x3_token_key
        # The settings read the key from the environment or `.env`; the process environment stays the fallback
        # (a key exported after the settings were loaded).
        environ = {EncryptedFileTokenStore.DEFAULT_KEY_ENV: key.get_secret_value()} if key else os.environ
        store = EncryptedFileTokenStore(self.settings.x3.token_store_path, environ=environ)
        register_secret(environ.get(store.key_env))  # the file's key is a secret like the tokens it protects
        return store

    def x3_oauth2(self) -> OAuth2Auth:
        """OAuth2 with the configured client, token endpoint and CA bundle, tokens in `x3_token_store()`."""
        x3 = self.settings.x3
        return OAuth2Auth.for_config(x3.client_config(), x3.client_id or "", x3.client_secret or "",
                                     self.x3_token_store(), token_url=x3.token_url)

    def x3_auth(self) -> X3Auth:
        x3 = self.settings.x3
        # X3Settings refuses a mode without its credentials (checked at start-up).
        if x3.auth_mode == "basic":
            return BasicAuth(x3.user or "", x3.password or "")
        if x3.auth_mode == "jwt":
            return JwtAuth(x3.client_id or "", x3.client_secret or "", x3.user or "", audience=x3.jwt_audience,
                           lifetime_s=x3.jwt_lifetime_seconds, clock_skew_s=x3.jwt_clock_skew_seconds)
        return self.x3_oauth2()

    def x3_client(self) -> X3Client:
        """A client for the configured X3 folder; credentials come from the environment, never run config."""
        return X3Client(self.settings.x3.client_config(), self.x3_auth())

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


def shopify_credentials_fix(settings: ConnectorSettings, store: str, *, scopes: str = "") -> str:
    """What to do when Shopify refuses a store's credentials, for the store's auth mode (never the token)."""
    prefix = f"X3SD_STORES__{store.upper()}__"
    needs = f" (it needs {scopes})" if scopes else ""
    mode = settings.stores[store].auth_mode if store in settings.stores else "token"
    if mode == "oauth":
        action = f"Run `x3sd shopify connect {store}` to authorize the app again{needs}"
    elif mode == "client_credentials":
        action = f"Check {prefix}CLIENT_ID / {prefix}CLIENT_SECRET and the app's installation and scopes{needs}"
    else:
        action = f"Replace {prefix}ACCESS_TOKEN{needs} (or check {prefix}SHOP_URL), reload the code location"
    return f"{action}, then re-materialize this partition."

