"""`python -m x3_shopify_dagster.sandboxes.x3`: starts, prints where and how to connect, stops on SIGTERM."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import httpx


def test_cli_serves_the_folder_it_prints() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "x3_shopify_dagster.sandboxes.x3", "--port", "0", "--folder", "DEMO",
         "--pool-size", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(9)]
        banner = "".join(lines)
        base_url = re.search(r"listening on (http://127\.0\.0\.1:\d+)", banner).group(1)  # type: ignore[union-attr]
        user, password = re.search(r"Basic:\s+user=(\S+) password=(\S+)", banner).groups()  # type: ignore[union-attr]
        assert "client_id=" in banner
        assert "pool:   size 2" in banner

        response = httpx.get(f"{base_url}/api1/x3/erp/DEMO/FACILITY?representation=FACILITY.$query",
                             auth=(user, password))
        assert response.status_code == 200
        assert [row["FCY"] for row in response.json()["$resources"]] == ["FR011", "US011"]
    finally:
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=20)
    assert process.returncode == 0, errors
