"""Observability query figures: what the health score and the incident correlator read from
`source_runs`, timed at 100k and 1M generated rows, with the plans PostgreSQL chose.

The ledger is generated inside the database with generate_series (300 sources on 40 services,
1 to 3 years of runs each, about 5% ERROR, per-service request latencies), ordered by start
time as the real ledger's ids are. The statements timed and explained are the ones the
production functions send (`load_health_inputs`, `correlate_pass`, the incident history
readers): a tracing cursor records each statement, its parameters and its time while those
functions run, so nothing here repeats their SQL.

Each function runs WARMUP times first, which also takes psycopg past its prepare threshold and
PostgreSQL past its first custom plans, as on a sensor's long-lived pooled connection (where
the health score's statements run on generic plans); then best and median of RUNS. Each
function's statements are explained right after its timing, with the generic plan when
PostgreSQL had switched to it. The correlator's reads are timed by calling its read functions
as `correlate_pass` does; the whole pass is timed too, in a transaction rolled back every time
so each repetition sees the same state (psycopg forgets prepared statements on a rollback, so
that figure is for custom plans).
"""

from __future__ import annotations

import math
import random
import re
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import psycopg
from psycopg import sql

from benchmarks.common import scratch_database
from va_signals.alerts.messages import Channel
from va_signals.catalog import Catalog
from va_signals.db.health import load_health_inputs
from va_signals.db.incidents import (
    MAX_ROWS_PER_PASS,
    CorrelatorCursor,
    _breaker_inputs,
    _new_failures,
    _open_incidents,
    correlate_pass,
    incidents_open_at,
    open_and_recent_incidents,
)
from va_signals.db.source_runs import latest_runs
from va_signals.resilience.correlation import CorrelationPolicy, DependencyGraph
from va_signals.resilience.health import compute_health

