"""Freshness of every catalog source in Dagster: a policy per asset and time-based asset checks.

| check       | severity                            | blocking | fails when                       |
|-------------|-------------------------------------|----------|----------------------------------|
| `freshness` | ERROR for critical sources, else    | no       | the last SUCCESS/NO_DATA run is  |
|             | WARN                                |          | older than the SLA               |
| `presence`  | WARN                                | no       | no run stored new documents      |
|             |                                     |          | within the source's presence     |
|             |                                     |          | window                           |

Ages are counted by `va_signals.checks.freshness`: business hours for weekday sources, so a
weekend or a federal holiday never makes a source stale. The checks go stale with the clock,
not with a run, so a sensor evaluates them hourly and after new source runs in a checks-only
job. The daily job holds them too, as one step after ingest, but Dagster skips a step over
several assets when one of them did not materialize: then the sensor's evaluation is the one.
"""

import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import (
    UnresolvedAssetJobDefinition,
)
from pydantic import Field

from va_signals.catalog.models import Cadence, Catalog, Source
from va_signals.checks import queries
from va_signals.checks.freshness import (
    PUBLISHER_TIMEZONE,
    Staleness,
    assess_freshness,
    assess_presence,
)
from va_signals.resources import DatabaseResource

FRESHNESS_CHECK = "freshness"
PRESENCE_CHECK = "presence"
FRESHNESS_CHECKS_NAME = "source_freshness_checks"
FRESHNESS_JOB = "freshness_checks"
# The hour (Eastern) of the daily_signals weekday schedule in `va_signals.jobs`.
DAILY_RUN_HOUR = 7


class FreshnessCheckConfig(dg.Config):
    """Run-time knobs of the freshness checks."""

    as_of: str = Field(
        default="",
        description="Evaluate as of this ISO instant instead of now (replays, investigations).",
    )

    def evaluation_time(self) -> datetime:
        if not self.as_of:
            return datetime.now(UTC)
        instant = datetime.fromisoformat(self.as_of)
        return instant if instant.tzinfo else instant.replace(tzinfo=PUBLISHER_TIMEZONE)


def freshness_policy(source: Source) -> dg.FreshnessPolicy:
    """Dagster's own freshness policy for a source asset, from the catalog's SLA.

    Weekday sources get a deadline on each weekday: that day's run is due by the run hour plus
    the part of the SLA beyond a day (13:00 Eastern for 30 h), within the day before it (Dagster
    caps the window at the cron's interval). Cron knows no holidays; the job still runs on
    them, so the asset stays fresh. The others get a time window, warning at 3/4 of the SLA.
    """
    sla = timedelta(hours=source.freshness_sla_hours)
    if source.cadence is Cadence.WEEKDAYS:
        slack_hours = max(0, math.ceil(source.freshness_sla_hours) - 24)
        deadline_hour = min(23, DAILY_RUN_HOUR + slack_hours)
        return dg.FreshnessPolicy.cron(
            deadline_cron=f"0 {deadline_hour} * * 1-5",
            lower_bound_delta=min(sla, timedelta(days=1)),
            timezone=str(PUBLISHER_TIMEZONE),
        )
    return dg.FreshnessPolicy.time_window(fail_window=sla, warn_window=sla * 0.75)


def with_freshness_policies(catalog: Catalog) -> Callable[[dg.AssetSpec], dg.AssetSpec]:
    """A `map_asset_specs` function giving each catalog source asset its freshness policy."""
    by_id = {source.id: source for source in catalog.sources}

    def attach(spec: dg.AssetSpec) -> dg.AssetSpec:
        source = by_id.get(spec.key.path[-1])
        if source is None or len(spec.key.path) != 2 or spec.key.path[0] != source.family:
            return spec
        return spec.replace_attributes(freshness_policy=freshness_policy(source))

    return attach


