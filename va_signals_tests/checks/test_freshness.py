"""Calendar-aware freshness: holidays and weekends are not stale, the next business day is."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import holidays
import pytest

from va_signals.catalog import Cadence, default_catalog
from va_signals.checks.freshness import (
    assess_freshness,
    assess_presence,
    counted_hours,
    is_business_day,
)
from va_signals.checks.freshness_checks import (
    FRESHNESS_CHECK,
    FRESHNESS_CHECKS_NAME,
    FRESHNESS_JOB,
    PRESENCE_CHECK,
)
from va_signals.definitions import defs
from va_signals_tests.ledger import insert_run

ET = ZoneInfo("America/New_York")
FEDERAL_REGISTER_VA = default_catalog().source("federal_register_va")
FR_VA_KEY = dg.AssetKey(["federal_register", "federal_register_va"])


def _holiday(name: str, year: int) -> date:
    """A federal holiday's date as the `holidays` package computes it, looked up by name."""
    calendar = holidays.country_holidays("US", years=year, observed=False)
    (day,) = [day for day, label in calendar.items() if label == name]
    return day


def _at(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=ET)


def test_federal_holidays_and_weekends_are_not_business_days() -> None:
    thanksgiving = _holiday("Thanksgiving Day", 2026)
    christmas = _holiday("Christmas Day", 2026)
    new_year = _holiday("New Year's Day", 2026)
    assert (thanksgiving, christmas, new_year) == (
        date(2026, 11, 26),
        date(2026, 12, 25),
        date(2026, 1, 1),
    )
    for day in (thanksgiving, christmas, new_year, date(2026, 11, 28), date(2026, 11, 29)):
        assert not is_business_day(day), day
    # The day after Thanksgiving is no federal holiday: the Register publishes.
    assert is_business_day(thanksgiving + timedelta(days=1))
    # July 4, 2026 is a Saturday: the Friday before is the observed holiday.
    assert not is_business_day(date(2026, 7, 3))


@pytest.mark.parametrize(
    ("holiday", "last_new", "checked_at"),
    [
        # New documents Wednesday morning; Thanksgiving brings none; Friday's run is due.
        ("Thanksgiving Day", (2026, 11, 25, 7), (2026, 11, 27, 7)),
        ("Christmas Day", (2026, 12, 24, 7), (2026, 12, 28, 7)),
        ("New Year's Day", (2025, 12, 31, 7), (2026, 1, 2, 12)),
    ],
)
def test_a_holiday_without_documents_is_not_stale(
    holiday: str, last_new: tuple, checked_at: tuple
) -> None:
    year = checked_at[0]
    assert not is_business_day(_holiday(holiday, year))
    verdict = assess_presence(
        FEDERAL_REGISTER_VA, datetime(*last_new, tzinfo=ET), datetime(*checked_at, tzinfo=ET)
    )
    assert verdict is not None
    assert not verdict.stale, verdict.reason
    # A plain clock would have called it stale: more than 30 hours went by.
    assert (datetime(*checked_at, tzinfo=ET) - datetime(*last_new, tzinfo=ET)) > timedelta(hours=30)


def test_a_weekend_without_documents_is_not_stale() -> None:
    friday_run = datetime(2026, 11, 20, 7, 5, tzinfo=ET)
    sunday_night = datetime(2026, 11, 22, 23, 0, tzinfo=ET)

    presence = assess_presence(FEDERAL_REGISTER_VA, friday_run, sunday_night)
    freshness = assess_freshness(FEDERAL_REGISTER_VA, friday_run, sunday_night)

    assert presence is not None and not presence.stale
    assert not freshness.stale
    assert presence.age_hours == pytest.approx(16.9, abs=0.1)


def test_the_next_business_day_without_documents_is_stale() -> None:
    friday_run = datetime(2026, 11, 20, 7, 5, tzinfo=ET)
    monday_evening = datetime(2026, 11, 23, 18, 0, tzinfo=ET)
    after_thanksgiving = datetime(2026, 11, 27, 18, 0, tzinfo=ET)

    presence = assess_presence(FEDERAL_REGISTER_VA, friday_run, monday_evening)
    holiday_week = assess_presence(
        FEDERAL_REGISTER_VA, datetime(2026, 11, 25, 7, 5, tzinfo=ET), after_thanksgiving
    )

    assert presence is not None and presence.stale
    assert "business hours" in presence.reason
    assert holiday_week is not None and holiday_week.stale