SIZES = (100_000, 1_000_000)
SOURCES = 300
SERVICES = 40
# Services other services sit behind (an API gateway, a shared front end).
GATEWAYS = 3
FAMILIES = (
    "congress",
    "federal_register",
    "ecfr",
    "lda",
    "regulations",
    "gao",
    "cbo",
    "courts",
    "va_oig",
    "openstates",
    "crs",
    "hearings",
)
MIN_YEARS, MAX_YEARS = 1.0, 3.0
ERROR_SHARE = 0.05
NO_DATA_SHARE = 0.12
# Sources whose run is in flight right now (a RUNNING row with no end).
RUNNING_NOW = 6
# Sources retired upstream but still in the catalog: their last run was months ago.
RETIRED = 9
# Sources failing right now, in one open incident per service, with their breakers open.
FAILING_SERVICES = 2
FAILING_PER_SERVICE = 3
WARMUP = 12
RUNS = 9
TARGET_MS = 50.0
# A sequential scan of source_runs that read at most this many rows stopped at once (EXISTS).
PROBE_ROWS = 100
SEED = 20261204
# Statements not worth a plan: catalog lookups, locks, sequence draws.
_TRIVIAL = re.compile(r"to_regclass|information_schema|pg_advisory|nextval", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%s")


# --- the tracing cursor -------------------------------------------------------------------


@dataclass
class Statement:
    """One statement a production function sent, where from, and how long it took."""

    label: str
    query: Any
    params: Any
    elapsed_ms: float


class _Trace:
    """Where traced statements go; None while nothing is being recorded."""

    statements: list[Statement] | None = None


class TracingCursor(psycopg.Cursor):
    """A cursor that records every execute, labelled with the project function calling it."""

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> TracingCursor:
        started = time.perf_counter()
        try:
            return super().execute(query, params, **kwargs)
        finally:
            if _Trace.statements is not None:
                elapsed = (time.perf_counter() - started) * 1000
                _Trace.statements.append(Statement(_caller(), query, params, elapsed))


def _caller() -> str:
    frame = sys._getframe(2)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.startswith("va_signals."):
            short = module.removeprefix("va_signals.")
            return f"{short}.{frame.f_code.co_name}:{frame.f_lineno}"
        frame = frame.f_back
    return "?"


@contextmanager
def traced() -> Iterator[list[Statement]]:
    statements: list[Statement] = []
    _Trace.statements = statements
    try:
        yield statements
    finally:
        _Trace.statements = None


# --- the synthetic catalog and ledger ------------------------------------------------------


@dataclass(frozen=True)
class Fleet:
    """The generated catalog and the per-source parameters of its ledger."""

    catalog: Catalog
    failing: tuple[str, ...]
    failing_services: tuple[str, ...]
    running: tuple[str, ...]
    params: dict[str, list[Any]] = field(default_factory=dict)


def build_fleet(total_runs: int) -> Fleet:
    rng = random.Random(SEED)
    gateways = [f"gateway{index}.example.gov" for index in range(GATEWAYS)]
    services = gateways + [f"svc{index:02d}.example.gov" for index in range(SERVICES - GATEWAYS)]
    behind = {
        name: ((gateways[index % GATEWAYS],) if index < 12 else ())
        for index, name in enumerate(services[GATEWAYS:])
    }
    # Every non-gateway service has a source; the rest go mostly to the first few services.
    served = services[GATEWAYS:]
    popularity = [1 / (rank + 1) ** 0.8 for rank in range(len(served))]
    service_of = served + rng.choices(served, weights=popularity, k=SOURCES - len(served))
    ids = [f"{FAMILIES[index % len(FAMILIES)]}_{index:03d}" for index in range(SOURCES)]
    catalog = Catalog.model_validate(
        {
            "services": [
                {
                    "name": name,
                    "base_url": f"https://{name}",
                    "behind": list(behind.get(name, ())),
                    "rate_limit": {"requests": 10, "per_seconds": 1},
                }
                for name in services
            ],
            "sources": [
                {
                    "id": source_id,
                    "family": source_id.rsplit("_", 1)[0],
                    "adapter": "none",
                    "service": service_of[index],
                    "description": f"generated source {source_id}",
                    "cadence": rng.choice(["hourly", "daily", "weekdays", "weekly"]),
                    "freshness_sla_hours": rng.choice([6, 30, 30, 80, 200]),
                    "critical": rng.random() < 0.1,
                    "max_pages": 10,
                }
                for index, source_id in enumerate(ids)
            ],
        }
    )
    years = [rng.uniform(MIN_YEARS, MAX_YEARS) for _ in ids]
    # Busier sources run more often; the counts add up to `total_runs`.
    weights = [span * rng.uniform(0.3, 1.7) for span in years]
    scale = total_runs / sum(weights)
    runs = [max(10, round(weight * scale)) for weight in weights]
    runs[0] += total_runs - sum(runs)
    by_service: dict[str, list[str]] = defaultdict(list)
    for source_id, service in zip(ids, service_of, strict=True):
        by_service[service].append(source_id)
    crowded = sorted(
        (service for service, members in by_service.items() if len(members) > FAILING_PER_SERVICE),
        key=lambda name: (-len(by_service[name]), name),
    )
    failing_services = tuple(crowded[:FAILING_SERVICES])
    failing = tuple(
        source_id
        for service in failing_services
        for source_id in by_service[service][:FAILING_PER_SERVICE]
    )
    candidates = [source_id for source_id in ids if source_id not in failing]
    running = tuple(rng.sample(candidates, RUNNING_NOW))
    retired = set(rng.sample([s for s in candidates if s not in running], RETIRED))
    base_latency = {service: rng.lognormvariate(math.log(350), 0.6) for service in services}
    params = {
        "ids": ids,
        "services": service_of,
        "runs": runs,
        "span_days": [365.25 * span for span in years],
        # Per-source error rates around ERROR_SHARE: a few flaky sources, most steady.
        "err_rate": [min(0.3, rng.expovariate(1 / ERROR_SHARE)) for _ in ids],
        # How often a run finds something new: from quiet weekly feeds to busy listings.
        "new_rate": [rng.choice([0.02, 0.1, 0.3, 0.6, 0.9]) for _ in ids],
        "latency_ms": [base_latency[service] for service in service_of],
        "running": [source_id in running for source_id in ids],
        "idle_days": [rng.uniform(70, 300) if source_id in retired else 0.0 for source_id in ids],
    }
    return Fleet(catalog, failing, failing_services, running, params)


_GENERATE_RUNS = """
INSERT INTO source_runs (source_id, run_id, status, started_at, ended_at, duration_ms, pages,
                         records_new, records_updated, records_unchanged, records_duplicate,
                         truncated, error_class, error_message, latency_p50_ms, latency_max_ms,
                         requests, pid)
SELECT source_id,
       'run-' || to_char(date_trunc('hour', started_at), 'YYYYMMDDHH24'),
       status,
       started_at,
       ended_at,
       CASE WHEN ended_at IS NOT NULL
            THEN (extract(epoch FROM ended_at - started_at) * 1000)::int END,
       CASE WHEN status = 'NO_DATA' THEN 1 ELSE 1 + (u1 * 4)::int END,
       CASE WHEN status = 'SUCCESS' AND u2 < new_rate THEN 1 + (u1 * 40)::int ELSE 0 END,
       CASE WHEN status = 'SUCCESS' THEN (u3 * 3)::int ELSE 0 END,
       CASE WHEN status = 'SUCCESS' THEN (u1 * 300)::int ELSE 0 END,
       0,
       status = 'SUCCESS' AND u3 > 0.99,
       CASE WHEN status = 'ERROR' THEN (ARRAY['UpstreamUnavailable', 'ReadTimeout',
            'RateLimited', 'Blocked', 'SourceShapeError', 'RequestRejected'])[1 + (u1 * 5)::int]
       END,
       CASE WHEN status = 'ERROR' THEN 'generated failure: HTTP 503 after 4 attempts' END,
       latency,
       CASE WHEN latency IS NOT NULL THEN (latency * (1.2 + 3 * u2))::int END,
       CASE WHEN status = 'RUNNING' THEN 0 ELSE 1 + (u1 * 6)::int END,
       1000 + (u2 * 30000)::int
FROM (
    SELECT s.source_id, s.new_rate, r.status, r.started_at, r.u1, r.u2, r.u3,
           CASE WHEN r.status <> 'RUNNING'
                THEN least(r.started_at + make_interval(secs => 2 + r.u1 * r.u1 * 600), now())
           END AS ended_at,
           CASE WHEN r.status = 'RUNNING' OR (r.status = 'ERROR' AND r.u3 < 0.5) THEN NULL
                ELSE (s.latency_ms * (0.7 + 0.6 * r.u2) * CASE WHEN r.u3 > 0.98 THEN 4 ELSE 1 END)
                     ::int
           END AS latency
    FROM unnest(%(ids)s::text[], %(runs)s::int[], %(span_days)s::float8[],
                %(err_rate)s::float8[], %(new_rate)s::float8[], %(latency_ms)s::float8[],
                %(running)s::bool[], %(idle_days)s::float8[])
         AS s(source_id, runs, span_days, err_rate, new_rate, latency_ms, running, idle_days)
    CROSS JOIN LATERAL generate_series(1, s.runs) AS g(k)
    CROSS JOIN LATERAL (
        SELECT now() - interval '3 minutes' - make_interval(secs => s.idle_days * 86400)
                 - make_interval(secs => s.span_days * 86400 * (s.runs - g.k + random() * 0.5)
                                         / s.runs) AS started_at,
               CASE WHEN s.running AND g.k = s.runs THEN 'RUNNING'
                    WHEN random() < s.err_rate THEN 'ERROR'
                    WHEN random() < %(no_data)s THEN 'NO_DATA'
                    ELSE 'SUCCESS' END AS status,
               random() AS u1, random() AS u2, random() AS u3
        -- A reference to g.k keeps the subquery per row instead of evaluated once.
        WHERE g.k IS NOT NULL
    ) AS r
) AS generated
ORDER BY started_at
"""

# The failing sources' latest three finished runs failed: their incident is still open.
_FAIL_LATEST = """
UPDATE source_runs SET status = 'ERROR', error_class = 'UpstreamUnavailable',
       error_message = 'generated outage: HTTP 503', records_new = 0, records_updated = 0,
       records_unchanged = 0, latency_p50_ms = NULL, latency_max_ms = NULL
WHERE id IN (
    SELECT id FROM (
        SELECT id, row_number() OVER (PARTITION BY source_id ORDER BY ended_at DESC) AS newest
        FROM source_runs
        WHERE source_id = ANY(%(failing)s) AND status <> 'RUNNING'
    ) AS ranked
    WHERE newest <= 3
)
"""

_GENERATE_DOCUMENTS = """
INSERT INTO documents (source_id, external_id, title, url, published_on, first_seen_at,
                       last_seen_at, content_hash, dedup_key, payload)
SELECT s.source_id, s.source_id || '-' || g.n, 'Generated document ' || g.n,
       'https://example.gov/d/' || s.source_id || '/' || g.n,
       (now() - make_interval(days => g.n))::date,
       now() - make_interval(days => g.n), now() - make_interval(days => g.n %% 30),
       md5(s.source_id || g.n), NULL, jsonb_build_object('n', g.n)
FROM unnest(%(ids)s::text[]) WITH ORDINALITY AS s(source_id, ordinal)
CROSS JOIN LATERAL generate_series(1, %(per_source)s) AS g(n)
-- One source in ten has stored nothing yet.
WHERE s.ordinal %% 10 <> 0
"""

_GENERATE_BREAKERS = """
INSERT INTO breaker_state (service, state, opened_at, open_until, reopen_count, updated_at)
SELECT service,
       CASE WHEN service = ANY(%(failing_services)s) THEN 'OPEN' ELSE 'CLOSED' END,
       CASE WHEN service = ANY(%(failing_services)s) THEN now() - interval '20 minutes' END,
       CASE WHEN service = ANY(%(failing_services)s) THEN now() + interval '40 minutes' END,
       CASE WHEN service = ANY(%(failing_services)s) THEN 2 ELSE 0 END,
       now()
FROM unnest(%(services)s::text[]) AS s(service);

INSERT INTO breaker_events (service, from_state, to_state, reason, at)
SELECT (%(services)s::text[])[1 + (random() * (cardinality(%(services)s::text[]) - 1))::int],
       transition.from_state, transition.to_state, 'generated', at
FROM generate_series(1, %(events)s) AS g(n)
CROSS JOIN LATERAL (
    SELECT now() - make_interval(secs => random() * 3 * 365 * 86400) AS at,
           (ARRAY['CLOSED', 'OPEN', 'HALF_OPEN'])[1 + g.n %% 3] AS from_state,
           (ARRAY['OPEN', 'HALF_OPEN', 'CLOSED'])[1 + g.n %% 3] AS to_state
) AS transition
ORDER BY at;

-- The failing services' breakers opened twenty minutes ago.
INSERT INTO breaker_events (service, from_state, to_state, reason, at)
SELECT service, 'CLOSED', 'OPEN', 'generated outage', now() - interval '20 minutes'
FROM unnest(%(failing_services)s::text[]) AS s(service);
"""

_GENERATE_INCIDENTS = """
INSERT INTO incidents (tier, root_cause, severity, summary, services, dedup_key, opened_at,
                       last_seen_at, resolved_at, version, alert_state)
SELECT tier, service, severity, service || ' down (generated)', ARRAY[service],
       'va-signals/bench/' || g.n, opened_at, opened_at + (lasted / 2), opened_at + lasted, 2,
       'resolved'
FROM generate_series(1, %(count)s) AS g(n)
CROSS JOIN LATERAL (
    SELECT (%(services)s::text[])[1 + (random() * (cardinality(%(services)s::text[]) - 1))::int]
               AS service,
           (ARRAY['service', 'isolated', 'isolated', 'breaker_cascade'])[1 + g.n %% 4] AS tier,
           (ARRAY['error', 'warning', 'critical'])[1 + g.n %% 3] AS severity,
           now() - interval '1 day' - make_interval(secs => random() * 3 * 365 * 86400)
               AS opened_at,
           make_interval(secs => 300 + random() * 86400) AS lasted
    WHERE g.n IS NOT NULL
) AS picked
ORDER BY opened_at;

INSERT INTO incident_sources (incident_id, source_id, service, first_failed_at, last_failed_at,
                              error_class, recovered_at, active)
SELECT i.id, 'generated_' || (i.id %% 300), i.root_cause, i.opened_at, i.last_seen_at,
       'UpstreamUnavailable', i.resolved_at, false
FROM incidents AS i;

INSERT INTO alert_outbox (channel, dedup_key, action, version, incident_id, tracks_incident,
                          summary, body, status, attempts, sent_at)
SELECT 'pagerduty', i.dedup_key, action.name, action.version, i.id, true, i.summary, '{}',
       'SENT', 1, i.opened_at
FROM incidents AS i
CROSS JOIN (VALUES ('trigger', '1'), ('resolve', '2')) AS action(name, version);
"""


@dataclass(frozen=True)
class Generated:
    rows: int
    seconds: float
    analyze_seconds: float
    table_mb: float
    indexes_mb: float
    error_share: float
    years: tuple[float, float]


def generate(url: str, fleet: Fleet, total_runs: int) -> Generated:
    """The ledger, documents, breakers and incident history of `fleet`, then VACUUM ANALYZE."""
    with psycopg.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        conn.execute("SELECT setseed(%s)", (0.42,))
        conn.execute(_GENERATE_RUNS, {**fleet.params, "no_data": NO_DATA_SHARE})
        conn.execute(_FAIL_LATEST, {"failing": list(fleet.failing)})
        conn.execute(_GENERATE_DOCUMENTS, {"ids": fleet.params["ids"], "per_source": 40})
        services = [service.name for service in fleet.catalog.services]
        breaker_args = {
            "services": services,
            "failing_services": list(fleet.failing_services),
            "events": total_runs // 200,
        }
        for statement in _GENERATE_BREAKERS.split(";\n\n"):
            conn.execute(statement, breaker_args)
        incident_args = {"services": services, "count": total_runs // 100}
        for statement in _GENERATE_INCIDENTS.split(";\n\n"):
            conn.execute(statement, incident_args)
        _generate_open_incidents(conn, fleet)
        seconds = time.perf_counter() - started
        started = time.perf_counter()
        # Autovacuum would have visited an insert-only table of this size (PostgreSQL 13+
        # vacuums after inserts too); ANALYZE gives the planner its statistics.
        conn.execute("VACUUM (ANALYZE) source_runs")
        conn.execute("VACUUM (ANALYZE)")
        analyze_seconds = time.perf_counter() - started
        rows, errors, table, indexes = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE status = 'ERROR'), "
            "pg_table_size('source_runs'), pg_indexes_size('source_runs') FROM source_runs"
        ).fetchone()
    spans = fleet.params["span_days"]
    return Generated(
        rows,
        seconds,
        analyze_seconds,
        table / 2**20,
        indexes / 2**20,
        errors / rows,
        (min(spans) / 365.25, max(spans) / 365.25),
    )


