"""Query cost: parsing ``extensions.cost``, pacing on the leaky bucket, and counting what was spent.

Shopify refuses a query unless the app's bucket holds its *requested* cost; the bucket refills at
``restoreRate`` points per second up to ``maximumAvailable``. Both numbers are read from every response and
never assumed (Standard plans return 2000/100, Plus 20000/1000, and Shopify may lower them temporarily).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class ThrottleStatus:
    maximum_available: float
    currently_available: float
    restore_rate: float


@dataclass(frozen=True)
class QueryCost:
    requested_query_cost: int | None
    actual_query_cost: int | None
    throttle_status: ThrottleStatus | None

    @classmethod
    def from_extensions(cls, extensions: Mapping[str, Any] | None) -> QueryCost | None:
        cost = (extensions or {}).get("cost")
        if not isinstance(cost, Mapping):
            return None
        status = cost.get("throttleStatus")
        throttle = None
        if isinstance(status, Mapping):
            try:
                throttle = ThrottleStatus(
                    maximum_available=float(status["maximumAvailable"]),
                    currently_available=float(status["currentlyAvailable"]),
                    restore_rate=float(status["restoreRate"]),
                )
            except (KeyError, TypeError, ValueError):
                throttle = None
        return cls(
            requested_query_cost=_int_or_none(cost.get("requestedQueryCost")),
            actual_query_cost=_int_or_none(cost.get("actualQueryCost")),
            throttle_status=throttle,
        )


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


class CostPacer:
    """Decides how long to wait before sending an operation so that it is not THROTTLED.

    It remembers the last throttle status (and when it was seen) and the last requested cost of each
    operation; the bucket is assumed to have refilled at ``restoreRate`` since. Unknown operations and an
    unknown bucket never wait: the first answer teaches both.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._status: ThrottleStatus | None = None
        self._seen_at: float = 0.0
        self._requested_by_operation: dict[str, int] = {}

    def observe(self, operation: str, cost: QueryCost | None, now: float) -> None:
        if cost is None:
            return
        with self._lock:
            if cost.requested_query_cost is not None:
                self._requested_by_operation[operation] = cost.requested_query_cost
            if cost.throttle_status is not None:
                self._status = cost.throttle_status
                self._seen_at = now

    def expected_cost(self, operation: str) -> int | None:
        with self._lock:
            return self._requested_by_operation.get(operation)

    def available_at(self, now: float) -> float | None:
        with self._lock:
            status, seen_at = self._status, self._seen_at
        if status is None:
            return None
        refilled = status.currently_available + status.restore_rate * max(0.0, now - seen_at)
        return min(status.maximum_available, refilled)

    def wait_before(self, operation: str, now: float) -> float:
        """Seconds to wait so that the bucket holds the operation's expected cost (0 when it already does)."""
        expected = self.expected_cost(operation)
        available = self.available_at(now)
        with self._lock:
            status = self._status
        if expected is None or available is None or status is None or status.restore_rate <= 0:
            return 0.0
        # A query bigger than the whole bucket can never fit; waiting for a full bucket is the best we can do
        # and the server's answer (MAX_COST_EXCEEDED from the client) tells the caller to ask for less.
        target = min(float(expected), status.maximum_available)
        if available >= target:
            return 0.0
        return (target - available) / status.restore_rate

    @property
    def throttle_status(self) -> ThrottleStatus | None:
        with self._lock:
            return self._status


@dataclass
class OperationMetrics:
    requests: int = 0
    retries: int = 0
    throttle_waits: int = 0
    throttle_wait_s: float = 0.0
    points_requested: int = 0
    points_spent: int = 0


@dataclass
class ClientMetrics:
    """Counters for one client: totals plus the same counters per operation name."""

    requests: int = 0  # HTTP requests sent, retries included
    retries: int = 0
    throttle_waits: int = 0  # waits before sending (pacing) or after THROTTLED/429
    throttle_wait_s: float = 0.0
    points_requested: int = 0  # sum of requestedQueryCost
    points_spent: int = 0  # sum of actualQueryCost
    by_operation: dict[str, OperationMetrics] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def _op(self, operation: str) -> OperationMetrics:
        return self.by_operation.setdefault(operation, OperationMetrics())

    def record_request(self, operation: str, *, retry: bool) -> None:
        with self._lock:
            op = self._op(operation)
            self.requests += 1
            op.requests += 1
            if retry:
                self.retries += 1
                op.retries += 1

    def record_wait(self, operation: str, seconds: float) -> None:
        with self._lock:
            op = self._op(operation)
            self.throttle_waits += 1
            op.throttle_waits += 1
            self.throttle_wait_s += seconds
            op.throttle_wait_s += seconds

    def record_cost(self, operation: str, cost: QueryCost | None) -> None:
        if cost is None:
            return
        with self._lock:
            op = self._op(operation)
            requested = cost.requested_query_cost or 0
            spent = cost.actual_query_cost or 0
            self.points_requested += requested
            op.points_requested += requested
            self.points_spent += spent
            op.points_spent += spent

    def snapshot(self) -> dict[str, Any]:
        """Plain dict of every counter (for Dagster metadata and logs)."""
        with self._lock:
            return {
                "requests": self.requests,
                "retries": self.retries,
                "throttle_waits": self.throttle_waits,
                "throttle_wait_s": round(self.throttle_wait_s, 3),
                "points_requested": self.points_requested,
                "points_spent": self.points_spent,
                "by_operation": {name: asdict(op) for name, op in sorted(self.by_operation.items())},
            }
