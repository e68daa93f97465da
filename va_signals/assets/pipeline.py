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
from va_signals.db.source_runs import close_abandoned_runs
from va_signals.ingest import SourceRunResult, run_source
from va_signals.resources import DatabaseResource, HttpResource
from va_signals.signals.pipeline import build_documents_stage, classify_pending
from va_signals.sources import build_adapter

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


def source_asset_key(source: Source) -> dg.AssetKey:
    return dg.AssetKey([source.family, source.id])


def build_pipeline(catalog: Catalog) -> dg.AssetsDefinition:
    """One graph-backed asset definition holding every enabled source, documents and signals."""
    sources = sorted(catalog.enabled_sources, key=lambda source: (source.family, source.id))
    families = {
        family: list(members) for family, members in groupby(sources, key=lambda s: s.family)
    }
    family_ops = {
        family: _family_op(catalog, family, members) for family, members in families.items()
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
    outs.update(documents=dg.GraphOut(), signals=dg.GraphOut())

    @dg.graph(name=GRAPH_NAME, out=outs)
    def daily_signals_graph():
        produced = {}
        for family, members in families.items():
            handles = family_ops[family]()
            if len(members) == 1:
                handles = (handles,)
            produced.update(zip([source.id for source in members], handles, strict=True))
        documents = documents_op(sources=list(produced.values()))
        signals = signals_op(documents=documents)
        return {**produced, "documents": documents, "signals": signals}

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
        can_subset=True,
    )


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


def _family_op(catalog: Catalog, family: str, members: Sequence[Source]) -> dg.OpDefinition:
    by_id = {source.id: source for source in members}

    @dg.op(
        name=f"ingest_{family}",
        out={source.id: dg.Out(dg.Nothing, is_required=False) for source in members},
        tags={"family": family},
        description=f"Fetch and store the {family} sources, several at a time.",
    )
    def ingest_family(
        context: dg.OpExecutionContext,
        config: IngestConfig,
        database: DatabaseResource,
        http: HttpResource,
    ) -> Iterator:
        selected = [by_id[name] for name in sorted(context.selected_output_names) if name in by_id]
        database.ensure_schema()
        pool = database.pool
        with database.connection() as conn:
            closed = close_abandoned_runs(conn)
        if closed:
            context.log.warning("closed %d source runs left RUNNING by a dead process", closed)

        def ingest(source: Source) -> SourceRunResult:
            service = catalog.service(source.service)
            client = http.client_for(service, source.id, log=context.log)
            adapter = build_adapter(source, service)
            result = run_source(
                adapter,
                client,
                pool,
                run_id=context.run_id,
                max_pages=config.max_pages,
                stats=client.stats,
                log=context.log,
            )
            progress_logger.info(
                "%s %s", source.id, result.status.value, extra={"source_run": result}
            )
            return result

        workers = min(config.max_workers, max(1, len(selected)))
        with ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix=f"ingest-{family}"
        ) as pool_:
            futures = {pool_.submit(ingest, source): source for source in selected}
            for future in as_completed(futures):
                source = futures[future]
                yield from _report(source, future.result())

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