def test_hours_are_real_hours_across_daylight_saving_time() -> None:
    # Clocks fall back on Sunday 2026-11-01: that noon-to-noon day lasts 25 hours.
    saturday_noon = datetime(2026, 10, 31, 12, tzinfo=ET)
    sunday_noon = datetime(2026, 11, 1, 12, tzinfo=ET)
    assert counted_hours(Cadence.DAILY, saturday_noon, sunday_noon) == pytest.approx(25)
    # Friday to Tuesday counts Friday and Monday only, whatever Sunday's length.
    friday, tuesday = datetime(2026, 10, 30, tzinfo=ET), datetime(2026, 11, 3, tzinfo=ET)
    assert counted_hours(Cadence.WEEKDAYS, friday, tuesday) == pytest.approx(48)


def test_daily_sources_count_every_hour_and_no_run_is_stale() -> None:
    # A source polled every day (none of the shipped ones is: the schedule runs on weekdays).
    congress = (
        default_catalog().source("congress_bills").model_copy(update={"cadence": Cadence.DAILY})
    )
    now = datetime(2026, 11, 23, 12, tzinfo=UTC)

    assert assess_freshness(congress, now - timedelta(hours=47), now).stale is False
    assert assess_freshness(congress, now - timedelta(hours=49), now).stale is True
    never = assess_freshness(congress, None, now)
    assert never.stale and never.reason == "no good run on record"


def test_every_source_asset_has_a_freshness_policy_from_its_sla() -> None:
    specs = {spec.key: spec for spec in defs.resolve_all_asset_specs()}
    for source in default_catalog().enabled_sources:
        policy = specs[dg.AssetKey([source.family, source.id])].freshness_policy
        assert policy is not None, source.id
        if source.cadence is Cadence.WEEKDAYS:
            # The 07:00 run plus the SLA beyond a day; Dagster's cron window caps at 23:00.
            expected_hour = min(23, 7 + max(0, int(source.freshness_sla_hours) - 24))
            assert policy.deadline_cron == f"0 {expected_hour} * * 1-5", source.id
            assert policy.timezone == "America/New_York"
        else:
            assert policy.fail_window.to_timedelta() == timedelta(hours=source.freshness_sla_hours)


def _run_freshness_checks(instance: dg.DagsterInstance, as_of: datetime) -> dict:
    job = defs.resolve_job_def(FRESHNESS_JOB)
    result = job.execute_in_process(
        instance=instance,
        run_config={"ops": {FRESHNESS_CHECKS_NAME: {"config": {"as_of": as_of.isoformat()}}}},
    )
    assert result.success
    return {
        (evaluation.asset_key, evaluation.check_name): evaluation
        for evaluation in result.get_asset_check_evaluations()
    }


def test_checks_job_calls_a_holiday_fresh_and_the_next_business_day_stale(
    db: str, dagster_instance: dg.DagsterInstance
) -> None:
    wednesday = datetime(2026, 11, 25, 7, 5, tzinfo=ET)
    insert_run(db, "federal_register_va", ended_at=wednesday, new=4)
    thanksgiving_evening = datetime(2026, 11, 26, 20, 0, tzinfo=ET)
    friday_evening = datetime(2026, 11, 27, 20, 0, tzinfo=ET)

    on_holiday = _run_freshness_checks(dagster_instance, thanksgiving_evening)
    next_day = _run_freshness_checks(dagster_instance, friday_evening)

    assert on_holiday[(FR_VA_KEY, PRESENCE_CHECK)].passed
    assert on_holiday[(FR_VA_KEY, FRESHNESS_CHECK)].passed
    assert not next_day[(FR_VA_KEY, PRESENCE_CHECK)].passed
    assert not next_day[(FR_VA_KEY, FRESHNESS_CHECK)].passed
    # Critical source: a stale run is an ERROR; quiet documents only a WARN.
    assert next_day[(FR_VA_KEY, FRESHNESS_CHECK)].severity is dg.AssetCheckSeverity.ERROR
    assert next_day[(FR_VA_KEY, PRESENCE_CHECK)].severity is dg.AssetCheckSeverity.WARN
    age = next_day[(FR_VA_KEY, PRESENCE_CHECK)].metadata["age_hours"].value
    assert age == pytest.approx(16.92 + 20, abs=0.05)
    # Every enabled source is covered, never-run ones as stale.
    never_ran = next_day[(dg.AssetKey(["lda", "lda_filings"]), FRESHNESS_CHECK)]
    assert not never_ran.passed and never_ran.description == "no good run on record"
    assert len(next_day) == 2 * len(default_catalog().enabled_sources)
