"""Typed Shopify orders, validated from the GraphQL Admin API shape.

``ShopifyOrder.from_graphql`` accepts an order node as the paged queries return it (connections as
``{nodes, pageInfo}`` or ``{edges: [{node}]}``) and as the bulk export assembles it (connections as plain
lists of child rows). Nested objects the connector only needs an id from (customer, variant, location, ...)
are flattened, and every attribute is snake_case. ``to_payload()`` gives a JSON-safe dict that
``ShopifyOrder.model_validate`` turns back into an equal order, so a failed record replays from storage.

Pure module: pydantic, orjson and the standard library only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict

from x3_shopify_dagster.domain.money import parse_amount


class IncompleteOrderError(ValueError):
    """An order node still has unread pages in one of its connections (``pageInfo.hasNextPage``)."""


def _to_utc(value: Any) -> Any:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"timestamp without a timezone: {value.isoformat()}")
        return value.astimezone(UTC)
    return value


def _float_to_decimal(value: Any) -> Any:
    # Tax rates are GraphQL Floats; repr() gives the shortest string that reads back to the same float,
    # so 0.2 becomes Decimal("0.2") and not 0.200000000000000011102230246251565404236316680908203125.
    if isinstance(value, float):
        return Decimal(repr(value))
    return value


def _amount(value: Any) -> Decimal:
    try:
        return parse_amount(value)
    except TypeError as error:  # pydantic only turns ValueError into a ValidationError
        raise ValueError(str(error)) from None


Amount = Annotated[Decimal, BeforeValidator(_amount)]
UtcDatetime = Annotated[datetime, BeforeValidator(_to_utc)]
Rate = Annotated[Decimal, BeforeValidator(_float_to_decimal)]


class _Frozen(BaseModel):
    # Unknown keys are ignored so payloads stored by an older version (with a field since dropped) replay.
    model_config = ConfigDict(frozen=True, extra="ignore")


class Money(_Frozen):
    amount: Amount
    currency_code: str


class MoneyBag(_Frozen):
    shop_money: Money
    presentment_money: Money | None = None


class TaxLine(_Frozen):
    title: str
    rate: Rate | None = None
    rate_percentage: Rate | None = None
    channel_liable: bool | None = None
    price_set: MoneyBag


class DiscountApplication(_Frozen):
    index: int
    allocation_method: str
    target_selection: str
    target_type: str
    value_type: str  # "MoneyV2" (fixed amount) or "PricingPercentageValue"
    value_amount: Money | None = None
    value_percentage: Rate | None = None


class DiscountAllocation(_Frozen):
    allocated_amount_set: MoneyBag
    discount_application_index: int


class Duty(_Frozen):
    id: str
    price_set: MoneyBag


class LineItem(_Frozen):
    id: str
    sku: str | None = None
    name: str
    quantity: int
    current_quantity: int
    requires_shipping: bool | None = None
    is_gift_card: bool | None = None
    taxable: bool | None = None
    variant_id: str | None = None
    inventory_item_id: str | None = None
    original_unit_price_set: MoneyBag
    discounted_total_set: MoneyBag
    tax_lines: tuple[TaxLine, ...] = ()
    discount_allocations: tuple[DiscountAllocation, ...] = ()
    duties: tuple[Duty, ...] = ()


class ShippingLine(_Frozen):
    id: str | None = None
    title: str
    code: str | None = None
    source: str | None = None
    is_removed: bool = False
    original_price_set: MoneyBag
    discounted_price_set: MoneyBag
    tax_lines: tuple[TaxLine, ...] = ()
    discount_allocations: tuple[DiscountAllocation, ...] = ()


class RefundLineItem(_Frozen):
    quantity: int
    restock_type: str
    line_item_id: str
    sku: str | None = None
    subtotal_set: MoneyBag
    total_tax_set: MoneyBag


class RefundShippingLine(_Frozen):
    shipping_line_id: str | None = None
    title: str | None = None
    subtotal_amount_set: MoneyBag
    tax_amount_set: MoneyBag


class Refund(_Frozen):
    id: str
    created_at: UtcDatetime | None = None
    updated_at: UtcDatetime | None = None
    processed_at: UtcDatetime | None = None
    note: str | None = None
    total_refunded_set: MoneyBag
    refund_line_items: tuple[RefundLineItem, ...] = ()
    refund_shipping_lines: tuple[RefundShippingLine, ...] = ()


class TrackingInfo(_Frozen):
    company: str | None = None
    number: str | None = None
    url: str | None = None


class FulfillmentLineItem(_Frozen):
    quantity: int | None = None
    line_item_id: str
    sku: str | None = None


class Fulfillment(_Frozen):
    id: str
    name: str | None = None
    created_at: UtcDatetime
    updated_at: UtcDatetime
    status: str
    display_status: str | None = None
    location_id: str | None = None
    tracking_info: tuple[TrackingInfo, ...] = ()
    fulfillment_line_items: tuple[FulfillmentLineItem, ...] = ()


class ShopifyOrder(_Frozen):
    id: str
    legacy_resource_id: int
    name: str
    email: str | None = None
    customer_id: str | None = None
    customer_email: str | None = None
    created_at: UtcDatetime
    updated_at: UtcDatetime
    processed_at: UtcDatetime
    cancelled_at: UtcDatetime | None = None
    closed_at: UtcDatetime | None = None
    cancel_reason: str | None = None
    test: bool
    source_name: str | None = None
    po_number: str | None = None
    display_financial_status: str | None = None
    display_fulfillment_status: str
    currency_code: str
    presentment_currency_code: str
    taxes_included: bool
    total_price_set: MoneyBag
    subtotal_price_set: MoneyBag | None = None  # null when the order has no line items left
    total_tax_set: MoneyBag | None = None
    total_shipping_price_set: MoneyBag
    total_discounts_set: MoneyBag | None = None
    current_total_price_set: MoneyBag
    original_total_duties_set: MoneyBag | None = None
    tax_lines: tuple[TaxLine, ...] = ()
    discount_applications: tuple[DiscountApplication, ...] = ()
    line_items: tuple[LineItem, ...] = ()
    shipping_lines: tuple[ShippingLine, ...] = ()
    refunds: tuple[Refund, ...] = ()
    fulfillments: tuple[Fulfillment, ...] = ()

    @classmethod
    def from_graphql(cls, node: Mapping[str, Any]) -> ShopifyOrder:
        """Validate an order node from the paged query or from the assembled bulk export."""
        return cls.model_validate(_order(node))

    @property
    def contact_email(self) -> str | None:
        """The order's contact e-mail, else the customer's default e-mail (null for redacted guests)."""
        return self.email or self.customer_email

    def to_payload(self) -> dict[str, Any]:
        """JSON-safe dict (Decimals and timestamps as strings); ``model_validate`` reads it back."""
        return self.model_dump(mode="json")

    def content_hash(self, payload: Mapping[str, Any] | None = None) -> str:
        """SHA-256 of the canonical JSON of everything except ``updated_at``.

        Shopify bumps ``updatedAt`` without any visible change; equal hashes let staging skip such versions.
        Pass this order's ``to_payload()`` when you already have it: dumping the model again costs as much.
        The canonical JSON is orjson's sorted, compact UTF-8 form, byte for byte what
        ``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` gives, three times faster.
        """
        canonical = dict(self.to_payload() if payload is None else payload)
        canonical.pop("updated_at")
        return hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)).hexdigest()


# --- GraphQL shape -> flat snake_case dicts ---------------------------------------------------------


def _items(value: Any, *, where: str) -> list[Mapping[str, Any]]:
    """The elements of a connection ({nodes}/{edges}), of an assembled bulk child list, or of a plain list."""
    if value is None:
        return []
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return list(value)
    if isinstance(value, Mapping):
        page_info = value.get("pageInfo") or {}
        if page_info.get("hasNextPage"):
            raise IncompleteOrderError(f"{where} has more pages than were read (pageInfo.hasNextPage)")
        if "nodes" in value:
            return list(value["nodes"] or [])
        if "edges" in value:
            return [edge["node"] for edge in value["edges"] or []]
    raise ValueError(f"{where}: expected a connection or a list, got {type(value).__name__}")


def _required_items(parent: Mapping[str, Any], key: str, *, where: str) -> list[Mapping[str, Any]]:
    # A refund or fulfilment without its line items selected at all was not completed by the reader
    # (bulk exports cannot select them); accepting it would silently drop refunded or shipped lines.
    if key not in parent:
        raise IncompleteOrderError(f"{where} was read without {key}")
    return _items(parent[key], where=f"{where} {key}")


def _nested_id(value: Any) -> str | None:
    return value.get("id") if isinstance(value, Mapping) else None


def _money(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    return {"amount": value.get("amount"), "currency_code": value.get("currencyCode")}


def _bag(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    return {
        "shop_money": _money(value.get("shopMoney")),
        "presentment_money": _money(value.get("presentmentMoney")),
    }


def _tax_line(value: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "title": value.get("title"),
        "rate": value.get("rate"),
        "rate_percentage": value.get("ratePercentage"),
        "channel_liable": value.get("channelLiable"),
        "price_set": _bag(value.get("priceSet")),
    }


def _discount_allocation(value: Mapping[str, Any]) -> dict[str, Any]:
    application = value.get("discountApplication") or {}
    return {
        "allocated_amount_set": _bag(value.get("allocatedAmountSet")),
        "discount_application_index": application.get("index"),
    }


def _discount_application(value: Mapping[str, Any]) -> dict[str, Any]:
    amount = value.get("value") or {}
    value_type = amount.get("__typename") or ("MoneyV2" if "amount" in amount else "PricingPercentageValue")
    return {
        "index": value.get("index"),
        "allocation_method": value.get("allocationMethod"),
        "target_selection": value.get("targetSelection"),
        "target_type": value.get("targetType"),
        "value_type": value_type,
        "value_amount": _money(amount) if "amount" in amount else None,
        "value_percentage": amount.get("percentage"),
    }


def _line_item(value: Mapping[str, Any]) -> dict[str, Any]:
    variant = value.get("variant") or {}
    return {
        "id": value.get("id"),
        "sku": value.get("sku"),
        "name": value.get("name"),
        "quantity": value.get("quantity"),
        "current_quantity": value.get("currentQuantity"),
        "requires_shipping": value.get("requiresShipping"),
        "is_gift_card": value.get("isGiftCard"),
        "taxable": value.get("taxable"),
        "variant_id": variant.get("id"),
        "inventory_item_id": _nested_id(variant.get("inventoryItem")),
        "original_unit_price_set": _bag(value.get("originalUnitPriceSet")),
        "discounted_total_set": _bag(value.get("discountedTotalSet")),
        "tax_lines": [_tax_line(t) for t in value.get("taxLines") or []],
        "discount_allocations": [_discount_allocation(a) for a in value.get("discountAllocations") or []],
        "duties": [{"id": d.get("id"), "price_set": _bag(d.get("price"))} for d in value.get("duties") or []],
    }


def _shipping_line(value: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": value.get("id"),
        "title": value.get("title"),
        "code": value.get("code"),
        "source": value.get("source"),
        "is_removed": bool(value.get("isRemoved")),
        "original_price_set": _bag(value.get("originalPriceSet")),
        "discounted_price_set": _bag(value.get("discountedPriceSet")),
        "tax_lines": [_tax_line(t) for t in value.get("taxLines") or []],
        "discount_allocations": [_discount_allocation(a) for a in value.get("discountAllocations") or []],
    }


def _refund(value: Mapping[str, Any]) -> dict[str, Any]:
    where = f"refund {value.get('id')}"
    return {
        "id": value.get("id"),
        "created_at": value.get("createdAt"),
        "updated_at": value.get("updatedAt"),
        "processed_at": value.get("processedAt"),
        "note": value.get("note"),
        "total_refunded_set": _bag(value.get("totalRefundedSet")),
        "refund_line_items": [
            {
                "quantity": item.get("quantity"),
                "restock_type": item.get("restockType"),
                "line_item_id": _nested_id(item.get("lineItem")),
                "sku": (item.get("lineItem") or {}).get("sku"),
                "subtotal_set": _bag(item.get("subtotalSet")),
                "total_tax_set": _bag(item.get("totalTaxSet")),
            }
            for item in _required_items(value, "refundLineItems", where=where)
        ],
        "refund_shipping_lines": [
            {
                "shipping_line_id": _nested_id(item.get("shippingLine")),
                "title": (item.get("shippingLine") or {}).get("title"),
                "subtotal_amount_set": _bag(item.get("subtotalAmountSet")),
                "tax_amount_set": _bag(item.get("taxAmountSet")),
            }
            for item in _required_items(value, "refundShippingLines", where=where)
        ],
    }


def _fulfillment(value: Mapping[str, Any]) -> dict[str, Any]:
    where = f"fulfillment {value.get('id')}"
    return {
        "id": value.get("id"),
        "name": value.get("name"),
        "created_at": value.get("createdAt"),
        "updated_at": value.get("updatedAt"),
        "status": value.get("status"),
        "display_status": value.get("displayStatus"),
        "location_id": _nested_id(value.get("location")),
        "tracking_info": [
            {"company": t.get("company"), "number": t.get("number"), "url": t.get("url")}
            for t in value.get("trackingInfo") or []
        ],
        "fulfillment_line_items": [
            {
                "quantity": item.get("quantity"),
                "line_item_id": _nested_id(item.get("lineItem")),
                "sku": (item.get("lineItem") or {}).get("sku"),
            }
            for item in _required_items(value, "fulfillmentLineItems", where=where)
        ],
    }


def _order(node: Mapping[str, Any]) -> dict[str, Any]:
    where = f"order {node.get('id')}"
    customer = node.get("customer") or {}
    customer_email = (customer.get("defaultEmailAddress") or {}).get("emailAddress")
    return {
        "id": node.get("id"),
        "legacy_resource_id": node.get("legacyResourceId"),
        "name": node.get("name"),
        "email": node.get("email"),
        "customer_id": customer.get("id"),
        "customer_email": customer_email,
        "created_at": node.get("createdAt"),
        "updated_at": node.get("updatedAt"),
        "processed_at": node.get("processedAt"),
        "cancelled_at": node.get("cancelledAt"),
        "closed_at": node.get("closedAt"),
        "cancel_reason": node.get("cancelReason"),
        "test": node.get("test"),
        "source_name": node.get("sourceName"),
        "po_number": node.get("poNumber"),
        "display_financial_status": node.get("displayFinancialStatus"),
        "display_fulfillment_status": node.get("displayFulfillmentStatus"),
        "currency_code": node.get("currencyCode"),
        "presentment_currency_code": node.get("presentmentCurrencyCode"),
        "taxes_included": node.get("taxesIncluded"),
        "total_price_set": _bag(node.get("totalPriceSet")),
        "subtotal_price_set": _bag(node.get("subtotalPriceSet")),
        "total_tax_set": _bag(node.get("totalTaxSet")),
        "total_shipping_price_set": _bag(node.get("totalShippingPriceSet")),
        "total_discounts_set": _bag(node.get("totalDiscountsSet")),
        "current_total_price_set": _bag(node.get("currentTotalPriceSet")),
        "original_total_duties_set": _bag(node.get("originalTotalDutiesSet")),
        "tax_lines": [_tax_line(t) for t in node.get("taxLines") or []],
        "discount_applications": [
            _discount_application(a)
            for a in _items(node.get("discountApplications"), where=f"{where} discountApplications")
        ],
        "line_items": [_line_item(i) for i in _items(node.get("lineItems"), where=f"{where} lineItems")],
        "shipping_lines": [
            _shipping_line(s) for s in _items(node.get("shippingLines"), where=f"{where} shippingLines")
        ],
        "refunds": [_refund(r) for r in node.get("refunds") or []],
        "fulfillments": [_fulfillment(f) for f in node.get("fulfillments") or []],
    }
