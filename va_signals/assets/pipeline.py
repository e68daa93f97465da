"""The daily signals graph: an ingest step per source family, then documents, then signals.

Each catalog source is its own asset, but sources of one family are fetched by one step, in
threads: 30 to 300 sources must not each pay for a process. The graph is built so a failing
source only withholds its own asset: `documents` fans in from every source and runs when at
least one of them produced data, which plain asset dependencies in Dagster cannot express.
"""

import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from itertools import groupby

import dagster as dg
from pydantic import Field

from va_signals.catalog import Catalog, Source
from va_signals.checks.canaries import canary_outs, canary_specs, run_canaries
from va_signals.checks.freshness_checks import with_freshness_policies
from va_signals.db.locks import SourceBusy, source_lock
from va_signals.db.pool import DatabaseUnavailableError
from va_signals.db.source_runs import close_abandoned_runs
from va_signals.ingest import SourceRunResult, record_skipped_run, run_source
from va_signals.resilience.errors import BreakerOpen
from va_signals.resources import DatabaseResource, HttpResource
from va_signals.signals.pipeline import build_documents_stage, classify_pending
from va_signals.sources import SourceConfigError, build_adapter, load_adapters

DOCUMENTS_KEY = dg.AssetKey("documents")
SIGNALS_KEY = dg.AssetKey("signals")
GRAPH_NAME = "daily_signals_graph"

# Operators read progress lines from this logger (the CLI prints them); Dagster's own log
# gets the same events through `context.log`.
progress_logger = logging.getLogger("va_signals.progress")


class IngestConfig(dg.Config):
    """Run-time knobs of an ingest step."""

    max_pages: int | None = Field(
        default=None, ge=1, description="Override every source's page budget for this run."
    )
    max_workers: int = Field(default=4, ge=1, description="Sources of a family fetched at once.")
    source_lock_wait_seconds: float = Field(
        default=30.0,
        ge=0,
        description="How long a source waits for another run of it to finish before skipping.",
    )


def source_asset_key(source: Source) -> dg.AssetKey:
    return dg.AssetKey([source.family, source.id])


def build_pipeline(catalog: Catalog) -> dg.AssetsDefinition:
    """One graph-backed asset definition holding every enabled source, documents and signals."""
    # Adapters are imported here, once, so no ingest thread imports a module half-initialized.
    load_adapters()
    sources = sorted(catalog.enabled_sources, key=lambda source: (source.family, source.id))
    families = {
        family: list(members) for family, members in groupby(sources, key=lambda s: s.family)
    }
    checks = {source.id: canary_specs(source, source_asset_key(source)) for source in sources}
    family_ops = {
        family: _family_op(catalog, family, members, checks) for family, members in families.items()
    }

    @dg.op(name="build_documents", ins={"sources": dg.In(dg.Nothing)})
    def documents_op(context: dg.OpExecutionContext, database: DatabaseResource) -> Iterator:
        with database.connection() as conn:
            metadata = build_documents_stage(conn)
        context.log.info("documents: %s", metadata)
        yield dg.Output(None, metadata=metadata)

    @dg.op(name="classify_signals", ins={"documents": dg.In(dg.Nothing)})
    def signals_op(context: dg.OpExecutionContext, database: DatabaseResource) -> Iterator:
        metadata = classify_pending(database.pool, log=context.log)
        yield dg.Output(None, metadata=metadata)

    outs = {source.id: dg.GraphOut() for source in sources}
    check_outs = canary_outs([spec for specs in checks.values() for spec in specs])
    outs.update({name: dg.GraphOut() for name in check_outs})
    outs.update(documents=dg.GraphOut(), signals=dg.GraphOut())

    @dg.graph(name=GRAPH_NAME, out=outs)
    def daily_signals_graph():
        produced = {}
        checked = {}
        for family, members in families.items():
            # Every family op has its sources' check outputs too, so it always returns several.
            handles = family_ops[family]()._asdict()
            produced.update({source.id: handles.pop(source.id) for source in members})
            checked.update(handles)
        documents = documents_op(sources=list(produced.values()))
        signals = signals_op(documents=documents)
        return {**produced, **checked, "documents": documents, "signals": signals}

    keys = {source.id: source_asset_key(source) for source in sources}
    keys.update(documents=DOCUMENTS_KEY, signals=SIGNALS_KEY)
    return dg.AssetsDefinition.from_graph(
        daily_signals_graph,
        keys_by_output_name=keys,
        internal_asset_deps={
            **{source.id: set() for source in sources},
            "documents": {source_asset_key(source) for source in sources},
            "signals": {DOCUMENTS_KEY},
        },
        group_names_by_output_name={
            **{source.id: source.family for source in sources},
            "documents": "signals",
            "signals": "signals",
        },
        descriptions_by_output_name={
            **{source.id: source.description for source in sources},
            "documents": _DOCUMENTS_DESCRIPTION,
            "signals": _SIGNALS_DESCRIPTION,
        },
        owners_by_output_name={
            **{source.id: list(source.owners) for source in sources},
            "documents": ["team:va-signals"],
            "signals": ["team:va-signals"],
        },
        tags_by_output_name={
            **{source.id: _source_tags(catalog, source) for source in sources},
            "documents": {"dagster/kind/postgres": ""},
            "signals": {"dagster/kind/postgres": "", "dagster/kind/python": ""},
        },
        metadata_by_output_name={source.id: _source_metadata(source) for source in sources},
        check_specs=[spec for specs in checks.values() for spec in specs],
        can_subset=True,
    ).map_asset_specs(with_freshness_policies(catalog))


