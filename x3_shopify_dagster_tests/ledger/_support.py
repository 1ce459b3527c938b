"""Helpers shared by the ledger tests and the crash worker: clocks, source versions, and the adapters that
turn X3 client calls into the plain `send` / `lookup` callables of the exactly-once protocol."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from x3_shopify_dagster.posting.x3_errors import classify_x3_error, invoice_found, invoice_result
from x3_shopify_dagster.storage.exactly_once import RemoteResult
from x3_shopify_dagster.storage.ledger import RecordKind, SourceVersion
from x3_shopify_dagster.x3 import (
    BasicAuth,
    RetryPolicy,
    X3Client,
    X3Config,
)

STORE = "eu"
PARTITION = "2026-11-27"
T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
FAST_RETRY = RetryPolicy(max_attempts=3, base_delay_s=0.01, max_delay_s=0.02)


class ManualClock:
    """An injectable, thread-safe clock that moves only when told to."""

    def __init__(self, now: datetime = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)) -> None:
        self._now = now
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)


class OffsetClock:
    """The real UTC time shifted by `offset_s`: a run starting after a lease has expired, without waiting."""

    def __init__(self, offset_s: float = 0.0) -> None:
        self.offset = timedelta(seconds=offset_s)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


def order_version(
    number: int,
    minutes: float = 0,
    *,
    content: str = "v1",
    store: str = STORE,
    partition: str = PARTITION,
    amount: str | None = "19.90",
    currency: str = "EUR",
) -> SourceVersion:
    return SourceVersion(
        store=store,
        kind=RecordKind.ORDER,
        source_id=f"gid://shopify/Order/{number}",
        updated_at=T0 + timedelta(minutes=minutes),
        content_hash=f"hash-{number}-{content}",
        partition=partition,
        name=f"#{1000 + number}",
        amount=Decimal(amount) if amount is not None else None,
        currency=currency,
        payload={"id": number, "content": content, "total": amount},
    )


# ------------------------------------------------------------------------------------------- X3 adapters
# The product's own adapters (the posting flow uses the same ones): re-exported for the tests and the worker.
__all__ = ["classify_x3_error", "invoice_found", "invoice_result"]


def invoice_payload(reference: str, *, customer: str = "FR0001") -> dict[str, Any]:
    """A minimal YSIH invoice the sandbox accepts: one grinder at 100.00 excl. tax, FRN 20 %."""
    return {
        "SIH0_1": {"BPCINV": customer, "SALFCY": "FR011", "INVDAT": "20261127", "BPRVCR": reference},
        "SIH4_1": [
            {
                "LINTYP": "1",
                "ITMREF": "ESP-GRINDER-01",
                "QTY": "1",
                "GROPRI": "100.00",
                "VACITM": "FRN",
                "CCE": "WEB-EU",
            }
        ],
    }


@dataclass
class X3Endpoint:
    """How to reach a sandbox (picklable: handed to child processes on stdin, never on the command line)."""

    base_url: str
    folder: str
    pool_alias: str
    user: str
    password: str = field(repr=False)

    def client(self) -> X3Client:
        config = X3Config(
            server_url=self.base_url, folder=self.folder, pool_alias=self.pool_alias, retry=FAST_RETRY
        )
        return X3Client(config, BasicAuth(self.user, self.password))


@dataclass
class InvoiceWriter:
    """`send` / `lookup` for one invoice on X3, counting the calls made."""

    client: X3Client
    reference: str
    customer: str = "FR0001"
    sends: int = 0
    lookups: int = 0

    def send(self) -> RemoteResult:
        self.sends += 1
        return invoice_result(
            self.client.save("YSIH", invoice_payload(self.reference, customer=self.customer))
        )

    def lookup(self) -> RemoteResult | None:
        self.lookups += 1
        return invoice_found(self.client.find_invoice_by_reference(self.reference))


# ------------------------------------------------------------------------------------------ worker processes
WORKER_MODULE = "x3_shopify_dagster_tests.ledger.crash_worker"
WORKER_TIMEOUT_S = 60


@dataclass
class Job:
    """What one crash_worker process does (sent as JSON on its stdin)."""

    database_url: str
    x3: dict[str, str]
    key: str
    reference: str
    owner: str
    lease_s: float
    record_id: int | None = None
    crash_at: str | None = None  # a ProtocolStep value
    wait_for_go: bool = False


class Worker:
    """One crash_worker child process."""

    def __init__(self, job: Job, cwd: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", WORKER_MODULE],
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(json.dumps(asdict(job)) + "\n")
        self.process.stdin.flush()

    def wait_ready(self) -> None:
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if line != "ready":
            self.finish()
            raise AssertionError(f"worker did not start: {line!r}")

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def finish(self) -> tuple[int, list[str], str]:
        """Exit code, the stdout lines not read yet, stderr."""
        try:
            stdout, stderr = self.process.communicate(timeout=WORKER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            stdout, stderr = self.process.communicate()
        return self.process.returncode, stdout.splitlines(), stderr

    def report(self) -> dict[str, Any]:
        code, lines, stderr = self.finish()
        assert code == 0, f"worker failed ({code}): {lines} {stderr[-2000:]}"
        return dict(json.loads(lines[-1]))
