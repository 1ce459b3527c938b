"""The classic SOAP web-service pool: at most `size` calls run at once, others queue up to `wait_s`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass


class PoolTimeout(Exception):
    """No client of the pool became free within the wait limit."""


@dataclass(frozen=True)
class PoolSlot:
    entry_index: int  # poolEntryIdx: which pool client serves the call
    waited_s: float  # poolWaitDuration
    busy: bool  # the call had to queue


@dataclass(frozen=True)
class PoolStats:
    alias: str
    size: int
    in_use: int
    waiting: int
    peak_in_use: int
    served: int
    timeouts: int


class WebServicePool:
    """Must be created and used on the server's event loop (asyncio primitives bind to it)."""

    def __init__(self, alias: str, size: int, wait_s: float) -> None:
        self.alias = alias
        self.size = size
        self.wait_s = wait_s
        self._semaphore = asyncio.Semaphore(size)
        self._free_entries = list(range(size))
        self._in_use = 0
        self._waiting = 0
        self._peak = 0
        self._served = 0
        self._timeouts = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[PoolSlot]:
        started = time.perf_counter()
        busy = self._semaphore.locked()
        self._waiting += 1
        try:
            async with asyncio.timeout(self.wait_s):
                await self._semaphore.acquire()
        except TimeoutError:
            self._timeouts += 1
            raise PoolTimeout(
                f"Pool timeout: no client available in pool '{self.alias}' within {self.wait_s:g} s "
                f"({self.size} busy)") from None
        finally:
            self._waiting -= 1
        entry = self._free_entries.pop(0)
        self._in_use += 1
        self._peak = max(self._peak, self._in_use)
        try:
            yield PoolSlot(entry, time.perf_counter() - started, busy)
        finally:
            self._in_use -= 1
            self._served += 1
            self._free_entries.append(entry)
            self._semaphore.release()

    def stats(self) -> PoolStats:
        return PoolStats(self.alias, self.size, self._in_use, self._waiting, self._peak, self._served,
                         self._timeouts)
