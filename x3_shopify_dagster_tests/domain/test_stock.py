"""The stock formula (flows.md §4: quantity pushed = X3 physical - pending fulfilled, never overselling)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from x3_shopify_dagster.domain.stock import sellable_quantity, sum_pending_lines

ITEM, LOC, LOC2 = "gid://shopify/InventoryItem/1", "gid://shopify/Location/1", "gid://shopify/Location/2"


def test_pushed_quantity_is_x3_physical_minus_pending_fulfilled() -> None:
    target = sellable_quantity(Decimal("42"), 5)
    assert target.quantity == 37
    assert (target.x3_physical, target.pending_fulfilled, target.clamped) == (Decimal("42"), 5, False)


@pytest.mark.parametrize(("physical", "pending", "expected"), [
    (Decimal("10.9"), 0, 10),  # a fraction of a unit cannot be sold: rounded down, never up
    (Decimal("0.4"), 0, 0),
    (Decimal("3"), 5, 0),  # more fulfilled than X3 holds: zero, never negative
    (Decimal("-2"), 0, 0),  # X3 allowing negative stock
    (Decimal("0"), 0, 0),
])
def test_never_oversells_fractions_and_negatives(physical: Decimal, pending: int, expected: int) -> None:
    target = sellable_quantity(physical, pending)
    assert target.quantity == expected
    assert target.quantity <= max(physical, Decimal(0)) - pending or target.quantity == 0


def test_clamping_is_reported() -> None:
    assert sellable_quantity(Decimal("3"), 5).clamped
    assert not sellable_quantity(Decimal("5"), 5).clamped


@pytest.mark.parametrize("bad", [1.5, 3, "4"])
def test_x3_stock_must_be_a_decimal(bad: object) -> None:
    with pytest.raises(TypeError):
        sellable_quantity(bad, 0)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [-1, True, 1.0])
def test_pending_must_be_a_non_negative_int(bad: object) -> None:
    with pytest.raises(ValueError, match="non-negative int"):
        sellable_quantity(Decimal(1), bad)  # type: ignore[arg-type]


def test_pending_lines_sum_per_item_and_location_and_cancelled_counts_zero() -> None:
    fulfilments = [
        {"status": "SUCCESS", "location_id": LOC, "lines": [{"inventory_item_id": ITEM, "quantity": 2},
                                                           {"inventory_item_id": None, "quantity": 9}]},
        {"status": "SUCCESS", "location_id": LOC, "lines": [{"inventory_item_id": ITEM, "quantity": 3}]},
        {"status": "SUCCESS", "location_id": LOC2, "lines": [{"inventory_item_id": ITEM, "quantity": 1}]},
        {"status": "CANCELLED", "location_id": LOC, "lines": [{"inventory_item_id": ITEM, "quantity": 50}]},
        {"status": "SUCCESS", "location_id": None, "lines": [{"inventory_item_id": ITEM, "quantity": 7}]},
    ]
    assert sum_pending_lines(fulfilments) == {(ITEM, LOC): 5, (ITEM, LOC2): 1}
