"""The freshness sensor: evaluates the freshness checks every hour and after new source runs.

Staleness grows with the clock, so the checks need evaluating when nothing runs too. The cursor
holds the last hour evaluated and the end of the last source run seen; a first start evaluates
once, now, and never replays the hours or runs that came before it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import (
    UnresolvedAssetJobDefinition,
)

from va_signals.db.pool import DatabaseUnavailableError
from va_signals.resources import DatabaseResource

FRESHNESS_SENSOR = "source_freshness_sensor"
EVALUATION_INTERVAL = timedelta(hours=1)
SENSOR_INTERVAL_SECONDS = 300


@dataclass(frozen=True)
class FreshnessCursor:
    """The hour last evaluated, and the end of the newest finished source run seen then."""

    hour: datetime
    last_run_end: datetime | None

    def to_json(self) -> str:
        end = self.last_run_end.isoformat() if self.last_run_end else None
        return json.dumps({"hour": self.hour.isoformat(), "last_run_end": end})

    @classmethod
    def from_json(cls, text: str | None) -> FreshnessCursor | None:
        if not text:
            return None
        raw = json.loads(text)
        end = raw.get("last_run_end")
        return cls(
            datetime.fromisoformat(raw["hour"]), datetime.fromisoformat(end) if end else None
        )


def next_evaluation(
    cursor: FreshnessCursor | None, now: datetime, last_run_end: datetime | None
) -> tuple[str | None, FreshnessCursor]:
    """The run key to request now (None for none) and the cursor to keep.

    One evaluation per new hour or new finished run, however long the sensor was off: only the
    present state of the sources matters, so missed hours are not replayed.
    """
    hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    updated = FreshnessCursor(hour, last_run_end)
    if cursor is not None:
        new_hour = hour > cursor.hour
        new_run = last_run_end is not None and (
            cursor.last_run_end is None or last_run_end > cursor.last_run_end
        )
        if not (new_hour or new_run):
            return None, cursor
    run_mark = last_run_end.isoformat() if last_run_end else "none"
    return f"freshness:{hour.isoformat()}:{run_mark}", updated


def build_freshness_sensor(
    checks_job: UnresolvedAssetJobDefinition,
    check_keys: Sequence[dg.AssetCheckKey],
    health_job: UnresolvedAssetJobDefinition,
) -> dg.SensorDefinition:
    """Requests the checks-only freshness job, and a health score recomputation with it."""

    @dg.sensor(
        name=FRESHNESS_SENSOR,
        jobs=[checks_job, health_job],
        minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Evaluate source freshness and presence hourly and after new source runs.",
    )
    def source_freshness_sensor(
        context: dg.SensorEvaluationContext, database: DatabaseResource
    ) -> dg.SensorResult | dg.SkipReason:
        try:
            with database.connection() as conn:
                last_run_end = conn.execute(
                    "SELECT max(ended_at) FROM source_runs WHERE status <> 'RUNNING'"
                ).fetchone()[0]
        except DatabaseUnavailableError as exc:
            return dg.SkipReason(f"database unavailable: {exc}")
        run_key, cursor = next_evaluation(
            FreshnessCursor.from_json(context.cursor), datetime.now(UTC), last_run_end
        )
        if run_key is None:
            return dg.SkipReason("no new hour and no new source run since the last evaluation")
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=run_key, job_name=checks_job.name, asset_check_keys=list(check_keys)
                ),
                dg.RunRequest(run_key=f"health:{run_key}", job_name=health_job.name),
            ],
            cursor=cursor.to_json(),
        )

    return source_freshness_sensor
