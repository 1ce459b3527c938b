"""BulkOrderExporter against the in-process fake: polling, streaming, orphans, failures and fallbacks."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from x3_shopify_dagster.domain.shopify_orders import ShopifyOrder
from x3_shopify_dagster.shopify.bulk import BulkOrderExporter, bulk_orders_query
from x3_shopify_dagster.shopify.client import ShopifyClient
from x3_shopify_dagster.shopify.errors import BulkOperationError, ShopifyUserErrors
from x3_shopify_dagster.shopify.orders import OrderReader, orders_search_query
from x3_shopify_dagster_tests.shopify.fakes import (
    FakeClock,
    FakeShopify,
    full_order,
    graphql_response,
    jsonl,
)

LO = datetime(2026, 11, 27, 10, tzinfo=UTC)
HI = datetime(2026, 11, 27, 11, tzinfo=UTC)
RESULT = "https://storage.example/bulk/result.jsonl"
PARTIAL = "https://storage.example/bulk/partial.jsonl"
MakeClient = Callable[..., ShopifyClient]


def orders_at(count: int, **options: Any) -> list[dict[str, Any]]:
    return [full_order(n, updated_at=f"2026-11-27T10:{n:02d}:00Z", **options) for n in range(1, count + 1)]


def expected(orders: list[dict[str, Any]]) -> list[ShopifyOrder]:
    return [ShopifyOrder.from_graphql(order) for order in orders]


def completed(url: str | None = RESULT) -> dict[str, Any]:
    return {"status": "COMPLETED", "errorCode": None, "url": url, "partialDataUrl": None}


RUNNING = {"status": "RUNNING", "errorCode": None, "url": None, "partialDataUrl": None}


def test_completed_export_yields_complete_orders_in_file_order(make_client: MakeClient, fake_clock: FakeClock) -> None:
    orders = [full_order(1, refunds=1), full_order(2), full_order(3, fulfillments=1, line_items=3)]
    fake = FakeShopify(
        orders=orders, bulk_statuses=[RUNNING, RUNNING, completed()], files={"/bulk/result.jsonl": jsonl(orders)}
    )
    exporter = BulkOrderExporter(make_client(fake.transport()), poll_interval_s=2.0)

    assert list(exporter.iter_changed_orders(LO, HI)) == expected(orders)
    run = next(s for s in fake.sent if s.operation == "BulkOrdersRun")
    assert run.variables == {"query": bulk_orders_query(orders_search_query(LO, HI))}
    assert fake_clock.sleeps == [2.0, 2.0]  # two polls saw RUNNING
    assert "X-Shopify-Access-Token" not in fake.downloads[0].headers
    # refunds/fulfilments come from one batched read, not from the bulk file
    assert [s.variables["ids"] for s in fake.sent if s.operation == "OrdersAfterSales"] == [
        ["gid://shopify/Order/1", "gid://shopify/Order/3"]
    ]
    assert exporter.stats.bulk_operation_id == "gid://shopify/BulkOperation/1"
    assert (exporter.stats.bulk_status, exporter.stats.orders, exporter.stats.fallbacks) == ("COMPLETED", 3, 0)


def test_an_export_with_no_match_has_no_file_to_read(make_client: MakeClient) -> None:
    fake = FakeShopify(bulk_statuses=[completed(url=None)])
    assert list(BulkOrderExporter(make_client(fake.transport())).iter_changed_orders(LO, HI)) == []
    assert fake.downloads == []


def test_orphaned_children_get_their_order_reread_completely(make_client: MakeClient) -> None:
    orders = orders_at(3, line_items=2)
    rows = jsonl(orders)
    late_child = rows.pop(1)  # the first line item of order 1 ...
    rows.append(late_child)  # ... arrives after every other order
    fake = FakeShopify(orders=orders, bulk_statuses=[completed()], files={"/bulk/result.jsonl": rows})
    exporter = BulkOrderExporter(make_client(fake.transport()), max_buffered_orders=2)

    pulled = list(exporter.iter_changed_orders(LO, HI))
    assert [o.id for o in pulled] == [o["id"] for o in orders] + ["gid://shopify/Order/1"]
    assert len(pulled[0].line_items) == 1  # emitted before its late child arrived
    assert pulled[-1] == ShopifyOrder.from_graphql(orders[0])  # the re-read version is complete
    assert [s.variables["ids"] for s in fake.sent if s.operation == "OrdersById"] == [["gid://shopify/Order/1"]]
    assert exporter.stats.orphans_refetched == 1


def test_failed_export_yields_partial_data_then_pages_the_rest(make_client: MakeClient) -> None:
    orders = orders_at(6, line_items=1)
    failed = {"status": "FAILED", "errorCode": "INTERNAL_SERVER_ERROR", "url": None, "partialDataUrl": PARTIAL}
    fake = FakeShopify(orders=orders, bulk_statuses=[failed], files={"/bulk/partial.jsonl": jsonl(orders[:5])})
    client = make_client(fake.transport())
    exporter = BulkOrderExporter(client, max_buffered_orders=2)

    pulled = list(exporter.iter_changed_orders(LO, HI, fallback=OrderReader(client)))
    assert sorted(pulled, key=lambda o: o.id) == sorted(expected(orders), key=lambda o: o.id)
    assert len({(o.id, o.updated_at) for o in pulled}) == 6  # every order exactly once
    # orders 1-3 left the buffer and were yielded from the file; 4 and 5 were still buffered when the
    # partial file ended (their children may be missing) so paging restarts at the newest yielded, 10:03
    page = next(s for s in fake.sent if s.operation == "OrdersPage")
    assert page.variables["query"] == orders_search_query(datetime(2026, 11, 27, 10, 3, tzinfo=UTC), HI)
    assert exporter.stats.fallbacks == 1
    assert "FAILED" in (exporter.stats.fallback_reason or "")
    assert exporter.stats.duplicates_skipped == 1  # order 3, seen in the file and again by the pager


def test_failed_export_without_partial_data_pages_the_whole_window(make_client: MakeClient) -> None:
    orders = orders_at(4)
    failed = {"status": "FAILED", "errorCode": "INTERNAL_SERVER_ERROR", "url": None, "partialDataUrl": None}
    fake = FakeShopify(orders=orders, bulk_statuses=[failed])
    client = make_client(fake.transport())

    assert list(BulkOrderExporter(client).iter_changed_orders(LO, HI, fallback=OrderReader(client))) == expected(orders)
    assert next(s for s in fake.sent if s.operation == "OrdersPage").variables["query"] == orders_search_query(LO, HI)


def test_failed_export_without_fallback_raises(make_client: MakeClient) -> None:
    failed = {"status": "FAILED", "errorCode": "ACCESS_DENIED", "url": None, "partialDataUrl": None}
    fake = FakeShopify(bulk_statuses=[failed])
    with pytest.raises(BulkOperationError, match="ACCESS_DENIED"):
        list(BulkOrderExporter(make_client(fake.transport())).iter_changed_orders(LO, HI))


def test_an_export_past_its_deadline_is_cancelled_and_paged_instead(
    make_client: MakeClient, fake_clock: FakeClock
) -> None:
    orders = orders_at(2)
    fake = FakeShopify(orders=orders, bulk_statuses=[RUNNING])
    client = make_client(fake.transport())
    exporter = BulkOrderExporter(client, poll_interval_s=2.0, timeout_s=5.0)

    assert list(exporter.iter_changed_orders(LO, HI, fallback=OrderReader(client))) == expected(orders)
    assert fake.operations().count("BulkOperationStatus") == 4  # t = 0, 2, 4, 6 (past 5 s)
    cancel = next(s for s in fake.sent if s.operation == "BulkOperationCancel")
    assert cancel.variables == {"id": "gid://shopify/BulkOperation/1"}
    assert exporter.stats.fallbacks == 1
    assert "5s" in (exporter.stats.fallback_reason or "")


def test_an_interrupted_download_resumes_by_paging_from_the_newest_order_yielded(make_client: MakeClient) -> None:
    orders = orders_at(5, line_items=1)
    fake = FakeShopify(
        orders=orders, bulk_statuses=[completed()], files={"/bulk/result.jsonl": jsonl(orders)}, break_download_after=7
    )  # 2 rows per order: dies in order 4
    client = make_client(fake.transport())
    exporter = BulkOrderExporter(client, max_buffered_orders=1)

    pulled = list(exporter.iter_changed_orders(LO, HI, fallback=OrderReader(client)))
    assert [o.id for o in pulled] == [o["id"] for o in orders]
    assert pulled == expected(orders)
    assert "interrupted" in (exporter.stats.fallback_reason or "")


def test_a_busy_bulk_queue_falls_back_but_an_invalid_query_is_raised(make_client: MakeClient) -> None:
    def refusal(code: str) -> Any:
        return graphql_response(
            {
                "bulkOperationRunQuery": {
                    "bulkOperation": None,
                    "userErrors": [
                        {
                            "field": None,
                            "message": "A bulk query operation for this app and shop is already in progress",
                            "code": code,
                        }
                    ],
                }
            }
        )

    orders = orders_at(2)
    fake = FakeShopify(orders=orders, scripted={"BulkOrdersRun": [refusal("LIMIT_REACHED"), refusal("INVALID")]})
    client = make_client(fake.transport())
    exporter = BulkOrderExporter(client)

    assert list(exporter.iter_changed_orders(LO, HI, fallback=OrderReader(client))) == expected(orders)
    assert exporter.stats.fallbacks == 1
    with pytest.raises(ShopifyUserErrors):
        list(exporter.iter_changed_orders(LO, HI, fallback=OrderReader(client)))


def test_orders_without_rows_for_a_connection_are_kept(make_client: MakeClient) -> None:
    # No shipping line (collected in store) means no child row at all for that connection in the file.
    orders = [full_order(1, shipping_lines=0), full_order(2, line_items=0, shipping_lines=0), full_order(3)]
    fake = FakeShopify(orders=orders, bulk_statuses=[completed()], files={"/bulk/result.jsonl": jsonl(orders)})
    pulled = list(BulkOrderExporter(make_client(fake.transport())).iter_changed_orders(LO, HI))
    assert pulled == expected(orders)
    assert (len(pulled[0].shipping_lines), len(pulled[1].line_items)) == (0, 0)


def test_a_bulk_start_lost_in_a_server_error_is_not_resent_but_paged(make_client: MakeClient) -> None:
    # bulkOperationRunQuery has no idempotency key: after a 502 it may or may not have started a job.
    orders = orders_at(2)
    fake = FakeShopify(orders=orders, scripted={"BulkOrdersRun": [httpx.Response(502)]})
    client = make_client(fake.transport())
    exporter = BulkOrderExporter(client)

    assert list(exporter.iter_changed_orders(LO, HI, fallback=OrderReader(client))) == expected(orders)
    assert fake.operations().count("BulkOrdersRun") == 1
    assert "502" in (exporter.stats.fallback_reason or "")
