"""Bulk export of the orders changed in a window, streamed from Shopify's JSONL result.

Flow: ``bulkOperationRunQuery`` with bulk_orders_export.graphql (the window substituted as a string literal),
poll ``bulkOperation(id)`` until it is terminal, then read the result file line by line. Nested connection
rows (line items, shipping lines, discount applications) come after their order, carrying ``__parentId``, not
necessarily right after it; :func:`iter_bulk_jsonl` reassembles them with a bounded buffer of recent orders.

Fallbacks keep every order exactly once per (id, updatedAt):
- a child row whose order already left the buffer is an orphan: that order is re-read completely by id at
  the end (its first, incomplete version was already yielded; the re-read one is yielded after it);
- a FAILED job: its ``partialDataUrl`` rows are yielded, then the paged reader covers [newest seen, hi);
- no partial data, a job past ``timeout_s`` (cancelled), a refused start or an interrupted download: the
  paged reader covers what the file did not.
"""

from __future__ import annotations

import logging
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from graphql import REMOVE, StringValueNode, VariableDefinitionNode, VariableNode, parse, print_ast, visit
from graphql.language import Visitor

from x3_shopify_dagster.domain.shopify_orders import EncodedOrder, NormalisedOrder, ShopifyOrder
from x3_shopify_dagster.shopify.client import ShopifyClient
from x3_shopify_dagster.shopify.documents import load_document
from x3_shopify_dagster.shopify.errors import (
    BulkOperationError,
    ShopifyAuthError,
    ShopifyHTTPError,
    ShopifyTransportError,
    ShopifyUserErrors,
)
from x3_shopify_dagster.shopify.orders import (
    OrderBuilder,
    OrderReader,
    OrderT,
    PullStats,
    _check_window,
    _search_timestamp,
    orders_search_query,
    parse_timestamp,
)

logger = logging.getLogger(__name__)

TERMINAL_STATUSES = frozenset({"COMPLETED", "FAILED", "CANCELED", "EXPIRED"})
# Result files of at least this many lines (objectCount) are processed by a worker process (bulk_split.py).
DEFAULT_SPLIT_MIN_ROWS = 20_000
# Start refusals that mean "not now" rather than "wrong query": the paged reader can do the job instead.
_BUSY_CODES = frozenset({"LIMIT_REACHED", "OPERATION_IN_PROGRESS"})


# --- The inner query ---------------------------------------------------------------------------------------


class _InlineSearch(Visitor):
    def __init__(self, search: str) -> None:
        super().__init__()
        self.search = search

    def enter_variable_definition(self, node: VariableDefinitionNode, *_args: object) -> object:
        return REMOVE

    def enter_variable(self, node: VariableNode, *_args: object) -> object:
        if node.name.value != "query":
            raise ValueError(f"bulk_orders_export.graphql uses an unexpected variable ${node.name.value}")
        return StringValueNode(value=self.search)


def bulk_orders_query(search: str) -> str:
    """The bulk export query with ``$query`` replaced by the search string literal (bulk takes no variables)."""
    document = parse(load_document("bulk_orders_export").text, no_location=True)
    return print_ast(visit(document, _InlineSearch(search)))


# --- JSONL reassembly --------------------------------------------------------------------------------------


def order_child_key(row: dict[str, Any]) -> str:
    """Which connection of the order a child row belongs to."""
    resource = str(row.get("id") or "").removeprefix("gid://shopify/").split("/", 1)[0]
    if resource == "LineItem" or "currentQuantity" in row:
        return "lineItems"
    if resource == "ShippingLine" or "isRemoved" in row:
        return "shippingLines"
    if "allocationMethod" in row:
        return "discountApplications"
    raise ValueError(f"unrecognised child row in the bulk result: keys {sorted(row)}")


