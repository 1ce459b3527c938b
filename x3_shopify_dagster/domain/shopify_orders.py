"""Typed Shopify orders, validated from the GraphQL Admin API shape.

``order_payload`` reshapes an order node as the paged queries return it (connections as ``{nodes, pageInfo}``
or ``{edges: [{node}]}``) and as the bulk export assembles it (connections as plain lists of child rows) into
the stored payload: nested objects the connector only needs an id from (customer, variant, location, ...) are
flattened, every attribute is snake_case, and every value is in the JSON form ``ShopifyOrder.to_payload()``
gives (amounts and rates as Decimal strings, timestamps in UTC). It does not validate: staging stores
``NormalisedOrder`` (the payload, its identity and content hash) without building the model, and posting
validates each staged payload once with ``ShopifyOrder.model_validate`` (``ShopifyOrder.from_graphql`` is the
two steps in one). A value the model would refuse is left as sent, so that validation names it.

Pure module: pydantic, orjson and the standard library only.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, TypeAdapter, ValidationError

from x3_shopify_dagster.domain.money import parse_amount


class IncompleteOrderError(ValueError):
    """An order node still has unread pages in one of its connections (``pageInfo.hasNextPage``)."""


class MalformedOrderError(ValueError):
    """An order node lacks what identifies it (id, name or updatedAt): it cannot even be staged."""


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
    location_id: str | None = None  # where a restock put the units back (None when nothing was restocked)
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
        return cls.model_validate(order_payload(node))

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
        return encode_payload(self.to_payload() if payload is None else payload)[1]


def encode_payload(payload: Mapping[str, Any]) -> tuple[str, str]:
    """(JSON text to store, content hash) of an order payload, from one serialisation.

    The hash is the SHA-256 of the canonical JSON of everything except the top-level ``updated_at``: orjson's
    sorted, compact UTF-8 form, byte for byte what ``json.dumps(sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)`` gives, three times faster. The stored text is the same canonical JSON with
    ``updated_at`` put back: it sorts after every other top-level key, so it is appended, not re-encoded.
    """
    body = dict(payload)
    updated_at = body.pop("updated_at")
    canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    content_hash = hashlib.sha256(canonical).hexdigest()
    if body and max(body) < "updated_at":
        stored = b"%s,\"updated_at\":%s}" % (canonical[:-1], orjson.dumps(updated_at))
    else:  # not an order payload's keys: encode the whole document
        stored = orjson.dumps(dict(payload), option=orjson.OPT_SORT_KEYS)
    return stored.decode(), content_hash


@dataclass(frozen=True, slots=True)
class NormalisedOrder:
    """An order as staging stores it: the payload ``ShopifyOrder.to_payload()`` would give, not validated.

    Building the model (~60 nested instances) and dumping it again cost half of bulk staging's time; staging
    only needs the identity, the payload and its hash. Posting validates the payload (``to_model``).
    """

    id: str
    name: str
    updated_at: datetime  # UTC
    payload: dict[str, Any] = field(repr=False)

    @classmethod
    def from_graphql(cls, node: Mapping[str, Any]) -> NormalisedOrder:
        """Reshape an order node (paged or assembled bulk); ``MalformedOrderError`` when its identity is bad."""
        return cls.from_payload(order_payload(node))

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> NormalisedOrder:
        order_id, name, updated_at = payload.get("id"), payload.get("name"), payload.get("updated_at")
        for key, value in (("id", order_id), ("name", name), ("updated_at", updated_at)):
            if not isinstance(value, str) or not value:
                raise MalformedOrderError(f"order {order_id!r}: {key} is {value!r}, expected a non-empty string")
        try:
            moment = _to_utc(updated_at)
        except ValueError as error:
            raise MalformedOrderError(f"order {order_id}: updated_at {updated_at!r} is not a timestamp with a "
                                      f"timezone ({error})") from None
        return cls(id=order_id, name=name, updated_at=moment, payload=payload)

    def encoded(self) -> tuple[str, str]:
        """(JSON text to store, content hash): see ``encode_payload``."""
        return encode_payload(self.payload)

    def to_model(self) -> ShopifyOrder:
        """The validated order (raises pydantic's ``ValidationError`` naming each bad field)."""
        return ShopifyOrder.model_validate(self.payload)


@dataclass(frozen=True, slots=True)
class EncodedOrder:
    """A ``NormalisedOrder`` already encoded for staging (``encode_payload``), without its payload dict.

    What the bulk worker process sends back (``shopify/bulk_split.py``): the stored JSON text is all staging
    needs, and a string is far cheaper to pass between processes than the nested dict it came from.
    """

    id: str
    name: str
    updated_at: datetime  # UTC
    content_hash: str
    payload_json: str = field(repr=False)

    @classmethod
    def of(cls, order: NormalisedOrder) -> EncodedOrder:
        payload_json, content_hash = order.encoded()
        return cls(order.id, order.name, order.updated_at, content_hash, payload_json)


# --- GraphQL shape -> the payload (flat snake_case dicts, JSON form) ----------------------------------------
#
# Each leaf is put in the form the model's JSON dump gives. The common, already canonical values (Shopify's
# "2026-11-27T10:00:00Z", booleans, integers) are kept as they are; amounts and float rates go through the
# model's own field types once per distinct value (cached); anything else goes through the field type too,
# and a value the type refuses is kept as sent, for validation at posting to name it.

_AMOUNT: TypeAdapter[Decimal] = TypeAdapter(Amount)
_TIMESTAMP: TypeAdapter[datetime] = TypeAdapter(UtcDatetime)
_RATE: TypeAdapter[Decimal] = TypeAdapter(Rate)
_INT: TypeAdapter[int] = TypeAdapter(int)
_BOOL: TypeAdapter[bool] = TypeAdapter(bool)
# What the model dumps a UTC timestamp without fraction as; any string of this shape is its own JSON form
# (when it is a valid timestamp at all).
_CANONICAL_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z", re.ASCII).match


def _json_leaf(adapter: TypeAdapter[Any], value: Any) -> Any:
    try:
        return adapter.dump_python(adapter.validate_python(value), mode="json")
    except (ValidationError, ValueError, TypeError):
        return value  # as sent: ShopifyOrder.model_validate names the field


@lru_cache(maxsize=8192)
def _amount_text(text: str) -> Any:
    return _json_leaf(_AMOUNT, text)


@lru_cache(maxsize=1024)
def _nonzero_rate(rate: float) -> Any:
    # Not for zero: 0.0 and -0.0 are one cache key but dump differently.
    return _json_leaf(_RATE, rate)


def _amount_json(value: Any) -> Any:
    return _amount_text(value) if type(value) is str else value  # non-strings are refused by the model


def _timestamp(value: Any) -> Any:
    if value is None or (type(value) is str and _CANONICAL_UTC(value)):
        return value
    return _json_leaf(_TIMESTAMP, value)


def _rate(value: Any) -> Any:
    if value is None:
        return None
    if type(value) is float and value:
        return _nonzero_rate(value)
    return _json_leaf(_RATE, value)


def _int(value: Any) -> Any:
    if value is None or type(value) is int:
        return value
    if type(value) is str and value.isascii() and value.isdigit():  # UnsignedInt64 comes as a string
        return int(value)
    return _json_leaf(_INT, value)


def _bool(value: Any) -> Any:
    return value if value is None or type(value) is bool else _json_leaf(_BOOL, value)


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
    amount = value.get("amount")
    # _amount_json inlined: ~35 money objects per order make this the hottest function of bulk staging
    return {
        "amount": _amount_text(amount) if type(amount) is str else amount,
        "currency_code": value.get("currencyCode"),
    }


def _bag(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    shop, presentment = value.get("shopMoney"), value.get("presentmentMoney")
    return {
        "shop_money": None if shop is None else _money(shop),
        "presentment_money": None if presentment is None else _money(presentment),
    }


def _list(values: Any, convert: Callable[[Mapping[str, Any]], dict[str, Any]]) -> list[dict[str, Any]]:
    return [convert(value) for value in values] if values else []


def _tax_line(value: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "title": value.get("title"),
        "rate": _rate(value.get("rate")),
        "rate_percentage": _rate(value.get("ratePercentage")),
        "channel_liable": _bool(value.get("channelLiable")),
        "price_set": _bag(value.get("priceSet")),
    }


def _discount_allocation(value: Mapping[str, Any]) -> dict[str, Any]:
    application = value.get("discountApplication") or {}
    return {
        "allocated_amount_set": _bag(value.get("allocatedAmountSet")),
        "discount_application_index": _int(application.get("index")),
    }


def _discount_application(value: Mapping[str, Any]) -> dict[str, Any]:
    amount = value.get("value") or {}
    value_type = amount.get("__typename") or ("MoneyV2" if "amount" in amount else "PricingPercentageValue")
    return {
        "index": _int(value.get("index")),
        "allocation_method": value.get("allocationMethod"),
        "target_selection": value.get("targetSelection"),
        "target_type": value.get("targetType"),
        "value_type": value_type,
        "value_amount": _money(amount) if "amount" in amount else None,
        "value_percentage": _rate(amount.get("percentage")),
    }


def _duty(value: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": value.get("id"), "price_set": _bag(value.get("price"))}


def _line_item(value: Mapping[str, Any]) -> dict[str, Any]:
    variant = value.get("variant") or {}
    return {
        "id": value.get("id"),
        "sku": value.get("sku"),
        "name": value.get("name"),
        "quantity": _int(value.get("quantity")),
        "current_quantity": _int(value.get("currentQuantity")),
        "requires_shipping": _bool(value.get("requiresShipping")),
        "is_gift_card": _bool(value.get("isGiftCard")),
        "taxable": _bool(value.get("taxable")),
        "variant_id": variant.get("id"),
        "inventory_item_id": _nested_id(variant.get("inventoryItem")),
        "original_unit_price_set": _bag(value.get("originalUnitPriceSet")),
        "discounted_total_set": _bag(value.get("discountedTotalSet")),
        "tax_lines": _list(value.get("taxLines"), _tax_line),
        "discount_allocations": _list(value.get("discountAllocations"), _discount_allocation),
        "duties": _list(value.get("duties"), _duty),
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
        "tax_lines": _list(value.get("taxLines"), _tax_line),
        "discount_allocations": _list(value.get("discountAllocations"), _discount_allocation),
    }


def _refund(value: Mapping[str, Any]) -> dict[str, Any]:
    where = f"refund {value.get('id')}"
    return {
        "id": value.get("id"),
        "created_at": _timestamp(value.get("createdAt")),
        "updated_at": _timestamp(value.get("updatedAt")),
        "processed_at": _timestamp(value.get("processedAt")),
        "note": value.get("note"),
        "total_refunded_set": _bag(value.get("totalRefundedSet")),
        "refund_line_items": [
            {
                "quantity": _int(item.get("quantity")),
                "restock_type": item.get("restockType"),
                "line_item_id": _nested_id(item.get("lineItem")),
                "sku": (item.get("lineItem") or {}).get("sku"),
                "location_id": _nested_id(item.get("location")),
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
        "created_at": _timestamp(value.get("createdAt")),
        "updated_at": _timestamp(value.get("updatedAt")),
        "status": value.get("status"),
        "display_status": value.get("displayStatus"),
        "location_id": _nested_id(value.get("location")),
        "tracking_info": [
            {"company": t.get("company"), "number": t.get("number"), "url": t.get("url")}
            for t in value.get("trackingInfo") or []
        ],
        "fulfillment_line_items": [
            {
                "quantity": _int(item.get("quantity")),
                "line_item_id": _nested_id(item.get("lineItem")),
                "sku": (item.get("lineItem") or {}).get("sku"),
            }
            for item in _required_items(value, "fulfillmentLineItems", where=where)
        ],
    }


def order_payload(node: Mapping[str, Any]) -> dict[str, Any]:
    """The stored payload of an order node: for a node the model accepts, exactly
    ``ShopifyOrder.from_graphql(node).to_payload()`` (same keys in the same order, same values), without
    building the model. Raises ``IncompleteOrderError`` for unread pages; does not validate otherwise."""
    where = f"order {node.get('id')}"
    customer = node.get("customer") or {}
    customer_email = (customer.get("defaultEmailAddress") or {}).get("emailAddress")
    return {
        "id": node.get("id"),
        "legacy_resource_id": _int(node.get("legacyResourceId")),
        "name": node.get("name"),
        "email": node.get("email"),
        "customer_id": customer.get("id"),
        "customer_email": customer_email,
        "created_at": _timestamp(node.get("createdAt")),
        "updated_at": _timestamp(node.get("updatedAt")),
        "processed_at": _timestamp(node.get("processedAt")),
        "cancelled_at": _timestamp(node.get("cancelledAt")),
        "closed_at": _timestamp(node.get("closedAt")),
        "cancel_reason": node.get("cancelReason"),
        "test": _bool(node.get("test")),
        "source_name": node.get("sourceName"),
        "po_number": node.get("poNumber"),
        "display_financial_status": node.get("displayFinancialStatus"),
        "display_fulfillment_status": node.get("displayFulfillmentStatus"),
        "currency_code": node.get("currencyCode"),
        "presentment_currency_code": node.get("presentmentCurrencyCode"),
        "taxes_included": _bool(node.get("taxesIncluded")),
        "total_price_set": _bag(node.get("totalPriceSet")),
        "subtotal_price_set": _bag(node.get("subtotalPriceSet")),
        "total_tax_set": _bag(node.get("totalTaxSet")),
        "total_shipping_price_set": _bag(node.get("totalShippingPriceSet")),
        "total_discounts_set": _bag(node.get("totalDiscountsSet")),
        "current_total_price_set": _bag(node.get("currentTotalPriceSet")),
        "original_total_duties_set": _bag(node.get("originalTotalDutiesSet")),
        "tax_lines": _list(node.get("taxLines"), _tax_line),
        "discount_applications": [
            _discount_application(a)
            for a in _items(node.get("discountApplications"), where=f"{where} discountApplications")
        ],
        "line_items": [_line_item(i) for i in _items(node.get("lineItems"), where=f"{where} lineItems")],
        "shipping_lines": [
            _shipping_line(s) for s in _items(node.get("shippingLines"), where=f"{where} shippingLines")
        ],
        "refunds": _list(node.get("refunds"), _refund),
        "fulfillments": _list(node.get("fulfillments"), _fulfillment),
    }