def _generate_open_incidents(conn: psycopg.Connection, fleet: Fleet) -> None:
    """One open service incident per failing service, holding its failing sources."""
    service_of = {source.id: source.service for source in fleet.catalog.sources}
    for service in fleet.failing_services:
        members = [source_id for source_id in fleet.failing if service_of[source_id] == service]
        incident_id = conn.execute(
            """
            INSERT INTO incidents (tier, root_cause, severity, summary, services, dedup_key,
                                   opened_at, last_seen_at, alert_state)
            VALUES ('service', %(service)s, 'error', %(service)s || ' down (generated)',
                    ARRAY[%(service)s], 'va-signals/bench/open/' || %(service)s,
                    now() - interval '2 hours', now() - interval '10 minutes', 'triggered')
            RETURNING id
            """,
            {"service": service},
        ).fetchone()[0]
        conn.execute(
            """
            INSERT INTO incident_sources (incident_id, source_id, service, first_failed_at,
                                          last_failed_at, last_source_run_id, error_class)
            SELECT %(incident)s, source_id, %(service)s, min(ended_at), max(ended_at), max(id),
                   'UpstreamUnavailable'
            FROM source_runs
            WHERE source_id = ANY(%(members)s) AND status = 'ERROR'
              AND ended_at > now() - interval '3 days'
            GROUP BY source_id
            """,
            {"incident": incident_id, "service": service, "members": members},
        )


