"""The CPU-heavy half of a bulk pull in a second process: a downloaded result file to encoded orders.

One process cannot parse, reshape and encode 5,000 orders/s on this project's 2-core budget and stage them too
(docs/performance.md). The run process downloads the result file (:meth:`ShopifyClient.download_to`); a worker
started with the ``spawn`` context (safe inside Dagster's step processes: no fork of a threaded parent) reads
it, reassembles orders (:class:`BulkAssembler`), skips (id, updatedAt) duplicates, reshapes each order
(``NormalisedOrder.from_graphql``) and encodes it (``EncodedOrder``: stored JSON + content hash, the same bytes
as in one process), and sends them in batches through a bounded queue; the run process stages them.

Orders that need the network (refund/fulfilment details, a nested connection with more pages) are sent back
as raw nodes, for the run process to complete with its reader, as orphan re-reads and fallbacks are.

Messages (worker to run process), in file order:
- ``("batch", items, duplicates, newest_updated_at, orphan_ids)``: items are ``(id, updated_at, value)`` with
  value an ``EncodedOrder`` field tuple or a raw node dict (``needs_completion``);
- ``("interrupted",)``: an invalid line; what came before was sent, the buffered orders are dropped;
- ``("error", exception)``: re-raised as is in the run process (``MalformedOrderError``, ``OSError``, ...);
- ``("done", rows)``: the end (rows = result lines read).
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import pickle
import queue
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from x3_shopify_dagster.domain.shopify_orders import EncodedOrder, NormalisedOrder
from x3_shopify_dagster.shopify.bulk import BulkAssembler
from x3_shopify_dagster.shopify.orders import parse_timestamp

logger = logging.getLogger(__name__)

# Result files below this many lines (Shopify's objectCount) are read in the run process: starting a worker
# (~1 s of imports) does not pay for itself on a few thousand orders.
DEFAULT_SPLIT_MIN_ROWS = 20_000
# Batches in flight between the processes: bounded memory (each ~5 MB of JSON text at 1,000 orders).
QUEUE_BATCHES = 4
WORKER_BATCH = 1_000
# How long the run process waits for the worker to leave after its last message before terminating it.
JOIN_TIMEOUT_S = 10.0
_POLL_S = 1.0  # between liveness checks while waiting for the worker's next message

_NESTED = ("lineItems", "shippingLines")


def needs_completion(node: Mapping[str, Any]) -> bool:
    """Whether ``OrderReader.complete_orders`` would make a request for this assembled node (refund or
    fulfilment details, or a nested connection that is a page rather than a list)."""
    if node.get("refunds") or node.get("fulfillments"):
        return True
    return any(isinstance(node.get(name), Mapping) for name in _NESTED)


def _completed_without_requests(node: dict[str, Any]) -> dict[str, Any]:
    # What OrderReader._complete_nested gives for a bulk row (lists and absent connections are kept as they are).
    completed = dict(node)
    for name in _NESTED:
        completed[name] = node.get(name)
    return completed


@dataclass
class SplitResult:
    """What the worker reported besides the orders."""

    rows: int = 0
    interrupted: bool = False  # the file has an invalid line: the orders after it were not read
    worker_exitcode: int | None = None


def _sendable(error: BaseException) -> BaseException:
    """The exception itself when it survives pickling (the run process re-raises it unchanged)."""
    try:
        pickle.loads(pickle.dumps(error))  # noqa: S301 - our own object, round-tripped
    except Exception:  # any unpicklable exception is reported by type and message
        return RuntimeError(f"bulk worker failed: {type(error).__name__}: {error}")
    return error


def _worker_main(path: str, whole_file: bool, max_buffered: int, batch_size: int, out: Any) -> None:
    """Entry point of the worker process (module level: ``spawn`` imports it by name)."""
    # Fewer collections (as the asset's fewer_gc_pauses(), which lives in the Dagster layer): the worker
    # allocates millions of short-lived containers while a batch of 1,000 orders stays alive.
    gc.freeze()
    gc.set_threshold(200_000, 20, 100)
    try:
        _encode_file(path, whole_file, max_buffered, batch_size, out)
    except BaseException as error:  # everything is reported to the run process
        _put(out, ("error", _sendable(error)))


def _put(out: Any, message: tuple[Any, ...]) -> None:
    """Put on the bounded queue, leaving if the run process is gone (killed: daemon children are only ended
    by a parent that exits normally), so that the worker never outlives it."""
    parent = multiprocessing.parent_process()
    while True:
        try:
            out.put(message, timeout=_POLL_S)
            return
        except queue.Full:
            if parent is not None and not parent.is_alive():
                raise SystemExit(1) from None


def _encode_file(path: str, whole_file: bool, max_buffered: int, batch_size: int, out: Any) -> None:
    def send(message: tuple[Any, ...]) -> None:
        _put(out, message)

    orphans: list[str] = []
    assembler = BulkAssembler(max_buffered_parents=max_buffered, on_orphan=orphans.append)
    seen: set[tuple[str, datetime]] = set()
    pending: list[dict[str, Any]] = []
    rows = 0

    def flush() -> None:
        items: list[tuple[str, datetime, Any]] = []
        duplicates = 0
        newest: datetime | None = None
        for node in pending:
            updated_at = parse_timestamp(node["updatedAt"])
            if newest is None or updated_at > newest:
                newest = updated_at
            key = (str(node["id"]), updated_at)
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            if needs_completion(node):
                items.append((key[0], updated_at, node))
            else:
                encoded = EncodedOrder.of(NormalisedOrder.from_graphql(_completed_without_requests(node)))
                items.append((key[0], updated_at, (encoded.id, encoded.name, encoded.updated_at,
                                                   encoded.content_hash, encoded.payload_json)))
        send(("batch", items, duplicates, newest, orphans[:]))
        orphans.clear()
        pending.clear()

    with open(path, "rb") as lines:
        for line in lines:
            if not line.strip():
                continue
            rows += 1
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError:
                flush()
                send(("interrupted",))
                send(("done", rows))
                return
            for order in assembler.feed(row):
                pending.append(order)
                if len(pending) >= batch_size:
                    flush()
    if whole_file:
        pending.extend(assembler.finish())
    flush()
    send(("done", rows))


def multiprocessing_available() -> bool:
    """Whether a worker process can be started here (not from a daemonic process, e.g. a Pool worker)."""
    if multiprocessing.current_process().daemon:
        return False
    try:
        context = multiprocessing.get_context("spawn")
        context.Queue(1).close()
    except (ImportError, OSError, ValueError):  # no sem_open (some sandboxes), no spawn method
        return False
    return True


def iter_encoded_file(
    path: Path,
    result: SplitResult,
    *,
    whole_file: bool = True,
    max_buffered: int = 500,
    batch_size: int = WORKER_BATCH,
) -> Iterator[tuple[list[tuple[str, datetime, Any]], int, datetime | None, list[str]]]:
    """Run the worker on a result file and yield its batches ``(items, duplicates, newest, orphans)``.

    The worker is a daemon (it dies with the run process) and is terminated if this generator is left early
    (an error here, or the consumer stopping); its errors are re-raised here unchanged.
    """
    context = multiprocessing.get_context("spawn")
    channel = context.Queue(maxsize=QUEUE_BATCHES)
    worker = context.Process(
        target=_worker_main,
        args=(str(path), whole_file, max_buffered, batch_size, channel),
        name="x3sd-bulk-worker",
        daemon=True,
    )
    with _main_not_reimported():
        worker.start()
    finished = False
    try:
        while True:
            try:
                message = channel.get(timeout=_POLL_S)
            except queue.Empty:
                if not worker.is_alive():
                    raise RuntimeError(
                        f"bulk worker process ended without finishing (exit code {worker.exitcode})"
                    ) from None
                continue
            kind = message[0]
            if kind == "batch":
                yield message[1], message[2], message[3], message[4]
            elif kind == "interrupted":
                result.interrupted = True
            elif kind == "error":
                raise message[1]
            else:  # "done"
                result.rows = message[1]
                finished = True
                break
    finally:
        if finished:
            worker.join(JOIN_TIMEOUT_S)
        if worker.is_alive():
            worker.terminate()
            worker.join(JOIN_TIMEOUT_S)
        result.worker_exitcode = worker.exitcode
        channel.close()
        channel.join_thread()


@contextmanager
def _main_not_reimported() -> Iterator[None]:
    """``spawn`` makes the child import the parent's ``__main__`` script again (as ``__mp_main__``): Dagster's
    entry point or a benchmark, with all their imports (~120 MB, seconds). The worker needs none of it: while
    the process starts (the preparation data is taken synchronously in ``start()``), the main module shows
    neither a spec nor a file, which spawn takes as "nothing to re-import"."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = {name: main.__dict__[name] for name in ("__spec__", "__file__") if name in main.__dict__}
    main.__dict__["__spec__"] = None
    main.__dict__.pop("__file__", None)
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


__all__ = [
    "DEFAULT_SPLIT_MIN_ROWS",
    "SplitResult",
    "iter_encoded_file",
    "multiprocessing_available",
    "needs_completion",
]
