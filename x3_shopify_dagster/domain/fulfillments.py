"""Shopify fulfilments (shipments) and the X3 deliveries they become (flows.md §2 "delivered / partly").

``ShopifyFulfillment.from_graphql`` reads a fulfilment node as ``fulfillment_orders_page.graphql`` returns it;
``to_payload()`` is the ledger's ``source_payload`` for a fulfilment record, a contract other flows read (the
stock sync subtracts fulfilled-but-not-delivered quantities, flows.md §4):

    {"id": fulfillment_gid, "order_id": order_gid, "status": "SUCCESS" | "CANCELLED" | ..., "location_id": gid,
     "updated_at": iso, "lines": [{"line_item_id": gid, "sku": str | null, "inventory_item_id": gid | null,
     "quantity": int}], "name", "order_name", "created_at", "tracking": [{"company", "number", "url"}]}

``plan_delivery`` turns a fulfilment into the X3 delivery to create, or a failure naming what to fix. Pure:
no Dagster, HTTP or database.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from pydantic import BaseModel, ConfigDict

from x3_shopify_dagster.domain.mapping import ItemMapping
from x3_shopify_dagster.domain.shopify_orders import UtcDatetime

SUCCESS = "SUCCESS"
CANCELLED = "CANCELLED"
REFERENCE_MAX_LENGTH = 30  # X3 BPRVCR holds 30 characters
TRACKING_MAX_LENGTH = 250  # what the connector writes to the delivery's tracking field


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class FulfillmentLine(_Frozen):
    line_item_id: str
    sku: str | None = None
    inventory_item_id: str | None = None
    quantity: int


class Tracking(_Frozen):
    company: str | None = None
    number: str | None = None
    url: str | None = None


class ShopifyFulfillment(_Frozen):
    id: str
    order_id: str
    status: str
    location_id: str | None = None
    updated_at: UtcDatetime
    lines: tuple[FulfillmentLine, ...]
    name: str | None = None
    order_name: str | None = None
    created_at: UtcDatetime
    tracking: tuple[Tracking, ...] = ()

    @classmethod
    def from_graphql(cls, node: Mapping[str, Any], *, order_id: str, order_name: str | None) -> ShopifyFulfillment:
        """A fulfilment node with its line items read to the end (``fulfillmentLineItems.nodes``)."""
        connection = node.get("fulfillmentLineItems") or {}
        if (connection.get("pageInfo") or {}).get("hasNextPage"):
            raise ValueError(f"fulfillment {node.get('id')} still has unread line items")
        lines = []
        for item in connection.get("nodes") or []:
            line_item = item.get("lineItem") or {}
            variant = line_item.get("variant") or {}
            inventory_item = variant.get("inventoryItem") or {}
            lines.append(FulfillmentLine(
                line_item_id=line_item["id"], sku=line_item.get("sku"),
                inventory_item_id=inventory_item.get("id"), quantity=int(item.get("quantity") or 0),
            ))
        location = node.get("location") or {}
        return cls(
            id=node["id"], order_id=order_id, status=node["status"], location_id=location.get("id"),
            updated_at=node["updatedAt"], created_at=node["createdAt"], name=node.get("name"),
            order_name=order_name, lines=tuple(lines),
            tracking=tuple(Tracking.model_validate(t) for t in node.get("trackingInfo") or ()),
        )

    @property
    def legacy_id(self) -> int:
        tail = self.id.rsplit("/", 1)[-1]
        if not tail.isdigit():
            raise ValueError(f"not a Shopify fulfillment GID: {self.id!r}")
        return int(tail)

    def to_payload(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def content_hash(self, payload: Mapping[str, Any] | None = None) -> str:
        """SHA-256 of the canonical JSON without ``updated_at`` (a bump with no visible change is no new version)."""
        canonical = dict(self.to_payload() if payload is None else payload)
        canonical.pop("updated_at", None)
        return hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)).hexdigest()

    def tracking_text(self) -> str:
        """Tracking numbers (with carrier) as one line for the X3 delivery, e.g. ``UPS 1Z999, DHL 123``."""
        parts = [" ".join(p for p in (t.company, t.number) if p) for t in self.tracking if t.number]
        return ", ".join(parts)[:TRACKING_MAX_LENGTH]

    def ship_date(self, business_timezone: str) -> date:
        """The delivery date is the fulfilment's date in the business timezone (flows.md §1)."""
        return self.created_at.astimezone(ZoneInfo(business_timezone)).date()


