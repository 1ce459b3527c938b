"""The connector's runtime, handed to assets and sensors as a typed resource.

It is a plain object rather than a ConfigurableResource on purpose: access tokens and passwords are read from
the environment inside each process and never become resource or run config, which the Dagster UI displays.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime

from x3_shopify_dagster.domain.mapping import Mapping, load_mapping
from x3_shopify_dagster.settings import ConnectorSettings, load_settings
from x3_shopify_dagster.shopify import OrderReader, ShopifyClient
from x3_shopify_dagster.storage import ConnectorDatabase, OrderStaging, X3SnapshotStore
from x3_shopify_dagster.storage.ledger import PostingLedger
from x3_shopify_dagster.storage.stock import StockStore
from x3_shopify_dagster.x3 import BasicAuth, EncryptedFileTokenStore, OAuth2Auth, X3Client


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
        self._lock = threading.Lock()
        # Called with a store key before the stock sync reads the pending fulfilled quantities, to bring the
        # fulfilment records up to date first (wired to the fulfilment refresh; None: use the ledger as it is).
        self.refresh_pending: Callable[[str], None] | None = None

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

    def shopify_client(self, store: str) -> ShopifyClient:
        try:
            store_settings = self.settings.stores[store]
        except KeyError:
            known = ", ".join(self.settings.stores)
            raise KeyError(f"store {store!r} is not configured (configured: {known})") from None
        return ShopifyClient(
            store_settings.shop_url,
            store_settings.access_token,
            api_version=store_settings.api_version,
            timeout_s=self.settings.shopify_timeout_seconds,
        )

    def ledger(self) -> PostingLedger:
        return PostingLedger(self.database)

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

    def x3_client(self) -> X3Client:
        """A client for the configured X3 folder; credentials come from the environment, never run config."""
        x3 = self.settings.x3
        config = x3.client_config()
        auth: BasicAuth | OAuth2Auth
        if x3.auth_mode == "basic":
            # X3Settings refuses basic auth without both (checked at start-up).
            auth = BasicAuth(x3.user or "", x3.password or "")
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
        if self._database is not None:
            self._database.dispose()
