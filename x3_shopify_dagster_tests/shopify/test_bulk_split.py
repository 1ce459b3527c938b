"""The bulk result file processed by a worker process (shopify/bulk_split.py) against the run process alone.

Invariant (flows.md §6, dedupe on (id, updatedAt, content hash)): the split changes where the work is done,
not what is staged: the same versions, byte-identical stored JSON and hashes, the same counters and the same
fallbacks, orphan re-reads and failures, and the worker never outlives an error.
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from x3_shopify_dagster.defs.shopify.assets import order_version
from x3_shopify_dagster.domain.shopify_orders import EncodedOrder, MalformedOrderError, NormalisedOrder
from x3_shopify_dagster.shopify import bulk_split
from x3_shopify_dagster.shopify.bulk import BulkOrderExporter
from x3_shopify_dagster.shopify.client import ShopifyClient
from x3_shopify_dagster.shopify.orders import OrderReader
from x3_shopify_dagster_tests.shopify.fakes import FakeShopify, full_order, jsonl

LO = datetime(2026, 11, 27, 10, tzinfo=UTC)
HI = datetime(2026, 11, 27, 11, tzinfo=UTC)
RESULT = "https://storage.example/bulk/result.jsonl"
PARTIAL = "https://storage.example/bulk/partial.jsonl"
MakeClient = Callable[..., ShopifyClient]
STATS = ("orders", "duplicates_skipped", "bulk_rows", "orphans_refetched", "fallbacks", "fallback_reason",
         "after_sales_requests", "bulk_status")


def orders_at(count: int, **options: Any) -> list[dict[str, Any]]:
    return [full_order(n, updated_at=f"2026-11-27T10:{n:02d}:00Z", **options) for n in range(1, count + 1)]


def completed(object_count: int | str | None = None) -> dict[str, Any]:
    return {"status": "COMPLETED", "errorCode": None, "url": RESULT, "partialDataUrl": None,
            "objectCount": object_count}


def as_rows(pulled: list[Any]) -> list[tuple[Any, ...]]:
    """What staging stores of each pulled order, in pull order."""
    rows = []
    for order in pulled:
        version = order_version("eu", order)
        payload_json = version.payload_json
        rows.append((version.order_id, version.order_name, version.updated_at, version.content_hash, payload_json))
    return rows


def pull(make_client: MakeClient, fake: FakeShopify, split_min_rows: int | None, **options: Any) -> dict[str, Any]:
    client = make_client(fake.transport())
    exporter = BulkOrderExporter(client, split_min_rows=split_min_rows, **options)
    orders = exporter.iter_changed_orders(LO, HI, fallback=OrderReader(client), build=NormalisedOrder.from_graphql)
    pulled = list(orders)
    return {
        "rows": as_rows(pulled),
        "stats": {name: getattr(exporter.stats, name) for name in STATS},
        "requests": sorted((s.operation, json.dumps(s.variables, sort_keys=True)) for s in fake.sent),
        "split_used": exporter.split_used,
        "types": {type(order).__name__ for order in pulled},
    }


def both_modes(make_client: MakeClient, make_fake: Callable[[], FakeShopify], **options: Any) -> dict[str, Any]:
    single = pull(make_client, make_fake(), None, **options)
    split = pull(make_client, make_fake(), 0, **options)
    assert (single["split_used"], split["split_used"]) == (False, True)
    # The worker sends encoded orders; orders needing refund/fulfilment reads are built here, after the
    # batch's others: same set, possibly another order within a batch.
    assert sorted(split["rows"]) == sorted(single["rows"])
    assert len(split["rows"]) == len(single["rows"])
    assert split["stats"] == single["stats"]
    assert split["requests"] == single["requests"]
    assert not multiprocessing.active_children()
    return {"single": single, "split": split}


def test_versions_are_byte_identical_with_refunds_fulfilments_and_missing_connections(
    make_client: MakeClient,
) -> None:
    orders = [
        full_order(1, refunds=1, updated_at="2026-11-27T10:01:00Z"),
        full_order(2, shipping_lines=0, updated_at="2026-11-27T10:02:00Z"),
        full_order(3, fulfillments=1, line_items=3, updated_at="2026-11-27T10:03:00Z"),
        full_order(4, line_items=0, shipping_lines=0, updated_at="2026-11-27T10:04:00Z"),
        *orders_at(12, line_items=2)[4:],
    ]

    def make_fake() -> FakeShopify:
        return FakeShopify(orders=orders, bulk_statuses=[completed()], files={"/bulk/result.jsonl": jsonl(orders)})

    result = both_modes(make_client, make_fake, max_buffered_orders=3)
    assert result["split"]["types"] == {"EncodedOrder", "NormalisedOrder"}  # 1 and 3 needed after-sales reads
    assert len(result["split"]["rows"]) == 12
    assert result["split"]["stats"]["after_sales_requests"] >= 1


def test_orphans_are_reread_the_same_way(make_client: MakeClient) -> None:
    orders = orders_at(3, line_items=2)
    rows = jsonl(orders)
    rows.append(rows.pop(1))  # the first line item of order 1 arrives after every other order

    def make_fake() -> FakeShopify:
        return FakeShopify(orders=orders, bulk_statuses=[completed()], files={"/bulk/result.jsonl": rows})

    result = both_modes(make_client, make_fake, max_buffered_orders=2)
    assert result["split"]["stats"]["orphans_refetched"] == 1
    assert [row[0] for row in result["split"]["rows"]][-1] == "gid://shopify/Order/1"  # the complete re-read last


def test_partial_data_of_a_failed_export_then_paging(make_client: MakeClient) -> None:
    orders = orders_at(6, line_items=1)
    failed = {"status": "FAILED", "errorCode": "INTERNAL_SERVER_ERROR", "url": None, "partialDataUrl": PARTIAL,
              "objectCount": "10"}

    def make_fake() -> FakeShopify:
        return FakeShopify(orders=orders, bulk_statuses=[failed], files={"/bulk/partial.jsonl": jsonl(orders[:5])})

    result = both_modes(make_client, make_fake, max_buffered_orders=2)
    assert result["split"]["stats"]["duplicates_skipped"] == 1  # order 3: in the file and again from the pager
    assert len(result["split"]["rows"]) == 6


def test_an_interrupted_download_pages_from_the_newest_order_kept(make_client: MakeClient) -> None:
    orders = orders_at(5, line_items=1)

    def make_fake() -> FakeShopify:
        return FakeShopify(orders=orders, bulk_statuses=[completed()], files={"/bulk/result.jsonl": jsonl(orders)},
                           break_download_after=7)  # 2 rows per order: dies in order 4

    result = both_modes(make_client, make_fake, max_buffered_orders=1)
    assert "interrupted" in result["split"]["stats"]["fallback_reason"]
    assert len(result["split"]["rows"]) == 5


def test_an_invalid_line_is_an_interruption_with_the_same_reason(make_client: MakeClient) -> None:
    orders = orders_at(5, line_items=1)
    rows = jsonl(orders)
    rows[6] = rows[6][:20]  # a truncated line inside order 4

    def make_fake() -> FakeShopify:
        return FakeShopify(orders=orders, bulk_statuses=[completed()], files={"/bulk/result.jsonl": rows})

    result = both_modes(make_client, make_fake, max_buffered_orders=1)
    assert "truncated or invalid line" in result["split"]["stats"]["fallback_reason"]


def test_a_malformed_order_fails_with_the_same_message_and_leaves_no_worker(make_client: MakeClient) -> None:
    orders = orders_at(30, line_items=1)
    orders[17]["name"] = ""
    messages = []
    for split_min_rows in (None, 0):
        fake = FakeShopify(orders=orders, bulk_statuses=[completed()], files={"/bulk/result.jsonl": jsonl(orders)})
        exporter = BulkOrderExporter(make_client(fake.transport()), split_min_rows=split_min_rows)
        with pytest.raises(MalformedOrderError) as raised:
            list(exporter.iter_changed_orders(LO, HI, build=NormalisedOrder.from_graphql))
        messages.append(str(raised.value))
        assert exporter.split_used == (split_min_rows == 0)
        assert not multiprocessing.active_children()
    assert messages[0] == messages[1]
    assert "gid://shopify/Order/18" in messages[1]
    assert "name" in messages[1]


def test_small_files_stay_in_the_run_process(make_client: MakeClient) -> None:
    orders = orders_at(3)
    for object_count, split in ((None, False), ("6", False), (19_999, False), ("20000", True)):
        fake = FakeShopify(orders=orders, bulk_statuses=[completed(object_count)],
                           files={"/bulk/result.jsonl": jsonl(orders)})
        exporter = BulkOrderExporter(make_client(fake.transport()))  # the default threshold: 20,000 lines
        assert len(list(exporter.iter_changed_orders(LO, HI, build=NormalisedOrder.from_graphql))) == 3
        assert exporter.split_used is split, object_count
    # Only the staging builder can be split: other builders always run here.
    fake = FakeShopify(orders=orders, bulk_statuses=[completed("20000")], files={"/bulk/result.jsonl": jsonl(orders)})
    exporter = BulkOrderExporter(make_client(fake.transport()))
    assert len(list(exporter.iter_changed_orders(LO, HI))) == 3
    assert exporter.split_used is False


def _write(path: Path, orders: list[dict[str, Any]]) -> Path:
    path.write_text("\n".join(jsonl(orders)) + "\n")
    return path


def test_the_worker_gives_what_one_process_gives(tmp_path: Path) -> None:
    orders = orders_at(40, line_items=3)
    path = _write(tmp_path / "result.jsonl", orders)
    result = bulk_split.SplitResult()
    encoded = [EncodedOrder(*value) for items, *_ in bulk_split.iter_encoded_file(path, result, batch_size=7)
               for _, _, value in items]
    alone = [EncodedOrder.of(NormalisedOrder.from_graphql(order)) for order in orders]
    assert encoded == alone  # identity, stored JSON text and content hash, byte for byte
    assert (result.rows, result.interrupted, result.worker_exitcode) == (len(jsonl(orders)), False, 0)


def test_a_missing_file_surfaces_as_the_same_os_error(tmp_path: Path) -> None:
    result = bulk_split.SplitResult()
    with pytest.raises(FileNotFoundError, match=r"nowhere\.jsonl"):
        list(bulk_split.iter_encoded_file(tmp_path / "nowhere.jsonl", result))
    assert result.worker_exitcode is not None
    assert not multiprocessing.active_children()


def test_a_consumer_that_stops_early_ends_the_worker(tmp_path: Path) -> None:
    path = _write(tmp_path / "result.jsonl", orders_at(50, line_items=1))
    result = bulk_split.SplitResult()
    batches: Iterator[Any] = bulk_split.iter_encoded_file(path, result, batch_size=1)
    next(batches)  # the worker is now blocked on the bounded queue
    batches.close()  # e.g. staging raised
    assert result.worker_exitcode is not None
    assert not multiprocessing.active_children()
