"""Shopify's per app+store leaky bucket, on the real monotonic clock."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ThrottleStatus:
    maximum_available: float
    currently_available: int
    restore_rate: float

    def as_json(self) -> dict[str, float | int]:
        return {"maximumAvailable": self.maximum_available, "currentlyAvailable": self.currently_available,
                "restoreRate": self.restore_rate}


class LeakyBucket:
    """Points refill continuously at ``restore_rate`` per second up to ``size``.

    A query is admitted only when the bucket holds its *requested* cost; after execution the difference to
    the *actual* cost is given back.
    """

    def __init__(self, size: float, restore_rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._size = float(size)
        self._rate = float(restore_rate)
        self._available = float(size)
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._available = min(self._size, self._available + (now - self._stamp) * self._rate)
        self._stamp = now

    def try_take(self, cost: int) -> bool:
        with self._lock:
            self._refill()
            if cost > self._available:
                return False
            self._available -= cost
            return True

    def give_back(self, points: int) -> None:
        with self._lock:
            self._refill()
            self._available = min(self._size, self._available + max(0, points))

    def reconfigure(self, size: float | None = None, restore_rate: float | None = None) -> None:
        with self._lock:
            self._refill()
            if size is not None:
                self._size = float(size)
                self._available = min(self._available, self._size)
            if restore_rate is not None:
                self._rate = float(restore_rate)

    def refill_completely(self) -> None:
        with self._lock:
            self._available = self._size
            self._stamp = self._clock()

    def status(self) -> ThrottleStatus:
        with self._lock:
            self._refill()
            return ThrottleStatus(self._size, int(self._available), self._rate)
