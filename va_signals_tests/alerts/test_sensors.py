"""The run failure, run recovery and failed asset check sensors, ticked against a real instance:
cursors start at "now", repeated ticks page nobody twice, recovery resolves.

No `from __future__ import annotations` here: Dagster reads the op's config annotation.
"""

import dagster as dg
import pytest

from va_signals.catalog import default_catalog
from va_signals.resources import DatabaseResource
from va_signals.sensors.asset_checks import build_failed_check_sensor
from va_signals.sensors.incidents import build_incident_sensor
from va_signals.sensors.run_failure import (
    WILL_RETRY_TAG,
    run_failure_alerts,
    run_recovery_alerts,
)
from va_signals_tests.alerting_support import (
    FakeReceiver,
    alerts_resource,
    outbox_rows,
    pagerduty_events,
)


class FlakyConfig(dg.Config):
    fail: bool = True


@dg.op
def fetch_everything(config: FlakyConfig) -> None:
    if config.fail:
        raise RuntimeError("database went away")


@dg.job
def nightly() -> None:
    fetch_everything()


def _run_nightly(instance: dg.DagsterInstance, *, fail: bool, tags: dict | None = None) -> str:
    result = nightly.execute_in_process(
        instance=instance,
        raise_on_error=False,
        run_config={"ops": {"fetch_everything": {"config": {"fail": fail}}}},
        tags=tags,
    )
    assert result.success is not fail
    return result.run_id


class _Ticker:
    def __init__(self, sensor: dg.SensorDefinition, instance, resources: dict, **context) -> None:
        self.sensor, self.instance, self.resources, self.context = (
            sensor,
            instance,
            resources,
            context,
        )
        self.cursor: str | None = None

    def tick(self):
        result = self.sensor.evaluate_tick(
            dg.build_sensor_context(
                instance=self.instance, cursor=self.cursor, resources=self.resources, **self.context
            )
        )
        self.cursor = result.cursor
        return result


@pytest.fixture
def resources(obs_db: str, fake_pagerduty: FakeReceiver) -> dict:
    return {"database": DatabaseResource(url=obs_db), "alerts": alerts_resource(fake_pagerduty)}


def test_run_failure_pages_once_per_job_and_a_success_resolves(
    dagster_instance, resources: dict, fake_pagerduty: FakeReceiver
) -> None:
    _run_nightly(dagster_instance, fail=True)  # before the sensor existed: history
    failures = _Ticker(run_failure_alerts, dagster_instance, resources)
    recoveries = _Ticker(run_recovery_alerts, dagster_instance, resources)
    failures.tick()
    recoveries.tick()
    assert fake_pagerduty.received == []

    first = _run_nightly(dagster_instance, fail=True)
    failures.tick()
    failures.tick()
    _run_nightly(dagster_instance, fail=True)  # still failing: the same page stays open
    failures.tick()

    [trigger] = pagerduty_events(fake_pagerduty)
    assert trigger["dedup_key"] == "va-signals/run-failure/nightly"
    assert trigger["payload"]["severity"] == "critical"
    assert trigger["payload"]["custom_details"]["run_id"] == first
    assert trigger["payload"]["summary"] == (
        "run of nightly failed: fetch_everything: RuntimeError: database went away"
    )

    _run_nightly(dagster_instance, fail=False)
    recoveries.tick()
    recoveries.tick()

    assert [(e["event_action"], e["dedup_key"]) for e in pagerduty_events(fake_pagerduty)] == [
        ("trigger", "va-signals/run-failure/nightly"),
        ("resolve", "va-signals/run-failure/nightly"),
    ]


def test_a_failed_run_that_will_be_retried_does_not_page(
    dagster_instance, resources: dict, fake_pagerduty: FakeReceiver
) -> None:
    failures = _Ticker(run_failure_alerts, dagster_instance, resources)
    failures.tick()

    _run_nightly(dagster_instance, fail=True, tags={WILL_RETRY_TAG: "true"})
    failures.tick()

    assert fake_pagerduty.received == []
    assert outbox_rows(resources["database"].url) == []


# Nothing listens on port 1 of the loopback: connecting is refused at once.
UNREACHABLE_DATABASE = "postgresql://postgres@127.0.0.1:1/va_signals"


