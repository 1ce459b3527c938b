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
{ runsOrError(limit: 20) { ... on Runs { results { runId status tags { key value } } } } }
"""
INVOICES_QUERY = """
{ assetOrError(assetKey: {path: ["x3_sales_invoices"]}) { ... on Asset {
    assetMaterializations(limit: 10) { partition metadataEntries { label ... on IntMetadataEntry { intValue } } } } } }
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _posted(ui_port: int) -> int:
    response = httpx.post(f"http://127.0.0.1:{ui_port}/graphql", json={"query": INVOICES_QUERY}, timeout=5)
    asset = response.json()["data"]["assetOrError"]
    total = 0
    for event in asset.get("assetMaterializations") or []:
        for entry in event["metadataEntries"]:
            if entry["label"] == "orders_posted":
                total += entry.get("intValue") or 0
    return total


@pytest.mark.slow
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
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(3)
            try:
                response = httpx.post(f"http://127.0.0.1:{ui_port}/graphql", json={"query": RUNS_QUERY}, timeout=5)
            except httpx.HTTPError:
                continue
            runs = response.json()["data"]["runsOrError"]["results"]
            succeeded = [run for run in runs if run["status"] == "SUCCESS"]
            stores = {tag["value"] for run in succeeded for tag in run["tags"] if tag["key"] == "x3sd/store"}
            if stores == {"eu", "us"} and _posted(ui_port) > 0:
                break
        assert process.poll() is None, (tmp_path / "demo.log").read_text()[-3000:]
        stores = {tag["value"] for run in succeeded for tag in run["tags"] if tag["key"] == "x3sd/store"}
        assert stores == {"eu", "us"}, (tmp_path / "demo.log").read_text()[-3000:]
        # Sandbox orders became posted sandbox X3 invoices through the sensor-triggered runs.
        assert _posted(ui_port) > 0, (tmp_path / "demo.log").read_text()[-3000:]
        assert all(
            any(tag["key"] == "dagster/sensor_name" and tag["value"] == "shopify_orders_sensor" for tag in run["tags"])
            for run in succeeded
        )
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
    text = (tmp_path / "demo.log").read_text()
    assert "shpat_" not in text, "an access token reached the demo output"
