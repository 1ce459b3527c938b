"""Injectable faults: armed by tests or the demo, consumed by matching requests."""

from __future__ import annotations

import threading
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal, get_args

FaultKind = Literal[
    "http_500",  # plain HTTP 500 "Internal Server Error" (text/plain) before any processing
    "no_web_services",  # SOAP: HTTP 500 fault "No Web services accepted" (host has no WS children)
    "pool_timeout",  # SOAP: HTTP 500 fault, as when no pool client frees up within the wait limit
    "locked_record",  # api1: 200 + transient $diagnoses; SOAP: status 0, "Record locked by another user"
    "latency",  # adds latency_s before answering (inside the pool slot for SOAP)
    "drop_connection",  # the request IS processed, then the connection closes without any response
    "expire_access_tokens",  # every bearer token issued so far expires before this request is checked
    "soap_fault",  # SOAP: a soapenv:Fault (HTTP 500, or the http_status given)
]
FAULT_KINDS: frozenset[str] = frozenset(get_args(FaultKind))
SOAP_ONLY_KINDS = frozenset({"no_web_services", "pool_timeout", "soap_fault"})


@dataclass
class Fault:
    kind: FaultKind
    remaining: int | None  # None: until cleared
    path_contains: str | None
    latency_s: float | None
    http_status: int | None

    def matches(self, target: str) -> bool:
        return self.path_contains is None or self.path_contains in target


class FaultInjector:
    """Thread-safe list of armed faults, consumed first-armed first.

    `path_contains` is matched against `<path>?<raw query>` for HTTP routes and, for SOAP calls,
    `<path> <operation>/<publicName>` (e.g. "actionObject/YSIH").
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def inject(self, kind: FaultKind, *, times: int | None = 1, path_contains: str | None = None,
               latency_s: float | None = None, http_status: int | None = None) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {sorted(FAULT_KINDS)}")
        if times is not None and times < 1:
            raise ValueError("times must be at least 1 (or None for 'until cleared')")
        if kind == "latency" and (latency_s is None or latency_s < 0):
            raise ValueError("a latency fault needs latency_s >= 0")
        with self._lock:
            self._faults.append(Fault(kind, times, path_contains, latency_s, http_status))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[Fault]:
        with self._lock:
            return [Fault(f.kind, f.remaining, f.path_contains, f.latency_s, f.http_status) for f in self._faults]

    def take(self, kinds: Collection[str], target: str) -> Fault | None:
        """Consume one use of the first armed fault of one of `kinds` matching `target`."""
        with self._lock:
            for fault in self._faults:
                if fault.kind in kinds and fault.matches(target):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining == 0:
                            self._faults.remove(fault)
                    return fault
            return None