# --- timing --------------------------------------------------------------------------------


@dataclass
class Timing:
    """Per call of one production function: its whole time and each statement's."""

    name: str
    whole_ms: list[float] = field(default_factory=list)
    statements: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    examples: dict[str, Statement] = field(default_factory=dict)
    plans: dict[str, PlanSummary] = field(default_factory=dict)


def measure(
    name: str, call: Callable[[], Any], explain_on: psycopg.Connection | None = None
) -> Timing:
    """Time `call`; with `explain_on`, explain its reads at once, while they are prepared."""
    timing = Timing(name)
    for _ in range(WARMUP):
        call()
    for _ in range(RUNS):
        with traced() as statements:
            started = time.perf_counter()
            call()
            timing.whole_ms.append((time.perf_counter() - started) * 1000)
        seen: dict[str, float] = defaultdict(float)
        for statement in statements:
            seen[statement.label] += statement.elapsed_ms
            timing.examples.setdefault(statement.label, statement)
        for label, elapsed in seen.items():
            timing.statements[label].append(elapsed)
    if explain_on is not None:
        generic = generic_statements(explain_on)
        for label, statement in timing.examples.items():
            if _explainable(explain_on, statement):
                name = generic.get(_prepared_text(explain_on, statement))
                timing.plans[label] = explain(explain_on, statement, name)
    return timing