def build_freshness_checks(
    catalog: Catalog, asset_key: Callable[[Source], dg.AssetKey]
) -> dg.AssetChecksDefinition:
    """One step that checks freshness and presence of every enabled source (or a subset)."""
    sources = sorted(catalog.enabled_sources, key=lambda source: source.id)
    by_key = {asset_key(source): source for source in sources}
    specs = [
        spec
        for source in sources
        for spec in (
            dg.AssetCheckSpec(
                FRESHNESS_CHECK,
                asset=asset_key(source),
                description=(
                    f"Last SUCCESS or NO_DATA run within {source.freshness_sla_hours:g} "
                    f"{_unit(source)}."
                ),
                metadata={"source_id": source.id},
            ),
            dg.AssetCheckSpec(
                PRESENCE_CHECK,
                asset=asset_key(source),
                description=_presence_description(source),
                metadata={"source_id": source.id},
            ),
        )
    ]

    @dg.multi_asset_check(
        specs=specs,
        name=FRESHNESS_CHECKS_NAME,
        can_subset=True,
        description="Freshness and presence of every catalog source, in its calendar.",
    )
    def source_freshness_checks(
        context: dg.AssetCheckExecutionContext,
        config: FreshnessCheckConfig,
        database: DatabaseResource,
    ) -> Iterator[dg.AssetCheckResult]:
        now = config.evaluation_time()
        selected = sorted(context.selected_asset_check_keys, key=lambda key: key.to_user_string())
        wanted = sorted({by_key[key.asset_key].id for key in selected})
        with database.connection() as conn:
            marks = queries.freshness_marks(conn, wanted)
        for check_key in selected:
            source = by_key[check_key.asset_key]
            mark = marks[source.id]
            if check_key.name == FRESHNESS_CHECK:
                yield _freshness_result(
                    check_key, source, assess_freshness(source, mark.last_good_run_at, now), now
                )
            else:
                yield _presence_result(
                    check_key, source, assess_presence(source, mark.last_new_documents_at, now), now
                )

    return source_freshness_checks


def build_freshness_job(checks: dg.AssetChecksDefinition) -> UnresolvedAssetJobDefinition:
    """The checks-only job the freshness sensor runs."""
    return dg.define_asset_job(
        FRESHNESS_JOB,
        selection=dg.AssetSelection.checks(checks),
        description="Evaluate the freshness and presence checks of every source; no ingest.",
        executor_def=dg.in_process_executor,
    )


def _freshness_result(
    check_key: dg.AssetCheckKey, source: Source, staleness: Staleness, now: datetime
) -> dg.AssetCheckResult:
    severity = dg.AssetCheckSeverity.ERROR if source.critical else dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(
        asset_key=check_key.asset_key,
        check_name=check_key.name,
        passed=not staleness.stale,
        severity=severity,
        description=staleness.reason,
        metadata=_metadata(source, staleness, now),
    )


def _presence_result(
    check_key: dg.AssetCheckKey, source: Source, staleness: Staleness | None, now: datetime
) -> dg.AssetCheckResult:
    if staleness is None:
        return dg.AssetCheckResult(
            asset_key=check_key.asset_key,
            check_name=check_key.name,
            passed=True,
            severity=dg.AssetCheckSeverity.WARN,
            description="no presence window: quiet periods are normal for this source",
            metadata={"rule": "none", "evaluated_at": dg.MetadataValue.timestamp(now)},
        )
    return dg.AssetCheckResult(
        asset_key=check_key.asset_key,
        check_name=check_key.name,
        passed=not staleness.stale,
        severity=dg.AssetCheckSeverity.WARN,
        description=staleness.reason,
        metadata={"rule": "presence_window_hours", **_metadata(source, staleness, now)},
    )


def _metadata(source: Source, staleness: Staleness, now: datetime) -> dict[str, object]:
    metadata: dict[str, object] = {
        "cadence": source.cadence.value,
        "limit_hours": staleness.limit_hours,
        "business_hours": staleness.business_hours,
        "evaluated_at": dg.MetadataValue.timestamp(now),
    }
    if staleness.measured_from is not None and staleness.age_hours is not None:
        metadata["age_hours"] = staleness.age_hours
        metadata["measured_from"] = dg.MetadataValue.timestamp(staleness.measured_from)
    return metadata


def _unit(source: Source) -> str:
    return "business hours" if source.cadence is Cadence.WEEKDAYS else "hours"


def _presence_description(source: Source) -> str:
    window = source.quality.presence_window_hours
    if window is None:
        return "No presence window declared: quiet periods are normal for this source."
    return f"A run stored new documents within the last {window:g} {_unit(source)}."
