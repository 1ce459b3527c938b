"""``inventorySetQuantities`` with the 2026-04+ semantics.

* ``changeFromQuantity`` must be passed for every quantity (``null`` skips the compare); a value that does not
  match the current quantity fails the whole call with ``CHANGE_FROM_QUANTITY_STALE`` and changes nothing.
* ``@idempotent(key:)`` is required from 2026-04 (optional in 2026-01). The same key with the same input
  returns the original result without applying twice; the same key with a different input fails with
  ``IDEMPOTENCY_KEY_PARAMETER_MISMATCH``; the same key after a failed attempt fails with
  ``IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED``. Keys are kept per store for the sandbox's lifetime.
* Setting ``available`` moves ``on_hand`` by the same delta and vice versa (the other states stay put).

The exact wording of Shopify's error messages is not documented; the codes are the schema's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from graphql import GraphQLError, GraphQLResolveInfo, get_directive_values

from x3_shopify_dagster.sandboxes.shopify.config import IDEMPOTENCY_REQUIRED_FROM, MAX_PAGE_SIZE
from x3_shopify_dagster.sandboxes.shopify.models import gid, parse_gid

if TYPE_CHECKING:
    from x3_shopify_dagster.sandboxes.shopify.state import SandboxState

SETTABLE_NAMES = ("available", "on_hand")
MAX_QUANTITY = 1_000_000_000
# Reasons Shopify accepts for inventory changes (3rd-party typings of the 2026-04 reference; unverified).
REASONS = ("correction", "cycle_count_available", "damaged", "movement_created", "movement_updated",
           "movement_received", "movement_canceled", "other", "promotion", "quality_control", "received",
           "reservation_created", "reservation_deleted", "reservation_updated", "restock", "safety_stock",
           "shrinkage")


@dataclass(frozen=True)
class InventoryChange:
    name: str
    delta: int
    quantity_after_change: int
    inventory_item_id: int
    location_id: int


@dataclass(frozen=True)
class AdjustmentGroup:
    legacy_id: int
    created_at: datetime
    reason: str
    reference_document_uri: str | None
    changes: tuple[InventoryChange, ...]

    @property
    def gid(self) -> str:
        return gid("InventoryAdjustmentGroup", self.legacy_id)


def resolve_changes(group: AdjustmentGroup, _info: GraphQLResolveInfo, inventoryItemIds: list[str] | None = None,
                    locationIds: list[str] | None = None,
                    quantityNames: list[str] | None = None) -> list[InventoryChange]:
    items = {parse_gid(i, "InventoryItem") for i in inventoryItemIds} if inventoryItemIds else None
    locations = {parse_gid(i, "Location") for i in locationIds} if locationIds else None
    return [c for c in group.changes
            if (items is None or c.inventory_item_id in items)
            and (locations is None or c.location_id in locations)
            and (quantityNames is None or c.name in quantityNames)]


def idempotency_key(info: GraphQLResolveInfo) -> str | None:
    directive = info.schema.get_directive("idempotent")
    if directive is None:
        return None
    values = get_directive_values(directive, info.field_nodes[0], info.variable_values)
    return None if values is None else values["key"]


def _error(message: str, code: str, field: list[str | int] | None = None) -> dict[str, Any]:
    return {"field": [str(f) for f in field] if field else None, "message": message, "code": code}


def set_quantities(state: SandboxState, store_key: str, api_version: str, payload: dict[str, Any],
                   key: str | None) -> dict[str, Any]:
    if key is None and api_version >= IDEMPOTENCY_REQUIRED_FROM:
        raise GraphQLError("The @idempotent directive is required for this mutation: "
                           "add @idempotent(key: \"<unique key>\") to inventorySetQuantities.")
    if key is not None and not key.strip():
        raise GraphQLError("The idempotency key must not be empty.")
    fingerprint = json.dumps(payload, sort_keys=True, default=str)
    with state.locked():
        store = state.store(store_key)
        if key is not None and key in store.idempotency:
            previous_fingerprint, previous = store.idempotency[key]
            if previous_fingerprint != fingerprint:
                return {"inventoryAdjustmentGroup": None, "userErrors": [_error(
                    "The same idempotency key was used with different parameters.",
                    "IDEMPOTENCY_KEY_PARAMETER_MISMATCH")]}
            if isinstance(previous, dict) and previous["userErrors"]:
                return {"inventoryAdjustmentGroup": None, "userErrors": [_error(
                    "A previous request with this idempotency key failed. Retry with a new idempotency key.",
                    "IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED")]}
            return previous  # type: ignore[return-value]
        result = _apply(state, store_key, payload)
        if key is not None:
            store.idempotency[key] = (fingerprint, result)
        return result


def _apply(state: SandboxState, store_key: str, payload: dict[str, Any]) -> dict[str, Any]:
    store = state.store(store_key)
    name, reason = payload["name"], payload["reason"]
    quantities = payload["quantities"]
    errors: list[dict[str, Any]] = []
    if name not in SETTABLE_NAMES:
        errors.append(_error(f"The quantity name must be one of: {', '.join(SETTABLE_NAMES)}.", "INVALID_NAME",
                             ["input", "name"]))
    if reason not in REASONS:
        errors.append(_error("The specified reason is invalid.", "INVALID_REASON", ["input", "reason"]))
    uri = payload.get("referenceDocumentUri")
    if uri is not None and (":" not in uri or " " in uri):
        errors.append(_error("The reference document URI is invalid.", "INVALID_REFERENCE_DOCUMENT",
                             ["input", "referenceDocumentUri"]))
    if len(quantities) > MAX_PAGE_SIZE:
        raise GraphQLError(f"The input array size of {len(quantities)} is greater than the maximum allowed of "
                           f"{MAX_PAGE_SIZE}.")
    seen: set[tuple[int | None, int | None]] = set()
    planned: list[tuple[int, int, int]] = []  # (item, location, target)
    for index, quantity in enumerate(quantities):
        path: list[str | int] = ["input", "quantities", index]
        if "changeFromQuantity" not in quantity:
            raise GraphQLError(f"InventoryQuantityInput.changeFromQuantity is mandatory (quantities[{index}]): pass "
                               "the quantity you expect to change from, or null to skip the check.")
        item_id = parse_gid(quantity["inventoryItemId"], "InventoryItem")
        location_id = parse_gid(quantity["locationId"], "Location")
        if (item_id, location_id) in seen:
            errors.append(_error("The combination of inventoryItemId and locationId must be unique.",
                                 "NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR", path))
            continue
        seen.add((item_id, location_id))
        if item_id is None or store.variant_by_inventory_item(item_id) is None:
            errors.append(_error("The specified inventory item could not be found.", "INVALID_INVENTORY_ITEM",
                                 [*path, "inventoryItemId"]))
            continue
        if location_id is None or store.location(location_id) is None:
            errors.append(_error("The specified location could not be found.", "INVALID_LOCATION",
                                 [*path, "locationId"]))
            continue
        level = store.inventory.get((item_id, location_id))
        if level is None:
            errors.append(_error("The inventory item is not stocked at the location.", "ITEM_NOT_STOCKED_AT_LOCATION",
                                 path))
            continue
        target = quantity["quantity"]
        if target < 0:
            errors.append(_error("The quantity can't be negative.", "INVALID_QUANTITY_NEGATIVE",
                                 [*path, "quantity"]))
            continue
        if target > MAX_QUANTITY:
            errors.append(_error("The quantity is too high.", "INVALID_QUANTITY_TOO_HIGH", [*path, "quantity"]))
            continue
        expected = quantity["changeFromQuantity"]
        if name in SETTABLE_NAMES and expected is not None and expected != level.quantities[name]:
            errors.append(_error(
                f"The specified changeFromQuantity ({expected}) does not match the current {name} quantity.",
                "CHANGE_FROM_QUANTITY_STALE", [*path, "changeFromQuantity"]))
            continue
        planned.append((item_id, location_id, target))
    if errors:
        return {"inventoryAdjustmentGroup": None, "userErrors": errors}
    other = "on_hand" if name == "available" else "available"
    changes: list[InventoryChange] = []
    for item_id, location_id, target in planned:
        level = store.inventory[(item_id, location_id)]
        delta = target - level.quantities[name]
        if delta == 0:
            continue
        state.adjust_inventory(store_key, item_id, location_id, {name: delta, other: delta})
        changes.append(InventoryChange(name, delta, level.quantities[name], item_id, location_id))
        changes.append(InventoryChange(other, delta, level.quantities[other], item_id, location_id))
    group = AdjustmentGroup(legacy_id=state.next_id("InventoryAdjustmentGroup"), created_at=state.now(),
                            reason=reason, reference_document_uri=uri, changes=tuple(changes))
    return {"inventoryAdjustmentGroup": group, "userErrors": []}
