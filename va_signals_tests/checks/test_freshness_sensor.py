"""The freshness sensor: one evaluation per new hour or new run, none replayed on first start."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg

from va_signals.assets.health import HEALTH_JOB
from va_signals.checks.freshness_checks import FRESHNESS_CHECK, FRESHNESS_JOB, PRESENCE_CHECK
from va_signals.definitions import defs
from va_signals.resources import DatabaseResource
from va_signals.sensors.freshness import FRESHNESS_SENSOR, FreshnessCursor, next_evaluation
from va_signals_tests.ledger import insert_run

NOW = datetime(2026, 11, 23, 14, 25, tzinfo=UTC)


def test_first_start_evaluates_once_now_without_replaying_history() -> None:
    old_run = NOW - timedelta(days=40)

    run_key, cursor = next_evaluation(None, NOW, old_run)

    assert run_key == f"freshness:2026-11-23T14:00:00+00:00:{old_run.isoformat()}"
    assert cursor == FreshnessCursor(datetime(2026, 11, 23, 14, tzinfo=UTC), old_run)
    # The same tick again, and a later one in the same hour with no new run: nothing.
    assert next_evaluation(cursor, NOW, old_run) == (None, cursor)
    assert next_evaluation(cursor, NOW + timedelta(minutes=30), old_run)[0] is None


def test_a_new_hour_or_a_new_run_evaluates_once_even_after_a_long_pause() -> None:
    _, cursor = next_evaluation(None, NOW, None)

    new_run = NOW + timedelta(minutes=10)
    key_after_run, after_run = next_evaluation(cursor, NOW + timedelta(minutes=12), new_run)
    days_later = NOW + timedelta(days=3)
    key_days_later, later = next_evaluation(after_run, days_later, new_run)

    assert key_after_run is not None and after_run.last_run_end == new_run
    # Three days off: one evaluation of the present, not 72 hourly ones.
    assert key_days_later is not None
    assert later.hour == days_later.replace(minute=0, second=0, microsecond=0)
    assert FreshnessCursor.from_json(later.to_json()) == later


def test_sensor_requests_the_checks_only_job_and_the_health_score(
    db: str, dagster_instance: dg.DagsterInstance
) -> None:
    insert_run(db, "federal_register_va", ended_at=NOW - timedelta(hours=2), new=3)
    sensor = defs.resolve_sensor_def(FRESHNESS_SENSOR)

    with dg.build_sensor_context(
        instance=dagster_instance,
        resources={"database": DatabaseResource(url=db)},
        definitions=defs,
    ) as context:
        first = sensor(context)
        context.update_cursor(first.cursor)
        second = sensor(context)

    requests = {request.job_name: request for request in first.run_requests}
    assert set(requests) == {FRESHNESS_JOB, HEALTH_JOB}
    check_names = {key.name for key in requests[FRESHNESS_JOB].asset_check_keys}
    assert check_names == {FRESHNESS_CHECK, PRESENCE_CHECK}
    assert isinstance(second, dg.SkipReason)
    # Checks only: the job materializes nothing.
    job = defs.resolve_job_def(FRESHNESS_JOB)
    assert {key.name for key in job.asset_layer.asset_graph.asset_check_keys} == check_names
    assert not job.asset_layer.executable_asset_keys