def _explainable(conn: psycopg.Connection, statement: Statement) -> bool:
    """A read worth a plan: a SELECT (EXPLAIN ANALYZE of it changes nothing), not a lookup."""
    query = statement.query
    text = query.as_string(conn) if isinstance(query, sql.Composable) else query
    return not _TRIVIAL.search(text) and text.lstrip().upper().startswith(("SELECT", "WITH"))


def run_queries(url: str, fleet: Fleet) -> tuple[list[Timing], psycopg.Connection]:
    """Time the health score's reads, the correlator's reads and whole passes, and the incident
    history readers."""
    conn = psycopg.connect(url, autocommit=True, cursor_factory=TracingCursor)
    now = conn.execute("SELECT now()").fetchone()[0]
    catalog = fleet.catalog
    graph = DependencyGraph(catalog)
    policy = CorrelationPolicy()
    newest = conn.execute("SELECT max(id) FROM source_runs").fetchone()[0]

    def cursor_behind(rows: int) -> CorrelatorCursor:
        return CorrelatorCursor(newest - rows, now - timedelta(days=1))

    def correlator_reads(behind: int) -> Callable[[], Any]:
        """What `correlate_pass` reads, in its order and with its arguments; no writes."""
        cursor = cursor_behind(behind)

        def call() -> Any:
            failures, _ = _new_failures(conn, cursor.source_run_id, now, lambda run_ids: ())
            incidents = _open_incidents(conn)
            watched = {failure.source_id for failure in failures}
            for incident in incidents:
                watched |= incident.source_ids
            latest = latest_runs(conn, sorted(watched)) if watched else []
            since = max(now - policy.window, cursor.breakers_since)
            return failures, incidents, latest, _breaker_inputs(conn, since, now)

        return call

    def correlator_pass(behind: int) -> Callable[[], Any]:
        cursor = cursor_behind(behind)

        def call() -> Any:
            with conn.transaction(force_rollback=True):
                return correlate_pass(
                    conn, graph, policy, cursor, now=now, channels=(Channel.PAGERDUTY,)
                )

        return call

    # The sensor ticks every minute: about one job's worth of rows behind is the usual pass;
    # MAX_ROWS_PER_PASS behind is a correlator catching up after a day away.
    usual, catch_up = f"{SOURCES} rows behind", f"{MAX_ROWS_PER_PASS:,} rows behind"
    timings = [
        measure(
            "health score: load_health_inputs + compute_health",
            lambda: compute_health(load_health_inputs(conn, catalog, now)),
            conn,
        ),
        measure(f"correlator reads, {usual}", correlator_reads(SOURCES), conn),
        measure(f"correlator reads, {catch_up}", correlator_reads(MAX_ROWS_PER_PASS), conn),
        measure(
            "incident history: open_and_recent_incidents, incidents_open_at",
            lambda: (
                open_and_recent_incidents(conn, now - timedelta(days=7)),
                incidents_open_at(conn, now - timedelta(days=200)),
            ),
            conn,
        ),
        # Last: their rollbacks make psycopg forget every prepared statement.
        measure(f"correlator pass, {usual}, rolled back: correlate_pass", correlator_pass(SOURCES)),
        measure(
            f"correlator pass, {catch_up}, rolled back: correlate_pass",
            correlator_pass(MAX_ROWS_PER_PASS),
        ),
    ]
    return timings, conn


