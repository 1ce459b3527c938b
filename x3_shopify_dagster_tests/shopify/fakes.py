"""In-process fakes for unit tests: GraphQL order nodes, and a scripted Shopify for ``httpx.MockTransport``.

``full_order`` builds an order the way the bulk export assembles it (every connection as a complete list),
which ``ShopifyOrder.from_graphql`` accepts directly: it is the expected value the readers must reproduce.
``FakeShopify`` answers the connector's operations from such orders, slicing connections by the page sizes
the client asks for, so paging, nested paging and batching are exercised without a server.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

SHOP_URL = "https://acme-eu.myshopify.com"
TOKEN = "shpat_test_secret_token_0123456789"
ENDPOINT = f"{SHOP_URL}/admin/api/2026-07/graphql.json"


def bag(amount: str, currency: str = "EUR", presentment: str | None = None, presentment_currency: str = "EUR"):
    return {
        "shopMoney": {"amount": amount, "currencyCode": currency},
        "presentmentMoney": {"amount": presentment or amount, "currencyCode": presentment_currency},
    }


def tax(amount: str, rate: float = 0.2, title: str = "VAT") -> dict[str, Any]:
    return {"title": title, "rate": rate, "ratePercentage": rate * 100, "channelLiable": False, "priceSet": bag(amount)}


def line_item(
    order: int,
    index: int,
    *,
    sku: str = "CUP-PORC-6",
    quantity: int = 1,
    price: str = "29.90",
    total: str | None = None,
    taxes: list[dict[str, Any]] | None = None,
    allocations: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "id": f"gid://shopify/LineItem/{order * 1000 + index}",
        "sku": sku,
        "name": f"Item {index}",
        "quantity": quantity,
        "currentQuantity": quantity,
        "requiresShipping": True,
        "isGiftCard": False,
        "taxable": True,
        "variant": {
            "id": f"gid://shopify/ProductVariant/{index}",
            "inventoryItem": {"id": f"gid://shopify/InventoryItem/{index}"},
        },
        "originalUnitPriceSet": bag(price),
        "discountedTotalSet": bag(total or price),
        "taxLines": taxes if taxes is not None else [tax("4.98")],
        "discountAllocations": allocations or [],
        "duties": [],
    }


def shipping_line(order: int, index: int = 1, price: str = "9.90") -> dict[str, Any]:
    return {
        "id": f"gid://shopify/ShippingLine/{order * 100 + index}",
        "title": "Standard",
        "code": "STD",
        "source": "shopify",
        "isRemoved": False,
        "originalPriceSet": bag(price),
        "discountedPriceSet": bag(price),
        "taxLines": [tax("1.65")],
        "discountAllocations": [],
    }


def refund(order: int, index: int, line_item_ids: list[str], *, amount: str = "29.90") -> dict[str, Any]:
    return {
        "id": f"gid://shopify/Refund/{order * 10 + index}",
        "createdAt": "2026-11-27T12:00:00Z",
        "updatedAt": "2026-11-27T12:00:00Z",
        "processedAt": "2026-11-27T12:00:00Z",
        "note": "damaged",
        "totalRefundedSet": bag(amount),
        "refundLineItems": [
            {
                "quantity": 1,
                "restockType": "RETURN",
                "lineItem": {"id": li, "sku": "CUP-PORC-6"},
                "subtotalSet": bag("24.92"),
                "totalTaxSet": bag("4.98"),
            }
            for li in line_item_ids
        ],
        "refundShippingLines": [],
    }


def fulfillment(order: int, index: int, line_item_ids: list[str]) -> dict[str, Any]:
    return {
        "id": f"gid://shopify/Fulfillment/{order * 10 + index}",
        "name": f"#{1000 + order}-F{index}",
        "createdAt": "2026-11-27T13:00:00+01:00",
        "updatedAt": "2026-11-27T13:00:00+01:00",
        "status": "SUCCESS",
        "displayStatus": "FULFILLED",
        "location": {"id": "gid://shopify/Location/1"},
        "trackingInfo": [{"company": "DHL", "number": f"TRK{order}", "url": "https://dhl.example/t"}],
        "fulfillmentLineItems": [{"quantity": 1, "lineItem": {"id": li, "sku": "CUP-PORC-6"}} for li in line_item_ids],
    }


def full_order(
    number: int,
    *,
    updated_at: str = "2026-11-27T10:00:00Z",
    line_items: int = 2,
    shipping_lines: int = 1,
    refunds: int = 0,
    fulfillments: int = 0,
    email: str | None = None,
    customer_email: str | None = "claire.martin@bistro-lyon.example",
    guest: bool = False,
    taxes_included: bool = True,
) -> dict[str, Any]:
    items = [line_item(number, i + 1) for i in range(line_items)]
    ids = [i["id"] for i in items]
    return {
        "id": f"gid://shopify/Order/{number}",
        "legacyResourceId": str(number),
        "name": f"#{1000 + number}",
        "email": email,
        "customer": None
        if guest
        else {"id": f"gid://shopify/Customer/{number}", "defaultEmailAddress": {"emailAddress": customer_email}},
        "createdAt": "2026-11-27T09:00:00Z",
        "updatedAt": updated_at,
        "processedAt": "2026-11-27T09:00:00Z",
        "cancelledAt": None,
        "cancelReason": None,
        "closedAt": None,
        "test": False,
        "sourceName": "web",
        "poNumber": None,
        "displayFinancialStatus": "PAID",
        "displayFulfillmentStatus": "FULFILLED" if fulfillments else "UNFULFILLED",
        "currencyCode": "EUR",
        "presentmentCurrencyCode": "EUR",
        "taxesIncluded": taxes_included,
        "totalPriceSet": bag("69.70"),
        "subtotalPriceSet": bag("59.80"),
        "totalTaxSet": bag("11.61"),
        "totalShippingPriceSet": bag("9.90"),
        "totalDiscountsSet": bag("0.00"),
        "currentTotalPriceSet": bag("69.70"),
        "originalTotalDutiesSet": None,
        "taxLines": [tax("11.61")],
        "discountApplications": [],
        "lineItems": items,
        "shippingLines": [shipping_line(number, i + 1) for i in range(shipping_lines)],
        "refunds": [refund(number, i + 1, ids[:1]) for i in range(refunds)],
        "fulfillments": [fulfillment(number, i + 1, ids) for i in range(fulfillments)],
    }


# --- Connection slicing ----------------------------------------------------------------------------------


def page(items: list[Any], first: int, after: str | None) -> dict[str, Any]:
    start = int(after) if after else 0
    chunk = items[start : start + first]
    end = start + len(chunk)
    return {"pageInfo": {"hasNextPage": end < len(items), "endCursor": str(end)}, "nodes": chunk}


def _header(order: dict[str, Any]) -> dict[str, Any]:
    header = {k: v for k, v in order.items() if k not in ("lineItems", "shippingLines", "discountApplications")}
    header["discountApplications"] = {"edges": [{"node": a} for a in order["discountApplications"]]}
    header["refunds"] = [
        {k: v for k, v in r.items() if k not in ("refundLineItems", "refundShippingLines")} for r in order["refunds"]
    ]
    header["fulfillments"] = [
        {k: v for k, v in f.items() if k != "fulfillmentLineItems"} for f in order["fulfillments"]
    ]
    return header


def page_node(order: dict[str, Any], line_items_first: int, shipping_lines_first: int) -> dict[str, Any]:
    node = _header(order)
    node["lineItems"] = page(order["lineItems"], line_items_first, None)
    node["shippingLines"] = page(order["shippingLines"], shipping_lines_first, None)
    return node


def after_sales_node(order: dict[str, Any], lines_first: int, shipping_first: int) -> dict[str, Any]:
    return {
        "id": order["id"],
        "refunds": [
            {
                **{k: v for k, v in r.items() if k not in ("refundLineItems", "refundShippingLines")},
                "refundLineItems": page(r["refundLineItems"], lines_first, None),
                "refundShippingLines": page(r["refundShippingLines"], shipping_first, None),
            }
            for r in order["refunds"]
        ],
        "fulfillments": [
            {
                **{k: v for k, v in f.items() if k != "fulfillmentLineItems"},
                "fulfillmentLineItems": page(f["fulfillmentLineItems"], lines_first, None),
            }
            for f in order["fulfillments"]
        ],
    }


def bulk_rows(order: dict[str, Any]) -> list[dict[str, Any]]:
    """JSONL rows of one order as a bulk export writes them (children as separate rows)."""
    parent = _header(order)
    del parent["discountApplications"]
    rows: list[dict[str, Any]] = [parent]
    for key in ("lineItems", "shippingLines", "discountApplications"):
        rows.extend({**child, "__parentId": order["id"]} for child in order[key])
    return rows


# --- Scripted server -------------------------------------------------------------------------------------


def cost_extension(
    requested: int = 10,
    actual: int | None = None,
    available: float = 1990.0,
    maximum: float = 2000.0,
    restore: float = 100.0,
) -> dict[str, Any]:
    return {
        "cost": {
            "requestedQueryCost": requested,
            "actualQueryCost": requested if actual is None else actual,
            "throttleStatus": {"maximumAvailable": maximum, "currentlyAvailable": available, "restoreRate": restore},
        }
    }


def graphql_response(
    data: Any = None,
    *,
    errors: list[dict[str, Any]] | None = None,
    extensions: dict[str, Any] | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    body: dict[str, Any] = {}
    if data is not None:
        body["data"] = data
    if errors is not None:
        body["errors"] = errors
    body["extensions"] = extensions if extensions is not None else cost_extension()
    return httpx.Response(status, json=body, headers=headers)


@dataclass
class Sent:
    operation: str
    variables: dict[str, Any]
    headers: httpx.Headers


@dataclass
class FakeShopify:
    """Answers the connector's documents from ``orders`` (full orders, in updatedAt order)."""

    orders: list[dict[str, Any]] = field(default_factory=list)
    # requested cost of a request, from its operation and variables; above ``max_cost`` -> MAX_COST_EXCEEDED
    cost_of: Callable[[str, dict[str, Any]], int] = lambda operation, variables: 10
    max_cost: int = 1000
    # responses served before normal dispatch, per operation name ("*" for any)
    scripted: dict[str, list[httpx.Response | Exception]] = field(default_factory=dict)
    bulk_statuses: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, list[str]] = field(default_factory=dict)  # download path -> JSONL lines
    break_download_after: int | None = None  # drop the connection after this many lines
    sent: list[Sent] = field(default_factory=list)
    downloads: list[httpx.Request] = field(default_factory=list)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def operations(self) -> list[str]:
        return [s.operation for s in self.sent]

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "storage.example":
            self.downloads.append(request)
            lines = self.files[request.url.path]
            return httpx.Response(200, stream=_LineStream(lines, self.break_download_after))
        body = json.loads(request.content)
        operation, variables = body["operationName"], body.get("variables") or {}
        self.sent.append(Sent(operation, variables, request.headers))
        for key in (operation, "*"):
            queue = self.scripted.get(key)
            if queue:
                scripted = queue.pop(0)
                if isinstance(scripted, Exception):
                    raise scripted
                return scripted
        requested = self.cost_of(operation, variables)
        if requested > self.max_cost:
            return graphql_response(
                errors=[
                    {
                        "message": f"Query cost is {requested}, which exceeds the single query max cost limit "
                        f"({self.max_cost}).",
                        "extensions": {"code": "MAX_COST_EXCEEDED", "cost": requested, "maxCost": self.max_cost},
                    }
                ],
                extensions=cost_extension(requested, actual=0),
            )
        return graphql_response(self.data_for(operation, variables), extensions=cost_extension(requested))

    def matching(self, search: str) -> list[dict[str, Any]]:
        """The orders an ``updated_at:>='lo' AND updated_at:<'hi'`` search selects."""
        match = re.fullmatch(r"updated_at:>='(.+?)' AND updated_at:<'(.+?)'", search)
        assert match, search
        lo, hi = (datetime.fromisoformat(t) for t in match.groups())
        return [o for o in self.orders if lo <= datetime.fromisoformat(o["updatedAt"]) < hi]

    def _by_id(self) -> dict[str, dict[str, Any]]:
        return {o["id"]: o for o in self.orders}

    def data_for(self, operation: str, v: dict[str, Any]) -> dict[str, Any]:
        by_id = self._by_id()
        if operation == "OrdersPage":
            connection = page(self.matching(v["query"]), v["first"], v.get("after"))
            connection["nodes"] = [
                page_node(o, v["lineItemsFirst"], v["shippingLinesFirst"]) for o in connection["nodes"]
            ]
            return {"orders": connection}
        if operation == "OrdersProbe":
            ends = [{"id": o["id"], "updatedAt": o["updatedAt"]} for o in self.orders]
            return {
                "oldest": {"nodes": ends[:1]},
                "newest": {"nodes": ends[-1:]},
                "ordersCount": {"count": len(self.orders), "precision": "EXACT"},
            }
        if operation == "OrderLineItems":
            order = by_id.get(v["id"])
            return {
                "order": order
                and {"id": order["id"], "lineItems": page(order["lineItems"], v["first"], v.get("after"))}
            }
        if operation == "OrderShippingLines":
            order = by_id.get(v["id"])
            return {
                "order": order
                and {"id": order["id"], "shippingLines": page(order["shippingLines"], v["first"], v.get("after"))}
            }
        if operation == "OrdersAfterSales":
            return {
                "nodes": [
                    by_id.get(i) and after_sales_node(by_id[i], v["linesFirst"], v["shippingLinesFirst"])
                    for i in v["ids"]
                ]
            }
        if operation == "OrdersById":
            return {
                "nodes": [
                    by_id.get(i) and page_node(by_id[i], v["lineItemsFirst"], v["shippingLinesFirst"]) for i in v["ids"]
                ]
            }
        if operation in ("RefundLineItems", "RefundShippingLines"):
            key = "refundLineItems" if operation == "RefundLineItems" else "refundShippingLines"
            for order in self.orders:
                for r in order["refunds"]:
                    if r["id"] == v["id"]:
                        return {"refund": {"id": r["id"], key: page(r[key], v["first"], v.get("after"))}}
            return {"refund": None}
        if operation == "FulfillmentLineItems":
            for order in self.orders:
                for f in order["fulfillments"]:
                    if f["id"] == v["id"]:
                        return {
                            "fulfillment": {
                                "id": f["id"],
                                "fulfillmentLineItems": page(f["fulfillmentLineItems"], v["first"], v.get("after")),
                            }
                        }
            return {"fulfillment": None}
        if operation == "BulkOrdersRun":
            return {
                "bulkOperationRunQuery": {
                    "bulkOperation": {"id": "gid://shopify/BulkOperation/1", "status": "CREATED", "createdAt": "x"},
                    "userErrors": [],
                }
            }
        if operation == "BulkOperationStatus":
            status = self.bulk_statuses.pop(0) if len(self.bulk_statuses) > 1 else self.bulk_statuses[0]
            return {"bulkOperation": {"id": v["id"], **status}}
        if operation == "BulkOperationCancel":
            return {"bulkOperationCancel": {"bulkOperation": {"id": v["id"], "status": "CANCELING"}, "userErrors": []}}
        if operation == "ShopInfo":
            return {
                "shop": {
                    "id": "gid://shopify/Shop/1",
                    "name": "Acme EU",
                    "myshopifyDomain": "acme-eu.myshopify.com",
                    "currencyCode": "EUR",
                    "ianaTimezone": "Europe/Paris",
                }
            }
        raise AssertionError(f"FakeShopify does not know {operation}")


class _LineStream(httpx.SyncByteStream):
    def __init__(self, lines: list[str], break_after: int | None) -> None:
        self.lines = lines
        self.break_after = break_after

    def __iter__(self) -> Iterator[bytes]:
        for number, line in enumerate(self.lines):
            if self.break_after is not None and number >= self.break_after:
                raise httpx.ReadError("connection reset by peer")
            yield (line + "\n").encode()


def jsonl(orders: list[dict[str, Any]]) -> list[str]:
    return [json.dumps(row) for order in orders for row in bulk_rows(copy.deepcopy(order))]


class FakeClock:
    """A monotonic clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


def iter_lines_counting(lines: list[str], counter: list[int]) -> Iterator[str]:
    for line in lines:
        counter[0] += 1
        yield line
