"""Propagation latency: a Shopify fulfilment (created in the sandbox) → its validated X3 delivery.

Both sandboxes run in-process on loopback ports; the product's Dagster definitions are built as the code location
builds them (``build_definitions``), on a fresh SQLite connector database. A driver loop plays the Dagster daemon on
a timer: every ``--interval`` seconds (30 by default, the sensor interval) it evaluates ``shopify_orders_sensor``
and ``shopify_fulfillments_sensor`` with their saved cursors and executes every run request in-process
(``dg.materialize`` of the targeted assets with the request's partition, config and tags), orders first. Safety lag
5 s, as in the demo.

Meanwhile a traffic thread creates paid orders from a demo customer X3 knows, and fulfils each a few seconds later
(the fulfilment time is the start of the measurement), at random moments spread over ``--duration`` seconds.
Latency of a fulfilment = the moment the driver sees its X3 delivery validated (checked after each run) minus
the fulfilment's creation. The driver is single-threaded, like one daemon with one run at a time, so the figure
includes queueing behind other runs. Prints p50/p95/max and writes bench/results/fulfilment_latency.json.

    .venv/bin/python bench/bench_fulfilment_latency.py                      # 20 fulfilments over 5 minutes
    .venv/bin/python bench/bench_fulfilment_latency.py --fulfilments 6 --duration 90
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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from x3_shopify_dagster.definitions import build_definitions  # noqa: E402
from x3_shopify_dagster.defs.resources import ConnectorRuntime  # noqa: E402
from x3_shopify_dagster.domain.fulfillments import delivery_reference  # noqa: E402
from x3_shopify_dagster.sandboxes.shopify import SandboxConfig, ShopifySandbox  # noqa: E402
from x3_shopify_dagster.sandboxes.x3 import X3Sandbox, X3SandboxConfig  # noqa: E402
from x3_shopify_dagster.settings import ConnectorSettings, StoreSettings, X3Settings  # noqa: E402

DEFAULT_OUTPUT = REPO_ROOT / "bench" / "results" / "fulfilment_latency.json"
STORE = "eu"
CUSTOMER = "claire.martin@bistro-lyon.example"
MAPPING = REPO_ROOT / "x3_shopify_dagster" / "demo_mapping.yaml"
TARGETS = {  # what each sensor targets (definitions.py)
    "shopify_orders_sensor": [dg.AssetKey("shopify_orders"), dg.AssetKey("x3_sales_invoices")],
    "shopify_fulfillments_sensor": [dg.AssetKey("shopify_fulfillments"), dg.AssetKey("x3_deliveries")],
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fulfilments", type=int, default=20)
    parser.add_argument("--duration", type=float, default=300.0, help="seconds over which fulfilments are created")
    parser.add_argument("--interval", type=float, default=30.0, help="sensor interval, seconds")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    rng = random.Random(7)

    shopify = ShopifySandbox(SandboxConfig(stores=(STORE,), seed=7, orders_per_store=5, history_days=1)).start()
    x3 = X3Sandbox(X3SandboxConfig()).start()
    workdir = Path(tempfile.mkdtemp(prefix="x3sd-bench-fulfil-"))
    shopify.set_rate_limit(STORE, bucket_size=20_000.0, restore_rate=1_000.0)
    user, password = x3.basic_credentials
    location = str(shopify.state.store(STORE).default_location.legacy_id)
    settings = ConnectorSettings(
        _env_file=None,  # type: ignore[call-arg]
        stores={STORE: StoreSettings(shop_url=shopify.shop_url(STORE), access_token=shopify.access_token(STORE),
                                     location_sites={location: "FR011"})},
        database_url=f"sqlite:///{workdir / 'connector.db'}",
        partition_timezone="Europe/Paris",
        partition_start_date=(datetime.now(UTC) - timedelta(days=3)).date(),
        shopify_safety_lag_seconds=5,
        sensor_interval_seconds=max(5, int(args.interval)),
        sensor_initial_lookback_hours=1,
        x3=X3Settings(server_url=x3.base_url, folder=x3.folder, user=user, password=password),
        mapping_path=str(MAPPING),
    )
    runtime = ConnectorRuntime(settings)
    defs = build_definitions(settings, runtime=runtime)
    sensors = [defs.resolve_sensor_def("shopify_orders_sensor"), defs.resolve_sensor_def("shopify_fulfillments_sensor")]
    cursors: dict[str, str | None] = {sensor.name: None for sensor in sensors}

    created: dict[str, float] = {}  # delivery reference → wall time the fulfilment was created
    done: dict[str, float] = {}
    lock = threading.Lock()

    def traffic() -> None:
        moments = sorted(rng.uniform(0, args.duration) for _ in range(args.fulfilments))
        start = time.monotonic()
        for moment in moments:
            time.sleep(max(0.0, start + moment - time.monotonic()))
            order = shopify.state.create_order(STORE, email=CUSTOMER, lines=[("CUP-PORC-6", 1)])
            time.sleep(rng.uniform(1, 5))
            fulfillment = shopify.state.fulfil(order)
            with lock:
                created[delivery_reference(STORE, int(fulfillment.rsplit("/", 1)[1]))] = time.time()

    def check_deliveries() -> None:
        validated = {d.reference for d in x3.state.deliveries() if d.validated}
        now = time.time()
        with lock:
            for reference in created:
                if reference in validated and reference not in done:
                    done[reference] = now

    runs = 0
    started = time.time()
    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    try:
        with dg.instance_for_test() as instance:
            # The first ticks start from the look-back: the seeded history is delivered before timing matters.
            deadline = time.monotonic() + args.duration + 6 * args.interval
            while time.monotonic() < deadline:
                tick = time.monotonic()
                for sensor in sensors:
                    context = dg.build_sensor_context(instance=instance, cursor=cursors[sensor.name],
                                                      resources={"connector": runtime}, definitions=defs)
                    result = sensor(context)
                    cursors[sensor.name] = result.cursor
                    for request in result.run_requests or []:
                        selection = list(request.asset_selection or TARGETS[sensor.name])
                        assets = [defs.resolve_assets_def(key) for key in selection]
                        dg.materialize(assets, instance=instance, partition_key=request.partition_key,
                                       run_config=request.run_config or None, tags=request.tags,
                                       selection=selection)
                        runs += 1
                        check_deliveries()
                check_deliveries()
                with lock:
                    finished = not thread.is_alive() and len(done) == len(created) == args.fulfilments
                if finished:
                    break
                time.sleep(max(0.0, tick + args.interval - time.monotonic()))
    finally:
        runtime.close()
        shopify.stop()
        x3.stop()

    latencies = [done[ref] - created[ref] for ref in created if ref in done]
    missing = len(created) - len(latencies)
    summary: dict[str, Any] = {
        "benchmark": "fulfilment_latency",
        "driver": "sensor ticks and runs in-process on a timer (one run at a time, like one daemon)",
        "sensor_interval_s": args.interval,
        "safety_lag_s": 5,
        "fulfilments": len(created),
        "delivered": len(latencies),
        "missing": missing,
        "runs": runs,
        "p50_s": round(statistics.median(latencies), 1) if latencies else None,
        "p95_s": round(percentile(latencies, 0.95), 1) if latencies else None,
        "max_s": round(max(latencies), 1) if latencies else None,
        "goal_p95_s": 60,
        "wall_seconds": round(time.time() - started, 1),
        "python": platform.python_version(),
        "cpus": __import__("os").cpu_count(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    print(json.dumps(summary, indent=2))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(summary, indent=2) + "\n")
    if missing:
        sys.exit(f"{missing} fulfilments have no validated delivery")


if __name__ == "__main__":
    main()
