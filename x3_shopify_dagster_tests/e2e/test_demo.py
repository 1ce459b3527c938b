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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_demo_launcher_runs_sensor_triggered_materializations(tmp_path):
    ui_port = _free_port()
    log = (tmp_path / "demo.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "x3_shopify_dagster.demo", "--home", str(tmp_path / "demo"),
         "--ui-port", str(ui_port), "--shopify-port", "0", "--sensor-interval", "5", "--traffic-interval", "1"],
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
            if stores == {"eu", "us"}:
                break
        assert process.poll() is None, (tmp_path / "demo.log").read_text()[-3000:]
        stores = {tag["value"] for run in succeeded for tag in run["tags"] if tag["key"] == "x3sd/store"}
        assert stores == {"eu", "us"}, (tmp_path / "demo.log").read_text()[-3000:]
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
