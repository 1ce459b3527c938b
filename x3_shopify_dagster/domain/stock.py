"""Stock levels pushed from X3 to Shopify (flows.md §4): pure rules, no Dagster, HTTP or database.

The quantity pushed for an (item, location) is X3's physical stock for the (item, site) the location is mapped
to, minus the units Shopify has already fulfilled whose X3 delivery is not validated yet (X3 still counts them
as on hand, but they have left the shelf). Rounded down and never below zero: fractional or uncertain stock
always under-sells, never oversells.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal


@dataclass(frozen=True)
class StockTarget:
    """What Shopify should show for one (inventory item, location), and how it was derived."""

    x3_physical: Decimal  # X3 ITMMVT physical stock (stock unit) for the mapped (item, site)
    pending_fulfilled: int  # fulfilled in Shopify, X3 delivery not validated yet
    quantity: int  # what to set in Shopify

    @property
    def clamped(self) -> bool:
        """True when the subtraction went below zero and zero is pushed instead."""
        return self.x3_physical.to_integral_value(rounding=ROUND_FLOOR) - self.pending_fulfilled < 0


def sellable_quantity(x3_physical: Decimal, pending_fulfilled: int) -> StockTarget:
    """X3 physical stock - pending fulfilled units, floored to a whole unit and clamped at zero.

    Shopify quantities are whole units; a fraction of a unit in X3 (a stock unit conversion, a partial count)
    cannot be sold, so it is rounded down. A negative result (more fulfilled than X3 holds, e.g. X3 allows
    negative stock) is pushed as zero: Shopify refuses negative quantities and nothing should be sold.
    """
    if not isinstance(x3_physical, Decimal) or not x3_physical.is_finite():
        raise TypeError(f"X3 physical stock must be a finite Decimal, got {x3_physical!r}")
    if isinstance(pending_fulfilled, bool) or not isinstance(pending_fulfilled, int) or pending_fulfilled < 0:
        raise ValueError(f"pending fulfilled quantity must be a non-negative int, got {pending_fulfilled!r}")
    whole = int(x3_physical.to_integral_value(rounding=ROUND_FLOOR))
    return StockTarget(x3_physical=x3_physical, pending_fulfilled=pending_fulfilled,
                       quantity=max(0, whole - pending_fulfilled))


def sum_pending_lines(
    fulfilments: Iterable[Mapping[str, object]],
) -> dict[tuple[str, str], int]:
    """Σ quantity per (inventory item GID, location GID) over fulfilment payloads (the ledger's `source_payload`
    shape: {"status", "location_id", "lines": [{"inventory_item_id", "quantity"}]}).

    A CANCELLED fulfilment counts zero (its units are back on the shelf); a line without inventory item (a custom
    line, a gift card) or a fulfilment without location cannot hold stock and is left out.
    """
    totals: dict[tuple[str, str], int] = {}
    for fulfilment in fulfilments:
        if str(fulfilment.get("status") or "").upper() == "CANCELLED":
            continue
        location = fulfilment.get("location_id")
        lines = fulfilment.get("lines")
        if not isinstance(location, str) or not location or not isinstance(lines, list):
            continue
        for line in lines:
            if not isinstance(line, Mapping):
                continue
            item = line.get("inventory_item_id")
            quantity = line.get("quantity")
            if not isinstance(item, str) or not item or isinstance(quantity, bool) or not isinstance(quantity, int):
                continue
            if quantity <= 0:
                continue
            key = (item, location)
            totals[key] = totals.get(key, 0) + quantity
    return totals
