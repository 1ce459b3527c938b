"""Bulk-mode staging: a Shopify bulk JSONL result of N orders, read and staged the way the asset does it.

Goal: at least 5,000 orders/s staged, peak RSS under 400 MB, for 100,000 orders.

Preparation (not timed, cached): the Shopify sandbox is seeded with ``bulk_seed`` (N plain paid orders of 1-4
lines), a real bulk operation (the product's bulk_orders_export query) runs over HTTP, and its result is
streamed to a file with ``ShopifyClient.stream_lines``. The file is kept in ``--cache-dir`` under a name that
carries N, the seed and a fingerprint of the sandbox and query sources, so later runs reuse it.

Timed, each run in a fresh process (its ``ru_maxrss`` is its own peak RSS, product imports Dagster included):
file lines -> ``iter_bulk_jsonl`` (reassembly by ``__parentId``) -> ``NormalisedOrder.from_graphql`` (the
payload, no model: what the asset's readers build) -> ``order_version`` (stored JSON + content hash, the asset's
own function) -> ``OrderStaging.stage`` into a fresh
SQLite file or a throw-away PostgreSQL database. Then a breakdown run (per-stage perf_counter totals over the
first ``--breakdown-orders`` orders, per engine) and a cProfile run (top functions, SQLite) say where the time
goes. Prints the figures and writes bench/results/bulk_staging.json.

    .venv/bin/python bench/bench_bulk_staging.py                # 100,000 orders, 3 runs, sqlite + postgres
    .venv/bin/python bench/bench_bulk_staging.py --orders 20000 --runs 1 --engines sqlite   # quick look
    .venv/bin/python bench/bench_bulk_staging.py --no-gc-tuning # what-if: without the asset's fewer_gc_pauses()
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import hashlib
import json
import multiprocessing
import os
import platform
import pstats
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

# What the asset's process imports (Dagster included): the baseline RSS of a real run. The sandbox is only
# imported by the preparation process.
from bench_staging_db import DEFAULT_POSTGRES_URL, ThrowAwayDatabases, server_version  # noqa: E402

from x3_shopify_dagster.defs.shopify.assets import fewer_gc_pauses, order_version  # noqa: E402
from x3_shopify_dagster.domain.shopify_orders import EncodedOrder, NormalisedOrder  # noqa: E402
from x3_shopify_dagster.shopify import iter_bulk_jsonl  # noqa: E402
from x3_shopify_dagster.shopify.bulk_split import SplitResult, iter_encoded_file  # noqa: E402
from x3_shopify_dagster.storage import ConnectorDatabase, OrderStaging, OrderVersion  # noqa: E402

DEFAULT_OUTPUT = REPO_ROOT / "bench" / "results" / "bulk_staging.json"
DEFAULT_CACHE_DIR = Path(tempfile.gettempdir()) / "x3sd-bench"
GOAL_ORDERS_PER_S = 5000
GOAL_PEAK_RSS_MB = 400
STORE = "eu"
SEED = 7
HISTORY_DAYS = 5
# Files whose change changes the bulk file: then the cached copy is rebuilt.
FINGERPRINT_SOURCES = (
    "x3_shopify_dagster/sandboxes/shopify",
    "x3_shopify_dagster/sandboxes/demo_data.py",
    "x3_shopify_dagster/shopify/graphql",
)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def children_peak_rss_mb() -> float:
    """The largest peak RSS of this process's finished children (the bulk worker, in split mode)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


# --- Preparation -------------------------------------------------------------------------------------------


