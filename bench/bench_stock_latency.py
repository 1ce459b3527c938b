"""Stock propagation latency: from a receipt in X3 to the new level in Shopify (goal: p95 < 60 s).

The path the product runs in production, driven in-process on a timer instead of by the Dagster daemon:
``x3_stock_sensor`` is evaluated every ``--interval`` seconds (``X3SD_STOCK_SENSOR_INTERVAL_SECONDS``, 30 by
default) with its cursor carried from tick to tick, and each run request it returns is materialized at once
(``x3_stock_movements`` then ``shopify_inventory_levels``, the request's partition and run config, one ephemeral
Dagster instance). What this leaves out: the daemon's own scheduling jitter and the launch of a run process
(a few seconds per run with the default run launcher; add them to the figures below, or run ``dagster dev``).

Both sandboxes run on loopback ports over real HTTP (X3 and Shopify on the real clock), the connector database is a
fresh SQLite file. Shopify's levels are first set equal to X3's stock (untimed). A producer makes ``--receipts``
miscellaneous receipts through the X3 sandbox's admin route, spaced uniformly at random in [0, 2 x ``--mean-gap``]
seconds, on random demo items at site FR011. A watcher polls the Shopify sandbox's levels every 0.1 s: a receipt
has propagated once the item's ``on_hand`` at the mapped location reaches X3's physical stock right after that
receipt (receipts only add stock and nothing is pending, so this is monotonic). Latency = that moment - the
receipt's HTTP call returning. Prints p50/p95/max and writes bench/results/stock_latency.json.

    .venv/bin/python bench/bench_stock_latency.py                                  # 20 receipts, 30 s interval
    .venv/bin/python bench/bench_stock_latency.py --receipts 8 --mean-gap 8        # a short run
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import dagster as dg  # noqa: E402

from x3_shopify_dagster.definitions import build_definitions  # noqa: E402
from x3_shopify_dagster.defs.resources import ConnectorRuntime  # noqa: E402
from x3_shopify_dagster.defs.stock import LEVELS_ASSET_NAME, MOVEMENTS_ASSET_NAME, STOCK_SENSOR_NAME  # noqa: E402
from x3_shopify_dagster.sandboxes import demo_data  # noqa: E402
from x3_shopify_dagster.sandboxes.shopify import SandboxConfig, ShopifySandbox  # noqa: E402
from x3_shopify_dagster.sandboxes.x3 import X3Sandbox, X3SandboxConfig  # noqa: E402
from x3_shopify_dagster.settings import ConnectorSettings, StoreSettings, X3Settings  # noqa: E402

RESULTS = REPO_ROOT / "bench" / "results" / "stock_latency.json"
SITE = "FR011"
_AMBIGUOUS = {d.sku for d in demo_data.DUPLICATE_SKU_LISTINGS}
ITEMS = [p.sku for p in demo_data.PRODUCTS if p.x3_item and p.sku not in _AMBIGUOUS]


@dataclass
class Receipt:
    item: str
    at: float  # monotonic time the receipt call returned
    expected: int  # X3 physical right after it
    propagated_at: float | None = None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--receipts", type=int, default=20)
    parser.add_argument("--mean-gap", type=float, default=15.0, help="mean seconds between receipts")
    parser.add_argument("--interval", type=int, default=30, help="sensor interval, seconds")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=180.0, help="give up on a receipt after this long")
    args = parser.parse_args()
    rng = random.Random(args.seed)

    shopify = ShopifySandbox(SandboxConfig(stores=("eu",), orders_per_store=20)).start()
    x3 = X3Sandbox(X3SandboxConfig()).start()
    tmp = Path(tempfile.mkdtemp(prefix="x3sd-bench-stock-"))
    try:
        shopify.set_rate_limit("eu", bucket_size=2_000.0, restore_rate=100.0)  # Shopify Advanced plan
        store = shopify.state.store("eu")
        location_id = store.default_location.legacy_id
        user, password = x3.basic_credentials
        settings = ConnectorSettings(
            _env_file=None,  # type: ignore[call-arg]
            stores={"eu": StoreSettings(shop_url=shopify.shop_url("eu"), access_token=shopify.access_token("eu"),
                                        locations={SITE: f"gid://shopify/Location/{location_id}"})},
            database_url=f"sqlite:///{tmp / 'connector.db'}",
            partition_timezone="Europe/Paris",
            partition_start_date=date.today() - timedelta(days=3),
            stock_sensor_interval_seconds=args.interval,
            sensor_initial_lookback_hours=1,
            x3=X3Settings(server_url=x3.base_url, folder=x3.folder, user=user, password=password),
        )
        runtime = ConnectorRuntime(settings)
        defs = build_definitions(settings, runtime=runtime)
        sensor = defs.resolve_sensor_def(STOCK_SENSOR_NAME)
        assets = [defs.resolve_assets_def(MOVEMENTS_ASSET_NAME), defs.resolve_assets_def(LEVELS_ASSET_NAME)]
        instance = dg.DagsterInstance.ephemeral()

        receipts: list[Receipt] = []
        lock = threading.Lock()
        stop = threading.Event()
        runs: list[dict[str, Any]] = []
        ticks: list[float] = []

        def level(item: str) -> int:
            variant = store.variant_by_sku(item)
            assert variant is not None
            with shopify.state.locked():
                return int(store.inventory[(variant.inventory_item_id, location_id)].quantities["on_hand"])

        def produce() -> None:
            with httpx.Client(auth=(user, password), timeout=10) as http:
                for _ in range(args.receipts):
                    time.sleep(rng.uniform(0, 2 * args.mean_gap))
                    item = rng.choice(ITEMS)
                    response = http.post(f"{x3.base_url}/_sandbox/{x3.folder}/stock-receipts",
                                         json={"item": item, "site": SITE, "quantity": rng.randint(1, 20)})
                    response.raise_for_status()
                    done = time.monotonic()
                    with lock:
                        receipts.append(Receipt(item, done, int(float(response.json()["physical"]))))

        def watch() -> None:
            while not stop.is_set():
                now = time.monotonic()
                with lock:
                    outstanding = [r for r in receipts if r.propagated_at is None]
                for receipt in outstanding:
                    if level(receipt.item) >= receipt.expected:
                        receipt.propagated_at = now
                time.sleep(0.1)

        def daemon() -> None:
            cursor: str | None = None
            while not stop.is_set():
                started = time.monotonic()
                ticks.append(started)
                context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"connector": runtime},
                                                  definitions=defs)
                result = sensor.evaluate_tick(context)
                cursor = result.cursor
                for request in result.run_requests:
                    run_started = time.monotonic()
                    outcome = dg.materialize(assets, partition_key=request.partition_key, instance=instance,
                                             run_config=request.run_config, tags=request.tags,
                                             raise_on_error=False)
                    runs.append({"seconds": time.monotonic() - run_started, "success": outcome.success})
                stop.wait(max(0.0, args.interval - (time.monotonic() - started)))

        # Set-up, not timed: Shopify starts in step with X3 (as after a first full sync), so a level can only reach a
        # receipt's figure by being pushed.
        for item in ITEMS:
            variant = store.variant_by_sku(item)
            assert variant is not None
            gap = int(x3.state.stock(item, SITE).physical) - level(item)
            shopify.state.adjust_inventory("eu", variant.inventory_item_id, location_id, {"on_hand": gap})
            assert level(item) == int(x3.state.stock(item, SITE).physical)

        # The first tick sets the watermark before any receipt, as a sensor running in production would have.
        threads = [threading.Thread(target=daemon, daemon=True), threading.Thread(target=watch, daemon=True)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        began = time.monotonic()
        produce()
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            with lock:
                if all(r.propagated_at is not None for r in receipts):
                    break
            time.sleep(0.5)
        stop.set()
        for thread in threads:
            thread.join(timeout=args.interval + 30)

        latencies = [r.propagated_at - r.at for r in receipts if r.propagated_at is not None]
        lost = sum(1 for r in receipts if r.propagated_at is None)
        figures = {
            "receipts": len(receipts),
            "propagated": len(latencies),
            "not_propagated_within_timeout": lost,
            "sensor_interval_s": args.interval,
            "mean_gap_s": args.mean_gap,
            "p50_s": round(statistics.median(latencies), 2) if latencies else None,
            "p95_s": round(percentile(latencies, 0.95), 2) if latencies else None,
            "max_s": round(max(latencies), 2) if latencies else None,
            "mean_s": round(statistics.fmean(latencies), 2) if latencies else None,
            "goal_p95_s": 60,
            "runs": len(runs),
            "runs_failed": sum(1 for r in runs if not r["success"]),
            "run_seconds_median": round(statistics.median(r["seconds"] for r in runs), 2) if runs else None,
            "ticks": len(ticks),
            "wall_s": round(time.monotonic() - began, 1),
            "driver": "in-process: sensor ticks on a timer, each run request materialized at once "
                      "(no daemon, no run-launch process)",
            "seed": args.seed,
            "python": platform.python_version(),
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        print(json.dumps(figures, indent=2))
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
        runtime.close()
        return 0 if lost == 0 and figures["p95_s"] is not None and figures["p95_s"] < 60 else 1
    finally:
        shopify.stop()
        x3.stop()


if __name__ == "__main__":
    sys.exit(main())
