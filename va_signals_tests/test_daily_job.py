"""The daily_signals job end to end through Dagster on the real recordings, run twice."""

from __future__ import annotations

import psycopg

from va_signals.assets import DOCUMENTS_KEY, SIGNALS_KEY
from va_signals.launch import run_daily_signals
from va_signals_tests.recordings import shared_recordings

# What each source meets in the shared recordings: the Federal Register and LDA lists carry a
# continuation that was never recorded or that replays page 1, so those runs keep their first
# page and record ERROR; the committee-bills route was never recorded at all.
EXPECTED_FIRST_RUN = {
    "ecfr_title38": ("SUCCESS", 1, None),
    "federal_register_va": ("ERROR", 14, "RequestRejected"),
    "federal_register_title38": ("ERROR", 3, "RequestRejected"),
    "lda_filings": ("ERROR", 23, "PagingLoopError"),
    "congress_bills": ("ERROR", 0, "RequestRejected"),
}


def _duplicates(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT count(*) FROM (SELECT source_id, external_id FROM documents "
            "GROUP BY 1, 2 HAVING count(*) > 1) AS d"
        ).fetchone()[0]


def _stored(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT source_id, count(*) FROM documents GROUP BY 1").fetchall()
    return dict(rows)


def test_job_on_shared_recordings_twice_without_duplicates(db: str, dagster_instance) -> None:
    recordings = shared_recordings()

    first = run_daily_signals(replay_dir=recordings, instance=dagster_instance)

    assert first.success, first.step_failures
    by_source = {row["source_id"]: row for row in first.source_runs}
    assert len(by_source) == 9, sorted(by_source)
    for source_id, (status, new, error_class) in EXPECTED_FIRST_RUN.items():
        row = by_source[source_id]
        assert (row["status"], row["records_new"], row["error_class"]) == (
            status,
            new,
            error_class,
        ), source_id
    # An error in the middle of paging keeps the page already fetched.
    assert by_source["federal_register_va"]["pages"] == 1
    assert "not recorded" in by_source["federal_register_va"]["error_message"]
    stored_after_first = _stored(db)
    assert stored_after_first["federal_register_va"] == 14
    assert stored_after_first["lda_filings"] == 23
    materialized = {
        event.asset_key for event in first_result_materializations(dagster_instance, first.run_id)
    }
    assert {DOCUMENTS_KEY, SIGNALS_KEY} <= materialized
    assert first.signals_written > 0

    second = run_daily_signals(replay_dir=recordings, instance=dagster_instance)

    assert second.success, second.step_failures
    assert _stored(db) == stored_after_first
    assert _duplicates(db) == 0
    for row in second.source_runs:
        assert row["records_new"] == 0, row["source_id"]
        assert row["records_updated"] == 0, row["source_id"]
    second_by_source = {row["source_id"]: row for row in second.source_runs}
    assert second_by_source["federal_register_va"]["records_unchanged"] == 14
    assert second.signals_written == 0


def test_failed_source_is_observed_not_materialized(db: str, dagster_instance) -> None:
    outcome = run_daily_signals(
        replay_dir=shared_recordings(),
        instance=dagster_instance,
        select=["ecfr_title38", "congress_bills"],
    )
    assert outcome.success
    materialized = {
        event.asset_key.to_user_string()
        for event in first_result_materializations(dagster_instance, outcome.run_id)
    }
    assert "ecfr/ecfr_title38" in materialized
    assert "congress/congress_bills" not in materialized
    assert "documents" in materialized
    observations = [
        record
        for record in dagster_instance.all_logs(outcome.run_id)
        if record.dagster_event and record.dagster_event.event_type_value == "ASSET_OBSERVATION"
    ]
    assert len(observations) == 1
    metadata = observations[0].dagster_event.event_specific_data.asset_observation.metadata
    assert metadata["status"].value == "ERROR"
    assert metadata["error_class"].value == "RequestRejected"


def first_result_materializations(instance, run_id: str):
    return [
        record.dagster_event.event_specific_data.materialization
        for record in instance.all_logs(run_id)
        if record.dagster_event and record.dagster_event.event_type_value == "ASSET_MATERIALIZATION"
    ]


def test_job_on_examples_twice_every_source_succeeds_then_nothing_changes(
    db: str, dagster_instance
) -> None:
    from va_signals_tests.recordings import EXAMPLE_RECORDINGS

    first = run_daily_signals(replay_dir=EXAMPLE_RECORDINGS, instance=dagster_instance)
    assert first.success, first.step_failures
    assert {row["status"] for row in first.source_runs} == {"SUCCESS"}
    assert len(first.source_runs) == 9
    new_first = sum(row["records_new"] for row in first.source_runs)
    assert new_first == first.documents_total > 0
    assert first.signals_written > 0

    second = run_daily_signals(replay_dir=EXAMPLE_RECORDINGS, instance=dagster_instance)
    assert second.success, second.step_failures
    assert {row["status"] for row in second.source_runs} == {"SUCCESS"}
    assert sum(row["records_new"] for row in second.source_runs) == 0
    assert sum(row["records_unchanged"] for row in second.source_runs) == new_first
    assert second.documents_total == first.documents_total
    assert second.signals_written == 0
    assert _duplicates(db) == 0


def test_unreachable_database_fails_the_job_fast_with_one_clear_message(
    dagster_instance, monkeypatch
) -> None:
    import time

    import dagster as dg

    from va_signals.definitions import build_definitions
    from va_signals.jobs import DAILY_SIGNALS_JOB

    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/none")
    job = build_definitions().resolve_job_def(DAILY_SIGNALS_JOB)
    started = time.monotonic()
    result = job.execute_in_process(
        instance=dagster_instance,
        raise_on_error=False,
        asset_selection=[dg.AssetKey(["ecfr", "ecfr_title38"]), dg.AssetKey("documents")],
    )
    elapsed = time.monotonic() - started

    assert not result.success
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert len(failures) == 1
    message = failures[0].event_specific_data.error.message
    assert "cannot connect to PostgreSQL at postgresql://postgres@127.0.0.1:1/none" in message
    assert not [e for e in result.all_events if e.event_type_value == "STEP_RESTARTED"]
    assert elapsed < 15


def test_configured_api_keys_reach_the_upstream_as_headers(
    db: str, dagster_instance, monkeypatch
) -> None:
    from va_signals.resources import http as http_resource

    monkeypatch.setenv("DATA_GOV_API_KEY", "data-gov-test-key")
    monkeypatch.setenv("LDA_API_KEY", "lda-test-key")
    recordings = shared_recordings()
    http_resource._clients.clear()

    outcome = run_daily_signals(
        replay_dir=recordings,
        instance=dagster_instance,
        select=["lda_filings", "congress_crs_reports"],
    )

    assert {row["source_id"] for row in outcome.source_runs} == {
        "lda_filings",
        "congress_crs_reports",
    }
    transport = http_resource._clients[(str(recordings), "")]._transport
    sent = {
        (r.url.host, r.headers.get("authorization"), r.headers.get("x-api-key"))
        for r in transport.requests
    }
    assert ("lda.senate.gov", "Token lda-test-key", None) in sent
    assert ("api.congress.gov", None, "data-gov-test-key") in sent
    http_resource._clients.clear()


def test_a_source_whose_params_its_adapter_rejects_fails_alone(db: str, dagster_instance) -> None:
    import dagster as dg

    from va_signals.assets import build_pipeline
    from va_signals.catalog import default_catalog
    from va_signals.jobs import daily_signals_job
    from va_signals.resources import DatabaseResource, HttpResource
    from va_signals_tests.recordings import EXAMPLE_RECORDINGS

    catalog = default_catalog()
    bad = catalog.source("federal_register_va").model_copy(update={"params": {"agency": 5}})
    catalog = catalog.model_copy(
        update={"sources": tuple(bad if s.id == bad.id else s for s in catalog.sources)}
    )
    definitions = dg.Definitions(
        assets=[build_pipeline(catalog)],
        jobs=[daily_signals_job],
        resources={"database": DatabaseResource(), "http": HttpResource()},
    )

    outcome = run_daily_signals(
        replay_dir=EXAMPLE_RECORDINGS,
        instance=dagster_instance,
        definitions=definitions,
        catalog=catalog,
        select=["federal_register_va", "federal_register_title38"],
    )

    assert outcome.success, outcome.step_failures
    rows = {row["source_id"]: row for row in outcome.source_runs}
    assert rows["federal_register_va"]["status"] == "ERROR"
    assert rows["federal_register_va"]["error_class"] == "SourceConfigError"
    assert "params.agency" in rows["federal_register_va"]["error_message"]
    assert rows["federal_register_title38"]["status"] == "SUCCESS"
    assert len(outcome.source_runs) == 2
