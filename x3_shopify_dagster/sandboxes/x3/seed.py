"""Deterministic master data for a sandbox folder, from the shared demo data plus an X3-side chart of accounts."""

from __future__ import annotations

import random
from datetime import date
from decimal import Decimal

from x3_shopify_dagster.sandboxes import demo_data
from x3_shopify_dagster.sandboxes.x3.records import (
    Customer,
    CustomerAddress,
    Dimension,
    GlAccount,
    InvoiceType,
    Item,
    ProductSiteStock,
    SalesInvoiceType,
    Site,
    TaxCode,
)
from x3_shopify_dagster.sandboxes.x3.state import (
    CHART_OF_ACCOUNTS,
    COST_CENTRE_DIMENSION,
    CUSTOMER_ADDRESS_TYPE,
    FolderState,
)

RECEIVABLE_ACCOUNT = "411000"
COGS_ACCOUNT = "607000"
STOCK_VARIATION_ACCOUNT = "603700"
OUTPUT_VAT_ACCOUNT = "445710"

# (account, description, active, valid from, valid to)
ACCOUNTS: tuple[tuple[str, str, bool, date | None, date | None], ...] = (
    ("706000", "Sales of goods", True, None, None),
    ("706100", "Sales of goods - web shop (closed ledger)", True, date(2020, 1, 1), date(2025, 12, 31)),
    ("706900", "Sales of goods - legacy (inactive)", False, None, None),
    ("708500", "Shipping income", True, None, None),
    ("709000", "Discounts granted", True, None, None),
    (OUTPUT_VAT_ACCOUNT, "Output VAT / sales tax collected", True, None, None),
    (RECEIVABLE_ACCOUNT, "Trade receivables", True, None, None),
    (COGS_ACCOUNT, "Cost of goods sold", True, None, None),
    (STOCK_VARIATION_ACCOUNT, "Change in stock of goods", True, None, None),
)

# (cost centre, description, active, site)
COST_CENTRES: tuple[tuple[str, str, bool, str], ...] = (
    ("WEB-EU", "Web shop Europe", True, "FR011"),
    ("WEB-US", "Web shop United States", True, "US011"),
    ("WEB-ALL", "Web shops, all sites", True, ""),
    ("RETAIL-OLD", "Former retail shop (inactive)", False, ""),
)

# (code, description, rate, active)
TAX_CODES: tuple[tuple[str, str, Decimal, bool], ...] = (
    ("FRN", "France standard VAT 20%", Decimal("0.20"), True),
    ("US825", "Texas sales tax 8.25%", Decimal("0.0825"), True),
    ("EXO", "Exempt 0%", Decimal("0"), True),
    ("FRR", "France reduced VAT 5.5% (inactive)", Decimal("0.055"), False),
)

# Sales invoice types (TABSIVTYP): (code, description, category, active)
INVOICE_TYPES: tuple[tuple[str, str, InvoiceType, bool], ...] = (
    ("INV", "Invoice", InvoiceType.INVOICE, True),
    ("CRN", "Credit memo", InvoiceType.CREDIT_MEMO, True),
    ("INVX", "Export invoice (inactive)", InvoiceType.INVOICE, False),
)

SITE_NAMES = {"FR011": ("Lyon warehouse", "FR01"), "US011": ("Dallas warehouse", "US01")}


def seed_folder(state: FolderState, seed: int) -> None:
    """Fill an empty folder. Same seed, same data (stock quantities are the only random part)."""
    rng = random.Random(seed)
    now = state.now()
    tables = state.tables
    with state.lock:
        for demo_customer in demo_data.CUSTOMERS:
            for index, code in enumerate(demo_customer.x3_customer_codes):
                name = f"{demo_customer.first_name} {demo_customer.last_name}"
                if index:
                    name += f" ({index + 1})"
                currency = "USD" if code.startswith("US") else "EUR"
                tables.customers[code] = Customer(code, name, code, True, currency, now)
                tables.addresses[(CUSTOMER_ADDRESS_TYPE, code, "MAIN")] = CustomerAddress(
                    CUSTOMER_ADDRESS_TYPE, code, "MAIN", "Main address", demo_customer.email, now)
        for account, description, active, valid_from, valid_to in ACCOUNTS:
            tables.accounts[(CHART_OF_ACCOUNTS, account)] = GlAccount(
                CHART_OF_ACCOUNTS, account, description, active, valid_from, valid_to, now)
        for code, description, active, site in COST_CENTRES:
            tables.dimensions[(COST_CENTRE_DIMENSION, code)] = Dimension(
                COST_CENTRE_DIMENSION, code, description, active, site, now)
        for code, description, rate, active in TAX_CODES:
            tables.tax_codes[code] = TaxCode(code, description, rate, OUTPUT_VAT_ACCOUNT, active, now)
        for code, description, category, active in INVOICE_TYPES:
            tables.invoice_types[code] = SalesInvoiceType(code, description, category, active, now)
        for demo_store in demo_data.STORES:
            name, company = SITE_NAMES.get(demo_store.x3_site, (demo_store.locations[0], demo_store.key.upper()))
            tables.sites[demo_store.x3_site] = Site(demo_store.x3_site, name, company, now)
        for product in demo_data.PRODUCTS:
            if product.x3_item is None:
                continue
            tables.items[product.x3_item] = Item(product.x3_item, product.title, True, "UN",
                                                 product.standard_cost, now)
            for site in tables.sites:
                quantity = Decimal(rng.randint(20, 120))
                tables.stock[(product.x3_item, site)] = ProductSiteStock(
                    product.x3_item, site, quantity, Decimal(0), now)
        for product in demo_data.X3_ONLY_ITEMS:
            assert product.x3_item is not None
            tables.items[product.x3_item] = Item(product.x3_item, product.title, True, "UN",
                                                 product.standard_cost, now)
            for site in tables.sites:  # fixed: the random stream of the items above stays as it was
                tables.stock[(product.x3_item, site)] = ProductSiteStock(
                    product.x3_item, site, Decimal(40), Decimal(0), now)
