"""Stock levels pushed from X3 to Shopify (flows.md §4): pure rules, no Dagster, HTTP or database.

The quantity pushed for an (item, location) is X3's physical stock for the (item, site) the location is mapped
to, minus the units Shopify has already fulfilled whose X3 delivery is not validated yet (X3 still counts them
as on hand, but they have left the shelf). Rounded down and never below zero: fractional or uncertain stock
always under-sells, never oversells.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal

from x3_shopify_dagster.domain.mapping import ItemMapping
from x3_shopify_dagster.domain.shopify_orders import ShopifyOrder


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


# ------------------------------------------------------------------------------------------ X3 item -> Shopify SKU
class StockSkuReason:
    """Why the mapping's `items` section gives an X3 item no single Shopify SKU to push its stock to."""

    ITEM_NOT_MAPPED_TO_SKU = "item_not_mapped_to_sku"
    ITEM_MAPPED_TO_SEVERAL_SKUS = "item_mapped_to_several_skus"


@dataclass(frozen=True)
class StockSkus:
    """The Shopify SKU(s) whose variants carry X3 item ``item``'s stock in ``store``, under the store-level item
    mapping (``defaults`` + ``stores.<store>``: customer-level overrides are per customer and cannot drive one
    stock level).

    ``explicit`` are the SKUs ``items.overrides`` maps to the item; ``identity`` is the item code itself when
    ``items.identity`` is on and the item code is not overridden. Several candidates are normal (an override
    `A: B` with identity on also names `B`; an old SKU kept in the overrides for the refunds of old orders): the
    mapping cannot tell which are on Shopify variants, so the caller looks them all up. Exactly one on a variant
    carries the stock; several on variants fail (``several_on_variants``): one X3 figure pushed to two variants
    oversells. ``reason_code`` is set when the mapping gives the item no SKU at all.
    """

    item: str
    store: str
    explicit: tuple[str, ...]
    identity: str | None
    reason_code: str | None = None
    reason_message: str | None = None

    @property
    def candidates(self) -> tuple[str, ...]:
        """The SKUs to look up in Shopify, explicit first."""
        return self.explicit + ((self.identity,) if self.identity is not None else ())

    def key_of(self, sku: str) -> str:
        """The mapping key that makes ``sku`` this item (for messages)."""
        return f"items.overrides.{sku}" if sku in self.explicit else "items.identity"

    def several_on_variants(self, skus: Sequence[str]) -> str:
        """The message when more than one candidate SKU is on Shopify variants."""
        named = ", ".join(f"{sku} ({self.key_of(sku)})" for sku in skus)
        return (
            f"X3 item {self.item} is the item of several Shopify SKUs in store {self.store!r}, each on a variant: "
            f"{named}. One X3 stock figure cannot be pushed to several variants without overselling, so none is "
            f"set. Fix: keep one of them (change the other variant's SKU in Shopify, or map it to its own X3 item "
            f"with items.overrides.<SKU> under defaults or stores.{self.store})."
        )


def stock_skus(items: ItemMapping | None, item: str, store: str) -> StockSkus:
    """Which Shopify SKU(s) carry X3 item ``item`` in ``store`` (the reverse of the `items` mapping).

    ``items`` is the store-level mapping, ``Mapping.for_customer(None, store).items``; None (no mapping file
    configured) keeps SKU = X3 item code. Pure: the Shopify lookup of the candidates is the caller's.
    """
    if items is None:
        return StockSkus(item, store, (), item)
    explicit, identity = items.skus_for(item)
    where = f"under defaults or stores.{store}"
    if not explicit and identity is None:
        if item in items.overrides:
            target = items.overrides[item]
            why = (f"items.overrides.{item} maps SKU {item} to " + (f"X3 item {target}" if target else "no X3 item")
                   + f" and no SKU is overridden to {item}")
        else:
            why = f"items.identity is false and no SKU in items.overrides maps to {item}"
        message = (
            f"X3 item {item} has no Shopify SKU in store {store!r} under the mapping: {why}. Fix: set "
            f"items.overrides.<SKU>: {item} for the Shopify SKU that sells it ({where}), or items.identity: true if "
            "the variant's SKU is the item code; or ignore it if the item is not sold online."
        )
        return StockSkus(item, store, explicit, identity, StockSkuReason.ITEM_NOT_MAPPED_TO_SKU, message)
    return StockSkus(item, store, explicit, identity)


# ------------------------------------------------------------------------------------------ Shopify restocks
# Refund restock types that put units back on hand at a Shopify location (NO_RESTOCK: the customer keeps them).
RESTOCKING_TYPES = frozenset({"RETURN", "CANCEL", "LEGACY_RESTOCK"})