def test_a_run_failure_with_the_database_down_is_paged_directly(
    dagster_instance, fake_pagerduty: FakeReceiver
) -> None:
    resources = {
        "database": DatabaseResource(url=UNREACHABLE_DATABASE, pool_timeout_seconds=1),
        "alerts": alerts_resource(fake_pagerduty),
    }
    failures = _Ticker(run_failure_alerts, dagster_instance, resources)
    failures.tick()

    run_id = _run_nightly(dagster_instance, fail=True)
    failures.tick()

    [trigger] = pagerduty_events(fake_pagerduty)
    assert trigger["dedup_key"] == "va-signals/run-failure/nightly"
    assert trigger["payload"]["custom_details"]["run_id"] == run_id


def test_incident_sensor_skips_and_keeps_its_cursor_while_the_database_is_down(
    dagster_instance,
) -> None:
    resources = {
        "database": DatabaseResource(url=UNREACHABLE_DATABASE, pool_timeout_seconds=1),
        "alerts": alerts_resource(None),
    }
    ticker = _Ticker(build_incident_sensor(default_catalog()), dagster_instance, resources)
    ticker.cursor = '{"source_run_id": 41, "breakers_since": "2026-12-01T00:00:00+00:00"}'

    result = ticker.tick()

    assert result.skip_message.startswith("database unavailable")
    assert ticker.cursor == '{"source_run_id": 41, "breakers_since": "2026-12-01T00:00:00+00:00"}'


class CheckOutcome:
    """What the next evaluation of each toy check returns."""

    blocking_passes = True
    warn_passes = True


@dg.asset(key=["congress", "congress_bills"])
def bills() -> int:
    return 1


@dg.asset_check(asset=bills, blocking=True, description="row count within bounds")
def row_count() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=CheckOutcome.blocking_passes,
        description=None if CheckOutcome.blocking_passes else "0 rows, expected at least 1",
        metadata={"rows": 0},
    )


@dg.asset_check(asset=bills, description="schema drift, informational")
def schema_drift() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=CheckOutcome.warn_passes, severity=dg.AssetCheckSeverity.WARN)


CHECK_DEFS = dg.Definitions(assets=[bills], asset_checks=[row_count, schema_drift])


def _materialize(instance, *, blocking_passes: bool, warn_passes: bool = True) -> None:
    CheckOutcome.blocking_passes = blocking_passes
    CheckOutcome.warn_passes = warn_passes
    dg.materialize([bills, row_count, schema_drift], instance=instance, raise_on_error=False)


def test_failed_check_pages_once_until_it_passes(
    dagster_instance, resources: dict, fake_pagerduty: FakeReceiver
) -> None:
    _materialize(dagster_instance, blocking_passes=False)  # an old failure: never paged
    ticker = _Ticker(
        build_failed_check_sensor(default_catalog()),
        dagster_instance,
        resources,
        definitions=CHECK_DEFS,
    )
    ticker.tick()
    ticker.tick()
    assert fake_pagerduty.received == []

    _materialize(dagster_instance, blocking_passes=False)
    ticker.tick()
    ticker.tick()
    _materialize(dagster_instance, blocking_passes=False)
    ticker.tick()

    [trigger] = pagerduty_events(fake_pagerduty)
    assert trigger["dedup_key"] == "va-signals/check/congress/congress_bills:row_count"
    # congress_bills is a critical source in the catalog.
    assert trigger["payload"]["severity"] == "critical"
    assert trigger["payload"]["summary"] == (
        "asset check row_count failed on congress/congress_bills: 0 rows, expected at least 1"
    )
    assert trigger["payload"]["custom_details"]["blocking"] is True

    _materialize(dagster_instance, blocking_passes=True)
    ticker.tick()
    ticker.tick()

    assert [e["event_action"] for e in pagerduty_events(fake_pagerduty)] == ["trigger", "resolve"]
    assert {e["dedup_key"] for e in pagerduty_events(fake_pagerduty)} == {trigger["dedup_key"]}


def test_a_warn_check_failing_does_not_page(
    dagster_instance, resources: dict, fake_pagerduty: FakeReceiver
) -> None:
    ticker = _Ticker(
        build_failed_check_sensor(default_catalog()),
        dagster_instance,
        resources,
        definitions=CHECK_DEFS,
    )
    ticker.tick()

    _materialize(dagster_instance, blocking_passes=True, warn_passes=False)
    result = ticker.tick()

    assert fake_pagerduty.received == []
    assert result.skip_message.startswith("0 check alerts triggered, 0 resolved")
