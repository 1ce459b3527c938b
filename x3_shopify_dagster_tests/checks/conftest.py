"""`x3sd check` against the session sandboxes: settings as environment variables, the real CLI entry point."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import x3_shopify_dagster
from x3_shopify_dagster.cli import main

DEMO_MAPPING = Path(x3_shopify_dagster.__file__).parent / "demo_mapping.yaml"


def sandbox_env(shopify_sandbox, x3_sandbox) -> dict[str, str]:
    """Every variable a working set-up needs, pointed at the sandboxes and the demo mapping."""
    user, password = x3_sandbox.basic_credentials
    env = {
        "X3SD_X3__SERVER_URL": x3_sandbox.base_url,
        "X3SD_X3__FOLDER": x3_sandbox.folder,
        "X3SD_X3__USER": user,
        "X3SD_X3__PASSWORD": password,
        "X3SD_MAPPING_PATH": str(DEMO_MAPPING),
    }
    for store in ("eu", "us"):
        env[f"X3SD_STORES__{store.upper()}__SHOP_URL"] = shopify_sandbox.shop_url(store)
        env[f"X3SD_STORES__{store.upper()}__ACCESS_TOKEN"] = shopify_sandbox.access_token(store)
    return env


@dataclass(frozen=True)
class CheckRun:
    code: int
    out: str
    err: str

    def rows(self, system: str, name: str) -> list[list[str]]:
        """Table rows of one check as [system, check, status, detail] (columns are 2+ spaces apart)."""
        cells = [re.split(r"\s{2,}", line, maxsplit=3) for line in self.out.splitlines()]
        return [row for row in cells if row[:2] == [system, name]]

    def status(self, system: str, name: str) -> str:
        """OK or FAIL of a check that has exactly one row."""
        rows = self.rows(system, name)
        assert len(rows) == 1, f"expected one row {system} / {name} in:\n{self.out}"
        return rows[0][2]

    def fixes(self) -> list[str]:
        return [line for line in self.out.splitlines() if line.startswith("Fix: ")]


@pytest.fixture
def run_check(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
              capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[dict[str, str | None]], CheckRun]]:
    """Runs `x3sd check` with only the given X3SD_ variables (None removes one), from an empty directory."""
    monkeypatch.chdir(tmp_path)  # no stray .env file
    for name in list(os.environ):
        if name.upper().startswith("X3SD_"):
            monkeypatch.delenv(name)

    def run(env: dict[str, str | None]) -> CheckRun:
        for name, value in env.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        code = main(["check"])
        captured = capsys.readouterr()
        return CheckRun(code, captured.out, captured.err)

    return run