def sources_fingerprint() -> str:
    digest = hashlib.sha256()
    for source in FINGERPRINT_SOURCES:
        root = REPO_ROOT / source
        files = sorted(root.rglob("*")) if root.is_dir() else [root]
        for path in files:
            if path.is_file() and path.suffix in {".py", ".graphql"}:
                digest.update(str(path.relative_to(REPO_ROOT)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def export_bulk_file(orders: int, target: Path) -> dict[str, Any]:
    """In its own process: seed a sandbox, run the bulk export over HTTP, stream the result to `target`."""
    from x3_shopify_dagster.sandboxes.shopify import SandboxConfig, ShopifySandbox
    from x3_shopify_dagster.shopify import (
        ShopifyClient,
        bulk_orders_query,
        load_document,
        orders_search_query,
    )

    sandbox = ShopifySandbox(
        SandboxConfig(stores=(STORE,), orders_per_store=0, seed=SEED, history_days=HISTORY_DAYS)
    ).start()
    try:
        sandbox.state.bulk_seed(STORE, orders)
        now = datetime.now(UTC)
        search = orders_search_query(now - timedelta(days=HISTORY_DAYS + 1), now + timedelta(minutes=1))
        started = time.perf_counter()
        with ShopifyClient(sandbox.shop_url(STORE), sandbox.access_token(STORE)) as client:
            run = client.execute(load_document("bulk_orders_run"), {"query": bulk_orders_query(search)}).data
            operation_id = run["bulkOperationRunQuery"]["bulkOperation"]["id"]
            while True:
                status = client.execute(load_document("bulk_operation"), {"id": operation_id}).data
                operation = status["bulkOperation"]
                if operation["status"] in {"COMPLETED", "FAILED", "CANCELED", "EXPIRED"}:
                    break
                time.sleep(0.5)
            if operation["status"] != "COMPLETED" or int(operation["rootObjectCount"]) != orders:
                raise RuntimeError(f"bulk export did not deliver {orders} orders: {operation}")
            export_s = time.perf_counter() - started
            partial = target.with_suffix(".part")
            lines = 0
            with (
                client.stream_lines(str(operation["url"])) as stream,
                partial.open("w", encoding="utf-8") as out,
            ):
                for line in stream:
                    out.write(line + "\n")
                    lines += 1
            partial.replace(target)
    finally:
        sandbox.stop()
    return {
        "orders": orders,
        "lines": lines,
        "bytes": target.stat().st_size,
        "sandbox_export_seconds": round(export_s, 1),
        "prepared_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def prepared_file(orders: int, cache_dir: Path, *, refresh: bool) -> tuple[Path, dict[str, Any]]:
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"bulk_orders_{orders}_seed{SEED}_{sources_fingerprint()}.jsonl"
    meta_path = path.with_suffix(".json")
    if not refresh and path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("orders") == orders and meta.get("bytes") == path.stat().st_size:
            print(f"reusing {path} ({meta['bytes'] / 1e6:,.0f} MB, {meta['lines']:,} lines)", flush=True)
            return path, meta
    print(f"preparing {orders:,} orders: sandbox bulk export over HTTP -> {path}", flush=True)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        meta = pool.apply(export_bulk_file, (orders, path))
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    print(
        f"  {meta['lines']:,} lines, {meta['bytes'] / 1e6:,.0f} MB, sandbox export "
        f"{meta['sandbox_export_seconds']} s",
        flush=True,
    )
    return path, meta


# --- The timed path ----------------------------------------------------------------------------------------


def staged_versions(lines: Iterator[str], orders: int | None, orphans: list[str]) -> Iterator[OrderVersion]:
    """Exactly the asset's conversion, as one lazy chain (the asset hands stage() a generator too)."""
    nodes = iter_bulk_jsonl(lines, on_orphan=orphans.append)
    for node in nodes if orders is None else islice(nodes, orders):
        yield order_version(STORE, NormalisedOrder.from_graphql(node))


def split_versions(jsonl: str, orphans: list[str], result: SplitResult) -> Iterator[OrderVersion]:
    """The exporter's split path without the network: the worker process reads, reassembles, reshapes and
    encodes; this process builds the versions (``order_version`` of each ``EncodedOrder``) and stages them."""
    for items, _duplicates, _newest, batch_orphans in iter_encoded_file(Path(jsonl), result):
        orphans.extend(batch_orphans)
        for _order_id, _updated_at, value in items:
            if isinstance(value, dict):
                raise RuntimeError("the bench input has an order needing refund/fulfilment reads")
            yield order_version(STORE, EncodedOrder(*value))


class StageTimer:
    """Per-stage wall time of the same chain, summed with perf_counter around each call (~0.1 µs each)."""

    def __init__(self) -> None:
        self.seconds = {"parse_assemble": 0.0, "normalise": 0.0, "hash_payload": 0.0}

    def versions(self, lines: Iterator[str], orders: int, orphans: list[str]) -> Iterator[OrderVersion]:
        clock = time.perf_counter
        nodes = islice(iter_bulk_jsonl(lines, on_orphan=orphans.append), orders)
        seconds = self.seconds
        while True:
            started = clock()
            node = next(nodes, None)
            parsed = clock()
            if node is None:
                seconds["parse_assemble"] += parsed - started
                return
            order = NormalisedOrder.from_graphql(node)
            normalised = clock()
            version = order_version(STORE, order)
            versioned = clock()
            seconds["parse_assemble"] += parsed - started
            seconds["normalise"] += normalised - parsed
            seconds["hash_payload"] += versioned - normalised
            yield version


class GcTimer:
    """Time spent in the cyclic garbage collector (included in the stage times; cProfile cannot show it: it
    charges each pause to whatever function happened to allocate when a collection started)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = {0: 0, 1: 0, 2: 0}
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.collections[info["generation"]] += 1


def staging_run(
    jsonl: str, url: str, mode: str, orders: int | None, gc_tuning: bool, split: bool = False
) -> dict[str, Any]:
    """Runs in a fresh process. mode: "timed" (whole file), "breakdown" (first `orders`), "profile" (idem).
    split: the file is processed by the bulk worker process ("timed" only)."""
    rss_after_imports = peak_rss_mb()
    db = ConnectorDatabase(url)
    db.migrate()
    staging = OrderStaging(db)
    orphans: list[str] = []
    timer = StageTimer()
    profiler = cProfile.Profile() if mode == "profile" else None
    gc_timer = GcTimer()
    if mode == "breakdown":
        gc.callbacks.append(gc_timer)
    split_result = SplitResult()
    with open(jsonl, encoding="utf-8") as lines:
        if split:
            if mode != "timed" or orders is not None:
                raise ValueError("split mode times the whole file only")
            versions: Iterator[OrderVersion] = split_versions(jsonl, orphans, split_result)
        elif mode == "breakdown":
            assert orders is not None
            versions = timer.versions(lines, orders, orphans)
        else:
            versions = staged_versions(lines, orders, orphans)
        started = time.perf_counter()
        cpu_started = time.process_time()
        if profiler is not None:
            profiler.enable()
        # The asset stages inside fewer_gc_pauses(); --no-gc-tuning measures the plain collector for comparison.
        with fewer_gc_pauses() if gc_tuning else contextlib.nullcontext():
            counts = staging.stage(versions, run_id=f"bench-{mode}")
        if profiler is not None:
            profiler.disable()
        elapsed = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu_started
    db.dispose()
    if orphans:
        raise RuntimeError(f"{len(orphans)} orders lost children in reassembly: the figures would be wrong")
    result: dict[str, Any] = {
        "orders": counts.total,
        "counts": counts.as_dict(),
        "seconds": elapsed,
        "orders_per_s": counts.total / elapsed,
        # This process's CPU time (PostgreSQL's server work is not in it): less sensitive than wall time to other
        # processes on a shared machine, so the better figure for comparing code versions measured apart.
        "cpu_seconds": cpu_seconds,
        "orders_per_cpu_s": counts.total / cpu_seconds,
        "rss_after_imports_mb": rss_after_imports,
        "peak_rss_mb": peak_rss_mb(),
        "split": split,
        # The worker's own peak (split mode; its sum with this process's peak bounds the pull's memory, both being
        # alive at once). Not read in single mode: RUSAGE_CHILDREN also holds short-lived subprocesses that a
        # library forks during the imports (~78 MB: the forked copy's RSS before exec), which are no worker.
        "worker_peak_rss_mb": children_peak_rss_mb() if split else 0.0,
        "worker_exitcode": split_result.worker_exitcode,
    }
    if mode == "breakdown":
        stages = dict(timer.seconds)
        stages["db"] = elapsed - sum(stages.values())  # stage() itself: batching, planning, writing, commits
        result["stage_seconds"] = stages
        result["stage_share"] = {name: value / elapsed for name, value in stages.items()}
        result["stage_us_per_order"] = {name: value / counts.total * 1e6 for name, value in stages.items()}
        result["gc_seconds"] = gc_timer.seconds  # spread over the stages above
        result["gc_share"] = gc_timer.seconds / elapsed
        result["gc_collections"] = gc_timer.collections
    if profiler is not None:
        result["profile_top"] = profile_top(profiler, 25)
    return result


def profile_top(profiler: cProfile.Profile, limit: int) -> list[dict[str, Any]]:
    stats = pstats.Stats(profiler)
    rows = []
    entries = stats.stats.items()  # type: ignore[attr-defined]
    for (file_name, line, function), (_primitive, calls, tottime, cumtime, _callers) in entries:
        where = file_name.replace(str(REPO_ROOT) + "/", "").replace(sys.prefix + "/", "")
        rows.append(
            {
                "function": f"{where}:{line}({function})",
                "calls": calls,
                "tottime_s": round(tottime, 3),
                "cumtime_s": round(cumtime, 3),
            }
        )
    rows.sort(key=lambda row: row["tottime_s"], reverse=True)
    return rows[:limit]


# --- Driver ------------------------------------------------------------------------------------------------


def _run_and_send(channel: Any, *args: Any) -> None:
    try:
        channel.put(("ok", staging_run(*args)))
    except BaseException as error:
        channel.put(("error", f"{type(error).__name__}: {error}"))
        raise


def in_fresh_process(
    databases: ThrowAwayDatabases,
    run: int,
    jsonl: Path,
    mode: str,
    orders: int | None,
    gc_tuning: bool,
    split: bool = False,
) -> dict[str, Any]:
    """staging_run in a new interpreter (spawn) against a new empty database, removed afterwards. A plain
    (non-daemon) process, not a Pool worker: daemonic processes may not start the bulk worker."""
    url = databases.create(run)
    context = multiprocessing.get_context("spawn")
    channel = context.Queue()
    process = context.Process(target=_run_and_send, args=(channel, str(jsonl), url, mode, orders, gc_tuning, split))
    try:
        process.start()
        status, value = channel.get()
        process.join()
        if status != "ok":
            raise RuntimeError(f"staging run failed: {value}")
        return value
    finally:
        if process.is_alive():
            process.terminate()
        databases.remove()


def bench_engine(engine: str, jsonl: Path, args: argparse.Namespace) -> dict[str, Any]:
    databases = ThrowAwayDatabases(engine, args.postgres_url)
    runs = []
    for run in range(1, args.runs + 1):
        result = in_fresh_process(databases, run, jsonl, "timed", None, args.gc_tuning, args.mode == "split")
        result["load_average_after"] = os.getloadavg()
        if result["counts"]["new"] != args.orders:
            raise RuntimeError(f"expected {args.orders} new orders, staged {result['counts']}")
        runs.append(result)
        print(
            f"  {engine} run {run}: {result['orders_per_s']:,.0f} orders/s ({result['seconds']:.1f} s; "
            f"{result['orders_per_cpu_s']:,.0f} per CPU-second), "
            f"peak RSS {result['peak_rss_mb']:.0f} MB + worker {result['worker_peak_rss_mb']:.0f} MB "
            f"(after imports {result['rss_after_imports_mb']:.0f} MB); load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
    median_rate = statistics.median(r["orders_per_s"] for r in runs)
    # Both processes at once (split mode): run process + worker, each its own peak.
    peak_rss = max(r["peak_rss_mb"] + r["worker_peak_rss_mb"] for r in runs)
    summary: dict[str, Any] = {
        "server": server_version(engine, args.postgres_url),
        "orders_per_s_median": median_rate,
        "orders_per_s_ratio_to_goal": median_rate / GOAL_ORDERS_PER_S,
        "orders_per_cpu_s_median": statistics.median(r["orders_per_cpu_s"] for r in runs),
        "peak_rss_mb_median": statistics.median(r["peak_rss_mb"] for r in runs),
        "peak_rss_mb_max": max(r["peak_rss_mb"] for r in runs),
        "worker_peak_rss_mb_max": max(r["worker_peak_rss_mb"] for r in runs),
        "peak_rss_both_processes_mb_max": peak_rss,
        "peak_rss_ratio_to_goal": peak_rss / GOAL_PEAK_RSS_MB,
        "rss_after_imports_mb_median": statistics.median(r["rss_after_imports_mb"] for r in runs),
        "runs": runs,
    }
    if args.breakdown_orders and args.mode == "single":
        breakdown = in_fresh_process(
            databases, 0, jsonl, "breakdown", min(args.breakdown_orders, args.orders), args.gc_tuning
        )
        summary["breakdown"] = breakdown
        shares = ", ".join(
            f"{name} {breakdown['stage_us_per_order'][name]:.0f} µs ({share:.0%})"
            for name, share in breakdown["stage_share"].items()
        )
        print(
            f"  {engine} breakdown over {breakdown['orders']:,} orders: {shares}; of all this, "
            f"{breakdown['gc_share']:.0%} in the cyclic GC {breakdown['gc_collections']}",
            flush=True,
        )
    print(
        f"{engine} median: {median_rate:,.0f} orders/s = {median_rate / GOAL_ORDERS_PER_S:.2f} x goal; "
        f"peak RSS max (run process + worker) {peak_rss:.0f} MB = {peak_rss / GOAL_PEAK_RSS_MB:.2f} x limit",
        flush=True,
    )
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--engines", default="sqlite,postgres")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL, help="maintenance connection")
    parser.add_argument("--breakdown-orders", type=int, default=20_000, help="0: no breakdown run")
    parser.add_argument("--profile-orders", type=int, default=10_000, help="cProfile run on SQLite; 0: none")
    parser.add_argument("--no-gc-tuning", dest="gc_tuning", action="store_false",
                        help="what-if: stage without the asset's fewer_gc_pauses() (the plain collector)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    parser.add_argument("--refresh", action="store_true", help="rebuild the cached bulk file")
    parser.add_argument(
        "--mode",
        choices=("single", "split"),
        default="single",
        help="single: all in the run process; split: parse/normalise/encode in the bulk worker process",
    )
    parser.add_argument("--label", default="", help="recorded in the results, e.g. which patch was applied")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="default: bench/results/bulk_staging.json (bulk_staging_plain_gc.json with --no-gc-tuning)",
    )
    args = parser.parse_args(argv)
    output = args.output or DEFAULT_OUTPUT.with_name(
        DEFAULT_OUTPUT.name if args.gc_tuning else "bulk_staging_plain_gc.json"
    )

    wall_started = time.perf_counter()
    jsonl, prepared = prepared_file(args.orders, args.cache_dir, refresh=args.refresh)
    results: dict[str, Any] = {
        "benchmark": "bulk JSONL -> iter_bulk_jsonl -> NormalisedOrder.from_graphql -> order_version -> "
        "OrderStaging.stage",
        "label": args.label,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_at_start": os.getloadavg(),
        },
        "goal": {"orders_per_s": GOAL_ORDERS_PER_S, "peak_rss_mb": GOAL_PEAK_RSS_MB, "orders": 100_000},
        "parameters": {
            "orders": args.orders,
            "runs": args.runs,
            "staging_batch_size": 1000,
            "breakdown_orders": args.breakdown_orders,
            "profile_orders": args.profile_orders,
            "gc_tuning": args.gc_tuning,
            "mode": args.mode,
        },
        "input": {
            **prepared,
            "bytes_per_order": prepared["bytes"] / prepared["orders"],
            "lines_per_order": prepared["lines"] / prepared["orders"],
        },
        "engines": {},
    }
    for engine in [name.strip() for name in args.engines.split(",") if name.strip()]:
        print(f"{engine}: {args.runs} runs of {args.orders:,} orders, each in a fresh process", flush=True)
        results["engines"][engine] = bench_engine(engine, jsonl, args)
    if args.profile_orders and args.mode == "single":
        databases = ThrowAwayDatabases("sqlite", args.postgres_url)
        profiled = in_fresh_process(
            databases, 0, jsonl, "profile", min(args.profile_orders, args.orders), args.gc_tuning
        )
        results["profile_sqlite"] = profiled
        print(f"cProfile (sqlite, {profiled['orders']:,} orders), top functions by own time:", flush=True)
        for row in profiled["profile_top"][:12]:
            print(f"  {row['tottime_s']:7.3f} s {row['calls']:>9,}  {row['function']}", flush=True)
    results["wall_seconds"] = round(time.perf_counter() - wall_started, 1)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {output} ({results['wall_seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
