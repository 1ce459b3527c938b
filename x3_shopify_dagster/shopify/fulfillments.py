"""Fulfilments changed in a time window, polled on their own timestamps (flows.md §6).

There is no top-level list of fulfilments in the Admin API, and a fulfilment can change without moving its order's
``updatedAt`` (shopify-admin-api.md §5; estuary/connectors#4338). Fulfillment orders have their own ``updatedAt``
and a top-level query filtered on it, so a window is read as
``fulfillmentOrders(query: "updated_at:>='lo' AND updated_at:<'hi'", sortKey: UPDATED_AT, includeClosed: true)``
with each fulfillment order's fulfilments and their line items (paged further when a fulfilment has more lines
than one page). Every fulfilment of a changed fulfillment order is returned, whatever its own ``updatedAt``: the
ledger dedupes unchanged versions on their content hash, and nothing older than the window is missed when a
backfill meets a fulfillment order that changed again later.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from x3_shopify_dagster.domain.fulfillments import ShopifyFulfillment
from x3_shopify_dagster.shopify.client import ShopifyClient
from x3_shopify_dagster.shopify.documents import load_document
from x3_shopify_dagster.shopify.errors import ShopifyProtocolError
from x3_shopify_dagster.shopify.orders import _check_window, orders_search_query, parse_timestamp

logger = logging.getLogger(__name__)
MAX_PAGE_SIZE = 250


@dataclass(frozen=True)
class FulfillmentProbe:
    oldest_updated_at: datetime | None
    newest_updated_at: datetime | None

    @property
    def changed(self) -> bool:
        return self.oldest_updated_at is not None


@dataclass
class FulfillmentPullStats:
    pages: int = 0
    fulfillment_orders: int = 0
    fulfillments: int = 0
    line_pages: int = 0

    def snapshot(self) -> dict[str, int]:
        return {"pages": self.pages, "fulfillment_orders": self.fulfillment_orders,
                "fulfillments": self.fulfillments, "line_pages": self.line_pages}


class FulfillmentReader:
    """Reads the fulfilments of one store whose fulfillment orders changed in a window."""

    def __init__(
        self, client: ShopifyClient, *, page_size: int = 5, fulfillments_per_order: int = 5, lines_page_size: int = 5
    ) -> None:
        for name, value in (("page_size", page_size), ("fulfillments_per_order", fulfillments_per_order),
                            ("lines_page_size", lines_page_size)):
            if not 1 <= value <= MAX_PAGE_SIZE:
                raise ValueError(f"{name} must be between 1 and {MAX_PAGE_SIZE}, got {value}")
        self._client = client
        self.page_size = page_size
        self.fulfillments_per_order = fulfillments_per_order
        self.lines_page_size = lines_page_size
        self.stats = FulfillmentPullStats()

    def probe(self, lo: datetime, hi: datetime) -> FulfillmentProbe:
        """The first and last fulfillment-order change in [lo, hi) (one cheap request)."""
        _check_window(lo, hi)
        data = self._client.execute(
            load_document("fulfillment_orders_probe"), {"query": orders_search_query(lo, hi)}
        ).data
        oldest = (data.get("oldest") or {}).get("nodes") or []
        newest = (data.get("newest") or {}).get("nodes") or []
        return FulfillmentProbe(
            oldest_updated_at=parse_timestamp(oldest[0]["updatedAt"]) if oldest else None,
            newest_updated_at=parse_timestamp(newest[0]["updatedAt"]) if newest else None,
        )

    def iter_changed_fulfillments(self, lo: datetime, hi: datetime) -> Iterator[ShopifyFulfillment]:
        """Every fulfilment of the fulfillment orders changed in [lo, hi), each version once."""
        _check_window(lo, hi)
        self.stats = FulfillmentPullStats()
        document = load_document("fulfillment_orders_page")
        search = orders_search_query(lo, hi)
        seen: set[tuple[str, datetime]] = set()
        cursor: str | None = None
        while True:
            variables = {"first": self.page_size, "after": cursor, "query": search,
                         "fulfillmentsFirst": self.fulfillments_per_order, "linesFirst": self.lines_page_size}
            connection = self._client.execute(document, variables).data["fulfillmentOrders"]
            self.stats.pages += 1
            for fulfillment_order in connection.get("nodes") or []:
                self.stats.fulfillment_orders += 1
                yield from self._fulfillments(fulfillment_order, seen)
            page_info = connection.get("pageInfo") or {}
            if not page_info.get("hasNextPage"):
                return
            cursor = page_info.get("endCursor")

    def _fulfillments(
        self, fulfillment_order: Mapping[str, Any], seen: set[tuple[str, datetime]]
    ) -> Iterator[ShopifyFulfillment]:
        connection = fulfillment_order.get("fulfillments") or {}
        if (connection.get("pageInfo") or {}).get("hasNextPage"):
            # Rare (more shipments from one location than a page): raise loudly rather than miss any.
            raise ShopifyProtocolError(
                f"fulfillment order {fulfillment_order.get('id')} has more than {self.fulfillments_per_order} "
                "fulfilments: raise X3SD_SHOPIFY_FULFILLMENTS_PER_ORDER and re-run"
            )
        for node in connection.get("nodes") or []:
            key = (str(node["id"]), parse_timestamp(node["updatedAt"]))
            if key in seen:  # one fulfilment can close several fulfillment orders
                continue
            seen.add(key)
            complete = self._complete_lines(node)
            if complete is None:
                continue
            self.stats.fulfillments += 1
            yield ShopifyFulfillment.from_graphql(
                complete, order_id=str(fulfillment_order["orderId"]), order_name=fulfillment_order.get("orderName")
            )

    def _complete_lines(self, node: Mapping[str, Any]) -> dict[str, Any] | None:
        """The node with all its line items; None if the fulfilment vanished while being paged."""
        connection = node.get("fulfillmentLineItems") or {}
        items = list(connection.get("nodes") or [])
        page_info = connection.get("pageInfo") or {}
        document = load_document("fulfillment_sync_line_items")
        while page_info.get("hasNextPage"):
            variables = {"id": node["id"], "first": self.lines_page_size, "after": page_info.get("endCursor")}
            owner = self._client.execute(document, variables).data.get("fulfillment")
            self.stats.line_pages += 1
            if owner is None:
                logger.warning("fulfillment %s vanished while its line items were being read", node["id"])
                return None
            page = owner["fulfillmentLineItems"]
            items.extend(page.get("nodes") or [])
            page_info = page.get("pageInfo") or {}
        return {**node, "fulfillmentLineItems": {"nodes": items, "pageInfo": {"hasNextPage": False}}}
