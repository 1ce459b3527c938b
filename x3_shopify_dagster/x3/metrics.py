"""Thread-safe counters of what the X3 client did, for logs, run metadata and benchmarks."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class X3ClientMetrics:
    calls: Counter[tuple[str, str]] = field(
        default_factory=Counter
    )  # (transport, operation) -> HTTP attempts
    retries: Counter[tuple[str, str]] = field(default_factory=Counter)  # (transport, reason) -> retries
    pool_waits: int = 0  # SOAP calls that found every pool slot taken
    pool_wait_seconds: float = 0.0
    pool_wait_max_seconds: float = 0.0
    token_refreshes: int = 0
    unauthorized_retries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record_call(self, transport: str, operation: str) -> None:
        with self._lock:
            self.calls[(transport, operation)] += 1

    def record_retry(self, transport: str, reason: str) -> None:
        with self._lock:
            self.retries[(transport, reason)] += 1

    def record_pool_wait_started(self) -> None:
        with self._lock:
            self.pool_waits += 1

    def record_pool_wait(self, seconds: float) -> None:
        with self._lock:
            self.pool_wait_seconds += seconds
            self.pool_wait_max_seconds = max(self.pool_wait_max_seconds, seconds)

    def record_token_refresh(self) -> None:
        with self._lock:
            self.token_refreshes += 1

    def record_unauthorized_retry(self) -> None:
        with self._lock:
            self.unauthorized_retries += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "calls": {f"{t}.{o}": n for (t, o), n in sorted(self.calls.items())},
                "retries": {f"{t}.{r}": n for (t, r), n in sorted(self.retries.items())},
                "total_calls": sum(self.calls.values()),
                "total_retries": sum(self.retries.values()),
                "pool_waits": self.pool_waits,
                "pool_wait_seconds": round(self.pool_wait_seconds, 6),
                "pool_wait_max_seconds": round(self.pool_wait_max_seconds, 6),
                "token_refreshes": self.token_refreshes,
                "unauthorized_retries": self.unauthorized_retries,
            }
