"""Records the sandbox keeps per store.

Orders and everything hanging off them are immutable: a change replaces the order record (copy on write), so a
request or a bulk export can read a consistent snapshot without holding the state lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from x3_shopify_dagster.sandboxes.shopify.money import MoneyBag, sum_bags
from x3_shopify_dagster.sandboxes.shopify.pricing import Cart

# Shopify ids are 64-bit integers; the offsets only make sandbox GIDs look like real ones.
LINE_ITEM_ID_FACTOR = 1000  # line item id = order id * 1000 + position (orders keep < 1000 lines)
SHIPPING_LINE_ID_FACTOR = 100


def gid(kind: str, legacy_id: int) -> str:
    return f"gid://shopify/{kind}/{legacy_id}"


def parse_gid(value: str | int, kind: str) -> int | None:
    """The numeric id of ``gid://shopify/<kind>/<n>`` (or of a bare number); ``None`` when it is not one."""
    if isinstance(value, int):
        return value
    text = value.strip()
    prefix = f"gid://shopify/{kind}/"
    if text.startswith(prefix):
        text = text[len(prefix):]
    return int(text) if text.isdigit() else None


@dataclass(frozen=True, slots=True)
class Customer:
    legacy_id: int
    email: str | None
    first_name: str
    last_name: str

    @property
    def display_name(self) -> str:
        return f"{self.first_name} {self.last_name}"


@dataclass(frozen=True, slots=True)
class Location:
    legacy_id: int
    name: str
    is_active: bool = True
    fulfills_online_orders: bool = True


@dataclass(frozen=True, slots=True)
class Variant:
    """One product with its single variant and inventory item (the demo catalog has no options)."""

    product_id: int
    variant_id: int
    inventory_item_id: int
    sku: str
    title: str
    vendor: str
    price: Decimal
    updated_at: datetime


@dataclass(slots=True)
class InventoryLevel:
    """Mutable; only ever changed under the state lock."""

    inventory_item_id: int
    location_id: int
    quantities: dict[str, int]
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class RefundLine:
    line_position: int
    quantity: int
    restock_type: str  # RETURN | CANCEL | LEGACY_RESTOCK | NO_RESTOCK
    location_id: int | None
    subtotal: MoneyBag
    tax: MoneyBag


@dataclass(frozen=True, slots=True)
class RefundShipping:
    shipping_position: int
    subtotal: MoneyBag
    tax: MoneyBag


@dataclass(frozen=True, slots=True)
class Refund:
    legacy_id: int
    created_at: datetime
    note: str | None
    lines: tuple[RefundLine, ...]
    shipping: tuple[RefundShipping, ...]
    total: MoneyBag  # what went back to the customer: subtotals (+ tax when taxes are excluded)


@dataclass(frozen=True, slots=True)
class TrackingInfo:
    company: str | None
    number: str | None
    url: str | None


@dataclass(frozen=True, slots=True)
class FulfillmentLine:
    line_position: int
    quantity: int


