"""Runs the daily_signals job in this process against the local Dagster instance.

The CLI, the tests and the benchmarks share this one entry point, so what they exercise is
exactly what `va-signals run` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from va_signals.assets import DOCUMENTS_KEY, SIGNALS_KEY, source_asset_key
from va_signals.assets.pipeline import GRAPH_NAME
from va_signals.catalog import Catalog, default_catalog
from va_signals.db.location import database_url, redact
from va_signals.db.pool import DatabaseUnavailableError, get_pool
from va_signals.db.source_runs import runs_of
from va_signals.jobs import DAILY_SIGNALS_JOB
from va_signals.resources.http import api_key_settings


class JobRunError(RuntimeError):
    """The job could not be started; `usage` marks a mistake in the request itself."""

    def __init__(self, message: str, *, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


@dataclass
class JobOutcome:
    run_id: str
    success: bool
    source_runs: list[dict] = field(default_factory=list)
    step_failures: list[str] = field(default_factory=list)
    documents_total: int = 0
    signals_written: int = 0


def run_daily_signals(
    *,
    replay_dir: str | Path | None = None,
    record_dir: str | Path | None = None,
    select: Sequence[str] = (),
    max_pages: int | None = None,
    instance: dg.DagsterInstance | None = None,
    definitions: dg.Definitions | None = None,
    catalog: Catalog | None = None,
    log_level: str = "WARNING",
) -> JobOutcome:
    """Run the job once; source failures are data in the outcome, not exceptions."""
    from va_signals.definitions import defs as default_defs
    from va_signals.resources import DatabaseResource

    catalog = catalog or default_catalog()
    definitions = definitions or default_defs
    selection = _selection(catalog, select)

    url = database_url()
    try:
        DatabaseResource(url=url).ensure_schema()
    except DatabaseUnavailableError as exc:
        raise JobRunError(f"database unavailable at {redact(url)}: {exc}") from exc
    except Exception as exc:  # the job is pointless without its schema: stop here, clearly
        raise JobRunError(
            f"schema upgrade failed on {redact(url)}: {type(exc).__name__}: {exc}"
        ) from exc

    run_config: dict = {
        # Dagster's console log repeats every event; warnings and errors are what a person
        # running the command needs (the full log is in the instance, visible in the UI).
        "loggers": {"console": {"config": {"log_level": log_level}}},
        "resources": {
            "http": {
                # Run config replaces the resource's whole configuration, so the keys are
                # named again here (by environment variable, never by value).
                "config": {
                    "replay_dir": str(replay_dir or ""),
                    "record_dir": str(record_dir or ""),
                    **api_key_settings(as_run_config=True),
                }
            },
        },
    }
    if max_pages is not None:
        families = {catalog.source(name).family for name in select} if select else None
        run_config["ops"] = {
            GRAPH_NAME: {
                "ops": {
                    f"ingest_{family}": {"config": {"max_pages": max_pages}}
                    for family in {s.family for s in catalog.enabled_sources}
                    if families is None or family in families
                }
            }
        }

    job = definitions.resolve_job_def(DAILY_SIGNALS_JOB)
    result = job.execute_in_process(
        run_config=run_config,
        instance=instance or dg.DagsterInstance.get(),
        asset_selection=selection,
        raise_on_error=False,
        # The daemon retries runs it launched; a run in this process is not one of them, so
        # it must not be marked as about to be retried.
        tags={"dagster/max_retries": "0"},
    )
    return _outcome(result, url)


def _selection(catalog: Catalog, select: Sequence[str]) -> list[dg.AssetKey] | None:
    if not select:
        return None
    known = {source.id: source for source in catalog.enabled_sources}
    unknown = [name for name in select if name not in known]
    if unknown:
        raise JobRunError(
            f"--select: unknown or disabled source ids {unknown}; known: {sorted(known)}",
            usage=True,
        )
    return [source_asset_key(known[name]) for name in select] + [DOCUMENTS_KEY, SIGNALS_KEY]


def _outcome(result: dg.ExecuteInProcessResult, url: str) -> JobOutcome:
    failures = [
        f"{event.step_key}: {_root_cause(event.event_specific_data.error)}"
        for event in result.all_events
        if event.event_type_value == "STEP_FAILURE" and event.event_specific_data.error
    ]
    signals_written = 0
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        if materialization.asset_key == SIGNALS_KEY:
            value = materialization.metadata.get("signals_written")
            signals_written = int(value.value) if value is not None else 0
    try:
        with get_pool(url).connection() as conn:
            rows = runs_of(conn, result.run_id)
            total = conn.execute("SELECT count(*) FROM documents").fetchone()[0]
    except DatabaseUnavailableError as exc:
        failures.append(str(exc))
        rows, total = [], 0
    return JobOutcome(
        run_id=result.run_id,
        success=result.success,
        source_runs=rows,
        step_failures=failures,
        documents_total=total,
        signals_written=signals_written,
    )


def _root_cause(error) -> str:
    # Dagster wraps the op's exception; the innermost cause is what an operator can act on.
    while error.cause is not None:
        error = error.cause
    return error.message.strip()
