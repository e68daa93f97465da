"""Run failure alerts: one page per job while its runs keep failing, resolved by a success."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg

from va_signals.alerts.messages import Action, AlertContent, run_failure_dedup_key
from va_signals.db.alert_outbox import clear_alert, raise_alert
from va_signals.resilience.correlation import Severity
from va_signals.resources import DatabaseResource
from va_signals.resources.alerts import AlertsResource
from va_signals.sensors import DATABASE_DOWN

RUN_FAILURE_SENSOR = "run_failure_alerts"
RUN_RECOVERY_SENSOR = "run_recovery_alerts"
# Set by Dagster on a failed run that the daemon will retry: the retry decides, not this run.
WILL_RETRY_TAG = "dagster/will_retry"


def run_failure_content(job_name: str, run_id: str, message: str) -> AlertContent:
    """A failed run means no source of the job stored anything: critical."""
    return AlertContent(
        dedup_key=run_failure_dedup_key(job_name),
        summary=f"run of {job_name} failed: {message}",
        severity=Severity.CRITICAL,
        component=job_name,
        group="runs",
        event_class="run_failure",
        custom_details={"run_id": run_id, "job": job_name},
    )


@dg.run_failure_sensor(
    name=RUN_FAILURE_SENSOR,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Pages when a run fails for good (not when the daemon will retry it).",
)
def run_failure_alerts(
    context: dg.RunFailureSensorContext, database: DatabaseResource, alerts: AlertsResource
) -> None:
    # Dagster's run status cursor starts at the newest event on first start and advances past
    # each run handled, so old failures are not replayed and none is handled twice.
    run = context.dagster_run
    if run.tags.get(WILL_RETRY_TAG) == "true":
        context.log.info("run %s of %s failed and will be retried", run.run_id, run.job_name)
        return
    content = run_failure_content(run.job_name, run.run_id, _failure_reason(context))
    try:
        with database.connection() as conn:
            raise_alert(conn, content, run.run_id, alerts.channels, datetime.now(UTC))
    except DATABASE_DOWN as exc:
        # A run most often fails because the database is down, the one place the outbox
        # lives: page directly rather than lose the page. The dedup key keeps it one incident.
        context.log.warning("alert outbox unreachable (%s); paging directly", exc)
        results = alerts.send_direct(content, Action.TRIGGER, run.run_id)
        context.log.info("direct page: %s", ", ".join(r.outcome.value for r in results))
        return
    alerts.deliver(database.pool, log=context.log)


def _failure_reason(context: dg.RunFailureSensorContext) -> str:
    # The run's own message only lists failed steps; the on-call needs the innermost cause.
    for event in context.get_step_failure_events():
        error = event.event_specific_data.error
        if error is None:
            continue
        while error.cause is not None:
            error = error.cause
        return f"{event.step_key}: {error.message.strip()}"
    return context.failure_event.message or "no failure message"


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    name=RUN_RECOVERY_SENSOR,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Resolves a job's run-failure page when a run of the job succeeds.",
)
def run_recovery_alerts(
    context: dg.RunStatusSensorContext, database: DatabaseResource, alerts: AlertsResource
) -> None:
    run = context.dagster_run
    content = run_failure_content(run.job_name, run.run_id, "recovered")
    with database.connection() as conn:
        cleared = clear_alert(conn, content, run.run_id, datetime.now(UTC))
    if cleared:
        context.log.info("run %s of %s succeeded; failure page resolved", run.run_id, run.job_name)
    alerts.deliver(database.pool, log=context.log)
