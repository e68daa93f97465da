"""Records with NUL characters, lone surrogates or NaN are stored, not a failed page."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from va_signals.db.documents import upsert_documents
from va_signals.sources.base import SourceRecord, load_json, parse_datetime


def test_record_with_nul_surrogate_and_nan_upserts_and_round_trips(db: str) -> None:
    payload = load_json(
        "src",
        b'{"id": "a", "title": "Rule \\u0000one", "note": "bad \\ud800 escape", '
        b'"score": NaN, "big": 1e999, "k\\u0000": ["x\\u0000y", Infinity]}',
    )
    bad = SourceRecord(
        external_id="a",
        title=payload["title"],
        summary="sum\x00mary \udfff",
        url="https://example.test/a",
        payload=payload,
    )
    fine = SourceRecord(external_id="b", title="Fine", payload={"id": "b"})
    with psycopg.connect(db) as conn:
        counts = upsert_documents(conn, "src", [bad, fine])
        title, summary, stored = conn.execute(
            "SELECT title, summary, payload FROM documents WHERE external_id = 'a'"
        ).fetchone()
        again = upsert_documents(conn, "src", [bad, fine])
    assert (counts.new, again.unchanged) == (2, 2)
    assert title == bad.title == "Rule one"
    assert summary == bad.summary == "summary \ufffd"
    assert (
        stored
        == bad.payload
        == {
            "id": "a",
            "title": "Rule one",
            "note": "bad \ufffd escape",
            "score": None,
            "big": None,
            "k": ["xy", None],
        }
    )


def test_payload_changed_after_validation_names_the_record(db: str) -> None:
    record = SourceRecord(external_id="late", title="t", payload={})
    record.payload["n"] = float("nan")  # the dict itself stays mutable
    with psycopg.connect(db) as conn, pytest.raises(ValueError, match="'late'"):
        upsert_documents(conn, "src", [record])


def test_extreme_timestamps_that_pass_parsing_round_trip(db: str) -> None:
    earliest = parse_datetime("src", "at", "0001-01-02T00:00:00Z")
    latest = parse_datetime("src", "at", "9999-12-30T23:59:59+00:00")
    records = [
        SourceRecord(external_id="early", title="t", published_at=earliest, payload={}),
        SourceRecord(external_id="late", title="t", published_at=latest, payload={}),
    ]
    with psycopg.connect(db) as conn:
        for zone in ("Pacific/Kiritimati", "Etc/GMT+12"):
            conn.execute(f"SET TIME ZONE '{zone}'")
            upsert_documents(conn, "src", records)
            rows = conn.execute(
                "SELECT published_at FROM documents ORDER BY published_at"
            ).fetchall()
            assert [row[0].astimezone(UTC) for row in rows] == [
                datetime(1, 1, 2, tzinfo=UTC),
                datetime(9999, 12, 30, 23, 59, 59, tzinfo=UTC),
            ]
