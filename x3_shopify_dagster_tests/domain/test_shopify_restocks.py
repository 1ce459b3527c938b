"""Shopify restock markers (flows.md §4): which refunded lines put units back on Shopify's shelf, and which X3
(item, site) each names, never guessed."""

from __future__ import annotations

from x3_shopify_dagster.domain.mapping import ItemMapping
from x3_shopify_dagster.domain.stock import RestockReason, shopify_restocks
from x3_shopify_dagster_tests.domain.test_credit_memos import eu_order, refund, with_refunds

LYON, RENO = "gid://shopify/Location/1", "gid://shopify/Location/2"


def _with_locations(payload: dict, *locations: str | None) -> dict:
    for line_item, location in zip(payload["refund_line_items"], locations, strict=True):
        line_item["location_id"] = location
    return payload


def test_restocking_types_mark_their_lines_and_no_restock_marks_none() -> None:
    o, knives, cups = eu_order()
    returned = _with_locations(refund(1, "60.00", lines=[(knives, 1, "50.00", "10.00", "RETURN"),
                                                         (cups, 1, "7.50", "1.50", "NO_RESTOCK")]), LYON, None)
    cancelled = _with_locations(refund(2, "9.00", lines=[(cups, 2, "15.00", "3.00", "CANCEL")]), LYON)
    kept = refund(3, "9.00", lines=[(cups, 1, "7.50", "1.50", "NO_RESTOCK")])
    restocks = shopify_restocks("eu", with_refunds(o, returned, cancelled, kept), {"FR011": LYON})

    assert [(r.refund_id, r.item, r.site, r.quantity, r.restock_type, r.reason_code) for r in restocks] == [
        ("gid://shopify/Refund/1", "TAMPER-58", "FR011", 1, "RETURN", None),
        ("gid://shopify/Refund/2", "CUP-PORC-6", "FR011", 2, "CANCEL", None),
    ]
    assert restocks[0].restock_key == f"eu|gid://shopify/Refund/1|{knives['id']}"
    assert shopify_restocks("eu", with_refunds(o, kept), {"FR011": LYON}) == []


def test_unmapped_location_or_missing_sku_keeps_a_reason_and_names_no_site() -> None:
    o, knives, cups = eu_order()
    cups["sku"] = None
    at_reno = _with_locations(refund(1, "60.00", lines=[(knives, 1, "50.00", "10.00", "RETURN")]), RENO)
    no_sku = _with_locations(refund(2, "9.00", lines=[(cups, 1, "7.50", "1.50", "RETURN")]), LYON)
    [reno, custom] = shopify_restocks("eu", with_refunds(o, at_reno, no_sku), {"FR011": LYON})
    assert (reno.site, reno.reason_code) == (None, RestockReason.LOCATION_NOT_MAPPED)
    assert "X3SD_STORES__EU__LOCATIONS__<SITE>" in (reno.reason_message or "")
    assert (custom.item, custom.reason_code) == (None, RestockReason.SKU_NOT_FOUND)


def test_a_line_without_location_uses_the_only_site_and_is_not_guessed_among_several() -> None:
    o, knives, _ = eu_order()
    legacy = refund(1, "60.00", lines=[(knives, 1, "50.00", "10.00", "LEGACY_RESTOCK")])  # no location
    [single] = shopify_restocks("eu", with_refunds(o, legacy), {"FR011": LYON})
    assert (single.site, single.reason_code) == ("FR011", None)
    [several] = shopify_restocks("eu", with_refunds(o, legacy), {"FR011": LYON, "FR012": RENO})
    assert (several.site, several.reason_code) == (None, RestockReason.LOCATION_NOT_MAPPED)


def test_a_restocked_sku_marks_the_x3_item_the_mapping_makes_it() -> None:
    """Forward mapping, like the invoices: SKU TAMPER-58 overridden to item TAMPER-58-V2 marks TAMPER-58-V2 (the
    note names the SKU); a SKU overridden to null, or unlisted with identity off, names no item and keeps why."""
    o, knives, cups = eu_order()
    returned = _with_locations(refund(1, "69.00", lines=[(knives, 1, "50.00", "10.00", "RETURN"),
                                                         (cups, 1, "7.50", "1.50", "RETURN")]), LYON, LYON)
    overridden = ItemMapping(identity=True, overrides={"TAMPER-58": "TAMPER-58-V2", "CUP-PORC-6": None},
                             without_sku=None)
    [knife, cup] = shopify_restocks("eu", with_refunds(o, returned), {"FR011": LYON}, overridden)
    assert (knife.item, knife.site, knife.reason_code) == ("TAMPER-58-V2", "FR011", None)
    assert knife.reason_message == "SKU TAMPER-58 is X3 item TAMPER-58-V2 (items.overrides.TAMPER-58)"
    assert (cup.item, cup.site, cup.reason_code) == (None, "FR011", RestockReason.ITEM_NOT_MAPPED)
    assert "SKU CUP-PORC-6" in (cup.reason_message or "")
    assert "items.overrides maps SKU 'CUP-PORC-6' to no X3 item" in (cup.reason_message or "")
    assert "items.overrides.CUP-PORC-6: <ITEM>" in (cup.reason_message or "")

    strict = ItemMapping(identity=False, overrides={"TAMPER-58": "TAMPER-58"}, without_sku="ENGRAVING")
    [knife, cup] = shopify_restocks("eu", with_refunds(o, returned), {"FR011": LYON}, strict)
    assert (knife.item, knife.reason_code, knife.reason_message) == ("TAMPER-58", None, None)
    assert (cup.item, cup.reason_code) == (None, RestockReason.ITEM_NOT_MAPPED)
    assert "items.identity is false" in (cup.reason_message or "")


def test_a_line_without_sku_is_not_marked_as_the_without_sku_item() -> None:
    """items.without_sku names the item custom lines are invoiced as; it is not a stocked variant Shopify can
    restock, so such a line still names no item."""
    o, _, cups = eu_order()
    cups["sku"] = None
    no_sku = _with_locations(refund(1, "9.00", lines=[(cups, 1, "7.50", "1.50", "RETURN")]), LYON)
    mapping = ItemMapping(identity=True, overrides={}, without_sku="ENGRAVING")
    [custom] = shopify_restocks("eu", with_refunds(o, no_sku), {"FR011": LYON}, mapping)
    assert (custom.item, custom.reason_code) == (None, RestockReason.SKU_NOT_FOUND)
