"""Stock follows the mapping's `items` section (docs/mapping.md "Items"): the reverse of `items.overrides` /
`items.identity` gives the Shopify SKU(s) whose variants carry an X3 item's stock, at store level only."""

from __future__ import annotations

import textwrap

import pytest

from x3_shopify_dagster.domain.mapping import ItemMapping, parse_mapping
from x3_shopify_dagster.domain.stock import StockSkuReason, stock_skus
from x3_shopify_dagster_tests.domain.test_mapping import MINIMAL


def items(identity: bool = True, **overrides: str | None) -> ItemMapping:
    return ItemMapping(identity=identity, overrides=dict(overrides), without_sku=None)


def test_identity_on_the_item_code_is_the_sku() -> None:
    skus = stock_skus(items(), "TAMPER-58", "eu")
    assert (skus.explicit, skus.identity, skus.candidates, skus.reason_code) == ((), "TAMPER-58", ("TAMPER-58",),
                                                                                 None)
    assert skus.key_of("TAMPER-58") == "items.identity"


def test_no_mapping_file_keeps_sku_equal_to_item() -> None:
    skus = stock_skus(None, "TAMPER-58", "eu")
    assert (skus.candidates, skus.reason_code) == (("TAMPER-58",), None)


def test_identity_off_only_overrides_name_skus() -> None:
    assert stock_skus(items(False, A="B"), "B", "eu").candidates == ("A",)
    unlisted = stock_skus(items(False, A="B"), "C", "eu")
    assert unlisted.candidates == ()
    assert unlisted.reason_code == StockSkuReason.ITEM_NOT_MAPPED_TO_SKU
    message = unlisted.reason_message or ""
    assert "X3 item C" in message
    assert "'eu'" in message
    assert "items.identity is false" in message
    assert "items.overrides.<SKU>: C" in message
    assert "stores.eu" in message


def test_an_override_to_the_item_names_its_sku_first_then_the_item_code() -> None:
    """`A: B` with identity on: SKU A is item B, and so would a variant with SKU B be (identity): both are
    candidates, explicit first; which one is on a Shopify variant decides (the pusher looks them up)."""
    skus = stock_skus(items(A="B"), "B", "eu")
    assert (skus.explicit, skus.identity, skus.candidates) == (("A",), "B", ("A", "B"))
    assert skus.reason_code is None
    assert skus.key_of("A") == "items.overrides.A"
    assert skus.key_of("B") == "items.identity"


def test_an_item_overridden_to_another_item_is_not_its_own_sku() -> None:
    """`B: C`: lines with SKU B are item C, so SKU B does not carry item B; with nothing else mapped to B, B has
    no SKU (and C is carried by SKU B and, through identity, C)."""
    skus = stock_skus(items(B="C"), "B", "eu")
    assert skus.candidates == ()
    assert skus.reason_code == StockSkuReason.ITEM_NOT_MAPPED_TO_SKU
    assert "items.overrides.B maps SKU B to X3 item C" in (skus.reason_message or "")
    assert stock_skus(items(B="C"), "C", "eu").candidates == ("B", "C")


def test_an_item_overridden_to_null_has_no_sku() -> None:
    skus = stock_skus(items(**{"GIFT-WRAP": None}), "GIFT-WRAP", "eu")
    assert skus.candidates == ()
    assert skus.reason_code == StockSkuReason.ITEM_NOT_MAPPED_TO_SKU
    assert "items.overrides.GIFT-WRAP maps SKU GIFT-WRAP to no X3 item" in (skus.reason_message or "")


def test_an_item_overridden_away_but_reached_from_another_sku() -> None:
    skus = stock_skus(items(B=None, A="B"), "B", "eu")
    assert (skus.candidates, skus.reason_code) == (("A",), None)


def test_two_skus_on_one_item_are_both_candidates_and_several_on_variants_is_explained() -> None:
    skus = stock_skus(items(False, A="B", C="B", D="E"), "B", "eu")
    assert skus.candidates == ("A", "C")
    message = skus.several_on_variants(["A", "C"])
    assert "X3 item B" in message
    assert "A (items.overrides.A), C (items.overrides.C)" in message
    assert "oversell" in message
    assert "stores.eu" in message


MAPPED = MINIMAL + textwrap.dedent("""\
      items:
        overrides:
          A: B
          OLD: null
    stores:
      us:
        items:
          identity: false
          overrides:
            OLD: B
    customers:
      FR0001:
        items:
          overrides:
            CUST-SKU: B
    """)


@pytest.mark.parametrize(("store", "expected"), [
    ("eu", ("A", "B")),  # defaults only (identity on by default): A, and B itself
    ("us", ("A", "OLD")),  # stores.us adds OLD: B and turns identity off
    ("elsewhere", ("A", "B")),  # a store the file does not list: defaults
])
def test_store_level_layers_drive_stock_and_customer_overrides_do_not(store: str, expected: tuple[str, ...]) -> None:
    mapping = parse_mapping(MAPPED)
    skus = stock_skus(mapping.for_customer(None, store).items, "B", store)
    assert skus.candidates == expected
    assert "CUST-SKU" not in skus.candidates  # per customer: cannot drive one stock level
