"""Incremental, paged pull of the orders that changed in a time window.

``orders(query: "updated_at:>='lo' AND updated_at:<'hi'", sortKey: UPDATED_AT)`` is paged with cursors; each
order's line items and shipping lines are paged further when the first page says ``hasNextPage``, and the
refunds and fulfilments of the orders that have any are read in one batched ``nodes(ids:)`` request per page
(see orders_after_sales.graphql for why they are not in the page query). ``MAX_COST_EXCEEDED`` shrinks the
page sizes and the same request is sent again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, TypeVar

from x3_shopify_dagster.domain.shopify_orders import ShopifyOrder
from x3_shopify_dagster.shopify.client import GraphQLResponse, ShopifyClient
from x3_shopify_dagster.shopify.documents import GraphQLDocument, load_document
from x3_shopify_dagster.shopify.errors import MaxCostExceededError, ShopifyError

logger = logging.getLogger(__name__)

_VANISHED = object()  # marks a connection whose owner was deleted while it was being paged
MAX_PAGE_SIZE = 250  # Shopify's limit for one connection page
AFTER_SALES_LIST_LIMIT = 20  # refunds(first: 20) / fulfillments(first: 20) in the documents


class PulledOrder(Protocol):
    """What a reader's ``build`` makes of a completed order node: ``ShopifyOrder`` (validated, the default)
    or ``NormalisedOrder`` (the staging payload, validated later by posting)."""

    @property
    def id(self) -> str: ...

    @property
    def updated_at(self) -> datetime: ...


OrderT = TypeVar("OrderT", bound=PulledOrder)
OrderBuilder = Callable[[Mapping[str, Any]], OrderT]


def orders_search_query(lo: datetime, hi: datetime) -> str:
    """Shopify search string for ``lo <= updatedAt < hi``.

    Timestamps are single-quoted UTC with second precision: unquoted, Shopify keeps only the date. Both ends
    are truncated to the second, so consecutive windows [a, b), [b, c) still tile without gap or overlap.
    """
    return f"updated_at:>='{_search_timestamp(lo)}' AND updated_at:<'{_search_timestamp(hi)}'"


def _search_timestamp(value: datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"window bounds must be timezone-aware, got {value.isoformat()}")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_window(lo: datetime, hi: datetime) -> None:
    if _search_timestamp(lo) >= _search_timestamp(hi):
        raise ValueError(f"empty window: [{lo.isoformat()}, {hi.isoformat()})")


def parse_timestamp(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp without a timezone: {value}")
    return parsed.astimezone(UTC)


@dataclass(frozen=True)
class ChangeProbe:
    count: int
    count_precision: str  # EXACT, or AT_LEAST when Shopify capped the count
    oldest_updated_at: datetime | None
    newest_updated_at: datetime | None


@dataclass
class PullStats:
    mode: str = "paged"  # "paged" or "bulk"
    pages: int = 0  # order pages (paged) or result lines read (bulk: see bulk_rows)
    orders: int = 0  # orders yielded
    duplicates_skipped: int = 0  # same (id, updatedAt) seen twice in one pull
    line_item_pages: int = 0  # extra lineItems pages
    shipping_line_pages: int = 0  # extra shippingLines pages
    after_sales_requests: int = 0  # batched refunds/fulfilments reads
    after_sales_pages: int = 0  # extra refund/fulfilment line pages
    page_size_shrinks: int = 0
    vanished_orders: int = 0  # deleted between the page and a follow-up read
    bulk_operation_id: str | None = None
    bulk_status: str | None = None
    bulk_rows: int = 0
    orphans_refetched: int = 0
    fallbacks: int = 0
    fallback_reason: str | None = None

    def snapshot(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PageSizes:
    orders: int  # orders per page
    line_items: int  # lineItems per page, and refund/fulfilment line items per page
    shipping_lines: int  # shippingLines per page, and refunded shipping lines per page
    batch: int  # orders per batched by-id request (refund/fulfilment details, re-reads)


@dataclass
class _Drain:
    """How to page one nested connection further."""

    document: GraphQLDocument
    root_field: str  # "order", "refund", "fulfillment"
    connection: str  # "lineItems", ...
    size: Callable[[PageSizes], int]
    stat: str  # PullStats counter to bump per extra page


_LINE_ITEMS = _Drain(load_document("order_line_items"), "order", "lineItems", lambda s: s.line_items, "line_item_pages")
_SHIPPING_LINES = _Drain(
    load_document("order_shipping_lines"),
    "order",
    "shippingLines",
    lambda s: s.shipping_lines,
    "shipping_line_pages",
)
_REFUND_LINE_ITEMS = _Drain(
    load_document("refund_line_items"),
    "refund",
    "refundLineItems",
    lambda s: s.line_items,
    "after_sales_pages",
)
_REFUND_SHIPPING_LINES = _Drain(
    load_document("refund_shipping_lines"),
    "refund",
    "refundShippingLines",
    lambda s: s.shipping_lines,
    "after_sales_pages",
)
_FULFILLMENT_LINE_ITEMS = _Drain(
    load_document("fulfillment_line_items"),
    "fulfillment",
    "fulfillmentLineItems",
    lambda s: s.line_items,
    "after_sales_pages",
)


class OrderReader:
    """Reads complete orders from one store: changed in a window (paged), or by id."""

    def __init__(
        self,
        client: ShopifyClient,
        *,
        page_size: int = 25,
        line_items_page_size: int = 25,
        shipping_lines_page_size: int = 5,
    ) -> None:
        for name, value in (
            ("page_size", page_size),
            ("line_items_page_size", line_items_page_size),
            ("shipping_lines_page_size", shipping_lines_page_size),
        ):
            if not 1 <= value <= MAX_PAGE_SIZE:
                raise ValueError(f"{name} must be between 1 and {MAX_PAGE_SIZE}, got {value}")
        self._client = client
        self.sizes = PageSizes(page_size, line_items_page_size, shipping_lines_page_size, batch=page_size)
        self.stats = PullStats()

    # --- Public ------------------------------------------------------------------------------------------

    def probe(self, lo: datetime, hi: datetime) -> ChangeProbe:
        """How many orders changed in [lo, hi), and the first and last change (one cheap request)."""
        _check_window(lo, hi)
        data = self._client.execute(load_document("orders_probe"), {"query": orders_search_query(lo, hi)}).data
        oldest = (data.get("oldest") or {}).get("nodes") or []
        newest = (data.get("newest") or {}).get("nodes") or []
        count = data.get("ordersCount") or {}
        return ChangeProbe(
            count=int(count.get("count") or 0),
            count_precision=str(count.get("precision") or "EXACT"),
            oldest_updated_at=parse_timestamp(oldest[0]["updatedAt"]) if oldest else None,
            newest_updated_at=parse_timestamp(newest[0]["updatedAt"]) if newest else None,
        )

    def iter_changed_orders(
        self, lo: datetime, hi: datetime, *, build: OrderBuilder[OrderT] = ShopifyOrder.from_graphql
    ) -> Iterator[OrderT]:
        """Every order whose updatedAt is in [lo, hi), oldest change first, complete, once per version.

        ``build`` turns each completed node into what is yielded (the validated model by default)."""
        _check_window(lo, hi)
        self.stats = PullStats(mode="paged")
        search = orders_search_query(lo, hi)
        seen: set[tuple[str, datetime]] = set()
        cursor: str | None = None
        document = load_document("orders_page")
        while True:
            after = cursor

            def variables(sizes: PageSizes, after: str | None = after) -> dict[str, Any]:
                return {
                    "first": sizes.orders,
                    "after": after,
                    "query": search,
                    "lineItemsFirst": sizes.line_items,
                    "shippingLinesFirst": sizes.shipping_lines,
                }

            connection = self._run(document, variables, outer="orders").data["orders"]
            self.stats.pages += 1
            fresh = [node for node in connection.get("nodes") or [] if self._first_sighting(node, seen)]
            yield from self.complete_orders(fresh, build=build)
            page_info = connection.get("pageInfo") or {}
            if not page_info.get("hasNextPage"):
                return
            cursor = page_info.get("endCursor")

    def fetch_orders_by_id(
        self, ids: Iterable[str], *, build: OrderBuilder[OrderT] = ShopifyOrder.from_graphql
    ) -> Iterator[OrderT]:
        """Complete orders by GID (orders that no longer exist are skipped and counted as vanished)."""
        pending = list(dict.fromkeys(ids))
        document = load_document("orders_by_id")
        while pending:
            batch = pending

            def variables(sizes: PageSizes, batch: list[str] = batch) -> dict[str, Any]:
                return {
                    "ids": batch[: sizes.batch],
                    "lineItemsFirst": sizes.line_items,
                    "shippingLinesFirst": sizes.shipping_lines,
                }

            response = self._run(document, variables, outer="batch")
            sent = len(pending[: self.sizes.batch])
            nodes = [node for node in response.data.get("nodes") or [] if node]
            self.stats.vanished_orders += sent - len(nodes)
            pending = pending[sent:]
            yield from self.complete_orders(nodes, build=build)

    def complete_orders(
        self, nodes: Sequence[Mapping[str, Any]], *, build: OrderBuilder[OrderT] = ShopifyOrder.from_graphql
    ) -> list[OrderT]:
        """Page the nested connections of order nodes, attach refund/fulfilment details, then ``build`` each.

        Accepts page nodes (connections with pageInfo) and assembled bulk rows (children as lists).
        """
        completed = [self._complete_nested(node) for node in nodes]
        present = [node for node in completed if node is not None]
        self._attach_after_sales(present)
        orders = []
        for node in present:
            if node.get("_vanished"):
                continue
            orders.append(build(node))
        self.stats.orders += len(orders)
        return orders

    # --- Steps -------------------------------------------------------------------------------------------

    def _first_sighting(self, node: Mapping[str, Any], seen: set[tuple[str, datetime]]) -> bool:
        key = (str(node["id"]), parse_timestamp(node["updatedAt"]))
        if key in seen:
            self.stats.duplicates_skipped += 1
            return False
        seen.add(key)
        return True

    def _complete_nested(self, node: Mapping[str, Any]) -> dict[str, Any] | None:
        """The node with its nested connections read to the end; None if the order vanished meanwhile."""
        completed = dict(node)
        for drain in (_LINE_ITEMS, _SHIPPING_LINES):
            items = self._drain(str(node["id"]), node.get(drain.connection), drain)
            if items is _VANISHED:
                return None
            completed[drain.connection] = items
        return completed

    def _attach_after_sales(self, nodes: list[dict[str, Any]]) -> None:
        by_id = {str(n["id"]): n for n in nodes if n.get("refunds") or n.get("fulfillments")}
        pending = list(by_id)
        document = load_document("orders_after_sales")
        while pending:
            batch = pending

            def variables(sizes: PageSizes, batch: list[str] = batch) -> dict[str, Any]:
                return {
                    "ids": batch[: sizes.batch],
                    "linesFirst": sizes.line_items,
                    "shippingLinesFirst": sizes.shipping_lines,
                }

            response = self._run(document, variables, outer="batch")
            self.stats.after_sales_requests += 1
            sent = pending[: self.sizes.batch]
            returned = {str(item["id"]): item for item in response.data.get("nodes") or [] if item}
            for order_id in sent:
                node = by_id[order_id]
                item = returned.get(order_id)
                if item is None:
                    node["_vanished"] = True
                    self.stats.vanished_orders += 1
                    continue
                node["refunds"] = self._complete_list(
                    order_id,
                    item.get("refunds") or [],
                    "refunds",
                    (_REFUND_LINE_ITEMS, _REFUND_SHIPPING_LINES),
                )
                node["fulfillments"] = self._complete_list(
                    order_id, item.get("fulfillments") or [], "fulfillments", (_FULFILLMENT_LINE_ITEMS,)
                )
            pending = pending[len(sent) :]

    def _complete_list(
        self, order_id: str, items: list[Mapping[str, Any]], what: str, drains: tuple[_Drain, ...]
    ) -> list[dict[str, Any]]:
        if len(items) >= AFTER_SALES_LIST_LIMIT:
            logger.warning(
                "order %s lists %d %s, the most one request reads; later ones may be missing",
                order_id,
                len(items),
                what,
            )
        completed = []
        for item in items:
            entry = dict(item)
            for drain in drains:
                nested = self._drain(str(item["id"]), item.get(drain.connection), drain)
                if nested is _VANISHED:
                    # Refunds and fulfilments are never deleted in Shopify; losing one mid-read is an anomaly.
                    raise ShopifyError(f"{drain.root_field} {item['id']} of order {order_id} vanished while read")
                entry[drain.connection] = nested
            completed.append(entry)
        return completed

    def _drain(self, owner_id: str, connection: Any, drain: _Drain) -> Any:
        """All nodes of a nested connection, reading further pages while ``hasNextPage``.

        Returns the connection unchanged when it is a plain list (bulk rows) or absent (a bulk order without
        such children), and ``_VANISHED`` when the owner disappeared while it was being paged.
        """
        if not isinstance(connection, Mapping):
            return connection
        items = list(connection.get("nodes") or [edge["node"] for edge in connection.get("edges") or []])
        page_info = connection.get("pageInfo") or {}
        while page_info.get("hasNextPage"):
            after = page_info.get("endCursor")

            def variables(sizes: PageSizes, after: str | None = after) -> dict[str, Any]:
                return {"id": owner_id, "first": drain.size(sizes), "after": after}

            owner = self._run(drain.document, variables, outer=None).data.get(drain.root_field)
            setattr(self.stats, drain.stat, getattr(self.stats, drain.stat) + 1)
            if owner is None:
                logger.warning(
                    "%s %s vanished while its %s were being read",
                    drain.root_field,
                    owner_id,
                    drain.connection,
                )
                self.stats.vanished_orders += 1
                return _VANISHED
            page = owner[drain.connection]
            items.extend(page.get("nodes") or [])
            page_info = page.get("pageInfo") or {}
        return {"nodes": items, "pageInfo": {"hasNextPage": False, "endCursor": page_info.get("endCursor")}}

    def _run(
        self,
        document: GraphQLDocument,
        variables: Callable[[PageSizes], dict[str, Any]],
        *,
        outer: Literal["orders", "batch"] | None,
    ) -> GraphQLResponse:
        while True:
            try:
                return self._client.execute(document, variables(self.sizes))
            except MaxCostExceededError as error:
                self._shrink(error, outer=outer)

    def _shrink(self, error: MaxCostExceededError, *, outer: Literal["orders", "batch"] | None) -> None:
        """Ask for less after MAX_COST_EXCEEDED: scale by maxCost/cost, at least halve.

        The outer page size multiplies the cost of everything nested, so it shrinks first; nested page sizes
        only once the outer one is down to 1 (or the query has no outer list).
        """
        factor = min(0.5, error.max_cost / error.cost) if error.cost > 0 else 0.5
        before = asdict(self.sizes)
        sizes = self.sizes
        if outer is not None and getattr(sizes, outer) > 1:
            setattr(sizes, outer, max(1, int(getattr(sizes, outer) * factor)))
        elif sizes.line_items > 1 or sizes.shipping_lines > 1:
            sizes.line_items = max(1, int(sizes.line_items * factor))
            sizes.shipping_lines = max(1, int(sizes.shipping_lines * factor))
        else:
            raise error  # one order with one line per page is still too expensive: nothing left to shrink
        self.stats.page_size_shrinks += 1
        logger.warning(
            "Shopify %s: query cost %d over the limit %d; page sizes %s -> %s",
            error.operation,
            error.cost,
            error.max_cost,
            before,
            asdict(sizes),
        )
