"""Partitions mean "changes that happened in this business day" (flows.md §1) and the pull window rules (§6)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from x3_shopify_dagster.domain.windows import Window, business_day, day_window, days_between, pull_window


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_business_day_is_in_the_configured_timezone():
    window = day_window(date(2026, 11, 27), "Europe/Paris")
    assert window == Window(utc(2026, 11, 26, 23), utc(2026, 11, 27, 23))
    # 23:30 UTC on the 27th is already the 28th in Paris: that order belongs to the next partition.
    assert business_day(utc(2026, 11, 27, 23, 30), "Europe/Paris") == date(2026, 11, 28)


def test_dst_days_are_23_and_25_hours_long():
    spring = day_window(date(2026, 3, 29), "Europe/Paris")
    autumn = day_window(date(2026, 10, 25), "Europe/Paris")
    assert spring.end - spring.start == timedelta(hours=23)
    assert autumn.end - autumn.start == timedelta(hours=25)


def test_backfill_pulls_the_whole_past_day():
    day = day_window(date(2026, 11, 20), "UTC")
    window = pull_window(day, now=utc(2026, 11, 27, 12), safety_lag=timedelta(minutes=1),
                         overlap=timedelta(minutes=10))
    assert window == day


def test_today_stops_at_the_safety_lag():
    day = day_window(date(2026, 11, 27), "UTC")
    window = pull_window(day, now=utc(2026, 11, 27, 12), safety_lag=timedelta(minutes=1),
                         overlap=timedelta(minutes=10))
    assert window == Window(utc(2026, 11, 27), utc(2026, 11, 27, 11, 59))


def test_sensor_window_is_widened_by_the_overlap_but_stays_in_the_partition():
    day = day_window(date(2026, 11, 27), "UTC")
    window = pull_window(day, now=utc(2026, 11, 27, 12), safety_lag=timedelta(minutes=1),
                         overlap=timedelta(minutes=10), since=utc(2026, 11, 27, 11), until=utc(2026, 11, 27, 11, 30))
    assert window == Window(utc(2026, 11, 27, 10, 50), utc(2026, 11, 27, 11, 30))
    early = pull_window(day, now=utc(2026, 11, 27, 12), safety_lag=timedelta(0), overlap=timedelta(minutes=10),
                        since=utc(2026, 11, 27, 0, 5), until=utc(2026, 11, 27, 1))
    assert early.start == day.start  # never reaches into the previous day's partition


def test_future_partition_gives_an_empty_window():
    day = day_window(date(2026, 11, 28), "UTC")
    assert pull_window(day, now=utc(2026, 11, 27, 12), safety_lag=timedelta(0), overlap=timedelta(0)).is_empty


def test_days_between_spans_midnight_in_the_business_timezone():
    days = days_between(utc(2026, 11, 26, 22, 30), utc(2026, 11, 27, 23, 30), "Europe/Paris")
    assert days == [date(2026, 11, 26), date(2026, 11, 27), date(2026, 11, 28)]


def test_naive_bounds_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        Window(datetime(2026, 1, 1), datetime(2026, 1, 2))
