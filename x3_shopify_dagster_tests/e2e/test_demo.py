"""The README's demo command end to end: sandboxes + dagster dev, sensor on, runs staging orders (slow)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]

RUNS_QUERY = """
{ runsOrError(limit: 200) { ... on Runs { results { runId status tags { key value } } } } }
"""
METADATA_QUERY = """
query ($asset: [String!]!) { assetOrError(assetKey: {path: $asset}) { ... on Asset {
    assetMaterializations(limit: 50) { partition metadataEntries { label ... on IntMetadataEntry { intValue } } } } } }
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _total(ui_port: int, asset: str, label: str) -> int:
    """Sum of an integer metadata entry over the asset's latest materializations, read from the UI's GraphQL API."""
    response = httpx.post(f"http://127.0.0.1:{ui_port}/graphql",
                          json={"query": METADATA_QUERY, "variables": {"asset": [asset]}}, timeout=5)
    found = response.json()["data"]["assetOrError"]
    total = 0
    for event in found.get("assetMaterializations") or []:
        for entry in event["metadataEntries"]:
            if entry["label"] == label:
                total += entry.get("intValue") or 0
    return total


def _flows(ui_port: int) -> dict[str, int]:
    """What the demo's traffic has been through: invoices posted, deliveries validated, Shopify levels set."""
    return {
        "invoices posted": _total(ui_port, "x3_sales_invoices", "orders_posted"),
        "deliveries validated": _total(ui_port, "x3_deliveries", "fulfillments_delivered"),
        "stock levels set": _total(ui_port, "shopify_inventory_levels", "quantities_set"),
    }


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_demo_launcher_runs_sensor_triggered_materializations(tmp_path):
    ui_port = _free_port()
    log = (tmp_path / "demo.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "x3_shopify_dagster.demo", "--home", str(tmp_path / "demo"),
         "--ui-port", str(ui_port), "--shopify-port", "0", "--x3-port", "0", "--sensor-interval", "5",
         "--traffic-interval", "1"],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    succeeded: list[dict] = []
    try:
        deadline = time.monotonic() + 420
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(3)
            try:
                response = httpx.post(f"http://127.0.0.1:{ui_port}/graphql", json={"query": RUNS_QUERY}, timeout=5)
            except httpx.HTTPError:
                continue
            runs = response.json()["data"]["runsOrError"]["results"]
            succeeded = [run for run in runs if run["status"] == "SUCCESS"]
            stores = {tag["value"] for run in succeeded for tag in run["tags"] if tag["key"] == "x3sd/store"}
            if stores == {"eu", "us"} and all(_flows(ui_port).values()):
                break
        assert process.poll() is None, (tmp_path / "demo.log").read_text()[-3000:]
        stores = {tag["value"] for run in succeeded for tag in run["tags"] if tag["key"] == "x3sd/store"}
        assert stores == {"eu", "us"}, (tmp_path / "demo.log").read_text()[-3000:]
        # Sandbox orders became posted X3 invoices, their fulfilments validated X3 deliveries, and the stock those
        # deliveries issued in X3 came back to Shopify's levels: every flow ran from its own sensor.
        flows = _flows(ui_port)
        assert all(flows.values()), (flows, (tmp_path / "demo.log").read_text()[-3000:])
        sensors = {tag["value"] for run in succeeded for tag in run["tags"] if tag["key"] == "dagster/sensor_name"}
        assert {"shopify_orders_sensor", "shopify_fulfillments_sensor", "x3_stock_sensor"} <= sensors, sensors
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
    text = (tmp_path / "demo.log").read_text()
    assert "shpat_" not in text, "an access token reached the demo output"
