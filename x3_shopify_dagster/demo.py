"""Demo launcher: the sandboxes plus a local Dagster home, UI with sensors on and demo traffic flowing.

``x3sd-demo`` (or ``make demo``) starts the Shopify sandbox (two stores, seeded history, a traffic generator),
points the connector at it through environment variables, and runs ``dagster dev`` (webserver + daemon) on a
persistent Dagster home under ``.demo/``. This module and the tests are the only places that import the
sandboxes; the connector itself only ever sees URLs and credentials.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

from x3_shopify_dagster.sandboxes import demo_data
from x3_shopify_dagster.sandboxes.shopify import SandboxConfig, ShopifySandbox
from x3_shopify_dagster.sandboxes.x3 import X3Sandbox, X3SandboxConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_MAPPING = Path(__file__).resolve().parent / "demo_mapping.yaml"
DEMO_STORES = ("eu", "us")


def demo_environment(
    shopify: ShopifySandbox, x3: X3Sandbox, home: Path, *, sensor_interval_s: int
) -> dict[str, str]:
    """The X3SD_* settings that point the connector at the sandboxes."""
    user, password = x3.basic_credentials
    env = {
        "DAGSTER_HOME": str(home / "dagster_home"),
        "X3SD_DATABASE_URL": f"sqlite:///{home / 'connector.db'}",
        "X3SD_PARTITION_TIMEZONE": "Europe/Paris",
        "X3SD_PARTITION_START_DATE": (datetime.now(UTC).date() - timedelta(days=7)).isoformat(),
        "X3SD_SENSORS_RUNNING_BY_DEFAULT": "true",
        "X3SD_SENSOR_INTERVAL_SECONDS": str(sensor_interval_s),
        "X3SD_SHOPIFY_SAFETY_LAG_SECONDS": "5",
        "X3SD_X3__SERVER_URL": x3.base_url,
        "X3SD_X3__FOLDER": x3.folder,
        "X3SD_X3__USER": user,
        "X3SD_X3__PASSWORD": password,
        "X3SD_MAPPING_PATH": str(DEMO_MAPPING),
        "X3SD_X3_SNAPSHOT_CRON": "*/2 * * * *",
    }
    for store in DEMO_STORES:
        prefix = f"X3SD_STORES__{store.upper()}__"
        env[prefix + "SHOP_URL"] = shopify.shop_url(store)
        env[prefix + "ACCESS_TOKEN"] = shopify.access_token(store)
        # Every Shopify location of the demo store ships from the X3 site that serves the store.
        site = next(demo.x3_site for demo in demo_data.STORES if demo.key == store)
        locations = {str(location.legacy_id): site for location in shopify.state.store(store).locations}
        env[prefix + "LOCATION_SITES"] = json.dumps(locations)
        # Stock sync: the store's X3 site feeds its first (default) Shopify location.
        data = shopify.state.store(store)
        env[f"{prefix}LOCATIONS__{data.demo.x3_site}"] = f"gid://shopify/Location/{data.default_location.legacy_id}"
    env["X3SD_STOCK_SENSOR_INTERVAL_SECONDS"] = str(sensor_interval_s)
    return env


def _prepare_home(home: Path) -> None:
    dagster_home = home / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="x3sd-demo", description=__doc__.splitlines()[0])
    parser.add_argument("--home", default=str(REPO_ROOT / ".demo"), help="demo state folder (default .demo/)")
    parser.add_argument("--ui-port", type=int, default=3000)
    parser.add_argument("--shopify-port", type=int, default=8701)
    parser.add_argument("--x3-port", type=int, default=8702)
    parser.add_argument("--traffic-interval", type=float, default=3.0, help="seconds between demo events")
    parser.add_argument("--sensor-interval", type=int, default=15)
    parser.add_argument("--no-ui", action="store_true", help="run the sandboxes only (for scripted checks)")
    args = parser.parse_args(argv)

    home = Path(args.home).resolve()
    _prepare_home(home)
    shopify = ShopifySandbox(SandboxConfig(stores=DEMO_STORES, seed=7, orders_per_store=40, history_days=5))
    shopify.start(host="127.0.0.1", port=args.shopify_port)
    if args.traffic_interval > 0:
        shopify.start_traffic(interval_s=args.traffic_interval)
    x3 = X3Sandbox(X3SandboxConfig(folder="SEED", seed=7)).start(host="127.0.0.1", port=args.x3_port)
    env = {**os.environ, **demo_environment(shopify, x3, home, sensor_interval_s=args.sensor_interval)}
    print(f"Shopify sandbox: {shopify.base_url} (stores: {', '.join(DEMO_STORES)})", flush=True)
    print(f"Sage X3 sandbox: {x3.base_url} (folder SEED)", flush=True)

    stopping = False

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    process: subprocess.Popen[bytes] | None = None
    try:
        if not args.no_ui:
            command = [sys.executable, "-m", "dagster", "dev", "-w", str(REPO_ROOT / "workspace.yaml"),
                       "-h", "127.0.0.1", "-p", str(args.ui_port)]
            process = subprocess.Popen(command, env=env, cwd=REPO_ROOT)  # noqa: S603 - fixed argv
            print(f"Dagster UI: http://127.0.0.1:{args.ui_port} (sensors on; Ctrl-C stops everything)", flush=True)
        while not stopping and (process is None or process.poll() is None):
            time.sleep(0.5)
    finally:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        shopify.stop()
        x3.stop()
    return 0 if process is None or process.returncode in (0, -signal.SIGINT, None) else process.returncode


if __name__ == "__main__":
    raise SystemExit(main())
