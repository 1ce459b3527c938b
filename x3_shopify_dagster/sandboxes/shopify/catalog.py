"""Per-store master data (shop, locations, customers, products, inventory) built from ``demo_data``."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from x3_shopify_dagster.sandboxes import demo_data
from x3_shopify_dagster.sandboxes.shopify.models import Customer, InventoryLevel, Location, Order, Variant

QUANTITY_NAMES = ("available", "on_hand", "committed", "incoming", "reserved", "damaged", "quality_control",
                  "safety_stock")
# on_hand = available + committed + reserved + damaged + quality_control + safety_stock (Shopify's states)
ON_HAND_PARTS = ("available", "committed", "reserved", "damaged", "quality_control", "safety_stock")

# Fixed presentment rates (shop currency -> customer currency) for the few multi-currency orders.
PRESENTMENT_RATES: dict[str, dict[str, Decimal]] = {
    "EUR": {"GBP": Decimal("0.8600"), "CHF": Decimal("0.9400")},
    "USD": {"CAD": Decimal("1.3700")},
}

_ID_BASES = {
    "Shop": 61_000_000_000, "Location": 60_000_000_000, "Customer": 7_100_000_000_000,
    "Product": 8_900_000_000_000, "ProductVariant": 4_600_000_000_000, "InventoryItem": 4_700_000_000_000,
    "Order": 5_800_000_000_000, "Refund": 9_100_000_000_000,
    "Fulfillment": 5_500_000_000_000, "BulkOperation": 3_000_000_000_000,
    "InventoryAdjustmentGroup": 2_000_000_000_000,
}


class IdAllocator:
    """Sequential, deterministic 64-bit ids per GID kind (not thread-safe: used under the state lock)."""

    def __init__(self) -> None:
        self._next = dict(_ID_BASES)

    def next(self, kind: str) -> int:
        value = self._next[kind] + 1
        self._next[kind] = value
        return value


def access_token_for(seed: int, store_key: str) -> str:
    """A stable, fake Admin API token (``shpat_`` + 32 hex), so a restarted demo keeps its credentials."""
    digest = hashlib.sha256(f"x3-shopify-sandbox:{seed}:{store_key}".encode()).hexdigest()
    return f"shpat_{digest[:32]}"


@dataclass
class StoreData:
    """Everything one store holds. Mutable, and only changed under the state lock."""

    demo: demo_data.DemoStore
    shop_id: int
    locations: tuple[Location, ...]
    customers: tuple[Customer, ...]
    variants: tuple[Variant, ...]
    inventory: dict[tuple[int, int], InventoryLevel]  # (inventory item id, location id)
    orders: dict[int, Order] = field(default_factory=dict)
    next_order_number: int = 1001
    # Bumped on every order change; readers use it to reuse sorted views.
    version: int = 0
    sorted_cache: dict[str, tuple[int, list[Order], list[tuple[object, int]]]] = field(default_factory=dict)
    idempotency: dict[str, tuple[str, object]] = field(default_factory=dict)
    # refund / fulfillment id -> order id, for node(id:), refund(id:) and fulfillment(id:)
    refund_owner: dict[int, int] = field(default_factory=dict)
    fulfillment_owner: dict[int, int] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.demo.key

    @property
    def currency(self) -> str:
        return self.demo.currency

    def customer_by_email(self, email: str) -> Customer | None:
        lowered = email.lower()
        for customer in self.customers:
            if customer.email and customer.email.lower() == lowered:
                return customer
        return None

    def variant_by_sku(self, sku: str) -> Variant | None:
        for variant in self.variants:
            if variant.sku == sku:
                return variant
        return None

    def variant_by_inventory_item(self, inventory_item_id: int) -> Variant | None:
        for variant in self.variants:
            if variant.inventory_item_id == inventory_item_id:
                return variant
        return None

    def location(self, location_id: int) -> Location | None:
        for location in self.locations:
            if location.legacy_id == location_id:
                return location
        return None

    @property
    def default_location(self) -> Location:
        return self.locations[0]


def add_listing(store: StoreData, ids: IdAllocator, product: demo_data.DemoProduct, now: datetime,
                on_hand: int = 50) -> Variant:
    """One more product with one variant, stocked at every location (e.g. a second listing of an existing SKU)."""
    price = product.price_eur if store.currency == "EUR" else product.price_usd
    variant = Variant(product_id=ids.next("Product"), variant_id=ids.next("ProductVariant"),
                      inventory_item_id=ids.next("InventoryItem"), sku=product.sku, title=product.title,
                      vendor="Acme Coffee Supply", price=price, updated_at=now)
    store.variants = (*store.variants, variant)
    for location in store.locations:
        quantities = dict.fromkeys(QUANTITY_NAMES, 0)
        quantities["on_hand"] = quantities["available"] = on_hand
        store.inventory[(variant.inventory_item_id, location.legacy_id)] = InventoryLevel(
            inventory_item_id=variant.inventory_item_id, location_id=location.legacy_id, quantities=quantities,
            updated_at=now)
    return variant


def build_store(key: str, ids: IdAllocator, rng: random.Random, now: datetime) -> StoreData:
    demo = demo_data.store(key)
    shop_id = ids.next("Shop")
    locations = tuple(Location(ids.next("Location"), name) for name in demo.locations)
    customers = tuple(Customer(ids.next("Customer"), c.email, c.first_name, c.last_name)
                      for c in demo_data.CUSTOMERS)
    variants = []
    for product in demo_data.PRODUCTS:
        price = product.price_eur if demo.currency == "EUR" else product.price_usd
        variants.append(Variant(product_id=ids.next("Product"), variant_id=ids.next("ProductVariant"),
                                inventory_item_id=ids.next("InventoryItem"), sku=product.sku,
                                title=product.title, vendor="Acme Coffee Supply", price=price, updated_at=now))
    inventory: dict[tuple[int, int], InventoryLevel] = {}
    for variant in variants:
        for location in locations:
            on_hand = rng.randint(20, 200)
            quantities = dict.fromkeys(QUANTITY_NAMES, 0)
            quantities["on_hand"] = on_hand
            quantities["available"] = on_hand
            inventory[(variant.inventory_item_id, location.legacy_id)] = InventoryLevel(
                inventory_item_id=variant.inventory_item_id, location_id=location.legacy_id,
                quantities=quantities, updated_at=now)
    return StoreData(demo=demo, shop_id=shop_id, locations=locations, customers=customers,
                     variants=tuple(variants), inventory=inventory)