_DOCUMENTS_DESCRIPTION = (
    "Every stored government document, across sources, with copies of one document held by "
    "several sources linked to a single canonical row. Analysts query the `documents` table."
)
_SIGNALS_DESCRIPTION = (
    "Veterans' policy topics found in new and changed documents, each with a relevance score "
    "and the method that found it (the `signals` table)."
)


def _source_tags(catalog: Catalog, source: Source) -> dict[str, str]:
    service = catalog.service(source.service)
    return {
        "dagster/kind/api": "",
        "dagster/kind/postgres": "",
        "service": service.name.replace(":", "_"),
        "critical": str(source.critical).lower(),
    }


def _source_metadata(source: Source) -> dict[str, object]:
    return {
        "service": source.service,
        "cadence": source.cadence.value,
        "freshness_sla_hours": source.freshness_sla_hours,
        "critical": source.critical,
        "max_pages": source.max_pages,
    }


def _family_op(
    catalog: Catalog,
    family: str,
    members: Sequence[Source],
    checks: dict[str, list[dg.AssetCheckSpec]],
) -> dg.OpDefinition:
    by_id = {source.id: source for source in members}
    outs = {source.id: dg.Out(dg.Nothing, is_required=False) for source in members}
    outs.update(canary_outs([spec for source in members for spec in checks[source.id]]))

    @dg.op(
        name=f"ingest_{family}",
        out=outs,
        tags={"family": family},
        description=f"Fetch and store the {family} sources, several at a time.",
        # Retries the whole step when it fails outright (database lost, worker crash); a failing
        # source does not fail the step, it is recorded in its run.
        retry_policy=dg.RetryPolicy(
            max_retries=2, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.FULL
        ),
    )
    def ingest_family(
        context: dg.OpExecutionContext,
        config: IngestConfig,
        database: DatabaseResource,
        http: HttpResource,
    ) -> Iterator:
        selected = [by_id[name] for name in sorted(context.selected_output_names) if name in by_id]
        try:
            pool = database.pool
            database.ensure_schema()
        except DatabaseUnavailableError as exc:
            # Nothing can be recorded without the database: fail now, once, with the cause,
            # rather than retry the step against a server that is not there.
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        with database.connection() as conn:
            closed = close_abandoned_runs(conn)
        if closed:
            context.log.warning("closed %d source runs left RUNNING by a dead process", closed)

        def ingest(source: Source) -> SourceRunResult:
            service = catalog.service(source.service)
            breaker = http.breaker_for(service, source.id, log=context.log)
            try:
                # A catalog entry whose params its adapter rejects fails this source alone.
                adapter = build_adapter(source, service)
                # An open breaker would refuse every call: skip before making any.
                breaker.check()
                with source_lock(
                    pool,
                    source.id,
                    wait_seconds=config.source_lock_wait_seconds,
                    log=context.log,
                ):
                    client = http.client_for(service, source.id, log=context.log, gate=breaker)
                    result = run_source(
                        adapter,
                        client,
                        pool,
                        run_id=context.run_id,
                        max_pages=config.max_pages,
                        stats=client.stats,
                        log=context.log,
                    )
            # run_source turns every failure of the source into its result, so these come
            # only from the checks above, before any request was made.
            except (SourceConfigError, BreakerOpen, SourceBusy) as skipped:
                result = record_skipped_run(
                    pool, source.id, skipped, run_id=context.run_id, log=context.log
                )
            progress_logger.info(
                "%s %s", source.id, result.status.value, extra={"source_run": result}
            )
            return result

        # Each running source holds one pooled connection for its lock and borrows others for
        # its pages: locks may take at most half of the pool, so the work never starves.
        workers = min(
            config.max_workers, max(1, len(selected)), max(1, database.max_pool_size // 2)
        )
        with ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix=f"ingest-{family}"
        ) as threads:
            futures = {threads.submit(ingest, source): source for source in selected}
            run_ids = {}
            for future in as_completed(futures):
                source = futures[future]
                result = future.result()
                run_ids[source.id] = result.source_run_id
                yield from _report(source, result)
        # After every source of the family: one query per kind of check covers them all.
        yield from run_canaries(context, database.connection, members, run_ids)

    return ingest_family


def _report(source: Source, result: SourceRunResult) -> Iterator:
    metadata = {
        "status": result.status.value,
        "records_new": result.counts.new,
        "records_updated": result.counts.updated,
        "records_unchanged": result.counts.unchanged,
        "pages": result.pages,
        "truncated": result.truncated,
        "duration_ms": result.duration_ms,
        "slowest_request_ms": result.latency_max_ms if result.latency_max_ms is not None else -1,
        "median_request_ms": result.latency_p50_ms if result.latency_p50_ms is not None else -1,
        "requests": result.requests,
        "source_run_id": result.source_run_id or -1,
    }
    if result.ok:
        yield dg.Output(None, output_name=source.id, metadata=metadata)
        return
    # A failed source is not materialized, so its freshness keeps counting from the last good
    # run; the observation puts the failure on the asset's timeline in the UI.
    metadata["error_class"] = result.error_class or ""
    metadata["error"] = result.error_message or ""
    yield dg.AssetObservation(asset_key=source_asset_key(source), metadata=metadata)
