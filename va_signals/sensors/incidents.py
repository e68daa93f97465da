"""The incident sensor: runs the correlator on a cadence and queues opened and resolved alerts."""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import UTC, datetime

import dagster as dg

from va_signals.catalog import Catalog
from va_signals.db.incidents import CorrelatorCursor, correlate_pass, initial_cursor
from va_signals.resilience.correlation import CorrelationPolicy, DependencyGraph
from va_signals.resources import DatabaseResource
from va_signals.resources.alerts import AlertsResource
from va_signals.sensors import DATABASE_DOWN

INCIDENT_SENSOR = "incident_correlator"
INCIDENT_SENSOR_INTERVAL_SECONDS = 60


def evaluate_incidents(
    instance: dg.DagsterInstance,
    database: DatabaseResource,
    alerts: AlertsResource,
    catalog: Catalog,
    cursor: str | None,
    *,
    now: datetime | None = None,
    policy: CorrelationPolicy | None = None,
    log: logging.Logger | logging.LoggerAdapter | None = None,
) -> tuple[str, str]:
    """One tick: correlate what failed since `cursor`, then send due alerts.

    Returns the new cursor and a line for the tick's log. The first tick only places the
    cursor after every recorded run: failures from before the sensor existed are not paged.
    """
    now = now or datetime.now(UTC)
    with database.connection() as conn:
        if cursor is None:
            start = initial_cursor(conn, now)
            message = f"started after source run {start.source_run_id}; earlier runs are history"
            next_cursor = start
        else:
            report = correlate_pass(
                conn,
                DependencyGraph(catalog),
                policy or CorrelationPolicy(),
                CorrelatorCursor.from_json(cursor),
                now=now,
                channels=alerts.channels,
                unfinished_runs=lambda run_ids: _unfinished_runs(instance, run_ids),
            )
            next_cursor = report.cursor
            message = (
                f"{len(report.opened)} opened, {len(report.resolved)} resolved, "
                f"{report.attached} failures linked to open incidents, "
                f"{report.alerts_queued} alerts queued"
            )
    delivery = alerts.deliver(database.pool, log=log)
    message += f"; {delivery}"
    return next_cursor.to_json(), message


def build_incident_sensor(
    catalog: Catalog, policy: CorrelationPolicy | None = None
) -> dg.SensorDefinition:
    """The correlator sensor for `catalog`'s dependency graph."""

    @dg.sensor(
        name=INCIDENT_SENSOR,
        minimum_interval_seconds=INCIDENT_SENSOR_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Groups source failures by the upstream service that explains them into incidents, "
            "resolves incidents whose sources recovered, and pages once per incident."
        ),
    )
    def incident_correlator(
        context: dg.SensorEvaluationContext, database: DatabaseResource, alerts: AlertsResource
    ) -> dg.SensorResult | dg.SkipReason:
        try:
            database.ensure_schema()
            cursor, message = evaluate_incidents(
                context.instance,
                database,
                alerts,
                catalog,
                context.cursor,
                policy=policy,
                log=context.log,
            )
        except DATABASE_DOWN as exc:
            # The cursor stays where it was; the runs are read once the database is back.
            return dg.SkipReason(f"database unavailable: {exc}")
        return dg.SensorResult(cursor=cursor, skip_reason=message)

    return incident_correlator


def _unfinished_runs(instance: dg.DagsterInstance, run_ids: Collection[str]) -> set[str]:
    # Run ids unknown to this instance (another deployment, a script) count as finished.
    records = instance.get_run_records(dg.RunsFilter(run_ids=list(run_ids)))
    return {record.dagster_run.run_id for record in records if not record.dagster_run.is_finished}
