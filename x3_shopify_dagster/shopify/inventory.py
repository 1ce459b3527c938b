"""Inventory calls: find the inventory item of a SKU, read levels at a location, set absolute quantities.

`inventorySetQuantities` with the 2026-07 semantics: `changeFromQuantity` on every quantity (what was last
read: a compare-and-swap), a mandatory `@idempotent(key:)`, at most 250 quantities per call. The caller owns
exactly-once bookkeeping (the key is recorded before `set_quantities` is called).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from x3_shopify_dagster.shopify.client import ShopifyClient
from x3_shopify_dagster.shopify.documents import load_document

MAX_QUANTITIES_PER_CALL = 250  # Shopify's input array limit
_NODES_PER_CALL = 100
_SKU_MATCHES_READ = 10  # enough to tell "one" from "several"; more than that is ambiguous anyway
SETTABLE_NAMES = ("on_hand", "available")


@dataclass(frozen=True)
class VariantMatch:
    variant_id: str
    sku: str
    display_name: str
    inventory_item_id: str | None
    tracked: bool

    def as_json(self) -> dict[str, Any]:
        return {"variant_id": self.variant_id, "sku": self.sku, "display_name": self.display_name,
                "inventory_item_id": self.inventory_item_id, "tracked": self.tracked}


@dataclass(frozen=True)
class LevelReading:
    """One inventory item's quantity at one location, as read (None: the item is not stocked there)."""

    inventory_item_id: str
    location_id: str
    stocked: bool
    quantity: int | None
    updated_at: str | None  # the quantity's updatedAt, as Shopify wrote it (part of the write's identity)


@dataclass(frozen=True)
class QuantityToSet:
    inventory_item_id: str
    location_id: str
    quantity: int
    change_from: int | None  # the quantity last read; None skips the compare (never used by the connector)

    def as_input(self) -> dict[str, Any]:
        # changeFromQuantity is mandatory in 2026-07 even when null: always send the key.
        return {"inventoryItemId": self.inventory_item_id, "locationId": self.location_id,
                "quantity": self.quantity, "changeFromQuantity": self.change_from}


@dataclass(frozen=True)
class AdjustmentGroup:
    id: str | None  # None when nothing changed (every quantity already at its target)
    created_at: str | None
    changes: Sequence[Mapping[str, Any]] = field(default_factory=tuple)


def sku_search(sku: str) -> str:
    """`sku:'…'` with quotes and backslashes escaped (Shopify's search syntax)."""
    escaped = sku.replace("\\", "\\\\").replace("'", "\\'")
    return f"sku:'{escaped}'"


class InventoryGateway:
    """The inventory operations of one store, over a `ShopifyClient`."""

    def __init__(self, client: ShopifyClient) -> None:
        self.client = client

    def variants_by_sku(self, sku: str) -> list[VariantMatch]:
        """Variants whose SKU is exactly `sku` (case-sensitive: Shopify's search is not)."""
        response = self.client.execute(
            load_document("variants_by_sku"), {"query": sku_search(sku), "first": _SKU_MATCHES_READ}
        )
        matches = []
        for node in response.data["productVariants"]["nodes"]:
            if node.get("sku") != sku:
                continue
            item = node.get("inventoryItem") or {}
            matches.append(VariantMatch(
                variant_id=node["id"], sku=node["sku"], display_name=node.get("displayName") or "",
                inventory_item_id=item.get("id"), tracked=bool(item.get("tracked")),
            ))
        return matches

    def read_levels(
        self, pairs: Iterable[tuple[str, str]], name: str
    ) -> dict[tuple[str, str], LevelReading]:
        """Current `name` quantity per (inventory item, location). Unknown items are left out of the result."""
        by_location: dict[str, list[str]] = {}
        for item, location in sorted(set(pairs)):
            by_location.setdefault(location, []).append(item)
        readings: dict[tuple[str, str], LevelReading] = {}
        document = load_document("inventory_levels")
        for location, items in by_location.items():
            for start in range(0, len(items), _NODES_PER_CALL):
                batch = items[start : start + _NODES_PER_CALL]
                response = self.client.execute(document, {"ids": batch, "locationId": location, "names": [name]})
                for node in response.data["nodes"]:
                    if not node or "id" not in node:
                        continue
                    level = node.get("inventoryLevel")
                    quantity = updated = None
                    if level:
                        entry = next((q for q in level.get("quantities") or [] if q.get("name") == name), None)
                        if entry is not None:
                            quantity, updated = int(entry["quantity"]), entry.get("updatedAt")
                    readings[(node["id"], location)] = LevelReading(
                        node["id"], location, stocked=level is not None, quantity=quantity, updated_at=updated
                    )
        return readings

    def set_quantities(
        self, *, name: str, reason: str, reference_document_uri: str, quantities: Sequence[QuantityToSet],
        idempotency_key: str,
    ) -> AdjustmentGroup:
        """One `inventorySetQuantities` call. Raises `ShopifyUserErrors` (e.g. CHANGE_FROM_QUANTITY_STALE)."""
        if name not in SETTABLE_NAMES:
            raise ValueError(f"only {SETTABLE_NAMES} can be set, not {name!r}")
        if not 0 < len(quantities) <= MAX_QUANTITIES_PER_CALL:
            raise ValueError(f"1 to {MAX_QUANTITIES_PER_CALL} quantities per call, got {len(quantities)}")
        if not idempotency_key.strip():
            raise ValueError("an idempotency key is required (2026-04+)")
        response = self.client.execute(
            load_document("inventory_set_quantities"),
            {"input": set_quantities_input(name, reason, reference_document_uri, quantities),
             "idempotencyKey": idempotency_key},
        )
        group = response.data["inventorySetQuantities"].get("inventoryAdjustmentGroup")
        if not group:
            return AdjustmentGroup(None, None)
        return AdjustmentGroup(group["id"], group.get("createdAt"), tuple(group.get("changes") or ()))


def set_quantities_input(
    name: str, reason: str, reference_document_uri: str, quantities: Sequence[QuantityToSet]
) -> dict[str, Any]:
    return {"name": name, "reason": reason, "referenceDocumentUri": reference_document_uri,
            "quantities": [q.as_input() for q in quantities]}
