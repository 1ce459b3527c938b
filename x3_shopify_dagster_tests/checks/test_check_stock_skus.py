"""`x3sd check`'s "stock SKUs" row: what the stock sync makes of the mapping's `items` section (docs/mapping.md
"Items"), per configured store; informational, it never fails the check."""

from __future__ import annotations

import textwrap

from x3_shopify_dagster.checks.connection import check_mapping_stock
from x3_shopify_dagster.domain.mapping import load_mapping, parse_mapping
from x3_shopify_dagster_tests.checks.conftest import DEMO_MAPPING
from x3_shopify_dagster_tests.domain.test_mapping import MINIMAL


def test_the_demo_mapping_stocks_every_item_under_its_own_code() -> None:
    [row] = check_mapping_stock(load_mapping(DEMO_MAPPING), ["eu", "us"])
    assert (row.system, row.name, row.ok) == ("mapping", "stock SKUs", True)
    assert row.detail.startswith("every stocked X3 item is its own SKU")


def test_overrides_to_other_items_are_listed_per_store_with_several_skus_and_customer_layers_called_out() -> None:
    mapping = parse_mapping(MINIMAL + textwrap.dedent("""\
          items:
            overrides:
              DESCALER-SHOP: DESCALER-1L
              GIFT-WRAP: null
        stores:
          us:
            items:
              overrides:
                DESC-US: DESCALER-1L
        customers:
          FR0001:
            items:
              overrides:
                CUST-SKU: TAMPER-58
        """))
    [row] = check_mapping_stock(mapping, ["us", "eu"])
    assert row.ok
    assert row.detail == (
        "eu: 1 X3 item(s) stocked under another SKU: DESCALER-1L <- DESCALER-SHOP; "
        "us: 1 X3 item(s) stocked under another SKU: DESCALER-1L <- DESC-US / DESCALER-SHOP (DESCALER-1L: only one "
        "of the SKUs may be on a Shopify variant); "
        "customer-level items.overrides (FR0001) are not followed by stock (one level per store): put them under "
        "defaults or stores.<store> if stock must follow")