@dataclass
class BulkAssembler:
    """Attaches child rows to their parent, holding at most ``max_buffered_parents`` parents at a time."""

    max_buffered_parents: int = 500
    on_orphan: Callable[[str], None] | None = None
    child_key: Callable[[dict[str, Any]], str] = order_child_key
    peak_buffered: int = 0
    rows: int = 0
    orphan_parent_ids: set[str] = field(default_factory=set)
    _pending: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        if self.max_buffered_parents < 1:
            raise ValueError("max_buffered_parents must be at least 1")

    @property
    def buffered(self) -> int:
        return len(self._pending)

    def feed(self, row: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Take one row; yield the parents it pushes out of the buffer."""
        self.rows += 1
        parent_id = row.pop("__parentId", None)
        if parent_id is None:
            if len(self._pending) >= self.max_buffered_parents:
                yield self._pending.popitem(last=False)[1]
            self._pending[str(row["id"])] = row
            self.peak_buffered = max(self.peak_buffered, len(self._pending))
            return
        parent = self._pending.get(parent_id)
        if parent is None:
            if parent_id not in self.orphan_parent_ids:
                self.orphan_parent_ids.add(parent_id)
                logger.info("bulk result: child of %s arrived after its parent was emitted", parent_id)
                if self.on_orphan is not None:
                    self.on_orphan(parent_id)
            return
        parent.setdefault(self.child_key(row), []).append(row)

    def finish(self) -> Iterator[dict[str, Any]]:
        while self._pending:
            yield self._pending.popitem(last=False)[1]


def iter_bulk_jsonl(
    lines: Iterable[bytes | str],
    *,
    max_buffered_parents: int = 500,
    on_orphan: Callable[[str], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Assemble bulk JSONL rows into order dicts (children as lists), in file order, streaming.

    At most ``max_buffered_parents`` orders are held; a child whose order was already emitted is reported
    to ``on_orphan`` (once per order id) and dropped.
    """
    assembler = BulkAssembler(max_buffered_parents=max_buffered_parents, on_orphan=on_orphan)
    for line in lines:
        if not line.strip():
            continue
        yield from assembler.feed(orjson.loads(line))  # takes str or bytes; twice the stdlib parser's speed
    yield from assembler.finish()


# --- The exporter ------------------------------------------------------------------------------------------


@dataclass
class _FileRead:
    newest_updated_at: datetime | None = None
    orphans: list[str] = field(default_factory=list)
    interrupted: str | None = None


class BulkOrderExporter:
    """Runs a bulk export of one window and yields complete orders; falls back to paging when it must."""

    def __init__(
        self,
        client: ShopifyClient,
        *,
        poll_interval_s: float = 2.0,
        timeout_s: float = 3600.0,
        max_buffered_orders: int = 500,
        details_reader: OrderReader | None = None,
        split_min_rows: int | None = -1,
    ) -> None:
        self._client = client
        self.poll_interval_s = poll_interval_s
        self.timeout_s = timeout_s
        self.max_buffered_orders = max_buffered_orders
        # Refund/fulfilment details and orphan re-reads; pass the configured reader so its page sizes stay under
        # the single-query cost limit.
        self._details = details_reader or OrderReader(client)
        self.stats = PullStats(mode="bulk")
        # Result files with at least this many lines are reassembled, reshaped and encoded in a worker process
        # (when ``build`` is ``NormalisedOrder.from_graphql``); 0: always; None: never. -1: the module's
        # DEFAULT_SPLIT_MIN_ROWS, read when the exporter is built.
        self.split_min_rows = DEFAULT_SPLIT_MIN_ROWS if split_min_rows == -1 else split_min_rows
        self.split_used = False  # whether the last pull's result file went through the worker

    def iter_changed_orders(
        self,
        lo: datetime,
        hi: datetime,
        *,
        fallback: OrderReader | None = None,
        build: OrderBuilder[OrderT] = ShopifyOrder.from_graphql,
    ) -> Iterator[OrderT]:
        """The orders changed in [lo, hi); ``build`` turns each completed node into what is yielded (the
        validated model by default), in the file, the re-reads and the fallback alike.

        With ``build=NormalisedOrder.from_graphql`` and a result file of at least ``split_min_rows`` lines, the
        file's orders come as ``EncodedOrder`` (the same identity, stored JSON and hash, encoded by the worker
        process), except those that needed a request to complete, which are built here."""
        _check_window(lo, hi)
        self.split_used = False
        self.stats = PullStats(mode="bulk")
        self._details.stats = self.stats  # one set of counters for the whole pull
        seen: set[tuple[str, datetime]] = set()

        operation_id = yield from self._start(orders_search_query(lo, hi), lo, hi, fallback, seen, build)
        if operation_id is None:
            return
        final = self._wait(operation_id)
        if final is None:
            yield from self._fall_back(fallback, lo, hi, f"bulk operation ran past {self.timeout_s:g}s", seen, build)
            return
        status = str(final.get("status"))
        self.stats.bulk_status = status
        if status == "COMPLETED":
            url = final.get("url")
            read = _FileRead()
            if url:  # Shopify gives no URL when nothing matched
                yield from self._read_file(str(url), read, seen, build, object_count=final.get("objectCount"))
            yield from self._refetch_orphans(read, build)
            if read.interrupted:
                yield from self._fall_back(fallback, read.newest_updated_at or lo, hi, read.interrupted, seen, build)
            return
        reason = f"bulk operation {status} ({final.get('errorCode') or 'no error code'})"
        partial_url = final.get("partialDataUrl")
        if status == "FAILED" and partial_url:
            read = _FileRead()
            yield from self._read_file(
                str(partial_url), read, seen, build, whole_file=False, object_count=final.get("objectCount")
            )
            yield from self._refetch_orphans(read, build)
            yield from self._fall_back(
                fallback, read.newest_updated_at or lo, hi, reason + ", partial data", seen, build
            )
            return
        yield from self._fall_back(fallback, lo, hi, reason, seen, build)

    # --- Steps -------------------------------------------------------------------------------------------

    def _start(
        self,
        search: str,
        lo: datetime,
        hi: datetime,
        fallback: OrderReader | None,
        seen: set[tuple[str, datetime]],
        build: OrderBuilder[OrderT],
    ) -> Generator[OrderT, None, str | None]:
        """Start the job; returns its id, or None after falling back (yielding the fallback's orders)."""
        try:
            data = self._client.execute(load_document("bulk_orders_run"), {"query": bulk_orders_query(search)}).data
        except ShopifyUserErrors as error:
            if fallback is None or not set(error.codes) & _BUSY_CODES:
                raise
            refused = f"bulk start refused: {error}"
        except (ShopifyTransportError, ShopifyHTTPError) as error:
            # A plain mutation is not re-sent after an ambiguous failure (it might have started a job).
            if fallback is None or isinstance(error, ShopifyAuthError):
                raise
            refused = f"bulk start failed: {error}"
        else:
            refused = None
        if refused is not None:
            yield from self._fall_back(fallback, lo, hi, refused, seen, build)
            return None
        operation = data["bulkOperationRunQuery"]["bulkOperation"]
        self.stats.bulk_operation_id = str(operation["id"])
        self.stats.bulk_status = str(operation.get("status"))
        logger.info("bulk export %s started for %s", operation["id"], search)
        return operation["id"]

    def _wait(self, operation_id: str) -> dict[str, Any] | None:
        """Poll until the job is terminal; cancel it and return None once ``timeout_s`` has passed."""
        clock, sleep = self._client.clock, self._client.sleep
        deadline = clock() + self.timeout_s
        document = load_document("bulk_operation")
        while True:
            operation = self._client.execute(document, {"id": operation_id}).data.get("bulkOperation")
            if operation is None:
                raise BulkOperationError(f"bulk operation {operation_id} not found", operation="BulkOperationStatus")
            self.stats.bulk_status = str(operation.get("status"))
            if operation.get("status") in TERMINAL_STATUSES:
                return operation
            if clock() >= deadline:
                self._cancel(operation_id)
                return None
            sleep(self.poll_interval_s)

    def _cancel(self, operation_id: str) -> None:
        try:
            self._client.execute(load_document("bulk_operation_cancel"), {"id": operation_id})
        except ShopifyUserErrors as error:  # typically: it finished in the meantime
            logger.warning("could not cancel bulk operation %s: %s", operation_id, error)
        self.stats.bulk_status = "CANCELING"

    def _read_file(
        self,
        url: str,
        read: _FileRead,
        seen: set[tuple[str, datetime]],
        build: OrderBuilder[OrderT],
        *,
        whole_file: bool = True,
        object_count: object = None,
    ) -> Iterator[OrderT]:
        """Yield the file's orders. The orders still buffered when a partial file or an interrupted download
        ends may lack children that were never written: they are dropped, and the fallback (which starts at
        the newest order yielded, the file being sorted by updatedAt) reads them again."""
        if self._splits(build, object_count):
            yield from self._read_file_split(url, read, seen, build, whole_file=whole_file)
            return
        batch: list[dict[str, Any]] = []
        batch_size = self._details.sizes.batch
        assembler = BulkAssembler(max_buffered_parents=self.max_buffered_orders, on_orphan=read.orphans.append)
        try:
            with self._client.stream_lines(url) as lines:
                for line in lines:
                    self.stats.bulk_rows += 1
                    try:
                        row = orjson.loads(line)
                    except ValueError:
                        raise ShopifyTransportError("bulk result has a truncated or invalid line") from None
                    for order in assembler.feed(row):
                        batch.append(order)
                        if len(batch) >= batch_size:
                            yield from self._complete(batch, read, seen, build)
                            batch = []
        except ShopifyTransportError as error:
            # The orders still buffered may lack children: drop them, the fallback re-reads them.
            read.interrupted = f"bulk result download interrupted: {error}"
            logger.warning("%s", read.interrupted)
            yield from self._complete(batch, read, seen, build)
            return
        if whole_file:
            batch.extend(assembler.finish())
        yield from self._complete(batch, read, seen, build)

    def _splits(self, build: OrderBuilder[OrderT], object_count: object) -> bool:
        if self.split_min_rows is None or build != NormalisedOrder.from_graphql:
            return False
        if self.split_min_rows > 0:  # 0: always (tests)
            try:
                lines = int(str(object_count))  # UnsignedInt64: a string in JSON
            except ValueError:
                return False  # size unknown: the file is probably small
            if lines < self.split_min_rows:
                return False
        from x3_shopify_dagster.shopify.bulk_split import multiprocessing_available  # imports this module

        return multiprocessing_available()

    def _read_file_split(
        self,
        url: str,
        read: _FileRead,
        seen: set[tuple[str, datetime]],
        build: OrderBuilder[OrderT],
        *,
        whole_file: bool,
    ) -> Iterator[Any]:
        """``_read_file`` with the parsing, reassembly, reshaping and encoding in a worker process: the file is
        downloaded first (the worker reads it from disk), then processed with the same outcome."""
        from x3_shopify_dagster.shopify import bulk_split  # imports this module: no cycle at load time

        self.split_used = True
        with tempfile.TemporaryDirectory(prefix="x3sd-bulk-") as folder:
            path = Path(folder) / "result.jsonl"
            download_interrupted = None
            with path.open("wb") as sink:
                try:
                    self._client.download_to(url, sink)
                except ShopifyTransportError as error:
                    download_interrupted = f"bulk result download interrupted: {error}"
            result = bulk_split.SplitResult()
            batches = bulk_split.iter_encoded_file(
                path,
                result,
                whole_file=whole_file and download_interrupted is None,
                max_buffered=self.max_buffered_orders,
            )
            for items, duplicates, newest, orphans in batches:
                read.orphans.extend(orphans)
                self.stats.duplicates_skipped += duplicates
                if newest is not None and (read.newest_updated_at is None or newest > read.newest_updated_at):
                    read.newest_updated_at = newest
                to_complete: list[dict[str, Any]] = []
                for order_id, updated_at, value in items:
                    seen.add((order_id, updated_at))
                    if isinstance(value, dict):
                        to_complete.append(value)
                    else:
                        self.stats.orders += 1
                        yield EncodedOrder(*value)
                # Orders needing refund/fulfilment reads, in the reader's batches (as many requests as before).
                for start in range(0, len(to_complete), self._details.sizes.batch):
                    yield from self._details.complete_orders(
                        to_complete[start : start + self._details.sizes.batch], build=build
                    )
            self.stats.bulk_rows += result.rows
        if result.interrupted:  # the worker met an invalid line before the download's end
            error = ShopifyTransportError("bulk result has a truncated or invalid line")
            read.interrupted = f"bulk result download interrupted: {error}"
        else:
            read.interrupted = download_interrupted
        if read.interrupted:
            logger.warning("%s", read.interrupted)

    def _complete(
        self, rows: list[dict[str, Any]], read: _FileRead, seen: set[tuple[str, datetime]], build: OrderBuilder[OrderT]
    ) -> Iterator[OrderT]:
        fresh = []
        for row in rows:
            updated_at = parse_timestamp(row["updatedAt"])
            if read.newest_updated_at is None or updated_at > read.newest_updated_at:
                read.newest_updated_at = updated_at
            key = (str(row["id"]), updated_at)
            if key in seen:
                self.stats.duplicates_skipped += 1
                continue
            seen.add(key)
            fresh.append(row)
        if fresh:
            yield from self._details.complete_orders(fresh, build=build)

    def _refetch_orphans(self, read: _FileRead, build: OrderBuilder[OrderT]) -> Iterator[OrderT]:
        if not read.orphans:
            return
        logger.warning("bulk result: re-reading %d order(s) whose rows arrived out of reach", len(read.orphans))
        self.stats.orphans_refetched += len(read.orphans)
        # Yielded even when (id, updatedAt) was seen: the earlier version lacked some children.
        yield from self._details.fetch_orders_by_id(read.orphans, build=build)

    def _fall_back(
        self,
        fallback: OrderReader | None,
        lo: datetime,
        hi: datetime,
        reason: str,
        seen: set[tuple[str, datetime]],
        build: OrderBuilder[OrderT],
    ) -> Iterator[OrderT]:
        if fallback is None:
            raise BulkOperationError(f"{reason}; no fallback reader given", operation="BulkOrdersRun")
        self.stats.fallbacks += 1
        self.stats.fallback_reason = reason
        logger.warning("bulk export: %s; paging [%s, %s) instead", reason, lo.isoformat(), hi.isoformat())
        if _search_timestamp(lo) >= _search_timestamp(hi):
            return
        for order in fallback.iter_changed_orders(lo, hi, build=build):
            key = (order.id, order.updated_at)
            if key in seen:
                self.stats.duplicates_skipped += 1
                continue
            seen.add(key)
            self.stats.orders += 1
            yield order


__all__ = [
    "BulkAssembler",
    "BulkOrderExporter",
    "bulk_orders_query",
    "iter_bulk_jsonl",
    "order_child_key",
]