# --- plans ---------------------------------------------------------------------------------


@dataclass
class PlanSummary:
    execution_ms: float
    hit: int
    read: int
    indexes: list[str]
    # Relation -> rows the sequential scans of it read (returned plus filtered out).
    seq_scans: dict[str, int]
    lines: list[str]
    mode: str
    jit_ms: float

    @property
    def source_runs_scanned(self) -> int | None:
        return self.seq_scans.get("source_runs")


def explain(conn: psycopg.Connection, statement: Statement, generic: str | None) -> PlanSummary:
    """EXPLAIN (ANALYZE, BUFFERS) of a captured statement, with the parameters it ran with.

    `generic` names the server-side prepared statement when PostgreSQL was running it with its
    generic plan: that plan is the one explained then.
    """
    options = "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "
    # No transaction to roll back: psycopg would forget its prepared statements on a rollback,
    # and an EXPLAIN ANALYZE of a SELECT changes nothing.
    if generic is not None:
        conn.execute("SET plan_cache_mode = force_generic_plan")
        try:
            arguments = _positional(conn, statement)
            placeholders = f"({', '.join(['%s'] * len(arguments))})" if arguments else ""
            cursor = psycopg.ClientCursor(conn)
            cursor.execute(f"{options}EXECUTE {generic}{placeholders}", arguments)
            plan = cursor.fetchone()[0][0]
        finally:
            conn.execute("RESET plan_cache_mode")
    else:
        query = statement.query
        if isinstance(query, sql.Composable):
            query = sql.SQL(options) + query
        else:
            query = options + query
        plan = conn.execute(query, statement.params).fetchone()[0][0]
    indexes: list[str] = []
    seq_scans: dict[str, int] = defaultdict(int)
    lines: list[str] = []
    _walk(plan["Plan"], 0, indexes, seq_scans, lines)
    top = plan["Plan"]
    return PlanSummary(
        plan["Execution Time"],
        top.get("Shared Hit Blocks", 0),
        top.get("Shared Read Blocks", 0),
        sorted(set(indexes)),
        dict(seq_scans),
        lines,
        "generic" if generic else "custom",
        plan.get("JIT", {}).get("Timing", {}).get("Total", 0.0),
    )


