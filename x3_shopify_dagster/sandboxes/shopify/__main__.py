"""Run the Shopify sandbox until interrupted.

    python -m x3_shopify_dagster.sandboxes.shopify --port 8701 --stores eu,us --traffic-interval 2
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from x3_shopify_dagster.sandboxes.shopify.config import SandboxConfig
from x3_shopify_dagster.sandboxes.shopify.sandbox import DEFAULT_API_VERSION, ShopifySandbox


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m x3_shopify_dagster.sandboxes.shopify",
                                     description="Local Shopify Admin GraphQL API sandbox.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8701, help="0 picks a free port")
    parser.add_argument("--stores", default="eu,us", help="comma-separated demo store keys")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--orders-per-store", type=int, default=40)
    parser.add_argument("--history-days", type=int, default=5)
    parser.add_argument("--bucket-size", type=float, default=2000.0)
    parser.add_argument("--restore-rate", type=float, default=100.0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every GraphQL request")
    parser.add_argument("--traffic-interval", type=float, default=0.0,
                        help="seconds between generated order events; 0 disables traffic")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = SandboxConfig(stores=tuple(s.strip() for s in args.stores.split(",") if s.strip()), seed=args.seed,
                           orders_per_store=args.orders_per_store, history_days=args.history_days,
                           bucket_size=args.bucket_size, restore_rate=args.restore_rate, latency_s=args.latency)
    sandbox = ShopifySandbox(config).start(host=args.host, port=args.port)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"Shopify sandbox listening on {sandbox.base_url} (API {DEFAULT_API_VERSION}; admin: "
          f"{sandbox.base_url}/_sandbox/state)")
    for store in config.stores:
        print(f"  store {store}: shop_url={sandbox.shop_url(store)} access_token={sandbox.access_token(store)}")
    if args.traffic_interval > 0:
        sandbox.start_traffic(args.traffic_interval)
        print(f"  traffic: an order event every {args.traffic_interval:g}s")
    sys.stdout.flush()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
