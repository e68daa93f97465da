"""The health score: fails closed on an empty system, compounds penalties, plots in Dagster."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg
import pytest
from psycopg import sql

from va_signals.assets.health import HEALTH_JOB, HEALTH_SCORE_KEY
from va_signals.catalog import default_catalog
from va_signals.cli import main
from va_signals.db.health import BREAKER_TABLES, breaker_states, load_health_inputs
from va_signals.definitions import defs
from va_signals.resilience.health import (
    DIMENSIONS,
    HealthInputs,
    HealthWeights,
    ServiceLatency,
    SourceActivity,
    compute_health,
    p95,
)
from va_signals_tests.ledger import insert_document, insert_run

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


def _breaker_table(conn: psycopg.Connection) -> sql.Identifier:
    for name in BREAKER_TABLES:
        if conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]:
            return sql.Identifier(name)
    raise AssertionError("the migrations created no breaker table")


@pytest.fixture
def breakers(db: str) -> Iterator[str]:
    """The test database with an empty breaker table, emptied again afterwards."""
    with psycopg.connect(db) as conn:
        conn.execute(sql.SQL("DELETE FROM {}").format(_breaker_table(conn)))
    yield db
    with psycopg.connect(db) as conn:
        conn.execute(sql.SQL("DELETE FROM {}").format(_breaker_table(conn)))


def _healthy(now: datetime = NOW) -> HealthInputs:
    """Every enabled source ran well an hour ago, stored new documents; breakers closed."""
    sources = tuple(
        SourceActivity(
            source=source,
            last_good_run_at=now - timedelta(hours=1),
            last_new_documents_at=now - timedelta(hours=1),
            recent_statuses=("SUCCESS",) * 10,
            latest_truncated=False,
            has_documents=True,
        )
        for source in default_catalog().enabled_sources
    )
    services = sorted({activity.source.service for activity in sources})
    return HealthInputs(
        now=now,
        sources=sources,
        runs_on_record=100,
        breakers={service: "CLOSED" for service in services},
        latencies=tuple(ServiceLatency(s, (120.0, 130.0), (100.0, 110.0, 120.0)) for s in services),
    )


def _failing(inputs: HealthInputs, *source_ids: str) -> HealthInputs:
    sources = tuple(
        SourceActivity(
            a.source,
            a.last_good_run_at - timedelta(days=10),
            a.last_new_documents_at,
            ("ERROR",) * 10,
            a.latest_truncated,
            a.has_documents,
        )
        if a.source.id in source_ids
        else a
        for a in inputs.sources
    )
    return HealthInputs(
        inputs.now, sources, inputs.runs_on_record, inputs.breakers, latencies=inputs.latencies
    )


def test_empty_system_scores_zero_not_configured_with_the_reason(breakers: str) -> None:
    with psycopg.connect(breakers) as conn:
        inputs = load_health_inputs(conn, default_catalog(), NOW)

    report = compute_health(inputs)

    assert report.score == 0
    assert not report.configured
    as_dict = report.as_dict()
    assert as_dict["configured"] is False
    assert "no source runs on record" in as_dict["reason"]
    assert "breakers: no breaker has recorded a call" in as_dict["reason"]
    assert set(as_dict["dimensions"]) == set(DIMENSIONS)


def test_no_expectations_scores_zero() -> None:
    inputs = _healthy()
    report = compute_health(HealthInputs(NOW, (), 100, inputs.breakers, latencies=()))
    assert report.score == 0 and not report.configured
    assert "no enabled sources in the catalog" in report.as_dict()["reason"]


def test_missing_breaker_table_leaves_the_breaker_dimension_unconfigured(db: str) -> None:
    with psycopg.connect(db) as conn:
        # DDL is transactional: the table is hidden for this transaction only.
        conn.execute(
            sql.SQL("ALTER TABLE {} RENAME TO hidden_by_test").format(_breaker_table(conn))
        )
        states, reason = breaker_states(conn)
        conn.rollback()
    assert states is None
    assert "no breaker table" in reason

    inputs = _healthy()
    report = compute_health(
        HealthInputs(NOW, inputs.sources, 100, None, reason, latencies=inputs.latencies)
    )
    breaker = next(d for d in report.dimensions if d.name == "breakers")
    assert report.score == 0 and not breaker.configured
    assert breaker.reason == reason


def test_a_healthy_system_scores_100() -> None:
    report = compute_health(_healthy())
    assert report.configured
    assert report.score == 100


def test_penalties_compound_two_failing_sources_score_lower_than_one() -> None:
    healthy = _healthy()

    one = compute_health(_failing(healthy, "lda_filings"))
    two = compute_health(_failing(healthy, "lda_filings", "congress_crs_reports"))
    critical = compute_health(_failing(healthy, "federal_register_va"))

    assert 100 > one.score > two.score
    # More than additive inside a dimension: the second source costs less than the first,
    # but the two together cost more than one.
    first_loss = 100 - one.score
    assert two.score < 100 - first_loss
    freshness = {d.name: d for d in two.dimensions}["freshness"]
    assert freshness.penalties == {"congress_crs_reports": 0.75, "lda_filings": 0.75}
    assert freshness.score == pytest.approx(0.75 * 0.75)
    # A critical source costs more than an ordinary one.
    assert critical.score < one.score


def test_open_breakers_and_slow_services_cost_points() -> None:
    healthy = _healthy()
    breakers = dict(healthy.breakers or {})
    breakers["www.federalregister.gov"] = "OPEN"
    slow = tuple(
        ServiceLatency(s.service, (900.0, 1000.0), s.baseline_ms)
        if s.service == "lda.senate.gov"
        else s
        for s in healthy.latencies
    )

    report = compute_health(HealthInputs(NOW, healthy.sources, 100, breakers, latencies=slow))

    dimensions = {d.name: d for d in report.dimensions}
    assert dimensions["breakers"].penalties == {"www.federalregister.gov": 0.5}
    assert dimensions["latency"].penalties["lda.senate.gov"] < 0.25
    assert report.score < 100


def test_weights_come_from_configuration_and_are_validated() -> None:
    inputs = _failing(_healthy(), "lda_filings")
    only_breakers = compute_health(inputs, HealthWeights(0, 0, 1, 0, 0))
    assert only_breakers.score == 100
    with pytest.raises(ValueError, match="must not be negative: latency"):
        HealthWeights(latency=-1)
    assert p95([100, 200, 300, 400, 500]) == pytest.approx(480)


def _record_a_month_of_runs(db: str) -> None:
    """A month of good runs of every source, the latest an hour ago; every breaker closed."""
    now = datetime.now(UTC)
    catalog = default_catalog()
    for source in catalog.enabled_sources:
        for days in (20, 10, 5, 2, 0):
            insert_run(
                db,
                source.id,
                ended_at=now - timedelta(days=days, hours=1),
                new=3,
                latency_ms=200,
            )
        insert_document(db, source.id, f"{source.id}-1", seen_at=now - timedelta(hours=1))
    with psycopg.connect(db) as conn:
        insert = sql.SQL("INSERT INTO {} (service) VALUES (%s)").format(_breaker_table(conn))
        for service in {source.service for source in catalog.enabled_sources}:
            conn.execute(insert, (service,))


def test_health_asset_materializes_plottable_floats(
    breakers: str, dagster_instance: dg.DagsterInstance
) -> None:
    _record_a_month_of_runs(breakers)

    result = defs.resolve_job_def(HEALTH_JOB).execute_in_process(instance=dagster_instance)

    assert result.success
    (materialization,) = result.asset_materializations_for_node("health_score")
    assert materialization.asset_key == HEALTH_SCORE_KEY
    metadata = materialization.metadata
    assert isinstance(metadata["score"], dg.FloatMetadataValue)
    assert metadata["configured"].value is True, metadata["reason"].value
    # Weekday sources may be past their SLA on a weekend; every source ran within an hour.
    assert metadata["score"].value == 100.0
    for name in DIMENSIONS:
        assert isinstance(metadata[f"dimension_{name}"], dg.FloatMetadataValue)


def test_cli_health_json_parses(breakers: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["health", "--json"]) == 0

    report = json.loads(capsys.readouterr().out)

    assert report["score"] == 0
    assert report["configured"] is False
    assert report["reason"]
    assert set(report["dimensions"]) == set(DIMENSIONS)
    assert report["weights"] == {
        "freshness": 30.0,
        "error_rate": 25.0,
        "breakers": 20.0,
        "coverage": 15.0,
        "latency": 10.0,
    }


def test_cli_health_prints_score_and_dimensions(
    breakers: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _record_a_month_of_runs(breakers)

    assert main(["health"]) == 0

    out = capsys.readouterr().out
    assert "Health score 100.0/100" in out
    for name in DIMENSIONS:
        assert name in out
