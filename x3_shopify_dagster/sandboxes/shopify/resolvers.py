"""Field resolvers: how the sandbox's records answer the Admin API schema subset.

Records are wrapped in small views only where a field needs its parent (a line item needs its order for
``currentQuantity``); everything else resolves straight from the immutable records.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from graphql import GraphQLError, GraphQLResolveInfo

from x3_shopify_dagster.sandboxes.shopify import inventory
from x3_shopify_dagster.sandboxes.shopify.catalog import QUANTITY_NAMES, StoreData
from x3_shopify_dagster.sandboxes.shopify.config import MAX_PAGE_SIZE
from x3_shopify_dagster.sandboxes.shopify.context import RequestContext
from x3_shopify_dagster.sandboxes.shopify.models import (
    LINE_ITEM_ID_FACTOR,
    BulkOperation,
    Customer,
    Fulfillment,
    InventoryLevel,
    Location,
    Order,
    Refund,
    RefundLine,
    RefundShipping,
    Variant,
    gid,
    parse_gid,
)
from x3_shopify_dagster.sandboxes.shopify.money import Money, MoneyBag, to_cents
from x3_shopify_dagster.sandboxes.shopify.pagination import Page, page_request, paginate
from x3_shopify_dagster.sandboxes.shopify.pricing import (
    CartLine,
    CartShippingLine,
    DiscountApplication,
    cumulative_share,
)
from x3_shopify_dagster.sandboxes.shopify.search import SearchField, compile_search
from x3_shopify_dagster.sandboxes.shopify.state import ORDER_SORT_KEYS

Resolver = Callable[..., Any]

DEFAULT_COUNT_LIMIT = 10_000  # ordersCount's default limit


def _ctx(info: GraphQLResolveInfo) -> RequestContext:
    return info.context  # type: ignore[no-any-return]


def _store(info: GraphQLResolveInfo) -> StoreData:
    ctx = _ctx(info)
    return ctx.state.store(ctx.store)


def _is_bulk(info: GraphQLResolveInfo) -> bool:
    return _ctx(info).bulk is not None


def attr(name: str) -> Resolver:
    def resolve(obj: Any, _info: GraphQLResolveInfo, **_args: Any) -> Any:
        return getattr(obj, name)

    return resolve


def gid_of(kind: str, id_attr: str = "legacy_id") -> Resolver:
    def resolve(obj: Any, _info: GraphQLResolveInfo) -> str:
        return gid(kind, getattr(obj, id_attr))

    return resolve


def _connection(info: GraphQLResolveInfo, records: list[Any], ids: list[int], args: dict[str, Any]) -> Any:
    """A connection over a short list that is already in its natural order (keyed by id)."""
    request = page_request(args, "int", bulk=_is_bulk(info))
    keys = [(i, i) for i in ids]
    order = sorted(range(len(records)), key=lambda i: keys[i])
    return paginate([records[i] for i in order], [keys[i] for i in order], request).as_connection()


# -- views --------------------------------------------------------------------------------------------------
class LineItemView:
    __slots__ = ("line", "order")

    def __init__(self, order: Order, line: CartLine) -> None:
        self.order, self.line = order, line


class ShippingLineView:
    __slots__ = ("order", "shipping")

    def __init__(self, order: Order, shipping: CartShippingLine) -> None:
        self.order, self.shipping = order, shipping


class RefundView:
    __slots__ = ("order", "refund")

    def __init__(self, order: Order, refund: Refund) -> None:
        self.order, self.refund = order, refund


class RefundLineView:
    __slots__ = ("index", "order", "part", "refund")

    def __init__(self, order: Order, refund: Refund, index: int, part: RefundLine) -> None:
        self.order, self.refund, self.index, self.part = order, refund, index, part


class RefundShippingView:
    __slots__ = ("index", "order", "part", "refund")

    def __init__(self, order: Order, refund: Refund, index: int, part: RefundShipping) -> None:
        self.order, self.refund, self.index, self.part = order, refund, index, part


class FulfillmentView:
    __slots__ = ("fulfillment", "order")

    def __init__(self, order: Order, fulfillment: Fulfillment) -> None:
        self.order, self.fulfillment = order, fulfillment


class FulfillmentOrderView:
    """The one fulfilment order of a sandbox order (each order ships from its store's default location)."""

    __slots__ = ("order",)

    def __init__(self, order: Order) -> None:
        self.order = order


class FulfillmentLineView:
    __slots__ = ("fulfillment", "index", "order", "position", "quantity")

    def __init__(self, order: Order, fulfillment: Fulfillment, index: int, position: int, quantity: int) -> None:
        self.order, self.fulfillment, self.index = order, fulfillment, index
        self.position, self.quantity = position, quantity


class ProductView:
    """Product of a demo variant (the demo catalog has one variant per product)."""

    __slots__ = ("variant",)

    def __init__(self, variant: Variant) -> None:
        self.variant = variant


class InventoryItemView:
    __slots__ = ("store", "variant")

    def __init__(self, store: StoreData, variant: Variant) -> None:
        self.store, self.variant = store, variant


class InventoryLevelView:
    __slots__ = ("level", "store")

    def __init__(self, store: StoreData, level: InventoryLevel) -> None:
        self.store, self.level = store, level


# -- money helpers ---------------------------------------------------------------------------------------------
def _bag_share(bag: MoneyBag, done: int, of: int) -> MoneyBag:
    return MoneyBag.of(cumulative_share(bag.shop.amount, Decimal(done), Decimal(of)), bag.shop.currency_code,
                       cumulative_share(bag.presentment.amount, Decimal(done), Decimal(of)),
                       bag.presentment.currency_code)


def _per_unit(bag: MoneyBag, quantity: int) -> MoneyBag:
    return MoneyBag.of(to_cents(bag.shop.amount / quantity), bag.shop.currency_code,
                       to_cents(bag.presentment.amount / quantity), bag.presentment.currency_code)


def _refunded_discounts(order: Order) -> MoneyBag:
    """The part of line discounts that went back with refunded units."""
    zero = MoneyBag.zero(order.cart.currency, order.cart.presentment_currency)
    total = zero
    for line in order.cart.lines:
        refunded = order.refunded_quantity(line.position)
        if refunded:
            original_share = _bag_share(line.original_total, refunded, line.quantity)
            net_refunded = zero
            for refund in order.refunds:
                for part in refund.lines:
                    if part.line_position == line.position:
                        net_refunded = net_refunded + part.subtotal
            total = total + (original_share - net_refunded)
    return total


# -- root fields -------------------------------------------------------------------------------------------------
def resolve_order(_root: Any, info: GraphQLResolveInfo, id: str) -> Order | None:
    ctx = _ctx(info)
    return ctx.state.find_order(ctx.store, id)


def resolve_orders(_root: Any, info: GraphQLResolveInfo, **args: Any) -> Any:
    ctx = _ctx(info)
    sort_key = args.get("sortKey") or "PROCESSED_AT"
    value_kind = ORDER_SORT_KEYS[sort_key][2]
    if ctx.bulk is not None:
        if ctx.bulk.root_records is None:
            page = ctx.state.order_page(ctx.store, args.get("query"), sort_key,
                                        page_request(args, value_kind, bulk=True))
            ctx.bulk.root_records, ctx.bulk.root_keys = page.records, page.keys
        records, keys = ctx.bulk.chunk()
        return Page(records, keys, False, False).as_connection()
    request = page_request(args, value_kind)
    return ctx.state.order_page(ctx.store, args.get("query"), sort_key, request).as_connection()


def resolve_orders_count(_root: Any, info: GraphQLResolveInfo, **args: Any) -> dict[str, Any]:
    ctx = _ctx(info)
    limit = args.get("limit", DEFAULT_COUNT_LIMIT)  # an explicit null means no limit
    count, exact = ctx.state.count_orders(ctx.store, args.get("query"), limit)
    return {"count": count, "precision": "EXACT" if exact else "AT_LEAST"}


def resolve_shop(_root: Any, info: GraphQLResolveInfo) -> dict[str, Any]:
    store = _store(info)
    demo = store.demo
    return {"id": gid("Shop", store.shop_id), "name": f"Acme {demo.key.upper()}",
            "myshopifyDomain": f"{demo.shop}.myshopify.com", "email": f"shop@{demo.shop}.example",
            "currencyCode": demo.currency, "ianaTimezone": demo.iana_timezone, "taxesIncluded": demo.taxes_included}


def resolve_current_app_installation(_root: Any, info: GraphQLResolveInfo) -> dict[str, Any]:
    """The app's installation on this store, with the scopes of the token that asks."""
    ctx = _ctx(info)
    return {"id": gid("AppInstallation", _store(info).shop_id),
            "accessScopes": [{"handle": scope, "description": f"Sandbox scope {scope}"}
                             for scope in sorted(ctx.scopes)]}


_VARIANT_SEARCH = {
    "sku": SearchField(lambda v: v.sku),
    "id": SearchField(lambda v: v.variant_id, "int"),
    "product_id": SearchField(lambda v: v.product_id, "int"),
    "title": SearchField(lambda v: v.title),
    "updated_at": SearchField(lambda v: v.updated_at, "time"),
}
_ITEM_SEARCH = {
    "sku": SearchField(lambda v: v.sku),
    "id": SearchField(lambda v: v.inventory_item_id, "int"),
    "updated_at": SearchField(lambda v: v.updated_at, "time"),
}
_LOCATION_SEARCH = {
    "name": SearchField(lambda loc: loc.name),
    "id": SearchField(lambda loc: loc.legacy_id, "int"),
}


def _search_page(info: GraphQLResolveInfo, records: list[Any], id_of: Callable[[Any], int],
                 fields: dict[str, SearchField], args: dict[str, Any], what: str) -> Page:
    ctx = _ctx(info)
    search = compile_search(args.get("query"), fields, tz=ctx.state.timezone(ctx.store), now=ctx.state.now(),
                            what=what)
    ordered = sorted(records, key=id_of)
    keys = [(id_of(r), id_of(r)) for r in ordered]
    return paginate(ordered, keys, page_request(args, "int", bulk=_is_bulk(info)), search.matches)


def _root_page(info: GraphQLResolveInfo, page_of: Callable[[], Page]) -> Any:
    """Root connections: in a bulk run the snapshot is taken once and served chunk by chunk."""
    ctx = _ctx(info)
    if ctx.bulk is None:
        return page_of().as_connection()
    if ctx.bulk.root_records is None:
        page = page_of()
        ctx.bulk.root_records, ctx.bulk.root_keys = page.records, page.keys
    records, keys = ctx.bulk.chunk()
    return Page(records, keys, False, False).as_connection()


def resolve_product_variants(_root: Any, info: GraphQLResolveInfo, **args: Any) -> Any:
    store = _store(info)
    return _root_page(info, lambda: _search_page(info, list(store.variants), lambda v: v.variant_id,
                                                 _VARIANT_SEARCH, args, "productVariants"))


def resolve_inventory_items(_root: Any, info: GraphQLResolveInfo, **args: Any) -> Any:
    store = _store(info)

    def page_of() -> Page:
        page = _search_page(info, list(store.variants), lambda v: v.inventory_item_id, _ITEM_SEARCH, args,
                            "inventoryItems")
        page.records = [InventoryItemView(store, v) for v in page.records]
        return page

    return _root_page(info, page_of)


def resolve_inventory_item(_root: Any, info: GraphQLResolveInfo, id: str) -> InventoryItemView | None:
    store = _store(info)
    item_id = parse_gid(id, "InventoryItem")
    variant = store.variant_by_inventory_item(item_id) if item_id is not None else None
    return InventoryItemView(store, variant) if variant else None


def resolve_locations(_root: Any, info: GraphQLResolveInfo, **args: Any) -> Any:
    store = _store(info)
    include_inactive = bool(args.get("includeInactive"))
    records = [loc for loc in store.locations if include_inactive or loc.is_active]
    return _root_page(info, lambda: _search_page(info, records, lambda loc: loc.legacy_id, _LOCATION_SEARCH,
                                                 args, "locations"))


def resolve_bulk_operation(_root: Any, info: GraphQLResolveInfo, id: str) -> BulkOperation | None:
    ctx = _ctx(info)
    legacy_id = parse_gid(id, "BulkOperation")
    with ctx.state.locked():
        operation = ctx.state.bulk_operations.get(legacy_id) if legacy_id is not None else None
        if operation is None or operation.store != ctx.store:
            return None
        return dataclasses.replace(operation)  # a consistent copy; the runner thread keeps updating it


def resolve_refund(_root: Any, info: GraphQLResolveInfo, id: str) -> RefundView | None:
    ctx = _ctx(info)
    found = ctx.state.find_refund(ctx.store, id)
    return RefundView(*found) if found else None


def resolve_fulfillment(_root: Any, info: GraphQLResolveInfo, id: str) -> FulfillmentView | None:
    ctx = _ctx(info)
    found = ctx.state.find_fulfillment(ctx.store, id)
    return FulfillmentView(*found) if found else None


_FULFILLMENT_ORDER_SEARCH = {
    "updated_at": SearchField(lambda v: v.order.fulfillment_order_updated_at, "time"),
    "status": SearchField(lambda v: v.order.fulfillment_order_status),
    "id": SearchField(lambda v: v.order.legacy_id, "int"),
}
_FULFILLMENT_ORDER_SORT_KEYS: dict[str, tuple[Callable[[FulfillmentOrderView], Any], str]] = {
    "ID": (lambda v: v.order.legacy_id, "int"),
    "UPDATED_AT": (lambda v: v.order.fulfillment_order_updated_at, "time"),
}
_CLOSED_FULFILLMENT_ORDER_STATES = ("CLOSED", "CANCELLED")


def resolve_fulfillment_orders(_root: Any, info: GraphQLResolveInfo, **args: Any) -> Any:
    """``fulfillmentOrders(query: "updated_at:>=…", sortKey: UPDATED_AT, includeClosed:)``: its own timestamps."""
    ctx = _ctx(info)
    value_of, value_kind = _FULFILLMENT_ORDER_SORT_KEYS[args.get("sortKey") or "ID"]
    include_closed = bool(args.get("includeClosed"))

    def page_of() -> Page:
        search = compile_search(args.get("query"), _FULFILLMENT_ORDER_SEARCH, tz=ctx.state.timezone(ctx.store),
                                now=ctx.state.now(), what="fulfillmentOrders")
        views = [FulfillmentOrderView(order) for order in ctx.state.orders(ctx.store)
                 if include_closed or order.fulfillment_order_status not in _CLOSED_FULFILLMENT_ORDER_STATES]
        ordered = sorted(views, key=lambda v: (value_of(v), v.order.legacy_id))
        keys = [(value_of(v), v.order.legacy_id) for v in ordered]
        return paginate(ordered, keys, page_request(args, value_kind, bulk=_is_bulk(info)), search.matches)

    return _root_page(info, page_of)


def _lookup_node(info: GraphQLResolveInfo, node_id: str) -> Any:
    """``node(id:)``: the object behind a GID of this store, or None."""
    ctx = _ctx(info)
    store = _store(info)
    kind, _, number = node_id.removeprefix("gid://shopify/").partition("/")
    legacy_id = int(number) if number.isdigit() else None
    if legacy_id is None:
        return None
    if kind == "Order":
        return ctx.state.find_order(ctx.store, legacy_id)
    if kind == "Refund":
        return resolve_refund(None, info, node_id)
    if kind == "Fulfillment":
        return resolve_fulfillment(None, info, node_id)
    if kind == "LineItem":
        order = ctx.state.find_order(ctx.store, legacy_id // LINE_ITEM_ID_FACTOR)
        position = order.line_position(legacy_id) if order else None
        return LineItemView(order, order.cart.lines[position]) if order and position is not None else None
    if kind == "Customer":
        return next((c for c in store.customers if c.legacy_id == legacy_id), None)
    if kind == "Location":
        return store.location(legacy_id)
    if kind == "BulkOperation":
        return resolve_bulk_operation(None, info, node_id)
    if kind == "Shop":
        return resolve_shop(None, info) if legacy_id == store.shop_id else None
    variant = next((v for v in store.variants if legacy_id in (v.variant_id, v.product_id, v.inventory_item_id)),
                   None)
    if variant is None:
        return None
    if kind == "ProductVariant" and variant.variant_id == legacy_id:
        return variant
    if kind == "Product" and variant.product_id == legacy_id:
        return ProductView(variant)
    if kind == "InventoryItem" and variant.inventory_item_id == legacy_id:
        return InventoryItemView(store, variant)
    return None


def resolve_node(_root: Any, info: GraphQLResolveInfo, id: str) -> Any:
    return _lookup_node(info, id)


def resolve_nodes(_root: Any, info: GraphQLResolveInfo, ids: list[str]) -> list[Any]:
    if len(ids) > MAX_PAGE_SIZE:
        raise GraphQLError(f"The ids argument accepts at most {MAX_PAGE_SIZE} ids.")
    return [_lookup_node(info, node_id) for node_id in ids]


_NODE_TYPES: dict[type, str] = {
    Order: "Order", LineItemView: "LineItem", RefundView: "Refund", FulfillmentView: "Fulfillment",
    Customer: "Customer", Location: "Location", ProductView: "Product", Variant: "ProductVariant",
    InventoryItemView: "InventoryItem", InventoryLevelView: "InventoryLevel", BulkOperation: "BulkOperation",
    RefundShippingView: "RefundShippingLine", FulfillmentLineView: "FulfillmentLineItem",
    FulfillmentOrderView: "FulfillmentOrder",
    inventory.AdjustmentGroup: "InventoryAdjustmentGroup",
}


def resolve_node_type(value: Any, *_args: Any) -> str:
    if isinstance(value, dict) and "myshopifyDomain" in value:
        return "Shop"
    return _NODE_TYPES[type(value)]


# -- mutations ------------------------------------------------------------------------------------------------------
def resolve_bulk_run_query(_root: Any, info: GraphQLResolveInfo, query: str,
                           groupObjects: bool = False) -> dict[str, Any]:
    ctx = _ctx(info)
    assert ctx.bulk_runner is not None
    return ctx.bulk_runner.start(ctx.store, query, group_objects=groupObjects, operation_name=ctx.operation_name)


def resolve_bulk_cancel(_root: Any, info: GraphQLResolveInfo, id: str) -> dict[str, Any]:
    ctx = _ctx(info)
    assert ctx.bulk_runner is not None
    legacy_id = parse_gid(id, "BulkOperation")
    operation = ctx.state.bulk_operations.get(legacy_id) if legacy_id is not None else None
    if operation is None or operation.store != ctx.store:
        return {"bulkOperation": None, "userErrors": [{"field": ["id"], "message": "Bulk operation does not exist"}]}
    return ctx.bulk_runner.cancel(operation)


def resolve_inventory_set_quantities(_root: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> Any:
    ctx = _ctx(info)
    return inventory.set_quantities(ctx.state, ctx.store, ctx.api_version, input, inventory.idempotency_key(info))


# -- orders -------------------------------------------------------------------------------------------------------
def _order_current_total(order: Order, _info: GraphQLResolveInfo) -> MoneyBag:
    return order.cart.total_price - order.total_refunded()


def _order_line_items(order: Order, info: GraphQLResolveInfo, **args: Any) -> Any:
    lines = order.cart.lines
    return _connection(info, [LineItemView(order, line) for line in lines],
                       [order.line_item_id(line.position) for line in lines], args)


def _order_shipping_lines(order: Order, info: GraphQLResolveInfo, **args: Any) -> Any:
    args.pop("includeRemovals", None)  # the sandbox never removes shipping lines
    shipping = order.cart.shipping_lines
    return _connection(info, [ShippingLineView(order, s) for s in shipping],
                       [order.shipping_line_id(s.position) for s in shipping], args)


def _order_discount_applications(order: Order, info: GraphQLResolveInfo, **args: Any) -> Any:
    applications = list(order.cart.discount_applications)
    return _connection(info, applications, [a.index for a in applications], args)


def _limited(items: list[Any], first: int | None) -> list[Any]:
    return items if first is None else items[: max(0, first)]


def _order_refunds(order: Order, _info: GraphQLResolveInfo, first: int | None = None) -> list[RefundView]:
    return _limited([RefundView(order, r) for r in order.refunds], first)


_FULFILLMENT_SEARCH = {
    "created_at": SearchField(lambda f: f.fulfillment.created_at, "time"),
    "updated_at": SearchField(lambda f: f.fulfillment.updated_at, "time"),
    "status": SearchField(lambda f: f.fulfillment.status),
}


def _order_fulfillments(order: Order, info: GraphQLResolveInfo, first: int | None = None,
                        query: str | None = None) -> list[FulfillmentView]:
    views = [FulfillmentView(order, f) for f in order.fulfillments]
    if query:
        ctx = _ctx(info)
        search = compile_search(query, _FULFILLMENT_SEARCH, tz=ctx.state.timezone(order.store),
                                now=ctx.state.now(), what="fulfillments")
        views = [v for v in views if search.matches(v)]
    return _limited(views, first)


def _order_current_subtotal(order: Order, _info: GraphQLResolveInfo) -> MoneyBag:
    return order.cart.subtotal - order.refunded_line_subtotal()


def _order_current_tax(order: Order, _info: GraphQLResolveInfo) -> MoneyBag:
    return order.cart.total_tax - order.refunded_tax()


def _order_current_discounts(order: Order, _info: GraphQLResolveInfo) -> MoneyBag:
    return order.cart.total_discounts - _refunded_discounts(order)


def _order_current_shipping(order: Order, _info: GraphQLResolveInfo) -> MoneyBag:
    return order.cart.total_shipping - order.cart.shipping_discounts - order.refunded_shipping()


ORDER = {
    "id": gid_of("Order"),
    "legacyResourceId": attr("legacy_id"),
    "name": attr("name"),
    "email": attr("email"),
    "customer": attr("customer"),
    "createdAt": attr("created_at"),
    "updatedAt": attr("updated_at"),
    "processedAt": attr("processed_at"),
    "cancelledAt": attr("cancelled_at"),
    "cancelReason": attr("cancel_reason"),
    "closed": lambda o, _i: o.closed_at is not None,
    "closedAt": attr("closed_at"),
    "test": attr("test"),
    "sourceName": attr("source_name"),
    "poNumber": attr("po_number"),
    "displayFinancialStatus": attr("financial_status"),
    "displayFulfillmentStatus": attr("display_fulfillment_status"),
    "currencyCode": lambda o, _i: o.cart.currency,
    "presentmentCurrencyCode": lambda o, _i: o.cart.presentment_currency,
    "taxesIncluded": lambda o, _i: o.cart.taxes_included,
    "totalPriceSet": lambda o, _i: o.cart.total_price,
    "subtotalPriceSet": lambda o, _i: o.cart.subtotal,
    "totalTaxSet": lambda o, _i: o.cart.total_tax,
    "totalShippingPriceSet": lambda o, _i: o.cart.total_shipping,
    "totalDiscountsSet": lambda o, _i: o.cart.total_discounts,
    "currentTotalPriceSet": _order_current_total,
    "currentSubtotalPriceSet": _order_current_subtotal,
    "currentTotalTaxSet": _order_current_tax,
    "currentTotalDiscountsSet": _order_current_discounts,
    "currentShippingPriceSet": _order_current_shipping,
    "totalRefundedSet": lambda o, _i: o.total_refunded(),
    "originalTotalDutiesSet": lambda _o, _i: None,
    "taxLines": lambda o, _i: o.cart.tax_lines,
    "subtotalLineItemsQuantity": lambda o, _i: sum(line.quantity for line in o.cart.lines),
    "currentSubtotalLineItemsQuantity": lambda o, _i: sum(o.current_quantity(line.position)
                                                          for line in o.cart.lines),
    "discountApplications": _order_discount_applications,
    "refunds": _order_refunds,
    "fulfillments": _order_fulfillments,
    "lineItems": _order_line_items,
    "shippingLines": _order_shipping_lines,
}

CUSTOMER = {
    "id": gid_of("Customer"),
    "firstName": attr("first_name"),
    "lastName": attr("last_name"),
    "displayName": attr("display_name"),
    "defaultEmailAddress": lambda c, _i: {"emailAddress": c.email} if c.email else None,
}


def _line_variant(view: LineItemView, info: GraphQLResolveInfo) -> Variant | None:
    variant_id = view.line.item.variant_id
    if variant_id is None:
        return None
    return next((v for v in _store(info).variants if v.variant_id == variant_id), None)


def _line_product(view: LineItemView, info: GraphQLResolveInfo) -> ProductView | None:
    variant = _line_variant(view, info)
    return ProductView(variant) if variant else None


def _line_discounted_total(view: LineItemView, _info: GraphQLResolveInfo,
                           withCodeDiscounts: bool = False) -> MoneyBag:
    line = view.line
    discount = line.line_level_discount if withCodeDiscounts else line.line_level_discount_without_codes
    return line.original_total - discount


LINE_ITEM = {
    "id": lambda v, _i: gid("LineItem", v.order.line_item_id(v.line.position)),
    "sku": lambda v, _i: v.line.item.sku,
    "name": lambda v, _i: v.line.item.title,
    "title": lambda v, _i: v.line.item.title,
    "variantTitle": lambda _v, _i: None,
    "vendor": lambda v, _i: v.line.item.vendor,
    "quantity": lambda v, _i: v.line.quantity,
    "currentQuantity": lambda v, _i: v.order.current_quantity(v.line.position),
    "requiresShipping": lambda v, _i: v.line.requires_shipping,
    "isGiftCard": lambda _v, _i: False,
    "taxable": lambda v, _i: v.line.taxable,
    "variant": _line_variant,
    "product": _line_product,
    "originalUnitPriceSet": lambda v, _i: v.line.original_unit_price,
    "originalTotalSet": lambda v, _i: v.line.original_total,
    "discountedUnitPriceSet": lambda v, _i: _per_unit(
        v.line.original_total - v.line.line_level_discount_without_codes, v.line.quantity),
    "discountedTotalSet": _line_discounted_total,
    "totalDiscountSet": lambda v, _i: v.line.line_level_discount,
    "discountAllocations": lambda v, _i: v.line.allocations,
    "duties": lambda _v, _i: [],
    "taxLines": lambda v, _i, first=None: _limited(list(v.line.tax_lines), first),
}

SHIPPING_LINE = {
    "id": lambda v, _i: gid("ShippingLine", v.order.shipping_line_id(v.shipping.position)),
    "title": lambda v, _i: v.shipping.title,
    "code": lambda v, _i: v.shipping.code,
    "source": lambda v, _i: v.shipping.source,
    "carrierIdentifier": lambda _v, _i: None,
    "isRemoved": lambda _v, _i: False,
    "originalPriceSet": lambda v, _i: v.shipping.original_price,
    "discountedPriceSet": lambda v, _i: v.shipping.discounted_price,
    "currentDiscountedPriceSet": lambda v, _i: v.shipping.discounted_price,
    "taxLines": lambda v, _i: v.shipping.tax_lines,
    "discountAllocations": lambda v, _i: v.shipping.allocations,
}

TAX_LINE = {
    "title": attr("title"),
    "rate": lambda t, _i: float(t.rate),
    "ratePercentage": lambda t, _i: float(t.rate * 100),
    "channelLiable": attr("channel_liable"),
    "priceSet": attr("price"),
}

MONEY_BAG = {"shopMoney": attr("shop"), "presentmentMoney": attr("presentment")}
MONEY_V2 = {"amount": attr("amount"), "currencyCode": attr("currency_code")}
DISCOUNT_ALLOCATION = {"allocatedAmountSet": attr("amount"), "discountApplication": attr("application")}


def _application_value(application: DiscountApplication, _info: GraphQLResolveInfo) -> Any:
    spec = application.spec
    if spec.value_type == "percentage":
        return {"percentage": float(spec.value)}
    assert application.value_amount is not None
    return Money(application.value_amount, application.value_currency)


def _spec(name: str) -> Resolver:
    return lambda a, _i: getattr(a.spec, name)


DISCOUNT_APPLICATION = {
    "index": attr("index"),
    "allocationMethod": _spec("allocation_method"),
    "targetSelection": _spec("target_selection"),
    "targetType": _spec("target_type"),
    "value": _application_value,
    "code": _spec("label"),
    "title": _spec("label"),
    "description": _spec("description"),
}
_APPLICATION_TYPES = {"code": "DiscountCodeApplication", "automatic": "AutomaticDiscountApplication",
                      "manual": "ManualDiscountApplication"}


def resolve_discount_application_type(application: DiscountApplication, *_args: Any) -> str:
    return _APPLICATION_TYPES[application.spec.kind]


def resolve_pricing_value_type(value: Any, *_args: Any) -> str:
    return "MoneyV2" if isinstance(value, Money) else "PricingPercentageValue"


def _refund_line_items(view: RefundView, info: GraphQLResolveInfo, **args: Any) -> Any:
    parts = [RefundLineView(view.order, view.refund, i, part) for i, part in enumerate(view.refund.lines)]
    return _connection(info, parts, [view.refund.legacy_id * 1000 + i for i in range(len(parts))], args)


def _refund_shipping_lines(view: RefundView, info: GraphQLResolveInfo, **args: Any) -> Any:
    parts = [RefundShippingView(view.order, view.refund, i, p) for i, p in enumerate(view.refund.shipping)]
    return _connection(info, parts, [view.refund.legacy_id * 100 + i for i in range(len(parts))], args)


REFUND = {
    "id": lambda v, _i: gid("Refund", v.refund.legacy_id),
    "legacyResourceId": lambda v, _i: v.refund.legacy_id,
    "createdAt": lambda v, _i: v.refund.created_at,
    "updatedAt": lambda v, _i: v.refund.created_at,
    "processedAt": lambda v, _i: v.refund.created_at,
    "note": lambda v, _i: v.refund.note,
    "totalRefundedSet": lambda v, _i: v.refund.total,
    "refundLineItems": _refund_line_items,
    "refundShippingLines": _refund_shipping_lines,
}


def _location(store: StoreData, location_id: int | None) -> Location | None:
    return store.location(location_id) if location_id is not None else None


REFUND_LINE_ITEM = {
    "id": lambda v, _i: gid("RefundLineItem", v.refund.legacy_id * 1000 + v.index),
    "quantity": lambda v, _i: v.part.quantity,
    "restockType": lambda v, _i: v.part.restock_type,
    "restocked": lambda v, _i: v.part.restock_type in ("RETURN", "CANCEL", "LEGACY_RESTOCK"),
    "lineItem": lambda v, _i: LineItemView(v.order, v.order.cart.lines[v.part.line_position]),
    "location": lambda v, i: _location(_store(i), v.part.location_id),
    "priceSet": lambda v, _i: v.order.cart.lines[v.part.line_position].original_unit_price,
    "subtotalSet": lambda v, _i: v.part.subtotal,
    "totalTaxSet": lambda v, _i: v.part.tax,
}

REFUND_SHIPPING_LINE = {
    "id": lambda v, _i: gid("RefundShippingLine", v.refund.legacy_id * 100 + v.index),
    "shippingLine": lambda v, _i: ShippingLineView(v.order, v.order.cart.shipping_lines[v.part.shipping_position]),
    "subtotalAmountSet": lambda v, _i: v.part.subtotal,
    "taxAmountSet": lambda v, _i: v.part.tax,
}


def _fulfillment_lines(view: FulfillmentView, info: GraphQLResolveInfo, **args: Any) -> Any:
    f = view.fulfillment
    parts = [FulfillmentLineView(view.order, f, i, line.line_position, line.quantity)
             for i, line in enumerate(f.lines)]
    return _connection(info, parts, [f.legacy_id * 1000 + i for i in range(len(parts))], args)


FULFILLMENT = {
    "id": lambda v, _i: gid("Fulfillment", v.fulfillment.legacy_id),
    "legacyResourceId": lambda v, _i: v.fulfillment.legacy_id,
    "name": lambda v, _i: f"{v.order.name}.{v.fulfillment.sequence}",
    "createdAt": lambda v, _i: v.fulfillment.created_at,
    "updatedAt": lambda v, _i: v.fulfillment.updated_at,
    "status": lambda v, _i: v.fulfillment.status,
    "displayStatus": lambda v, _i: v.fulfillment.display_status,
    "location": lambda v, i: _location(_store(i), v.fulfillment.location_id),
    "totalQuantity": lambda v, _i: sum(line.quantity for line in v.fulfillment.lines),
    "inTransitAt": lambda v, _i: v.fulfillment.created_at if v.fulfillment.display_status in (
        "IN_TRANSIT", "DELIVERED") else None,
    "deliveredAt": lambda v, _i: v.fulfillment.delivered_at,
    "trackingInfo": lambda v, _i, first=None: _limited(list(v.fulfillment.tracking), first),
    "fulfillmentLineItems": _fulfillment_lines,
    "order": lambda v, _i: v.order,
}


def _fulfillment_order_fulfillments(view: FulfillmentOrderView, info: GraphQLResolveInfo, **args: Any) -> Any:
    fulfillments = view.order.fulfillments
    return _connection(info, [FulfillmentView(view.order, f) for f in fulfillments],
                       [f.legacy_id for f in fulfillments], args)


FULFILLMENT_ORDER = {
    "id": lambda v, _i: gid("FulfillmentOrder", v.order.legacy_id),
    "status": lambda v, _i: v.order.fulfillment_order_status,
    "createdAt": lambda v, _i: v.order.created_at,
    "updatedAt": lambda v, _i: v.order.fulfillment_order_updated_at,
    "orderId": lambda v, _i: gid("Order", v.order.legacy_id),
    "orderName": lambda v, _i: v.order.name,
    "order": lambda v, _i: v.order,
    "fulfillments": _fulfillment_order_fulfillments,
}

FULFILLMENT_LINE_ITEM = {
    "id": lambda v, _i: gid("FulfillmentLineItem", v.fulfillment.legacy_id * 1000 + v.index),
    "quantity": attr("quantity"),
    "lineItem": lambda v, _i: LineItemView(v.order, v.order.cart.lines[v.position]),
    "originalTotalSet": lambda v, _i: _bag_share(v.order.cart.lines[v.position].original_total, v.quantity,
                                                 v.order.cart.lines[v.position].quantity),
    "discountedTotalSet": lambda v, _i: _bag_share(v.order.cart.lines[v.position].net_total, v.quantity,
                                                   v.order.cart.lines[v.position].quantity),
}

LOCATION = {
    "id": gid_of("Location"),
    "legacyResourceId": attr("legacy_id"),
    "name": attr("name"),
    "isActive": attr("is_active"),
    "fulfillsOnlineOrders": attr("fulfills_online_orders"),
}

PRODUCT = {
    "id": lambda p, _i: gid("Product", p.variant.product_id),
    "title": lambda p, _i: p.variant.title,
    "handle": lambda p, _i: re.sub(r"[^a-z0-9]+", "-", p.variant.title.lower()).strip("-"),
    "vendor": lambda p, _i: p.variant.vendor,
}

PRODUCT_VARIANT = {
    "id": gid_of("ProductVariant", "variant_id"),
    "legacyResourceId": attr("variant_id"),
    "sku": attr("sku"),
    "title": lambda _v, _i: "Default Title",
    "displayName": lambda v, _i: f"{v.title} - Default Title",
    "price": attr("price"),
    "product": lambda v, _i: ProductView(v),
    "inventoryItem": lambda v, i: InventoryItemView(_store(i), v),
    "updatedAt": attr("updated_at"),
}


def _item_level(view: InventoryItemView, _info: GraphQLResolveInfo, locationId: str,
                includeInactive: bool = False) -> InventoryLevelView | None:
    location_id = parse_gid(locationId, "Location")
    level = view.store.inventory.get((view.variant.inventory_item_id, location_id)) if location_id else None
    return InventoryLevelView(view.store, level) if level else None


def _item_levels(view: InventoryItemView, info: GraphQLResolveInfo, **args: Any) -> Any:
    levels = [InventoryLevelView(view.store, level) for (item, _loc), level in view.store.inventory.items()
              if item == view.variant.inventory_item_id]
    return _connection(info, levels, [v.level.location_id for v in levels], args)


INVENTORY_ITEM = {
    "id": lambda v, _i: gid("InventoryItem", v.variant.inventory_item_id),
    "legacyResourceId": lambda v, _i: v.variant.inventory_item_id,
    "sku": lambda v, _i: v.variant.sku,
    "tracked": lambda _v, _i: True,
    "updatedAt": lambda v, _i: v.variant.updated_at,
    "inventoryLevel": _item_level,
    "inventoryLevels": _item_levels,
}


def _level_quantities(view: InventoryLevelView, _info: GraphQLResolveInfo, names: list[str]) -> list[dict[str, Any]]:
    unknown = [n for n in names if n not in QUANTITY_NAMES]
    if unknown:
        raise GraphQLError(f"Invalid quantity names: {', '.join(unknown)}. Valid names are: "
                           f"{', '.join(QUANTITY_NAMES)}.")
    level = view.level
    snapshot = dict(level.quantities)
    return [{"name": n, "quantity": snapshot.get(n, 0), "updatedAt": level.updated_at} for n in names]


INVENTORY_LEVEL = {
    "id": lambda v, _i: (f"gid://shopify/InventoryLevel/{v.level.location_id}"
                         f"?inventory_item_id={v.level.inventory_item_id}"),
    "item": lambda v, _i: InventoryItemView(v.store, v.store.variant_by_inventory_item(v.level.inventory_item_id)),
    "location": lambda v, _i: v.store.location(v.level.location_id),
    "updatedAt": lambda v, _i: v.level.updated_at,
    "quantities": _level_quantities,
}

BULK_OPERATION = {
    "id": gid_of("BulkOperation"),
    "status": attr("status"),
    "errorCode": attr("error_code"),
    "objectCount": attr("object_count"),
    "rootObjectCount": attr("root_object_count"),
    "fileSize": attr("file_size"),
    "url": attr("url"),
    "partialDataUrl": attr("partial_data_url"),
    "createdAt": attr("created_at"),
    "completedAt": attr("completed_at"),
    "query": attr("query"),
    "type": attr("type"),
}

INVENTORY_ADJUSTMENT_GROUP = {
    "id": attr("gid"),
    "createdAt": attr("created_at"),
    "reason": attr("reason"),
    "referenceDocumentUri": attr("reference_document_uri"),
    "changes": inventory.resolve_changes,
}

INVENTORY_CHANGE = {
    "name": attr("name"),
    "delta": attr("delta"),
    "quantityAfterChange": attr("quantity_after_change"),
    "item": lambda c, i: InventoryItemView(_store(i), _store(i).variant_by_inventory_item(c.inventory_item_id)),
    "location": lambda c, i: _store(i).location(c.location_id),
    "ledgerDocumentUri": lambda _c, _i: None,
}

RESOLVERS: dict[str, dict[str, Resolver]] = {
    "QueryRoot": {
        "order": resolve_order, "orders": resolve_orders, "ordersCount": resolve_orders_count,
        "shop": resolve_shop, "productVariants": resolve_product_variants,
        "inventoryItems": resolve_inventory_items, "inventoryItem": resolve_inventory_item,
        "locations": resolve_locations, "bulkOperation": resolve_bulk_operation, "node": resolve_node,
        "nodes": resolve_nodes, "refund": resolve_refund, "fulfillment": resolve_fulfillment,
        "currentAppInstallation": resolve_current_app_installation,
        "fulfillmentOrders": resolve_fulfillment_orders,
    },
    "Mutation": {"bulkOperationRunQuery": resolve_bulk_run_query, "bulkOperationCancel": resolve_bulk_cancel,
                 "inventorySetQuantities": resolve_inventory_set_quantities},
    "Order": ORDER, "Customer": CUSTOMER, "LineItem": LINE_ITEM, "ShippingLine": SHIPPING_LINE,
    "TaxLine": TAX_LINE, "MoneyBag": MONEY_BAG, "MoneyV2": MONEY_V2, "DiscountAllocation": DISCOUNT_ALLOCATION,
    "DiscountCodeApplication": DISCOUNT_APPLICATION, "AutomaticDiscountApplication": DISCOUNT_APPLICATION,
    "ManualDiscountApplication": DISCOUNT_APPLICATION, "DiscountApplication": DISCOUNT_APPLICATION,
    "Refund": REFUND, "RefundLineItem": REFUND_LINE_ITEM, "RefundShippingLine": REFUND_SHIPPING_LINE,
    "Fulfillment": FULFILLMENT, "FulfillmentOrder": FULFILLMENT_ORDER,
    "FulfillmentLineItem": FULFILLMENT_LINE_ITEM, "Location": LOCATION,
    "Product": PRODUCT, "ProductVariant": PRODUCT_VARIANT, "InventoryItem": INVENTORY_ITEM,
    "InventoryLevel": INVENTORY_LEVEL, "BulkOperation": BULK_OPERATION,
    "InventoryAdjustmentGroup": INVENTORY_ADJUSTMENT_GROUP, "InventoryChange": INVENTORY_CHANGE,
}
ABSTRACT_TYPE_RESOLVERS: dict[str, Callable[..., str]] = {
    "DiscountApplication": resolve_discount_application_type,
    "PricingValue": resolve_pricing_value_type,
    "Node": resolve_node_type,
}
