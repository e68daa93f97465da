"""Calendar-aware freshness: how long a source has been quiet, counted in its publisher's calendar.

Pure logic, no Dagster and no database: for weekday sources (the Federal Register) only U.S.
federal business days count, so a weekend or a holiday without documents is not staleness.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

from va_signals.catalog.models import Cadence, Source

# Federal Register issues are dated in Eastern time, and so are its business days.
PUBLISHER_TIMEZONE = ZoneInfo("America/New_York")
# Business hours are counted over at most this span; an older mark is stale whatever it is.
_MAX_COUNTED_SPAN = timedelta(days=366)


@lru_cache(maxsize=1)
def federal_closures() -> holidays.HolidayBase:
    """Days the federal government is closed: the Federal Register publishes no issue on them.

    The `holidays` package's U.S. "government" category is the OPM calendar: the 11 federal
    holidays of 5 U.S.C. 6103 with their observed weekdays, plus closures by executive order
    (Christmas Eve 2024, the day of mourning of 2025-01-09) on which no issue appeared either.
    A market calendar would be wrong twice over: NYSE closes on Good Friday, when the Register
    publishes, and opens on Columbus and Veterans Day, when it does not.
    """
    return holidays.country_holidays("US", categories=("government",), observed=True)


def is_business_day(day: date) -> bool:
    """True on the days the Federal Register publishes: Monday to Friday, not a closure."""
    return day.weekday() < 5 and day not in federal_closures()


def counted_hours(cadence: Cadence, since: datetime, until: datetime) -> float:
    """Hours from `since` to `until` that count towards staleness for a source of `cadence`.

    Weekday sources count business days only; the others count every hour. Spans longer than
    a year are counted as a year.
    """
    since = max(since, until - _MAX_COUNTED_SPAN)
    if until <= since:
        return 0.0
    if cadence is not Cadence.WEEKDAYS:
        return _elapsed_seconds(since, until) / 3600
    return _business_seconds(since, until) / 3600


def _elapsed_seconds(since: datetime, until: datetime) -> float:
    # In UTC: Python ignores DST when subtracting two times that share one zone object.
    return (until.astimezone(UTC) - since.astimezone(UTC)).total_seconds()


def _business_seconds(since: datetime, until: datetime) -> float:
    start = since.astimezone(PUBLISHER_TIMEZONE)
    end = until.astimezone(PUBLISHER_TIMEZONE)
    total = 0.0
    day = start.date()
    while day <= end.date():
        if is_business_day(day):
            day_start = datetime.combine(day, time.min, PUBLISHER_TIMEZONE)
            day_end = datetime.combine(day + timedelta(days=1), time.min, PUBLISHER_TIMEZONE)
            low, high = max(start, day_start), min(end, day_end)
            if high > low:
                total += _elapsed_seconds(low, high)
        day += timedelta(days=1)
    return total


@dataclass(frozen=True)
class Staleness:
    """One freshness measure of one source: from when, how old, against what limit."""

    measured_from: datetime | None
    age_hours: float | None
    limit_hours: float
    business_hours: bool
    stale: bool
    reason: str


def assess_freshness(source: Source, last_good_run_at: datetime | None, now: datetime) -> Staleness:
    """Whether the source's last SUCCESS or NO_DATA run is within its freshness SLA."""
    return _assess(source, last_good_run_at, now, source.freshness_sla_hours, "good run")


def assess_presence(
    source: Source, last_new_documents_at: datetime | None, now: datetime
) -> Staleness | None:
    """Whether the source stored new documents within its presence window; None without one."""
    window = source.quality.presence_window_hours
    if window is None:
        return None
    return _assess(source, last_new_documents_at, now, window, "run that stored new documents")


def _assess(
    source: Source, mark: datetime | None, now: datetime, limit: float, what: str
) -> Staleness:
    business = source.cadence is Cadence.WEEKDAYS
    unit = "business hours" if business else "hours"
    if mark is None:
        return Staleness(None, None, limit, business, True, f"no {what} on record")
    age = counted_hours(source.cadence, mark, now)
    stale = age > limit
    verdict = "over" if stale else "within"
    reason = f"last {what} {age:.1f} {unit} ago, {verdict} the {limit:g} h limit"
    return Staleness(mark, round(age, 2), limit, business, stale, reason)
