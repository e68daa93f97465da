"""The canaries of every source, run by the daily job on real recordings and on edited copies."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest

from va_signals.assets import DOCUMENTS_KEY, SIGNALS_KEY, build_pipeline
from va_signals.catalog import DEFAULT_CATALOG_PATH, CatalogError, default_catalog, load_catalog
from va_signals.checks.canaries import (
    CANARY_CHECKS,
    DUPLICATES_CHECK,
    SCHEMA_CHECK,
    TIMESTAMPS_CHECK,
    VALUE_RANGE_CHECK,
    count_inversions,
)
from va_signals.launch import run_daily_signals
from va_signals.resources import DatabaseResource, HttpResource
from va_signals_tests.ledger import insert_document, insert_run
from va_signals_tests.recordings import shared_recordings

FR_VA = dg.AssetKey(["federal_register", "federal_register_va"])
FR_BODY = "documents-2024-page1.json"
Evaluations = dict[tuple[dg.AssetKey, str], dg.AssetCheckEvaluation]


def _evaluations(instance: dg.DagsterInstance, run_id: str) -> Evaluations:
    records = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    evaluations = [record.dagster_event.event_specific_data for record in records]
    return {(e.asset_key, e.check_name): e for e in evaluations}


def _steps(instance: dg.DagsterInstance, run_id: str, event_type: dg.DagsterEventType) -> list:
    return [record.step_key for record in instance.all_logs(run_id, of_type=event_type)]


def _federal_register_copy(tmp_path: Path, edit: Callable[[list[dict[str, Any]]], None]) -> Path:
    """A recordings folder holding the real Federal Register page, edited by `edit`; the shared
    file itself is only read."""
    source = shared_recordings() / "federal_register"
    folder = tmp_path / "recordings" / "federal_register"
    folder.mkdir(parents=True)
    shutil.copyfile(source / "manifest.yaml", folder / "manifest.yaml")
    body = json.loads((source / FR_BODY).read_bytes())
    edit(body["results"])
    (folder / FR_BODY).write_text(json.dumps(body), encoding="utf-8")
    return folder.parent


def _va_documents(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        item
        for item in results
        if any(agency.get("slug") == "veterans-affairs-department" for agency in item["agencies"])
    ]


def _value(evaluation: dg.AssetCheckEvaluation, key: str) -> Any:
    return evaluation.metadata[key].value


def test_every_source_gets_every_canary_on_the_shared_recordings(
    db: str, dagster_instance: dg.DagsterInstance
) -> None:
    outcome = run_daily_signals(replay_dir=shared_recordings(), instance=dagster_instance)

    assert outcome.success, outcome.step_failures
    evaluations = _evaluations(dagster_instance, outcome.run_id)
    sources = default_catalog().enabled_sources
    for source in sources:
        key = dg.AssetKey([source.family, source.id])
        for name in CANARY_CHECKS:
            assert (key, name) in evaluations, (source.id, name)
        # Failed sources are checked too: their stored pages are data all the same.
        assert evaluations[(key, DUPLICATES_CHECK)].passed, source.id
        assert evaluations[(key, TIMESTAMPS_CHECK)].passed, source.id
        assert evaluations[(key, VALUE_RANGE_CHECK)].passed, source.id
    # The recording asked for every field; the adapter asks for 16, which the catalog expects.
    fr_schema = evaluations[(FR_VA, SCHEMA_CHECK)]
    assert not fr_schema.passed and fr_schema.severity is dg.AssetCheckSeverity.WARN
    assert "page_views" in _value(fr_schema, "fields_new")
    assert _value(fr_schema, "fields_missing") == []
    assert _value(fr_schema, "great_expectations")["suite"] == "federal_register_va.schema"
    for source_id in ("lda_filings", "ecfr_title38", "congress_crs_reports"):
        source = default_catalog().source(source_id)
        schema = evaluations[(dg.AssetKey([source.family, source_id]), SCHEMA_CHECK)]
        assert schema.passed, (source_id, schema.description)
    ordered = evaluations[(dg.AssetKey(["lda", "lda_filings"]), TIMESTAMPS_CHECK)]
    assert _value(ordered, "ordered_by") == "dt_posted asc"
    assert _value(ordered, "order_inversions") == 0
    assert _value(ordered, "documents_checked") == 23
    materialized = {
        record.dagster_event.asset_key
        for record in dagster_instance.all_logs(
            outcome.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        )
    }
    assert dg.AssetKey("health_score") in materialized


def test_schema_drift_on_a_real_recording_names_the_renamed_field(
    db: str, dagster_instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    def rename_abstract(results: list[dict[str, Any]]) -> None:
        for item in results:
            item["abstract_text"] = item.pop("abstract")

    replay = _federal_register_copy(tmp_path, rename_abstract)

    outcome = run_daily_signals(
        replay_dir=replay, select=["federal_register_va"], instance=dagster_instance
    )

    schema = _evaluations(dagster_instance, outcome.run_id)[(FR_VA, SCHEMA_CHECK)]
    assert not schema.passed
    assert schema.severity is dg.AssetCheckSeverity.WARN
    assert _value(schema, "fields_missing") == ["abstract"]
    assert "abstract_text" in _value(schema, "fields_new")
    assert "missing: abstract" in schema.description
    assert _value(schema, "records_checked") == 14
    failed = _value(schema, "great_expectations")["failed"]
    assert any(item["expectation"] == "expect_table_columns_to_match_set" for item in failed)
    # Not blocking: the documents were still linked and classified.
    assert outcome.success


def test_a_changed_field_type_is_named_with_the_type_it_became(
    db: str, dagster_instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    def number_as_text(results: list[dict[str, Any]]) -> None:
        for item in _va_documents(results)[:2]:
            item["significant"] = "yes"

    replay = _federal_register_copy(tmp_path, number_as_text)
    outcome = run_daily_signals(
        replay_dir=replay, select=["federal_register_va"], instance=dagster_instance
    )

    schema = _evaluations(dagster_instance, outcome.run_id)[(FR_VA, SCHEMA_CHECK)]
    assert not schema.passed
    assert _value(schema, "types_changed") == {"significant": ["string"]}


def test_a_duplicate_fails_the_blocking_check_and_gates_documents_and_signals(
    db: str, dagster_instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    def repeat_one(results: list[dict[str, Any]]) -> None:
        results.append(dict(_va_documents(results)[0]))

    replay = _federal_register_copy(tmp_path, repeat_one)

    outcome = run_daily_signals(
        replay_dir=replay, select=["federal_register_va"], instance=dagster_instance
    )

    duplicates = _evaluations(dagster_instance, outcome.run_id)[(FR_VA, DUPLICATES_CHECK)]
    assert not duplicates.passed
    assert duplicates.severity is dg.AssetCheckSeverity.ERROR and duplicates.blocking
    assert _value(duplicates, "duplicates_in_run") == 1
    assert "1 repeated records in the run (bound 0)" in duplicates.description
    # Dagster fails the ingest step after recording its output and checks, and abandons the
    # steps downstream of it: nothing links or classifies the batch.
    assert not outcome.success
    failed = _steps(dagster_instance, outcome.run_id, dg.DagsterEventType.STEP_FAILURE)
    assert failed == ["daily_signals_graph.ingest_federal_register"]
    assert any("blocking asset check" in message for message in outcome.step_failures)
    started = _steps(dagster_instance, outcome.run_id, dg.DagsterEventType.STEP_START)
    assert started == ["daily_signals_graph.ingest_federal_register"]
    # The step's retry policy is for crashes; a failed check is not retried.
    assert not _steps(dagster_instance, outcome.run_id, dg.DagsterEventType.STEP_RESTARTED)
    materialized = {
        record.dagster_event.asset_key
        for record in dagster_instance.all_logs(
            outcome.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        )
    }
    assert not materialized & {DOCUMENTS_KEY, SIGNALS_KEY}
    with psycopg.connect(db) as conn:
        assert conn.execute(
            "SELECT records_duplicate FROM source_runs WHERE run_id = %s", (outcome.run_id,)
        ).fetchone() == (1,)


def test_dates_in_the_future_or_too_early_are_flagged(
    db: str, dagster_instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    def misdate(results: list[dict[str, Any]]) -> None:
        va = _va_documents(results)
        va[0]["publication_date"] = "2099-01-05"
        va[1]["publication_date"] = "1990-06-01"

    replay = _federal_register_copy(tmp_path, misdate)
    documents = _va_documents(
        json.loads((shared_recordings() / "federal_register" / FR_BODY).read_bytes())["results"]
    )

    outcome = run_daily_signals(
        replay_dir=replay, select=["federal_register_va"], instance=dagster_instance
    )

    timestamps = _evaluations(dagster_instance, outcome.run_id)[(FR_VA, TIMESTAMPS_CHECK)]
    assert not timestamps.passed
    assert timestamps.severity is dg.AssetCheckSeverity.WARN and not timestamps.blocking
    assert _value(timestamps, "in_future") == 1
    assert _value(timestamps, "before_earliest_date") == 1
    assert documents[0]["document_number"] in _value(timestamps, "examples")
    assert _value(timestamps, "order_inversions") >= 1
    assert outcome.success


def test_ordering_compares_instants_not_text() -> None:
    # Same instant order, different offsets: text order would call the second one earlier.
    values = ["2018-01-17T13:19:38-05:00", "2018-01-17T18:20:00+00:00", "2018-01-19"]
    assert count_inversions(values, descending=False) == (0, 0)
    assert count_inversions(list(reversed(values)), descending=True) == (0, 0)
    assert count_inversions(["2024-01-03", "2024-01-02", None, "x"], descending=False) == (1, 2)


def _canaries_job(names: tuple[str, ...]) -> tuple[dg.JobDefinition, list[dg.AssetCheckKey]]:
    """The daily graph's canaries alone: no ingest, each source's latest run is checked."""
    keys = [dg.AssetCheckKey(FR_VA, name) for name in names]
    definitions = dg.Definitions(
        assets=[build_pipeline(default_catalog())],
        jobs=[dg.define_asset_job("canaries", selection=dg.AssetSelection.checks(*keys))],
        resources={"database": DatabaseResource(), "http": HttpResource()},
    )
    return definitions.resolve_job_def("canaries"), keys


def _check(instance: dg.DagsterInstance, name: str) -> dg.AssetCheckEvaluation:
    job, keys = _canaries_job((name,))
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == {name}
    return evaluations[name]


def test_value_range_fails_50000_documents_and_passes_a_normal_day(
    db: str, dagster_instance: dg.DagsterInstance
) -> None:
    start = datetime(2026, 10, 1, 11, tzinfo=UTC)
    for day, count in enumerate([8, 12, 9, 15, 11, 7, 13, 10, 9, 14] * 3):
        insert_run(db, "federal_register_va", ended_at=start + timedelta(days=day), new=count)
    later = start + timedelta(days=31)

    insert_run(db, "federal_register_va", ended_at=later, new=50_000)
    flood = _check(dagster_instance, VALUE_RANGE_CHECK)
    insert_run(db, "federal_register_va", ended_at=later + timedelta(days=1), new=400)
    spike = _check(dagster_instance, VALUE_RANGE_CHECK)
    insert_run(db, "federal_register_va", ended_at=later + timedelta(days=2), new=12)
    normal = _check(dagster_instance, VALUE_RANGE_CHECK)

    assert not flood.passed and flood.severity is dg.AssetCheckSeverity.ERROR
    assert "outside the catalog's 0..5000" in flood.description
    assert flood.metadata["great_expectations"].value["success"] is False
    # Within the ceiling but far outside its own history: a warning, not a block.
    assert not spike.passed and spike.severity is dg.AssetCheckSeverity.WARN
    assert spike.metadata["robust_z"].value > 5
    assert spike.metadata["history_median"].value == pytest.approx(10.5)
    assert normal.passed, normal.description
    assert normal.metadata["history_runs"].value == 30


def test_an_unlinked_copy_stored_before_the_run_warns(
    db: str, dagster_instance: dg.DagsterInstance
) -> None:
    now = datetime.now(UTC)
    yesterday = now - timedelta(days=1)
    link = "https://www.federalregister.gov/d/2024-00001"
    canonical = insert_document(
        db, "federal_register_title38", "2024-00001", seen_at=yesterday, doc_url=link
    )
    insert_document(
        db,
        "federal_register_va",
        "2024-00001",
        first_seen_at=yesterday,
        seen_at=now - timedelta(seconds=2),
        doc_url=link,
    )
    insert_run(db, "federal_register_va", ended_at=now, unchanged=1)

    unlinked = _check(dagster_instance, DUPLICATES_CHECK)
    with psycopg.connect(db) as conn:
        conn.execute(
            "UPDATE documents SET duplicate_of = %s WHERE source_id = 'federal_register_va'",
            (canonical,),
        )
    linked = _check(dagster_instance, DUPLICATES_CHECK)

    assert not unlinked.passed
    # Only a warning: blocking would stop the documents step that links copies.
    assert unlinked.severity is dg.AssetCheckSeverity.WARN
    assert unlinked.metadata["unlinked_copies"].value == 1
    assert linked.passed


def test_expected_field_types_are_validated_with_file_source_and_key(tmp_path: Path) -> None:
    text = DEFAULT_CATALOG_PATH.read_text(encoding="utf-8")
    broken = tmp_path / "sources.yaml"
    broken.write_text(text.replace("reserved: boolean", "reserved: bool"), encoding="utf-8")

    with pytest.raises(CatalogError) as raised:
        load_catalog(broken)

    message = str(raised.value)
    assert str(broken) in message
    assert "source 'ecfr_title38'" in message
    assert "key 'quality.expected_fields.reserved'" in message
    assert "'bool'" in message
