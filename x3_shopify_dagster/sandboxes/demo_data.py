"""Deterministic master data shared by the Shopify and Sage X3 sandboxes.

Both sandboxes seed from these lists so that the demo lines up: most Shopify customers exist in X3 with the
same e-mail address, a few deliberately do not (to show `customer_not_found` and a replay once they are
created), and one e-mail belongs to two X3 customers (to show `customer_ambiguous`).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class DemoCustomer:
    email: str
    first_name: str
    last_name: str
    x3_customer_codes: tuple[str, ...]  # empty: not in X3; two codes: ambiguous in X3


@dataclass(frozen=True)
class DemoProduct:
    sku: str  # Shopify SKU; identical to the X3 item reference (ITMREF) unless noted
    title: str
    price_eur: Decimal
    price_usd: Decimal
    standard_cost: Decimal  # X3 standard cost, used for COGS on delivery validation
    x3_item: str | None  # None: the SKU has no X3 item (shows an item mapping failure)


@dataclass(frozen=True)
class DemoStore:
    key: str  # connector store key, used in partition keys
    shop: str  # the {shop} part of {shop}.myshopify.com
    currency: str
    taxes_included: bool
    tax_title: str
    tax_rate: Decimal
    iana_timezone: str
    x3_site: str  # X3 sales/stock site (FCY) that serves this store
    locations: tuple[str, ...]  # Shopify location names, mapped to X3 sites by configuration


STORES: tuple[DemoStore, ...] = (
    DemoStore("eu", "acme-eu", "EUR", True, "VAT", Decimal("0.20"), "Europe/Paris", "FR011",
              ("Lyon warehouse",)),
    DemoStore("us", "acme-us", "USD", False, "Sales tax", Decimal("0.0825"), "America/Chicago", "US011",
              ("Dallas warehouse", "Reno warehouse")),
)

CUSTOMERS: tuple[DemoCustomer, ...] = (
    DemoCustomer("claire.martin@bistro-lyon.example", "Claire", "Martin", ("FR0001",)),
    DemoCustomer("jean.dupont@atelier-dupont.example", "Jean", "Dupont", ("FR0002",)),
    DemoCustomer("sofia.rossi@trattoria-rossi.example", "Sofia", "Rossi", ("IT0001",)),
    DemoCustomer("hans.weber@weber-gmbh.example", "Hans", "Weber", ("DE0001",)),
    DemoCustomer("ana.garcia@cafe-garcia.example", "Ana", "Garcia", ("ES0001",)),
    DemoCustomer("lucas.bernard@boulangerie-b.example", "Lucas", "Bernard", ("FR0003",)),
    DemoCustomer("emma.jones@jones-diner.example", "Emma", "Jones", ("US0001",)),
    DemoCustomer("liam.smith@smith-supply.example", "Liam", "Smith", ("US0002",)),
    DemoCustomer("olivia.brown@brown-bakery.example", "Olivia", "Brown", ("US0003",)),
    DemoCustomer("noah.miller@miller-foods.example", "Noah", "Miller", ("US0004",)),
    DemoCustomer("ava.davis@davis-catering.example", "Ava", "Davis", ("US0005",)),
    DemoCustomer("mia.wilson@wilson-grill.example", "Mia", "Wilson", ("US0006",)),
    # Same address held by two X3 customers: must be reported as ambiguous, never guessed.
    DemoCustomer("orders@shared-kitchen.example", "Sam", "Kitchen", ("US0007", "US0008")),
    # Not in X3: these orders fail with customer_not_found until the customer is created in X3.
    DemoCustomer("new.buyer@fresh-start.example", "Nina", "Novak", ()),
    DemoCustomer("pierre.lefevre@lefevre-traiteur.example", "Pierre", "Lefevre", ()),
)

PRODUCTS: tuple[DemoProduct, ...] = (
    DemoProduct("ESP-GRINDER-01", "Espresso grinder", Decimal("349.00"), Decimal("379.00"), Decimal("180.00"),
                "ESP-GRINDER-01"),
    DemoProduct("ESP-MACHINE-02", "Two-group espresso machine", Decimal("2490.00"), Decimal("2690.00"),
                Decimal("1450.00"), "ESP-MACHINE-02"),
    DemoProduct("CUP-PORC-6", "Porcelain cups, set of 6", Decimal("29.90"), Decimal("32.50"), Decimal("11.20"),
                "CUP-PORC-6"),
    DemoProduct("MILK-JUG-35", "Milk jug 35 cl", Decimal("14.50"), Decimal("15.99"), Decimal("5.10"),
                "MILK-JUG-35"),
    DemoProduct("TAMPER-58", "Tamper 58 mm", Decimal("39.00"), Decimal("42.00"), Decimal("12.75"), "TAMPER-58"),
    DemoProduct("BEANS-HOUSE-1KG", "House blend beans 1 kg", Decimal("24.80"), Decimal("27.40"),
                Decimal("9.95"), "BEANS-HOUSE-1KG"),
    DemoProduct("BEANS-DECAF-1KG", "Decaf beans 1 kg", Decimal("26.30"), Decimal("28.90"), Decimal("10.40"),
                "BEANS-DECAF-1KG"),
    DemoProduct("FILTER-PAPER-100", "Filter papers x100", Decimal("4.95"), Decimal("5.49"), Decimal("1.05"),
                "FILTER-PAPER-100"),
    DemoProduct("CLEAN-TABS-60", "Cleaning tablets x60", Decimal("17.40"), Decimal("18.99"), Decimal("6.30"),
                "CLEAN-TABS-60"),
    DemoProduct("KNOCK-BOX-S", "Knock box, small", Decimal("22.00"), Decimal("24.00"), Decimal("8.80"),
                "KNOCK-BOX-S"),
    # Sold in Shopify, unknown in X3: shows an item-mapping failure with a clear reason.
    DemoProduct("GIFT-WRAP", "Gift wrapping", Decimal("3.50"), Decimal("3.99"), Decimal("0.40"), None),
)

# Stock sync (X3 item code = Shopify SKU): an item X3 stocks but the shops do not sell, so its stock movements
# fail with `sku_not_found`...
X3_ONLY_ITEMS: tuple[DemoProduct, ...] = (
    DemoProduct("DESCALER-1L", "Descaler 1 l (workshop use)", Decimal("0"), Decimal("0"), Decimal("7.60"),
                "DESCALER-1L"),
)
# ...and a second Shopify listing carrying an existing SKU, so that SKU's stock fails with `sku_ambiguous` (never
# guessed). Added to each shop after its seeded order history, which therefore does not change.
DUPLICATE_SKU_LISTINGS: tuple[DemoProduct, ...] = (
    DemoProduct("BEANS-DECAF-1KG", "Decaf beans 1 kg (old listing)", Decimal("26.30"), Decimal("28.90"),
                Decimal("10.40"), "BEANS-DECAF-1KG"),
)


def store(key: str) -> DemoStore:
    for candidate in STORES:
        if candidate.key == key:
            return candidate
    raise KeyError(f"unknown demo store {key!r}; known: {[s.key for s in STORES]}")
