"""Faults a test (or the demo) injects to see how clients cope with a misbehaving Shopify."""

from __future__ import annotations

import threading
from dataclasses import dataclass

FAULT_KINDS = ("http_500", "http_502", "http_503", "http_429", "throttled", "drop_connection", "latency",
               "timeout", "bulk_fail")
DEFAULT_RETRY_AFTER_S = 1.0
DEFAULT_TIMEOUT_S = 120.0  # "longer than any sane client timeout"


@dataclass
class Fault:
    kind: str
    store: str | None = None
    times: int | None = 1  # None: every matching request until cleared
    operation: str | None = None  # GraphQL operationName to match; None matches all
    retry_after: float | None = None
    latency_s: float | None = None

    def matches(self, store: str, operation: str | None) -> bool:
        return (self.store is None or self.store == store) and (
            self.operation is None or self.operation == operation)

    @property
    def sleep_s(self) -> float:
        if self.latency_s is not None:
            return self.latency_s
        return DEFAULT_TIMEOUT_S if self.kind == "timeout" else 0.0


class FaultInjector:
    """Thread-safe list of pending faults; the first match is consumed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def inject(self, kind: str, *, store: str | None = None, times: int | None = 1, operation: str | None = None,
               retry_after: float | None = None, latency_s: float | None = None) -> Fault:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 (or None for every request)")
        if kind == "latency" and latency_s is None:
            raise ValueError("a latency fault needs latency_s")
        fault = Fault(kind, store, times, operation, retry_after, latency_s)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def take(self, store: str, operation: str | None, *, bulk: bool = False) -> Fault | None:
        """Consume the first fault matching a request (``bulk=False``) or a bulk run (``bulk=True``)."""
        with self._lock:
            for fault in self._faults:
                if (fault.kind == "bulk_fail") == bulk and fault.matches(store, operation):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times == 0:
                            self._faults.remove(fault)
                    return fault
        return None
