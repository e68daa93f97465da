"""The failed asset check sensor: pages when a blocking or ERROR check fails, resolves on pass.

It reads the instance's asset check execution records, whose ids grow across all checks, so
one id per check plus the highest id seen at start is the whole cursor.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import dagster as dg

# Storage types for annotations only; the records come from `instance.event_log_storage`.
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecord
from dagster._core.storage.event_log.base import EventLogStorage

from va_signals.alerts.messages import AlertContent, check_dedup_key, truncate
from va_signals.catalog import Catalog
from va_signals.db.alert_outbox import clear_alert, raise_alert
from va_signals.resilience.correlation import Severity
from va_signals.resources import DatabaseResource
from va_signals.resources.alerts import AlertsResource
from va_signals.sensors import DATABASE_DOWN

FAILED_CHECK_SENSOR = "failed_asset_check_alerts"
FAILED_CHECK_SENSOR_INTERVAL_SECONDS = 60
# Latest records may be PLANNED (a run in flight); look this far back for a completed one.
_HISTORY_DEPTH = 5


@dataclass
class CheckCursor:
    """`seen`: check -> last execution id handled. `floor`: the highest id when the sensor
    started; a check first met later handles only executions above it."""

    floor: int
    seen: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"floor": self.floor, "seen": self.seen}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CheckCursor:
        raw = json.loads(text)
        return cls(int(raw["floor"]), {str(k): int(v) for k, v in raw["seen"].items()})


def evaluate_failed_checks(
    instance: dg.DagsterInstance,
    database: DatabaseResource,
    alerts: AlertsResource,
    check_keys: Collection[dg.AssetCheckKey],
    cursor: str | None,
    *,
    catalog: Catalog | None = None,
    now: datetime | None = None,
    log: logging.Logger | logging.LoggerAdapter | None = None,
) -> tuple[str, str]:
    """One tick: trigger for new failed evaluations, resolve for new passing ones, then send."""
    now = now or datetime.now(UTC)
    storage = instance.event_log_storage
    latest = storage.get_latest_asset_check_execution_by_key(list(check_keys))
    if cursor is None:
        started = CheckCursor(
            floor=max((record.id for record in latest.values()), default=0),
            seen={key.to_user_string(): record.id for key, record in latest.items()},
        )
        return started.to_json(), f"started at check execution {started.floor}"

    state = CheckCursor.from_json(cursor)
    triggered = resolved = 0
    with database.connection() as conn:
        for key in sorted(check_keys, key=lambda item: item.to_user_string()):
            name = key.to_user_string()
            record = _latest_completed(storage, key, latest.get(key))
            if record is None or record.id <= state.seen.get(name, state.floor):
                continue
            evaluation = record.evaluation
            content = _content(key, evaluation, record.run_id, catalog)
            version = str(record.id)
            if evaluation.passed:
                resolved += clear_alert(conn, content, version, now)
            elif _pages(evaluation):
                triggered += raise_alert(conn, content, version, alerts.channels, now)
            state.seen[name] = record.id
    delivery = alerts.deliver(database.pool, log=log)
    return state.to_json(), f"{triggered} check alerts triggered, {resolved} resolved; {delivery}"


def build_failed_check_sensor(catalog: Catalog | None = None) -> dg.SensorDefinition:
    """The failed-check sensor over every asset check of the code location it is loaded in."""

    @dg.sensor(
        name=FAILED_CHECK_SENSOR,
        minimum_interval_seconds=FAILED_CHECK_SENSOR_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Pages when an asset check that blocks or has ERROR severity fails, and resolves "
            "the page when that check passes again."
        ),
    )
    def failed_asset_check_alerts(
        context: dg.SensorEvaluationContext, database: DatabaseResource, alerts: AlertsResource
    ) -> dg.SensorResult | dg.SkipReason:
        repository = context.repository_def
        keys = repository.asset_graph.asset_check_keys if repository is not None else set()
        try:
            database.ensure_schema()
            cursor, message = evaluate_failed_checks(
                context.instance,
                database,
                alerts,
                keys,
                context.cursor,
                catalog=catalog,
                log=context.log,
            )
        except DATABASE_DOWN as exc:
            return dg.SkipReason(f"database unavailable: {exc}")
        return dg.SensorResult(cursor=cursor, skip_reason=message)

    return failed_asset_check_alerts


def _latest_completed(
    storage: EventLogStorage,
    key: dg.AssetCheckKey,
    latest: AssetCheckExecutionRecord | None,
) -> AssetCheckExecutionRecord | None:
    if latest is None:
        return None
    if _completed(latest):
        return latest
    for record in storage.get_asset_check_execution_history(key, limit=_HISTORY_DEPTH):
        if _completed(record):
            return record
    return None


def _completed(record: AssetCheckExecutionRecord) -> bool:
    # A PLANNED record carries its AssetCheckEvaluationPlanned event as `evaluation`, not None:
    # a check planned in a run but never executed (skipped behind a failed blocking check) is
    # not an evaluation, and reading it as one would fail every tick from then on.
    return isinstance(record.evaluation, dg.AssetCheckEvaluation)


def _pages(evaluation: dg.AssetCheckEvaluation) -> bool:
    # WARN-level checks inform the UI; only blocking or ERROR ones are worth waking someone.
    return bool(evaluation.blocking) or evaluation.severity == dg.AssetCheckSeverity.ERROR


def _content(
    key: dg.AssetCheckKey,
    evaluation: dg.AssetCheckEvaluation,
    run_id: str,
    catalog: Catalog | None,
) -> AlertContent:
    asset = key.asset_key.to_user_string()
    source_id = key.asset_key.path[-1]
    critical = False
    if catalog is not None:
        critical = any(source.critical for source in catalog.sources if source.id == source_id)
    summary = f"asset check {key.name} failed on {asset}"
    if evaluation.description:
        summary += f": {evaluation.description}"
    return AlertContent(
        dedup_key=check_dedup_key(key.to_user_string()),
        summary=summary,
        severity=Severity.CRITICAL if critical else Severity.ERROR,
        component=asset,
        group="asset_checks",
        event_class=key.name,
        custom_details={
            "run_id": run_id,
            "blocking": bool(evaluation.blocking),
            "check_severity": evaluation.severity.value,
            "metadata": _metadata_text(evaluation.metadata),
        },
    )


def _metadata_text(metadata: Mapping[str, object]) -> dict[str, str]:
    return {
        name: truncate(str(getattr(value, "value", value)), 300) for name, value in metadata.items()
    }
