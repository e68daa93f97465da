"""The va-signals command as a user runs it: in a real process, checking output and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg

from va_signals_tests.recordings import shared_recordings

PROJECT = Path(__file__).resolve().parent.parent


def _va_signals(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "va_signals.cli", *args],
        cwd=PROJECT,
        env={**os.environ, "COLUMNS": "200", **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_parse_prints_the_normalized_records_as_json_lines() -> None:
    body = shared_recordings() / "lda" / "filings-list.json"
    completed = _va_signals("parse", "--source", "lda_filings", str(body), env={})
    assert completed.returncode == 0, completed.stderr
    records = [json.loads(line) for line in completed.stdout.splitlines()]
    assert len(records) == 25
    assert records[0]["external_id"] == "1fcf58ed-e319-4315-a970-a93e45e9ef4f"
    assert "next page: https://lda.senate.gov/api/v1/filings/?page=2" in completed.stderr


def test_parse_of_a_wrong_body_names_source_field_and_value(tmp_path: Path) -> None:
    body = tmp_path / "wrong.json"
    body.write_text(json.dumps({"count": 3, "results": [{"title": "no id"}]}))
    completed = _va_signals("parse", "--source", "lda_filings", str(body), env={})
    assert completed.returncode == 1
    assert "lda_filings" in completed.stderr
    assert "results[0].filing_uuid" in completed.stderr


def test_run_prints_a_table_per_source_and_exits_zero_despite_source_errors(
    db: str, tmp_path: Path
) -> None:
    completed = _va_signals(
        "run",
        "--replay",
        str(shared_recordings()),
        "--select",
        "ecfr_title38,lda_filings",
        env={"DATABASE_URL": db, "DAGSTER_HOME": str(tmp_path)},
    )
    assert completed.returncode == 0, completed.stderr
    assert "ecfr_title38" in completed.stdout
    assert "SUCCESS" in completed.stdout
    assert "PagingLoopError" in completed.stdout
    assert "finished: 1 of 2 sources ok" in completed.stdout
    with psycopg.connect(db) as conn:
        statuses = dict(conn.execute("SELECT source_id, status FROM source_runs").fetchall())
    assert statuses == {"ecfr_title38": "SUCCESS", "lda_filings": "ERROR"}
    # The run went into the persistent instance that `make dev` reads.
    assert (tmp_path / "dagster.yaml").is_file()
    assert any(tmp_path.rglob("*.db"))


def test_run_with_unreachable_database_fails_fast_with_one_message(tmp_path: Path) -> None:
    completed = _va_signals(
        "run",
        "--replay",
        str(shared_recordings()),
        env={
            "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none",
            "DAGSTER_HOME": str(tmp_path),
        },
    )
    assert completed.returncode == 1
    assert "database unavailable at postgresql://postgres@127.0.0.1:1/none" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_run_rejects_an_unknown_source(db: str, tmp_path: Path) -> None:
    completed = _va_signals(
        "run", "--select", "nope", env={"DATABASE_URL": db, "DAGSTER_HOME": str(tmp_path)}
    )
    assert completed.returncode == 2
    assert "unknown or disabled source ids ['nope']" in completed.stderr


def test_empty_selection_is_refused_not_read_as_every_source(db: str, tmp_path: Path) -> None:
    completed = _va_signals(
        "run", "--select", ",,", env={"DATABASE_URL": db, "DAGSTER_HOME": str(tmp_path)}
    )
    assert completed.returncode == 2
    assert "--select: no source ids in ',,'" in completed.stderr


def test_downgrade_to_an_unknown_revision_is_a_usage_error(db: str) -> None:
    completed = _va_signals("db", "downgrade", "9999", env={"DATABASE_URL": db})
    assert completed.returncode == 2
    assert "db downgrade 9999" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_parse_refuses_what_is_not_a_regular_file() -> None:
    completed = _va_signals("parse", "--source", "lda_filings", "/dev/zero", env={})
    assert completed.returncode == 2
    assert "/dev/zero is not a regular file" in completed.stderr


def test_incidents_days_must_be_finite() -> None:
    completed = _va_signals("incidents", "--days", "inf", env={})
    assert completed.returncode == 2
    assert "must be between 0 and 36500 days" in completed.stderr
