"""Fixtures for the stock sync tests: both sandboxes over real HTTP, a per-test connector database, and a
`StockPusher` factory wired to them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from x3_shopify_dagster.posting.stock import StockPusher
from x3_shopify_dagster.sandboxes.shopify import ShopifySandbox
from x3_shopify_dagster.sandboxes.x3 import X3Sandbox
from x3_shopify_dagster.shopify import ShopifyClient
from x3_shopify_dagster.shopify.inventory import InventoryGateway
from x3_shopify_dagster.storage import ConnectorDatabase
from x3_shopify_dagster.storage.ledger import PostingLedger
from x3_shopify_dagster.storage.stock import StockStore
from x3_shopify_dagster.x3 import BasicAuth, X3Client, X3Config

STORE = "eu"
SITE = "FR011"


class ManualClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def location_gid(sandbox: ShopifySandbox, store: str = STORE) -> str:
    return f"gid://shopify/Location/{sandbox.state.store(store).default_location.legacy_id}"


def shopify_level(sandbox: ShopifySandbox, sku: str, name: str = "on_hand", store: str = STORE) -> int:
    data = sandbox.state.store(store)
    variant = data.variant_by_sku(sku)
    assert variant is not None
    return data.inventory[(variant.inventory_item_id, data.default_location.legacy_id)].quantities[name]


def inventory_item_gid(sandbox: ShopifySandbox, sku: str, store: str = STORE) -> str:
    variant = sandbox.state.store(store).variant_by_sku(sku)
    assert variant is not None
    return f"gid://shopify/InventoryItem/{variant.inventory_item_id}"


def x3_receipt(sandbox: X3Sandbox, item: str, quantity: int | str, *, site: str = SITE,
               adjustment: bool = False) -> dict[str, Any]:
    """What an X3 user does: a miscellaneous receipt (or a signed adjustment), over the sandbox's admin route."""
    route = "stock-adjustments" if adjustment else "stock-receipts"
    response = httpx.post(f"{sandbox.base_url}/_sandbox/{sandbox.folder}/{route}", auth=sandbox.basic_credentials,
                          json={"item": item, "site": site, "quantity": str(quantity)}, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def x3_physical(sandbox: X3Sandbox, item: str, site: str = SITE) -> Decimal:
    return sandbox.state.stock(item, site).physical


@pytest.fixture
def shopify(fresh_shopify_sandbox: ShopifySandbox) -> Iterator[ShopifyClient]:
    fresh_shopify_sandbox.set_rate_limit(STORE, bucket_size=20_000.0, restore_rate=1_000.0)
    with ShopifyClient(fresh_shopify_sandbox.shop_url(STORE), fresh_shopify_sandbox.access_token(STORE)) as client:
        yield client


@pytest.fixture
def x3(fresh_x3_sandbox: X3Sandbox) -> Iterator[X3Client]:
    config = X3Config(server_url=fresh_x3_sandbox.base_url, folder=fresh_x3_sandbox.folder,
                      pool_alias=fresh_x3_sandbox.pool_alias)
    with X3Client(config, BasicAuth(*fresh_x3_sandbox.basic_credentials)) as client:
        yield client


@pytest.fixture
def ledger_clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def ledger(connector_db: ConnectorDatabase, ledger_clock: ManualClock) -> PostingLedger:
    return PostingLedger(connector_db, clock=ledger_clock)


@pytest.fixture
def stock_store(connector_db: ConnectorDatabase) -> StockStore:
    return StockStore(connector_db)


@pytest.fixture
def make_pusher(
    ledger: PostingLedger, stock_store: StockStore, x3: X3Client, shopify: ShopifyClient,
    fresh_shopify_sandbox: ShopifySandbox,
) -> Callable[..., StockPusher]:
    def make(**overrides: Any) -> StockPusher:
        values: dict[str, Any] = {
            "ledger": ledger, "stock_store": stock_store, "x3": x3, "inventory": InventoryGateway(shopify),
            "store": STORE, "locations": {SITE: location_gid(fresh_shopify_sandbox)}, "owner": "run-1",
            "lease_s": 60.0,
        }
        values.update(overrides)
        return StockPusher(**values)

    return make