def delivery_reference(store: str, fulfillment_legacy_id: int) -> str:
    """The idempotency key in the delivery's BPRVCR (≤ 30 characters): ``SHIP:{store}:{fulfilment id}``.

    Same scheme as the invoice reference: a long store key becomes a 6-character digest, and the id is never
    shortened. Deterministic, so a retry after a crash finds its delivery.
    """
    if fulfillment_legacy_id < 0:
        raise ValueError(f"fulfillment id must not be negative, got {fulfillment_legacy_id}")
    number = str(fulfillment_legacy_id)
    reference = f"SHIP:{store}:{number}"
    if len(reference) <= REFERENCE_MAX_LENGTH:
        return reference
    digest = base64.b32encode(hashlib.sha256(store.encode("utf-8")).digest()).decode("ascii")[:6]
    reference = f"SHIP:{digest}:{number}"
    if len(reference) <= REFERENCE_MAX_LENGTH:
        return reference
    raise ValueError(f"fulfillment id {number} is longer than a Shopify id (20 digits) can be")


# ------------------------------------------------------------------------------------------------- planning
@dataclass(frozen=True)
class DeliveryLinePlan:
    line_item_id: str
    sku: str | None
    item: str
    quantity: int


@dataclass(frozen=True)
class DeliveryPlan:
    customer: str
    site: str
    invoice: str
    ship_date: date
    reference: str
    tracking: str
    lines: tuple[DeliveryLinePlan, ...]

    def to_x3_payload(self) -> dict[str, Any]:
        """The YSDH (GESSDH) object: header SDH0_1, lines SDH1_4."""
        return {
            "SDH0_1": {
                "BPCORD": self.customer,
                "STOFCY": self.site,
                "SHIDAT": self.ship_date.strftime("%Y%m%d"),
                "SIHNUM": self.invoice,
                "BPRVCR": self.reference,
                "YTRACKING": self.tracking,
            },
            "SDH1_4": [{"ITMREF": line.item, "QTY": str(line.quantity)} for line in self.lines],
        }


@dataclass(frozen=True)
class DeliveryFailure:
    reason: str  # site_not_mapped | item_not_mapped | no_lines
    message: str  # what, which field, how to fix
    field: str


def plan_delivery(
    fulfillment: ShopifyFulfillment,
    *,
    store: str,
    customer: str,
    invoice: str,
    location_sites: Mapping[str, str],
    items: ItemMapping,
    business_timezone: str,
) -> DeliveryPlan | DeliveryFailure:
    """The X3 delivery for a successful fulfilment: its site from the location map, items from the SKUs."""
    site = location_sites.get(fulfillment.location_id or "")
    if not site:
        where = fulfillment.location_id or "no location"
        return DeliveryFailure(
            "site_not_mapped",
            f"Shopify location {where} of fulfillment {fulfillment.name or fulfillment.id} has no X3 site. Fix: add "
            f"it to X3SD_STORES__{store.upper()}__LOCATION_SITES (location id → X3 stock site, STOFCY), then "
            "re-materialize the partition.",
            "location_id",
        )
    lines: list[DeliveryLinePlan] = []
    problems: list[str] = []
    for index, line in enumerate(fulfillment.lines, 1):
        if line.quantity <= 0:
            continue
        item, why = items.item_for(line.sku)
        if item is None:
            problems.append(f"line {index} ({line.line_item_id}): {why}")
            continue
        lines.append(DeliveryLinePlan(line.line_item_id, line.sku, item, line.quantity))
    if problems:
        return DeliveryFailure(
            "item_not_mapped",
            "No X3 item for " + "; ".join(problems) + ". The line's SKU is the X3 item code (items in the mapping "
            "override it). Fix: set the SKU in Shopify or the mapping's items section, then re-materialize.",
            "lines.sku",
        )
    if not lines:
        return DeliveryFailure(
            "no_lines", f"fulfillment {fulfillment.name or fulfillment.id} ships no quantity", "lines.quantity"
        )
    return DeliveryPlan(
        customer=customer,
        site=site,
        invoice=invoice,
        ship_date=fulfillment.ship_date(business_timezone),
        reference=delivery_reference(store, fulfillment.legacy_id),
        tracking=fulfillment.tracking_text(),
        lines=tuple(lines),
    )


def delivered_quantities(deliveries: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Σ quantity per line item over the deliveries recorded on an order (``x3_documents["deliveries"]``)."""
    totals: dict[str, int] = {}
    for delivery in deliveries:
        for line_item_id, quantity in (delivery.get("quantities") or {}).items():
            totals[line_item_id] = totals.get(line_item_id, 0) + int(quantity)
    return totals


def delivery_extent(order_payload: Mapping[str, Any] | None, deliveries: Sequence[Mapping[str, Any]]) -> str:
    """``fully`` or ``partly``: how much of an order (its stored payload) the listed deliveries cover."""
    lines = (order_payload or {}).get("line_items") or []
    return "fully" if fully_delivered(lines, delivered_quantities(deliveries)) else "partly"


def fully_delivered(order_lines: Sequence[Mapping[str, Any]], delivered: Mapping[str, int]) -> bool:
    """Every line still to ship (current quantity, shipping required) is covered by validated deliveries."""
    for line in order_lines:
        if line.get("requires_shipping") is False:
            continue
        if delivered.get(str(line["id"]), 0) < int(line.get("current_quantity") or 0):
            return False
    return True