def _positional(conn: psycopg.Connection, statement: Statement) -> list[Any]:
    """The statement's parameters in the order of the $n psycopg gave them."""
    query = statement.query
    text = query.as_string(conn) if isinstance(query, sql.Composable) else query
    params = statement.params
    if isinstance(params, dict):
        names: list[str] = []
        for match in _PLACEHOLDER.finditer(text):
            if match.group(1) not in names:
                names.append(match.group(1))
        return [params[name] for name in names]
    return list(params or ())


def _walk(
    node: dict, depth: int, indexes: list[str], seq_scans: dict[str, int], lines: list[str]
) -> None:
    kind = node["Node Type"]
    relation = node.get("Relation Name")
    index = node.get("Index Name")
    if index:
        indexes.append(index)
    loops = node.get("Actual Loops", 1)
    rows = node.get("Actual Rows", 0)
    removed = node.get("Rows Removed by Filter", 0)
    if kind == "Seq Scan" and relation:
        # Per-loop averages in the plan; workers of a parallel scan each report their share.
        seq_scans[relation] += round((rows + removed) * loops)
    where = f" on {relation}" if relation else ""
    using = f" using {index}" if index else ""
    detail = f"rows={rows:g}" + (f" loops={loops:g}" if loops != 1 else "")
    if removed:
        detail += f" filtered={removed:g}"
    heap = node.get("Heap Fetches")
    if heap:
        detail += f" heap fetches={heap:g}"
    lines.append(f"{'  ' * depth}{kind}{where}{using} ({detail})")
    for child in node.get("Plans", ()):
        _walk(child, depth + 1, indexes, seq_scans, lines)


def generic_statements(conn: psycopg.Connection) -> dict[str, str]:
    """Prepared statement text -> name, for those PostgreSQL ran with a generic plan."""
    rows = conn.execute(
        "SELECT name, statement FROM pg_prepared_statements WHERE generic_plans > 0"
    ).fetchall()
    return {statement: name for name, statement in rows}


def _prepared_text(conn: psycopg.Connection, statement: Statement) -> str:
    """The text PostgreSQL holds for a statement psycopg prepared: $n for each placeholder."""
    query = statement.query
    text = query.as_string(conn) if isinstance(query, sql.Composable) else query
    numbers: dict[str, int] = {}
    counter = iter(range(1, 1000))

    def number(match: re.Match) -> str:
        name = match.group(1)
        if name is None:
            return f"${next(counter)}"
        if name not in numbers:
            numbers[name] = next(counter)
        return f"${numbers[name]}"

    return _PLACEHOLDER.sub(number, text).replace("%%", "%")


