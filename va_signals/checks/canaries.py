"""Canaries of every catalog source, evaluated on each run by the source's own ingest step.

| check         | severity                      | blocking | fails when                           |
|---------------|-------------------------------|----------|--------------------------------------|
| `duplicates`  | ERROR; WARN for copies only   | yes      | repeats of (source_id, external_id)  |
|               |                               |          | in the run exceed the catalog bound, |
|               |                               |          | two stored rows share that key, or a |
|               |                               |          | cross-source copy stored before the  |
|               |                               |          | run is still unlinked                |
| `value_range` | ERROR outside the catalog's   | yes      | the run's record count is outside    |
|               | min/max; WARN for an outlier  |          | min/max_records_per_run, or its      |
|               |                               |          | robust z over the last 30 good runs  |
|               |                               |          | exceeds 5                            |
| `timestamps`  | WARN                          | no       | a date is in the future, before the  |
|               |                               |          | source's earliest_date, or out of    |
|               |                               |          | the order the API promises           |
| `schema`      | WARN                          | no       | payload fields are missing, new, or  |
|               |                               |          | of another type than the catalog's   |
|               |                               |          | expected_fields                      |

Why these are emitted by the ingest step rather than a separate check step: a step that checks
several assets is skipped by Dagster as soon as one of them did not materialize, so one failed
source would silence the canaries of all the others. A blocking check failing with ERROR fails
its ingest step after everything else of the step is recorded; Dagster then abandons the
`documents` and `signals` steps, which would otherwise link and classify a broken batch. Copies
left unlinked only WARN: blocking on them would stop the very step that links them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, date, datetime

import dagster as dg
from psycopg import Connection

from va_signals.catalog.models import Source
from va_signals.checks import expectations, queries

DUPLICATES_CHECK = "duplicates"
VALUE_RANGE_CHECK = "value_range"
TIMESTAMPS_CHECK = "timestamps"
SCHEMA_CHECK = "schema"
CANARY_CHECKS = (DUPLICATES_CHECK, VALUE_RANGE_CHECK, TIMESTAMPS_CHECK, SCHEMA_CHECK)

_BLOCKING = {
    DUPLICATES_CHECK: True,
    VALUE_RANGE_CHECK: True,
    TIMESTAMPS_CHECK: False,
    SCHEMA_CHECK: False,
}
_DESCRIPTIONS = {
    DUPLICATES_CHECK: "No natural key (source_id, external_id) repeated in a run beyond the "
    "catalog's bound or among stored rows; cross-source copies linked.",
    VALUE_RANGE_CHECK: "The run's record count within the catalog's min/max and near the "
    "source's own last 30 good runs (robust z-score); Great Expectations suite.",
    TIMESTAMPS_CHECK: "No document dated in the future or before the source's earliest date; "
    "documents in the order the API promises.",
    SCHEMA_CHECK: "Payload fields and JSON types as the catalog's expected_fields declare them; "
    "Great Expectations suite.",
}

ConnectionFactory = Callable[[], AbstractContextManager[Connection]]


def canary_specs(source: Source, asset_key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    """The four canary checks of one source asset."""
    return [
        dg.AssetCheckSpec(
            name,
            asset=asset_key,
            description=_DESCRIPTIONS[name],
            blocking=_BLOCKING[name],
            metadata={"source_id": source.id},
        )
        for name in CANARY_CHECKS
    ]


def canary_outs(specs: Sequence[dg.AssetCheckSpec]) -> dict[str, dg.Out]:
    """Op outputs for `specs`, named as `from_graph` names the graph outputs of checks."""
    return {spec.get_python_identifier(): dg.Out(dg.Nothing, is_required=False) for spec in specs}


def run_canaries(
    context: dg.OpExecutionContext,
    connection: ConnectionFactory,
    sources: Sequence[Source],
    run_ids: Mapping[str, int | None],
) -> Iterator[dg.AssetCheckResult]:
    """Evaluate the selected canaries of `sources` against their runs `run_ids`.

    A source whose check is selected but which did not run in this step (a checks-only run) is
    checked against its latest finished run.
    """
    by_id = {source.id: source for source in sources}
    wanted: dict[str, dict[str, dg.AssetCheckKey]] = {}
    for check_key in context.selected_asset_check_keys:
        if check_key.name not in CANARY_CHECKS:
            continue
        # The spec names its source: in a checks-only run the asset itself is not selected.
        source_id = context.assets_def.get_spec_for_check_key(check_key).metadata["source_id"]
        if source_id in by_id:
            wanted.setdefault(source_id, {})[check_key.name] = check_key
    if not wanted:
        return

    found: dict[str, int] = {}
    for source_id in wanted:
        run_id = run_ids.get(source_id)
        if run_id is not None:
            found[source_id] = run_id
    missing = [source_id for source_id in wanted if source_id not in found]
    if missing:
        with connection() as conn:
            found.update(queries.latest_run_ids(conn, missing))
    for source_id, checks in sorted(wanted.items()):
        if source_id not in found:
            for check_key in checks.values():
                yield _result(check_key, False, dg.AssetCheckSeverity.WARN, "no run on record")
    checked = [by_id[source_id] for source_id in sorted(wanted) if source_id in found]

    evaluators = {
        DUPLICATES_CHECK: _duplicates,
        VALUE_RANGE_CHECK: _value_range,
        TIMESTAMPS_CHECK: _timestamps,
        SCHEMA_CHECK: _schema,
    }
    for name, evaluate in evaluators.items():
        targets = [source for source in checked if name in wanted[source.id]]
        if not targets:
            continue
        keys = {source.id: wanted[source.id][name] for source in targets}
        target_runs = {source.id: found[source.id] for source in targets}
        try:
            # One connection per kind: a failed query leaves its transaction unusable.
            with connection() as conn:
                results = list(evaluate(conn, targets, target_runs, keys))
        except Exception as exc:  # noqa: BLE001 - a canary that cannot run is reported, not fatal
            context.log.warning("check %s could not be evaluated: %s", name, exc)
            results = [
                _result(
                    key,
                    False,
                    dg.AssetCheckSeverity.WARN,
                    f"could not be evaluated: {type(exc).__name__}: {exc}",
                    {"evaluation_error": f"{type(exc).__name__}: {exc}"},
                )
                for key in keys.values()
            ]
        yield from results


def _duplicates(
    conn: Connection,
    sources: Sequence[Source],
    run_ids: Mapping[str, int],
    keys: Mapping[str, dg.AssetCheckKey],
) -> Iterator[dg.AssetCheckResult]:
    findings = queries.duplicate_findings(conn, list(run_ids.values()))
    for source in sources:
        found = findings[source.id]
        bound = source.quality.max_duplicates_per_run
        broken = found.within_run > bound or found.key_collisions > 0
        problems = []
        if found.within_run > bound:
            problems.append(f"{found.within_run} repeated records in the run (bound {bound})")
        if found.key_collisions:
            problems.append(f"{found.key_collisions} stored rows share a natural key")
        if found.unlinked_copies:
            problems.append(f"{found.unlinked_copies} cross-source copies not linked")
        yield _result(
            keys[source.id],
            not problems,
            dg.AssetCheckSeverity.ERROR if broken else dg.AssetCheckSeverity.WARN,
            "; ".join(problems) or "no duplicates",
            {
                "source_run_id": run_ids[source.id],
                "duplicates_in_run": found.within_run,
                "max_duplicates_per_run": bound,
                "stored_key_collisions": found.key_collisions,
                "unlinked_copies": found.unlinked_copies,
                "examples": dg.MetadataValue.json(list(found.examples)),
            },
        )


def _value_range(
    conn: Connection,
    sources: Sequence[Source],
    run_ids: Mapping[str, int],
    keys: Mapping[str, dg.AssetCheckKey],
) -> Iterator[dg.AssetCheckResult]:
    ids = list(run_ids.values())
    runs = queries.run_rows(conn, ids)
    ceilings = {source.id: source.quality.max_records_per_run for source in sources}
    history = queries.count_history(conn, ids, ceilings, limit=expectations.HISTORY_RUNS)
    for source in sources:
        run = runs[source.id]
        complete = run.status != "ERROR"
        verdict = expectations.validate_value_range(
            source, run.fetched, history.get(source.id, []), complete=complete
        )
        quality = source.quality
        if verdict.outside_bounds:
            description = (
                f"{verdict.records} records, outside the catalog's "
                f"{quality.min_records_per_run}..{quality.max_records_per_run}"
            )
        elif verdict.outlier:
            description = (
                f"{verdict.records} records, robust z {verdict.spread.z:+.1f} against a median "
                f"of {verdict.spread.median:g} over {verdict.spread.history_runs} runs"
            )
        else:
            description = f"{verdict.records} records, within range"
        spread = verdict.spread
        yield _result(
            keys[source.id],
            verdict.passed,
            dg.AssetCheckSeverity.ERROR if verdict.outside_bounds else dg.AssetCheckSeverity.WARN,
            description,
            {
                "source_run_id": run.id,
                "records": verdict.records,
                "run_complete": complete,
                "min_records_per_run": quality.min_records_per_run,
                "max_records_per_run": quality.max_records_per_run,
                "robust_z_limit": expectations.ROBUST_Z_LIMIT,
                "history_runs": spread.history_runs,
                "great_expectations": dg.MetadataValue.json(verdict.summary),
                # Left out, not zero, while there is too little history to compute them.
                **_present(robust_z=spread.z, history_median=spread.median, history_mad=spread.mad),
            },
        )


def _timestamps(
    conn: Connection,
    sources: Sequence[Source],
    run_ids: Mapping[str, int],
    keys: Mapping[str, dg.AssetCheckKey],
) -> Iterator[dg.AssetCheckResult]:
    bounds = {
        source.id: queries.TimestampBounds(
            source.quality.earliest_date, source.quality.max_days_ahead
        )
        for source in sources
    }
    findings = queries.timestamp_findings(conn, run_ids, bounds)
    orders = {
        source.id: source.quality.ordered_by.split()
        for source in sources
        if source.quality.ordered_by
    }
    values = queries.order_values(conn, run_ids, {sid: order[0] for sid, order in orders.items()})
    for source in sources:
        found = findings[source.id]
        order = orders.get(source.id)
        inversions, unparsed = (
            count_inversions(values[source.id], descending=order[1] == "desc") if order else (0, 0)
        )
        problems = []
        if found.in_future:
            ahead = bounds[source.id].days_ahead
            problems.append(f"{found.in_future} dated more than {ahead} days after today")
        if found.too_early:
            problems.append(f"{found.too_early} dated before {bounds[source.id].earliest}")
        if inversions:
            problems.append(f"{inversions} out of {source.quality.ordered_by} order")
        yield _result(
            keys[source.id],
            not problems,
            dg.AssetCheckSeverity.WARN,
            "; ".join(problems) or f"{found.checked} documents dated within bounds",
            {
                "source_run_id": run_ids[source.id],
                "documents_checked": found.checked,
                "undated": found.undated,
                "in_future": found.in_future,
                "before_earliest_date": found.too_early,
                "earliest_date": bounds[source.id].earliest.isoformat(),
                "oldest": _day(found.oldest),
                "newest": _day(found.newest),
                "ordered_by": source.quality.ordered_by or "",
                "order_inversions": inversions,
                "order_values_unparsed": unparsed,
                "examples": dg.MetadataValue.json(list(found.examples)),
            },
        )


def count_inversions(values: Sequence[str | None], *, descending: bool) -> tuple[int, int]:
    """Adjacent pairs of ISO dates/timestamps out of the promised order, and values unparsed.

    Compared as instants, not text: one API mixes UTC offsets and fractional seconds.
    """
    parsed: list[datetime] = []
    unparsed = 0
    for value in values:
        instant = _instant(value)
        if instant is None:
            unparsed += 1
        else:
            parsed.append(instant)
    inversions = sum(
        1
        for earlier, later in zip(parsed, parsed[1:], strict=False)
        if (later > earlier if descending else later < earlier)
    )
    return inversions, unparsed


def _instant(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    # A date alone, or a time without zone: read as UTC so every value compares.
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _schema(
    conn: Connection,
    sources: Sequence[Source],
    run_ids: Mapping[str, int],
    keys: Mapping[str, dg.AssetCheckKey],
) -> Iterator[dg.AssetCheckResult]:
    shapes = queries.payload_signatures(conn, list(run_ids.values()))
    for source in sources:
        if not source.quality.expected_fields:
            # Fail closed: a source without a declared schema cannot be checked for drift.
            yield _result(
                keys[source.id],
                False,
                dg.AssetCheckSeverity.WARN,
                "no expected_fields declared for this source in the catalog",
                {"source_run_id": run_ids[source.id]},
            )
            continue
        verdict = expectations.validate_schema(source, shapes.get(source.id, []))
        problems = []
        if verdict.fields_missing:
            problems.append("missing: " + ", ".join(verdict.fields_missing))
        if verdict.fields_new:
            problems.append("new: " + ", ".join(verdict.fields_new))
        if verdict.types_changed:
            problems.append(
                "types changed: "
                + ", ".join(f"{name} ({'/'.join(t)})" for name, t in verdict.types_changed.items())
            )
        if verdict.not_objects:
            problems.append(f"{verdict.not_objects} payloads are not JSON objects")
        yield _result(
            keys[source.id],
            verdict.passed,
            dg.AssetCheckSeverity.WARN,
            "; ".join(problems) or f"{verdict.records_checked} payloads match the schema",
            {
                "source_run_id": run_ids[source.id],
                "records_checked": verdict.records_checked,
                "fields_missing": dg.MetadataValue.json(list(verdict.fields_missing)),
                "fields_new": dg.MetadataValue.json(list(verdict.fields_new)),
                "types_changed": dg.MetadataValue.json(verdict.types_changed),
                "great_expectations": dg.MetadataValue.json(verdict.summary),
            },
        )


def _result(
    check_key: dg.AssetCheckKey,
    passed: bool,
    severity: dg.AssetCheckSeverity,
    description: str,
    metadata: Mapping[str, object] | None = None,
) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=check_key.asset_key,
        check_name=check_key.name,
        passed=passed,
        severity=severity,
        description=description[:1000],
        metadata=dict(metadata or {}),
    )


def _present(**values: float | None) -> dict[str, float]:
    return {name: float(value) for name, value in values.items() if value is not None}


def _day(value: date | None) -> str:
    return value.isoformat() if value else ""
