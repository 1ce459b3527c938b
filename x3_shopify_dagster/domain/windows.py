"""Time windows: business-day partitions and the Shopify pull window inside them (flows.md §1, §6)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Window:
    """Half-open interval [start, end) in UTC."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("window bounds must be timezone-aware")

    @property
    def is_empty(self) -> bool:
        return self.end <= self.start

    def clamp(self, other: Window) -> Window:
        return Window(max(self.start, other.start), min(self.end, other.end))

    def to_utc(self) -> Window:
        return Window(self.start.astimezone(UTC), self.end.astimezone(UTC))


def day_window(day: date, timezone: str) -> Window:
    """The business day ``day`` in ``timezone`` as a UTC window (23 or 25 hours long on DST changes)."""
    tz = ZoneInfo(timezone)
    start = datetime.combine(day, time.min, tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=tz)
    return Window(start, end).to_utc()


def business_day(moment: datetime, timezone: str) -> date:
    """The business day a UTC instant falls in."""
    return moment.astimezone(ZoneInfo(timezone)).date()


def days_between(first: datetime, last: datetime, timezone: str) -> list[date]:
    """Every business day from the one holding ``first`` to the one holding ``last``, inclusive."""
    lo, hi = business_day(first, timezone), business_day(last, timezone)
    return [lo + timedelta(days=n) for n in range((hi - lo).days + 1)]


def pull_window(
    partition: Window,
    *,
    now: datetime,
    safety_lag: timedelta,
    overlap: timedelta,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Window:
    """What one run of a partition pulls from Shopify.

    A backfill pulls the whole partition; a sensor run hands over the sub-window it saw change ([since, until)),
    widened by ``overlap`` on the low side because Shopify's search index can lag behind ``updatedAt``. The high
    side never goes past ``now - safety_lag`` so that changes still being indexed are left for the next run.
    The result always stays inside the partition, so a run never stages another day's versions.
    """
    lo = partition.start if since is None else since - overlap
    hi = partition.end if until is None else until
    hi = min(hi, now - safety_lag)
    return Window(lo, hi).clamp(partition)
