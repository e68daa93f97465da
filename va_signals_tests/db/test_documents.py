"""Idempotent document upserts: nothing duplicated, changes detected by content hash."""

from __future__ import annotations

from datetime import date

import psycopg

from va_signals.db.documents import content_hash, upsert_documents
from va_signals.sources.base import SourceRecord


def _record(external_id: str, title: str = "A rule", **extra) -> SourceRecord:
    return SourceRecord(
        external_id=external_id,
        title=title,
        url=f"https://example.test/{external_id}",
        published_on=date(2024, 1, 2),
        payload={"id": external_id, **extra},
    )


def test_rerun_adds_no_rows_and_counts_unchanged(db: str) -> None:
    records = [_record("a"), _record("b"), _record("c")]
    with psycopg.connect(db) as conn:
        first = upsert_documents(conn, "src", records)
        second = upsert_documents(conn, "src", records)
        count = conn.execute("SELECT count(*) FROM documents").fetchone()[0]
    assert (first.new, first.updated, first.unchanged) == (3, 0, 0)
    assert (second.new, second.updated, second.unchanged) == (0, 0, 3)
    assert count == 3


def test_changed_record_updates_its_row_and_hash(db: str) -> None:
    with psycopg.connect(db) as conn:
        upsert_documents(conn, "src", [_record("a"), _record("b")])
        before = conn.execute(
            "SELECT id, content_hash, first_seen_at FROM documents WHERE external_id = 'a'"
        ).fetchone()
        changed = _record("a", title="A rule, amended")
        counts = upsert_documents(conn, "src", [changed, _record("b")])
        after = conn.execute(
            "SELECT id, content_hash, first_seen_at, title FROM documents WHERE external_id = 'a'"
        ).fetchone()
    assert (counts.new, counts.updated, counts.unchanged) == (0, 1, 1)
    assert after[0] == before[0]
    assert after[1] == content_hash(changed) != before[1]
    assert after[2] == before[2]
    assert after[3] == "A rule, amended"


def test_same_id_twice_in_a_batch_is_stored_once(db: str) -> None:
    with psycopg.connect(db) as conn:
        counts = upsert_documents(conn, "src", [_record("a"), _record("a", note="again")])
        rows = conn.execute("SELECT payload FROM documents").fetchall()
    assert counts.duplicates == 1
    assert counts.new == 1
    assert rows == [({"id": "a", "note": "again"},)]


def test_same_external_id_in_two_sources_is_two_documents(db: str) -> None:
    with psycopg.connect(db) as conn:
        upsert_documents(conn, "one", [_record("a")])
        upsert_documents(conn, "two", [_record("a")])
        count = conn.execute("SELECT count(*) FROM documents").fetchone()[0]
    assert count == 2