# --- report --------------------------------------------------------------------------------


@dataclass
class Finding:
    size: int
    label: str
    best: float
    median: float
    # Rows a Seq Scan on source_runs read, None when there was none.
    scanned: int | None


def report(size: int, timings: Sequence[Timing]) -> list[Finding]:
    findings: list[Finding] = []
    print(f"  {'function / statement (module.function:line)':<66}{'best ms':>9}{'median':>9}")
    for timing in timings:
        best, median = min(timing.whole_ms), statistics.median(timing.whole_ms)
        print(f"  {timing.name:<66}{best:9.2f}{median:9.2f}")
        for label, values in sorted(timing.statements.items(), key=lambda item: -max(item[1])):
            best_s, median_s = min(values), statistics.median(values)
            mark = ""
            summary = timing.plans.get(label)
            if summary is not None:
                scanned = summary.source_runs_scanned
                mark = "" if scanned is None else f"  * Seq Scan source_runs, {scanned:,} rows"
                findings.append(Finding(size, label, best_s, median_s, scanned))
            print(f"    {label:<64}{best_s:9.2f}{median_s:9.2f}{mark}")
    print(f"  plans at {size:,} rows (EXPLAIN ANALYZE, BUFFERS, the parameters of a timed call):")
    for timing in timings:
        for label, summary in timing.plans.items():
            seq = ", ".join(f"{rel} ({rows:,} rows)" for rel, rows in summary.seq_scans.items())
            jit = f", JIT {summary.jit_ms:.1f} ms" if summary.jit_ms else ""
            print(
                f"    [{timing.name.split(':')[0]}] {label}: {summary.execution_ms:.2f} ms{jit}, "
                f"{summary.mode} plan, shared hit={summary.hit} read={summary.read}; "
                f"indexes: {', '.join(summary.indexes) or 'none'}; seq scans: {seq or 'none'}"
            )
            if any(index.startswith("source_runs") for index in summary.indexes) or (
                summary.source_runs_scanned is not None
            ):
                for line in summary.lines:
                    print(f"        {line}")
    return findings


def main() -> None:
    findings: list[Finding] = []
    for size in SIZES:
        fleet = build_fleet(size)
        with scratch_database("va_signals_bench_obs") as url:
            made = generate(url, fleet, size)
            print(
                f"source_runs: {made.rows:,} rows on {SOURCES} sources / {SERVICES} services, "
                f"{made.years[0]:.1f}-{made.years[1]:.1f} years, {made.error_share:.1%} ERROR; "
                f"generated in {made.seconds:.1f} s, VACUUM ANALYZE {made.analyze_seconds:.1f} s;"
                f" table {made.table_mb:.0f} MiB, indexes {made.indexes_mb:.0f} MiB"
            )
            print(f"  best and median of {RUNS} calls after {WARMUP} warm-up calls")
            timings, conn = run_queries(url, fleet)
            try:
                findings += report(size, timings)
            finally:
                conn.close()
    largest = max(SIZES)
    slow = [f for f in findings if f.size == largest and f.median >= TARGET_MS]
    # A scan that stops within a page's worth of rows (an EXISTS probe) is not a table scan.
    scans = sorted(
        {(f.label, f.scanned) for f in findings if f.scanned is not None and f.scanned > PROBE_ROWS}
    )
    probes = sorted(
        {f.label for f in findings if f.scanned is not None and f.scanned <= PROBE_ROWS}
    )
    note = f" (Seq Scan probes stopping within {PROBE_ROWS} rows: {', '.join(probes)})"
    note = note if probes else ""
    if not slow and not scans:
        print(
            f"verdict: PASS, every statement's median under {TARGET_MS:g} ms at {largest:,} rows, "
            f"no Seq Scan reading source_runs{note}"
        )
    else:
        problems = [f"{f.label} median {f.median:.1f} ms" for f in slow]
        problems += [f"Seq Scan on source_runs in {label} ({rows:,} rows)" for label, rows in scans]
        print(f"verdict: MISS at {largest:,} rows: {'; '.join(problems)}{note}")


if __name__ == "__main__":
    main()
