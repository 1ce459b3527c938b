"""Retry policy: which failures are worth another attempt, and how long to wait before it.

Exponential backoff with full jitter (wait = uniform(0, min(cap, base * 2**n))), bounded both by a number of
attempts and by a total time budget. Waits Shopify asks for explicitly (``Retry-After``, throttle restore
time) are honoured as they are, within the same budget.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6  # attempts in total, the first one included
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    max_total_s: float = 120.0  # no new attempt starts once this much time went by since the first
    default_retry_after_s: float = 1.0  # Shopify: "The recommended backoff time is one second."
    random: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay_s < 0 or self.max_delay_s < 0 or self.max_total_s < 0:
            raise ValueError("delays must not be negative")

    def backoff_s(self, retry_number: int) -> float:
        """Full-jitter wait before retry ``retry_number`` (1 for the first retry)."""
        ceiling = min(self.max_delay_s, self.base_delay_s * (2 ** (retry_number - 1)))
        return ceiling * self.random()

    def retry_after_s(self, header_value: str | None) -> float:
        """Wait asked for by a 429 ``Retry-After`` header (seconds, possibly fractional); 1 s if absent."""
        if header_value:
            try:
                value = float(header_value)
            except ValueError:
                value = -1.0  # an HTTP date or garbage: fall back to the documented default
            if 0 <= value < float("inf"):
                return min(value, self.max_delay_s)
        return self.default_retry_after_s

    def allows(self, *, attempts_made: int, elapsed_s: float, wait_s: float) -> bool:
        """Whether another attempt may start after waiting ``wait_s``."""
        return attempts_made < self.max_attempts and elapsed_s + wait_s <= self.max_total_s
