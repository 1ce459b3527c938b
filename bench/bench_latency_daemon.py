"""Propagation latency with the real Dagster daemon: X3 receipt → Shopify level, Shopify fulfilment → X3 delivery.

Unlike ``bench_stock_latency.py`` and ``bench_fulfilment_latency.py`` (which play the daemon in-process), this runs
the product as the demo does: both sandboxes in this process on loopback ports, and ``dagster dev`` (webserver,
daemon, queued run coordinator, one process per run, ``dagster.yaml`` as shipped) with every sensor on at the
given interval (30 s by default, the product's default). Demo traffic is off, so only the measured events move.

1. Warm-up (not timed): ``--orders`` paid orders are created in store ``eu`` for a customer X3 knows; Shopify's
   levels of the receipt items are aligned with X3's physical stock; the daemon works through the seeded history
   and invoices the orders. Timing starts once no run is queued or running.
2. Measured: ``--events`` events at random moments (mean gap ``--mean-gap`` s), alternating an X3 stock receipt
   at site FR011 (admin route over HTTP) and the fulfilment of one of the invoiced orders in Shopify.
   - receipt latency: until Shopify's ``on_hand`` of the item at store eu's mapped location reaches X3's physical
     stock right after the receipt minus the item's pending fulfilled quantity (seeded fulfilments of orders that
     are never invoiced stay pending: X3 still holds those units); receipt items and order items are disjoint;
   - fulfilment latency: until the fulfilment's X3 delivery is validated (stock issued in X3).
Prints p50/p95/max per flow and writes bench/results/latency_daemon.json. Goal (issue 4): p95 < 60 s.

    .venv/bin/python bench/bench_latency_daemon.py                       # 16 events, mean gap 20 s
    .venv/bin/python bench/bench_latency_daemon.py --events 6 --mean-gap 10
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from x3_shopify_dagster.demo import DEMO_STORES, _prepare_home, demo_environment  # noqa: E402
from x3_shopify_dagster.domain.fulfillments import delivery_reference  # noqa: E402
from x3_shopify_dagster.sandboxes import demo_data  # noqa: E402
from x3_shopify_dagster.sandboxes.shopify import SandboxConfig, ShopifySandbox  # noqa: E402
from x3_shopify_dagster.sandboxes.x3 import X3Sandbox, X3SandboxConfig  # noqa: E402
from x3_shopify_dagster.storage import ConnectorDatabase  # noqa: E402
from x3_shopify_dagster.storage.ledger import PostingLedger  # noqa: E402
from x3_shopify_dagster.storage.stock import pending_fulfilled_quantities  # noqa: E402

RESULTS = REPO_ROOT / "bench" / "results" / "latency_daemon.json"
STORE, SITE = "eu", "FR011"
CUSTOMER = "claire.martin@bistro-lyon.example"
ORDER_ITEM = "CUP-PORC-6"
_AMBIGUOUS = {d.sku for d in demo_data.DUPLICATE_SKU_LISTINGS}
RECEIPT_ITEMS = [p.sku for p in demo_data.PRODUCTS if p.x3_item and p.sku not in _AMBIGUOUS and p.sku != ORDER_ITEM]
RUNS_QUERY = '{ runsOrError(limit: 500) { ... on Runs { results { status } } } }'


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summary(latencies: list[float], wanted: int) -> dict[str, Any]:
    return {
        "events": wanted,
        "propagated": len(latencies),
        "p50_s": round(statistics.median(latencies), 1) if latencies else None,
        "p95_s": round(percentile(latencies, 0.95), 1) if latencies else None,
        "max_s": round(max(latencies), 1) if latencies else None,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=16)
    parser.add_argument("--mean-gap", type=float, default=20.0)
    parser.add_argument("--interval", type=int, default=30, help="sensor interval, seconds")
    parser.add_argument("--orders", type=int, default=8, help="orders invoiced in the warm-up, to fulfil later")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up on an event after this long")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    home = Path(tempfile.mkdtemp(prefix="x3sd-bench-daemon-"))
    _prepare_home(home)
    shopify = ShopifySandbox(SandboxConfig(stores=DEMO_STORES, seed=7, orders_per_store=10, history_days=2)).start()
    x3 = X3Sandbox(X3SandboxConfig(folder="SEED", seed=7)).start()
    user, password = x3.basic_credentials
    store = shopify.state.store(STORE)
    location_id = store.default_location.legacy_id

    def level(item: str) -> int:
        variant = store.variant_by_sku(item)
        assert variant is not None
        with shopify.state.locked():
            return int(store.inventory[(variant.inventory_item_id, location_id)].quantities["on_hand"])

    for item in RECEIPT_ITEMS:  # Shopify starts in step with X3, as after a first full sync
        variant = store.variant_by_sku(item)
        assert variant is not None
        gap = int(x3.state.stock(item, SITE).physical) - level(item)
        shopify.state.adjust_inventory(STORE, variant.inventory_item_id, location_id, {"on_hand": gap})
    orders = [shopify.state.create_order(STORE, email=CUSTOMER, lines=[(ORDER_ITEM, 1)]) for _ in range(args.orders)]

    ui_port = free_port()
    env = {**os.environ, **demo_environment(shopify, x3, home, sensor_interval_s=args.interval)}
    log = (home / "dagster.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-w", str(REPO_ROOT / "workspace.yaml"), "-h", "127.0.0.1",
         "-p", str(ui_port)], env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the webserver and daemon it starts stop with it
    )
    figures: dict[str, Any] = {}
    try:
        def busy() -> int | None:
            try:
                response = httpx.post(f"http://127.0.0.1:{ui_port}/graphql", json={"query": RUNS_QUERY}, timeout=10)
                runs = response.json()["data"]["runsOrError"]["results"]
            except (httpx.HTTPError, KeyError, TypeError, ValueError):
                return None
            return sum(1 for run in runs if run["status"] in {"QUEUED", "NOT_STARTED", "STARTING", "STARTED"})

        warm_start = time.monotonic()
        invoiced = 0
        while time.monotonic() - warm_start < 900:
            time.sleep(5)
            invoiced = sum(1 for inv in x3.state.invoices() if inv.customer and inv.reference.startswith("SHOPIFY"))
            pending = busy()
            if pending == 0 and invoiced and time.monotonic() - warm_start > 3 * args.interval:
                break
        warm_up_s = time.monotonic() - warm_start
        print(f"warm-up {warm_up_s:.0f} s ({invoiced} invoices in X3)", flush=True)

        ledger = PostingLedger(ConnectorDatabase(env["X3SD_DATABASE_URL"]))
        location_gid = f"gid://shopify/Location/{location_id}"

        def pending(item: str) -> int:
            variant = store.variant_by_sku(item)
            assert variant is not None
            item_gid = f"gid://shopify/InventoryItem/{variant.inventory_item_id}"
            return pending_fulfilled_quantities(ledger, STORE).get((item_gid, location_gid), 0)

        receipts: list[tuple[str, float, int]] = []  # item, time, expected level
        fulfilments: list[tuple[str, float]] = []  # delivery reference, time
        done: dict[Any, float] = {}  # receipt index, or ("f", fulfilment index) → time seen propagated
        to_fulfil = list(orders)
        lock = threading.Lock()
        stop = threading.Event()

        def watch() -> None:  # polls both sandboxes while events are being produced
            while not stop.is_set():
                now = time.monotonic()
                validated = {d.reference for d in x3.state.deliveries() if d.validated}
                with lock:
                    for index, (item, _at, expected) in enumerate(receipts):
                        if index not in done and level(item) >= expected:
                            done[index] = now
                    for index, (reference, _at) in enumerate(fulfilments):
                        if ("f", index) not in done and reference in validated:
                            done[("f", index)] = now
                time.sleep(0.2)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        began = time.monotonic()
        with httpx.Client(auth=(user, password), timeout=10) as http:
            for index in range(args.events):
                time.sleep(rng.uniform(0, 2 * args.mean_gap))
                if index % 2 == 0 or not to_fulfil:
                    item = rng.choice(RECEIPT_ITEMS)
                    response = http.post(f"{x3.base_url}/_sandbox/{x3.folder}/stock-receipts",
                                         json={"item": item, "site": SITE, "quantity": rng.randint(1, 20)})
                    response.raise_for_status()
                    at = time.monotonic()
                    expected = int(float(response.json()["physical"])) - pending(item)
                    with lock:
                        receipts.append((item, at, expected))
                else:
                    fulfillment = shopify.state.fulfil(to_fulfil.pop(0))
                    reference = delivery_reference(STORE, int(fulfillment.rsplit("/", 1)[1]))
                    with lock:
                        fulfilments.append((reference, time.monotonic()))
        deadline = time.monotonic() + args.timeout
        events = len(receipts) + len(fulfilments)
        while len(done) < events and time.monotonic() < deadline:
            time.sleep(0.5)
        stop.set()
        watcher.join(timeout=10)
        receipt_latencies = [done[i] - at for i, (_item, at, _e) in enumerate(receipts) if i in done]
        fulfilment_latencies = [done[("f", i)] - at for i, (_r, at) in enumerate(fulfilments) if ("f", i) in done]
        figures = {
            "x3_receipt_to_shopify_level": summary(receipt_latencies, len(receipts)),
            "shopify_fulfilment_to_validated_x3_delivery": summary(fulfilment_latencies, len(fulfilments)),
            "sensor_interval_s": args.interval,
            "mean_gap_s": args.mean_gap,
            "warm_up_s": round(warm_up_s),
            "measured_s": round(time.monotonic() - began),
            "driver": "dagster dev (daemon, queued run coordinator, one process per run, dagster.yaml as shipped)",
            "load_average_at_end": os.getloadavg()[0],
            "goal_p95_s": 60,
            "python": platform.python_version(),
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        print(json.dumps(figures, indent=2))
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    finally:
        process.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # whatever of dagster dev's children is still there
        log.close()
        shopify.stop()
        x3.stop()
    flows = [figures.get("x3_receipt_to_shopify_level", {}),
             figures.get("shopify_fulfilment_to_validated_x3_delivery", {})]
    return 0 if all(f.get("p95_s") is not None and f["p95_s"] < 60 and f["propagated"] == f["events"]
                    for f in flows) else 1


if __name__ == "__main__":
    sys.exit(main())
