"""Shopify API points spent per order: incremental (paged) pull versus a bulk export of the same window.

The Shopify sandbox is seeded with N orders of the usual mix (``SandboxConfig.orders_per_store``: 1-4 lines,
a 65-line order, discounts, partial and full fulfilments, refunds, cancellations) and its rate limit is lifted
so nothing waits. Then, over real HTTP on a loopback port:

- paged: ``OrderReader.iter_changed_orders`` with the product's default page sizes (ConnectorSettings:
  ``shopify_page_size``, ``shopify_line_items_page_size``, ``shopify_shipping_lines_page_size``), after the
  ``probe`` the asset sends first in AUTO mode;
- bulk: ``BulkOrderExporter.iter_changed_orders`` (the bulk mutation, its polls, the result download and the
  batched refund/fulfilment reads for the orders that have any), as the asset builds it.

Points requested and spent come from ``extensions.cost`` (the client's ``ClientMetrics``); the per-request
sequence (the sandbox's request log) is replayed through a leaky bucket to give the wall time a Standard
(2,000 points, 100/s) and a Plus (20,000, 1,000/s) store would impose on 1,000 orders at zero network latency:
computed, not waited out. Both pulls must yield the same order versions. Writes bench/results/api_points.json.

    .venv/bin/python bench/bench_api_points.py                 # 1,000 orders
    .venv/bin/python bench/bench_api_points.py --orders 300
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from x3_shopify_dagster.domain.shopify_orders import ShopifyOrder  # noqa: E402
from x3_shopify_dagster.sandboxes.shopify import SandboxConfig, ShopifySandbox  # noqa: E402
from x3_shopify_dagster.settings import ConnectorSettings  # noqa: E402
from x3_shopify_dagster.shopify import BulkOrderExporter, OrderReader, ShopifyClient  # noqa: E402

DEFAULT_OUTPUT = REPO_ROOT / "bench" / "results" / "api_points.json"
STORE = "eu"
SEED = 7
HISTORY_DAYS = 5
PLAN_ORDERS = 1000  # the order count the plan wall times are given for
PLANS = {"standard": (2000.0, 100.0), "plus": (20000.0, 1000.0)}  # bucket size, restore rate (points/s)
UNLIMITED = 1e9  # sandbox bucket and restore rate while measuring: costs are reported, nothing waits


@dataclass(frozen=True)
class Request:
    operation: str
    requested: int
    spent: int
    status: str  # the sandbox's outcome word: ok, max_cost_exceeded, throttled, ...

    @property
    def admitted(self) -> bool:
        # MAX_COST_EXCEEDED is decided on the requested cost before execution: the bucket is not charged.
        return self.status in {"ok", "errors"}


def default_page_sizes() -> dict[str, int]:
    fields = ConnectorSettings.model_fields
    return {
        "page_size": fields["shopify_page_size"].default,
        "line_items_page_size": fields["shopify_line_items_page_size"].default,
        "shipping_lines_page_size": fields["shopify_shipping_lines_page_size"].default,
    }


def bucket_wall_seconds(requests: Iterable[Request], bucket_size: float, restore_rate: float) -> float:
    """Time the leaky bucket imposes on this request sequence, requests themselves taking no time.

    Shopify admits a query when the bucket holds its requested cost, then refunds requested - actual; points
    come back at restore_rate up to bucket_size. A client that waits exactly as long as needed (the product's
    CostPacer aims at that) spends this long waiting.
    """
    waited = 0.0
    available = bucket_size
    for request in requests:
        if not request.admitted:
            continue
        if request.requested > bucket_size:
            raise ValueError(f"{request.operation} requests {request.requested} points, more than the bucket")
        if request.requested > available:
            waited += (request.requested - available) / restore_rate
            available = float(request.requested)
        available -= request.spent
    return waited


def version_keys(orders: Iterable[ShopifyOrder]) -> Iterator[tuple[str, str, str]]:
    for order in orders:
        yield (order.id, order.updated_at.isoformat(), order.content_hash())


def measure(
    sandbox: ShopifySandbox, mode: str, lo: datetime, hi: datetime
) -> tuple[dict[str, Any], set[Any]]:
    sandbox.clear_requests_log()
    started = time.perf_counter()
    with ShopifyClient(sandbox.shop_url(STORE), sandbox.access_token(STORE)) as client:
        reader = OrderReader(client, **default_page_sizes())
        if mode == "paged":
            probe = reader.probe(lo, hi)
            orders = list(reader.iter_changed_orders(lo, hi))
            stats = reader.stats
        else:
            probe = None
            exporter = BulkOrderExporter(client)
            orders = list(exporter.iter_changed_orders(lo, hi, fallback=reader))
            stats = exporter.stats
        metrics = client.metrics.snapshot()
    elapsed = time.perf_counter() - started
    log = [
        Request(str(r.operation_name), r.requested_cost or 0, r.actual_cost or 0, r.status)
        for r in sandbox.requests_log
    ]
    if sum(r.spent for r in log) != metrics["points_spent"]:
        raise RuntimeError("the sandbox log and the client metrics disagree on the points spent")
    admitted = [r for r in log if r.admitted]
    count = len(orders)
    graphql_requests = len(log)  # the result download is not a GraphQL request and costs nothing
    points_requested = sum(r.requested for r in admitted)
    # A window smaller than PLAN_ORDERS is replayed often enough to cover them, so that the bucket's initial
    # credit is not scaled up with it; with the default --orders it is replayed exactly once.
    replays = -(-PLAN_ORDERS // count)
    plans = {}
    for plan, (bucket, rate) in PLANS.items():
        waited = bucket_wall_seconds(log * replays, bucket, rate)
        plans[plan] = {
            "bucket_size": bucket,
            "restore_rate": rate,
            "wall_seconds_measured_window": bucket_wall_seconds(log, bucket, rate),
            f"wall_seconds_per_{PLAN_ORDERS}_orders": waited * PLAN_ORDERS / (count * replays),
            "sustained_orders_per_s": rate / (metrics["points_spent"] / count),
        }
    result = {
        "orders": count,
        "probe_count": probe.count if probe else None,
        "graphql_requests": graphql_requests,
        "rejected_requests": {
            r.status: sum(1 for x in log if x.status == r.status) for r in log if not r.admitted
        },
        "points_requested": points_requested,  # admitted requests only (rejected ones are not charged)
        "points_spent": metrics["points_spent"],
        "requests_per_order": graphql_requests / count,
        "points_requested_per_order": points_requested / count,
        "points_spent_per_order": metrics["points_spent"] / count,
        "max_admitted_requested_cost": max(r.requested for r in admitted),
        "by_operation": {
            name: {
                "requests": op["requests"],
                "points_requested": sum(r.requested for r in admitted if r.operation == name),
                "points_spent": op["points_spent"],
            }
            for name, op in metrics["by_operation"].items()
        },
        "pull_stats": stats.snapshot(),
        "plans": plans,
        "sandbox_wall_seconds": elapsed,
    }
    return result, set(version_keys(orders))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=1000, help="orders seeded in the window")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)

    wall_started = time.perf_counter()
    config = SandboxConfig(
        stores=(STORE,), orders_per_store=args.orders, seed=SEED, history_days=HISTORY_DAYS
    )
    print(f"seeding {args.orders:,} orders of the usual mix", flush=True)
    with ShopifySandbox(config).start() as sandbox:
        sandbox.set_rate_limit(STORE, bucket_size=UNLIMITED, restore_rate=UNLIMITED)
        now = datetime.now(UTC)
        lo, hi = now - timedelta(days=HISTORY_DAYS + 1), now + timedelta(minutes=1)
        results: dict[str, Any] = {
            "benchmark": "Shopify API points per order, paged vs bulk",
            "measured_at": now.isoformat(timespec="seconds"),
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "parameters": {
                "orders": args.orders,
                "seed": SEED,
                "page_sizes": default_page_sizes(),
                "plans": PLANS,
                "plan_orders": PLAN_ORDERS,
            },
            "modes": {},
        }
        seen = {}
        for mode in ("paged", "bulk"):
            summary, seen[mode] = measure(sandbox, mode, lo, hi)
            results["modes"][mode] = summary
            waits = {
                plan: figures[f"wall_seconds_per_{PLAN_ORDERS}_orders"]
                for plan, figures in summary["plans"].items()
            }
            print(
                f"{mode}: {summary['orders']:,} orders, {summary['graphql_requests']:,} requests "
                f"({summary['requests_per_order']:.2f}/order), points requested "
                f"{summary['points_requested_per_order']:.1f}/order, "
                f"spent {summary['points_spent_per_order']:.1f}/order; {PLAN_ORDERS:,} orders wait "
                f"{waits['standard']:.0f} s on Standard, {waits['plus']:.0f} s on Plus",
                flush=True,
            )
            for name, op in summary["by_operation"].items():
                print(f"    {name}: {op['requests']} requests, {op['points_spent']} points spent", flush=True)
    if seen["paged"] != seen["bulk"] or len(seen["paged"]) != args.orders:
        raise RuntimeError(
            f"paged and bulk pulls disagree: {len(seen['paged'])} vs {len(seen['bulk'])} versions, "
            f"{len(seen['paged'] ^ seen['bulk'])} differ"
        )
    paged, bulk = results["modes"]["paged"], results["modes"]["bulk"]
    results["bulk_to_paged_points_spent"] = bulk["points_spent"] / paged["points_spent"]
    results["wall_seconds"] = round(time.perf_counter() - wall_started, 1)
    print(f"bulk spends {results['bulk_to_paged_points_spent']:.1%} of the paged pull's points", flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.output} ({results['wall_seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