class RestockReason:
    """Why a restock cannot say which X3 (item, site) to push again (the stock sync's own reason codes)."""

    SKU_NOT_FOUND = "sku_not_found"
    ITEM_NOT_MAPPED = "item_not_mapped"  # the mapping's `items` gives the SKU no X3 item (overridden to null...)
    LOCATION_NOT_MAPPED = "location_not_mapped"


@dataclass(frozen=True)
class ShopifyRestock:
    """Units a Shopify refund put back on hand: the (item, site) whose X3 figure must be pushed again.

    ``item`` is the X3 item of the line's SKU (the SKU itself without a mapping, else through the store-level
    `items` mapping) and ``site`` the X3 site whose stock the location follows; either is None when it cannot be
    told, and ``reason_code``/``reason_message`` then say why and how to fix. A marker whose SKU maps to another
    item code keeps that as a note in ``reason_message`` (``reason_code`` None: it still triggers the push).
    """

    restock_key: str  # store|refund id|line item id: one marker per refunded line, however often it is seen
    store: str
    order_id: str
    refund_id: str
    line_item_id: str
    restock_type: str
    quantity: int
    item: str | None
    location_id: str | None
    site: str | None
    refunded_at: datetime | None
    reason_code: str | None = None
    reason_message: str | None = None


def shopify_restocks(
    store: str, order: ShopifyOrder, locations: Mapping[str, str], items: ItemMapping | None = None
) -> list[ShopifyRestock]:
    """The restocked lines of an order's refunds, one per (refund, line item), quantities summed.

    ``locations`` is the store's X3 site → Shopify location map (the locations whose level follows X3). A refund
    line without a location (older refunds) falls back to the store's only site; with several sites it is not
    guessed. ``items`` is the store-level item mapping (``Mapping.for_customer(None, store).items``; None: the SKU
    is the X3 item code): a restock of SKU `A` mapped to item `B` marks `B`. A line without a SKU, whose SKU maps
    to no X3 item, or restocked at a location no site feeds, is kept with its reason.
    """
    site_of = {location: site for site, location in locations.items()}
    only_site = next(iter(locations)) if len(locations) == 1 else None
    restocks: dict[str, ShopifyRestock] = {}
    for refund in order.refunds:
        for line in refund.refund_line_items:
            if line.restock_type not in RESTOCKING_TYPES or line.quantity <= 0:
                continue
            key = f"{store}|{refund.id}|{line.line_item_id}"
            known = restocks.get(key)
            if known is not None:  # the same line twice in one refund: one marker, both quantities
                restocks[key] = replace(known, quantity=known.quantity + line.quantity)
                continue
            sku = (line.sku or "").strip() or None
            location = line.location_id
            site = site_of.get(location) if location else only_site
            code = message = None
            item: str | None = sku
            why = ""
            if sku is not None and items is not None:
                item, why = items.item_for(sku)
                if item is not None and item != sku:
                    message = f"SKU {sku} is X3 item {item} ({why})"  # a note: the marker still triggers
            if sku is None:
                code = RestockReason.SKU_NOT_FOUND
                message = (f"refunded line {line.line_item_id} of order {order.name} has no SKU, so no X3 item: its "
                           "Shopify level does not follow X3 (set the X3 item code as the variant's SKU)")
            elif item is None:
                code = RestockReason.ITEM_NOT_MAPPED
                message = (f"SKU {sku} (refunded line {line.line_item_id} of order {order.name}) has no X3 item in "
                           f"store {store!r}: {why}. Its Shopify level does not follow X3; if it is an X3 item, set "
                           f"items.overrides.{sku}: <ITEM> (under defaults or stores.{store}) in the mapping")
            elif site is None:
                code = RestockReason.LOCATION_NOT_MAPPED
                where = f"location {location}" if location else "no location (and the store maps several sites)"
                message = (f"{sku} was restocked at {where}, which no X3 site feeds in store {store!r}: Shopify's "
                           f"level there does not follow X3 (set X3SD_STORES__{store.upper()}__LOCATIONS__<SITE>)")
            restocks[key] = ShopifyRestock(
                restock_key=key, store=store, order_id=order.id, refund_id=refund.id,
                line_item_id=line.line_item_id, restock_type=line.restock_type, quantity=line.quantity, item=item,
                location_id=location, site=site, refunded_at=refund.processed_at or refund.created_at,
                reason_code=code, reason_message=message,
            )
    return list(restocks.values())