@dataclass(frozen=True, slots=True)
class Fulfillment:
    legacy_id: int
    sequence: int  # 1, 2, ... within the order; gives the "#1001.1" name
    created_at: datetime
    updated_at: datetime
    status: str  # SUCCESS | CANCELLED
    display_status: str  # FULFILLED | IN_TRANSIT | DELIVERED | ...
    location_id: int | None
    tracking: tuple[TrackingInfo, ...]
    lines: tuple[FulfillmentLine, ...]
    delivered_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Order:
    store: str
    legacy_id: int
    number: int
    customer: Customer | None
    email: str | None
    created_at: datetime
    processed_at: datetime
    updated_at: datetime
    cart: Cart
    financial_status: str  # OrderDisplayFinancialStatus
    test: bool = False
    source_name: str = "web"
    po_number: str | None = None
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None
    closed_at: datetime | None = None
    refunds: tuple[Refund, ...] = ()
    fulfillments: tuple[Fulfillment, ...] = ()
    version: int = field(default=1, compare=False)  # content changes only; touch() leaves it alone

    @property
    def name(self) -> str:
        return f"#{self.number}"

    @property
    def fulfillment_order_status(self) -> str:
        """The status of the order's one fulfilment order (the sandbox ships each order from one location)."""
        shippable = [line.position for line in self.cart.lines if self.current_quantity(line.position) > 0]
        shipped = sum(self.fulfilled_quantity(p) for p in shippable)
        if shippable and all(self.fulfillable_quantity(p) == 0 for p in shippable):
            return "CLOSED"
        if self.cancelled_at is not None:
            return "CLOSED" if shipped else "CANCELLED"
        return "IN_PROGRESS" if shipped else "OPEN"

    @property
    def fulfillment_order_updated_at(self) -> datetime:
        """Moves with every change of the order's fulfilments (created, cancelled, tracking) and cancellation."""
        moments = [self.created_at, *(f.updated_at for f in self.fulfillments)]
        if self.cancelled_at is not None:
            moments.append(self.cancelled_at)
        return max(moments)

    def line_item_id(self, position: int) -> int:
        return self.legacy_id * LINE_ITEM_ID_FACTOR + position

    def shipping_line_id(self, position: int) -> int:
        return self.legacy_id * SHIPPING_LINE_ID_FACTOR + position

    def line_position(self, line_item_id: int) -> int | None:
        order_id, position = divmod(line_item_id, LINE_ITEM_ID_FACTOR)
        return position if order_id == self.legacy_id and position < len(self.cart.lines) else None

    # -- quantities --------------------------------------------------------------------------------------
    def refunded_quantity(self, position: int) -> int:
        return sum(line.quantity for refund in self.refunds for line in refund.lines
                   if line.line_position == position)

    def current_quantity(self, position: int) -> int:
        return self.cart.lines[position].quantity - self.refunded_quantity(position)

    def fulfilled_quantity(self, position: int) -> int:
        return sum(line.quantity for f in self.fulfillments if f.status == "SUCCESS" for line in f.lines
                   if line.line_position == position)

    def fulfillable_quantity(self, position: int) -> int:
        line = self.cart.lines[position]
        if not line.requires_shipping:
            return 0
        return max(0, self.current_quantity(position) - self.fulfilled_quantity(position))

    @property
    def display_fulfillment_status(self) -> str:
        shippable = [line.position for line in self.cart.lines if line.requires_shipping]
        fulfilled = sum(self.fulfilled_quantity(p) for p in shippable)
        if fulfilled == 0:
            return "UNFULFILLED"
        if all(self.fulfillable_quantity(p) == 0 for p in shippable):
            return "FULFILLED"
        return "PARTIALLY_FULFILLED"

    # -- money after refunds ----------------------------------------------------------------------------
    def _zero(self) -> MoneyBag:
        return MoneyBag.zero(self.cart.currency, self.cart.presentment_currency)

    def total_refunded(self) -> MoneyBag:
        return sum_bags([r.total for r in self.refunds], self.cart.currency, self.cart.presentment_currency)

    def refunded_line_subtotal(self) -> MoneyBag:
        return sum_bags([line.subtotal for r in self.refunds for line in r.lines], self.cart.currency,
                        self.cart.presentment_currency)

    def refunded_tax(self) -> MoneyBag:
        return sum_bags([part.tax for r in self.refunds for part in (*r.lines, *r.shipping)],
                        self.cart.currency, self.cart.presentment_currency)

    def refunded_shipping(self) -> MoneyBag:
        return sum_bags([s.subtotal for r in self.refunds for s in r.shipping], self.cart.currency,
                        self.cart.presentment_currency)

    def refunded_shipping_for(self, position: int) -> tuple[MoneyBag, MoneyBag]:
        subtotal, tax = self._zero(), self._zero()
        for refund in self.refunds:
            for part in refund.shipping:
                if part.shipping_position == position:
                    subtotal, tax = subtotal + part.subtotal, tax + part.tax
        return subtotal, tax


@dataclass
class BulkOperation:
    """Mutable status record of one bulk query; changed by its runner thread under the state lock."""

    legacy_id: int
    store: str
    query: str
    created_at: datetime
    status: str = "CREATED"
    error_code: str | None = None
    object_count: int = 0
    root_object_count: int = 0
    file_size: int | None = None
    url: str | None = None
    partial_data_url: str | None = None
    completed_at: datetime | None = None
    type: str = "QUERY"
