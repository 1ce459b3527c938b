"""Micro-benchmark of OrderStaging.stage alone, on SQLite and PostgreSQL.

Stages N synthetic order versions (~4 KB JSON each) from a lazy generator into a freshly migrated database,
in one stage() call that batches them itself (the way the asset hands over a window), then stages N newer
versions of the same orders (half changed, half unchanged). Each run is a fresh process so that its peak RSS
(resource.getrusage ru_maxrss) is its own. Prints orders/s and peak RSS (median of the runs) and writes
bench/results/staging_db.json.

    .venv/bin/python bench/bench_staging_db.py                       # 100,000 versions, 3 runs, both engines
    .venv/bin/python bench/bench_staging_db.py --versions 20000 --engines sqlite
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from x3_shopify_dagster.storage import ConnectorDatabase, OrderStaging, OrderVersion  # noqa: E402
from x3_shopify_dagster.storage.database import json_dumps  # noqa: E402

DEFAULT_POSTGRES_URL = os.environ.get(
    "X3SD_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
)
DEFAULT_OUTPUT = REPO_ROOT / "bench" / "results" / "staging_db.json"
STORE = "bench-eu"
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def order_template(payload_bytes: int) -> dict[str, Any]:
    """A Shopify-like order whose JSON is about `payload_bytes` long (money as Decimal strings)."""
    order: dict[str, Any] = {
        "id": "gid://shopify/Order/0",
        "name": "#0",
        "createdAt": "2026-11-01T08:00:00Z",
        "updatedAt": "2026-11-01T08:00:00Z",
        "processedAt": "2026-11-01T08:00:00Z",
        "cancelledAt": None,
        "test": False,
        "email": "ada.lovelace@example.com",
        "currencyCode": "EUR",
        "taxesIncluded": True,
        "displayFinancialStatus": "PAID",
        "totalPriceSet": {"shopMoney": {"amount": "0.00", "currencyCode": "EUR"}},
        "shippingAddress": {"address1": "1 Rue de la Paix", "city": "Paris", "zip": "75002", "countryCode": "FR"},
        "lineItems": [],
    }
    line = 0
    while len(json_dumps(order)) < payload_bytes:
        line += 1
        order["lineItems"].append(
            {
                "id": f"gid://shopify/LineItem/{line}",
                "sku": f"SKU-{line:04d}",
                "title": f"Stoneware mug, glaze {line}",
                "quantity": 1 + line % 3,
                "originalUnitPriceSet": {"shopMoney": {"amount": f"{12 + line}.90", "currencyCode": "EUR"}},
                "taxLines": [{"title": "TVA", "rate": "0.2", "priceSet": {"shopMoney": {"amount": "2.15"}}}],
            }
        )
    return order


def synthetic_versions(count: int, template: dict[str, Any], *, generation: int) -> Iterator[OrderVersion]:
    """`count` orders; generation 1 is new, generation 2 is an hour later: even orders changed, odd unchanged."""
    for number in range(1, count + 1):
        changed = generation == 2 and number % 2 == 0
        content_generation = 2 if changed else 1
        updated_at = T0 + timedelta(seconds=number % 86_400, hours=generation - 1)
        order_id = f"gid://shopify/Order/{number}"
        payload = {
            **template,
            "id": order_id,
            "name": f"#{number}",
            "updatedAt": updated_at.isoformat(),
            "totalPriceSet": {"shopMoney": {"amount": f"{number % 1000}.{content_generation:02d}"}},
        }
        yield OrderVersion(
            store=STORE,
            order_id=order_id,
            order_name=f"#{number}",
            updated_at=updated_at,
            content_hash=f"{number:032x}{content_generation:032x}",  # stands in for the real hash
            payload=payload,
        )


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def one_run(url: str, versions: int, batch_size: int, payload_bytes: int) -> dict[str, Any]:
    """Runs in a fresh process: migrate, stage generation 1, stage generation 2."""
    db = ConnectorDatabase(url)
    db.migrate()
    staging = OrderStaging(db, batch_size=batch_size)
    template = order_template(payload_bytes)
    started = time.perf_counter()
    for _ in synthetic_versions(versions, template, generation=1):
        pass
    generator_s = time.perf_counter() - started
    rss_before = peak_rss_mb()
    passes = {}
    for name, generation in (("new", 1), ("restage", 2)):
        started = time.perf_counter()
        counts = staging.stage(synthetic_versions(versions, template, generation=generation), run_id=name)
        elapsed = time.perf_counter() - started
        passes[name] = {"seconds": elapsed, "orders_per_s": versions / elapsed, "counts": counts.as_dict()}
    db.dispose()
    return {
        "payload_bytes": len(json_dumps(next(synthetic_versions(1, template, generation=1)).payload)),
        "generator_only_seconds": generator_s,
        "peak_rss_mb_before_staging": rss_before,
        "peak_rss_mb": peak_rss_mb(),
        "passes": passes,
    }


class ThrowAwayDatabases:
    """Creates one empty database per run (SQLite temp file or PostgreSQL database) and removes it after."""

    def __init__(self, engine_name: str, postgres_url: str) -> None:
        self.engine_name = engine_name
        self.postgres_url = postgres_url
        self._token = secrets.token_hex(3)

    def create(self, run: int) -> str:
        if self.engine_name == "sqlite":
            self._tmp = tempfile.TemporaryDirectory(prefix="x3sd-bench-")
            return f"sqlite:///{self._tmp.name}/staging.sqlite"
        self._name = f"x3sd_bench_{self._token}_{run}"
        self._admin(f'CREATE DATABASE "{self._name}"')
        return make_url(self.postgres_url).set(database=self._name).render_as_string(hide_password=False)

    def remove(self) -> None:
        if self.engine_name == "sqlite":
            self._tmp.cleanup()
        else:
            self._admin(f'DROP DATABASE IF EXISTS "{self._name}" WITH (FORCE)')

    def _admin(self, statement: str) -> None:
        engine = create_engine(self.postgres_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        with engine.connect() as connection:
            connection.exec_driver_sql(statement)
        engine.dispose()


def server_version(engine_name: str, postgres_url: str) -> str:
    if engine_name == "sqlite":
        return f"SQLite {sqlite3.sqlite_version}"
    engine = create_engine(postgres_url, poolclass=NullPool)
    with engine.connect() as connection:
        version = str(connection.execute(text("SHOW server_version")).scalar_one())
    engine.dispose()
    return f"PostgreSQL {version}"


def bench_engine(engine_name: str, args: argparse.Namespace) -> dict[str, Any]:
    databases = ThrowAwayDatabases(engine_name, args.postgres_url)
    spawn = multiprocessing.get_context("spawn")
    runs = []
    for run in range(1, args.runs + 1):
        url = databases.create(run)
        try:
            with spawn.Pool(1) as pool:
                result = pool.apply(one_run, (url, args.versions, args.batch_size, args.payload_bytes))
        finally:
            databases.remove()
        runs.append(result)
        new, restage = result["passes"]["new"], result["passes"]["restage"]
        print(
            f"  {engine_name} run {run}: new {new['orders_per_s']:,.0f} orders/s, "
            f"restage {restage['orders_per_s']:,.0f} orders/s, peak RSS {result['peak_rss_mb']:.0f} MB",
            flush=True,
        )
    return {
        "server": server_version(engine_name, args.postgres_url),
        "new_orders_per_s_median": statistics.median(r["passes"]["new"]["orders_per_s"] for r in runs),
        "restage_orders_per_s_median": statistics.median(r["passes"]["restage"]["orders_per_s"] for r in runs),
        "peak_rss_mb_median": statistics.median(r["peak_rss_mb"] for r in runs),
        "peak_rss_mb_max": max(r["peak_rss_mb"] for r in runs),
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1000, help="OrderStaging batch_size")
    parser.add_argument("--payload-bytes", type=int, default=4096)
    parser.add_argument("--engines", default="sqlite,postgres")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL, help="maintenance connection")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)

    results: dict[str, Any] = {
        "benchmark": "OrderStaging.stage",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "sqlalchemy": sqlalchemy.__version__,
            "platform": platform.platform(),
        },
        "parameters": {
            "versions": args.versions,
            "runs": args.runs,
            "batch_size": args.batch_size,
            "payload_bytes": args.payload_bytes,
        },
        "engines": {},
    }
    for engine_name in [name.strip() for name in args.engines.split(",") if name.strip()]:
        print(f"{engine_name}: {args.runs} runs of {args.versions:,} versions", flush=True)
        summary = bench_engine(engine_name, args)
        results["engines"][engine_name] = summary
        print(
            f"{engine_name} median: new {summary['new_orders_per_s_median']:,.0f} orders/s, "
            f"restage {summary['restage_orders_per_s_median']:,.0f} orders/s, "
            f"peak RSS {summary['peak_rss_mb_median']:.0f} MB (max {summary['peak_rss_mb_max']:.0f} MB)",
            flush=True,
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
