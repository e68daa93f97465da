"""One source run end to end: page budget and resume, failures mid-paging, the watermark."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg

from va_signals.catalog import default_catalog
from va_signals.db.pool import get_pool
from va_signals.db.source_state import SourceState, load_state, save_state
from va_signals.ingest import run_source
from va_signals.sources import build_adapter
from va_signals.sources.base import Page
from va_signals_tests.recordings import EXAMPLE_RECORDINGS
from va_signals_tests.support import ReplayingClient


def _adapter(source_id: str):
    catalog = default_catalog()
    source = catalog.source(source_id)
    return build_adapter(source, catalog.service(source.service))


def _count(url: str, source_id: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT count(*) FROM documents WHERE source_id = %s", (source_id,)
        ).fetchone()[0]


def _state(url: str, source_id: str) -> SourceState:
    with psycopg.connect(url) as conn:
        return load_state(conn, source_id)


def test_page_budget_truncates_then_the_next_run_resumes(db: str) -> None:
    pool = get_pool(db)
    adapter = _adapter("federal_register_va")
    client = ReplayingClient("federal_register_va", root=EXAMPLE_RECORDINGS)

    first = run_source(adapter, client, pool, run_id="r1", max_pages=1, stats=client.stats)

    assert first.status.value == "SUCCESS"
    assert first.truncated and first.pages == 1
    state = _state(db, "federal_register_va")
    assert state.resume_cursor == first.resume_cursor
    assert state.resume_cursor and "/api/v1/documents?" in state.resume_cursor
    assert state.watermark is None
    stored_after_first = _count(db, "federal_register_va")

    client = ReplayingClient("federal_register_va", root=EXAMPLE_RECORDINGS)
    second = run_source(adapter, client, pool, run_id="r2", stats=client.stats)

    assert client.requested[0] == first.resume_cursor
    assert second.status.value == "SUCCESS"
    assert not second.truncated
    assert second.counts.new > 0
    assert _count(db, "federal_register_va") == stored_after_first + second.counts.new
    state = _state(db, "federal_register_va")
    assert state.resume_cursor is None
    assert state.watermark is not None
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT run_id, status, truncated, pages, records_new, requests, latency_max_ms "
            "FROM source_runs ORDER BY id"
        ).fetchall()
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("r1", "SUCCESS", True, 1),
        ("r2", "SUCCESS", False, 1),
    ]
    assert rows[0][5] == 1 and rows[0][6] is not None


def test_failure_mid_paging_keeps_pages_and_the_watermark(db: str) -> None:
    pool = get_pool(db)
    before = datetime(2024, 1, 1, tzinfo=UTC)
    with psycopg.connect(db) as conn:
        save_state(conn, "federal_register_va", SourceState(before, None))
    client = ReplayingClient("federal_register_va")

    result = run_source(
        _adapter("federal_register_va"), client, pool, run_id="r1", stats=client.stats
    )

    assert result.status.value == "ERROR"
    assert result.error_class == "RequestRejected"
    assert "not recorded" in (result.error_message or "")
    assert result.pages == 1 and result.counts.new == 14
    assert _count(db, "federal_register_va") == 14
    assert _state(db, "federal_register_va") == SourceState(before, None)
    with psycopg.connect(db) as conn:
        status, message, ended = conn.execute(
            "SELECT status, error_message, ended_at FROM source_runs"
        ).fetchone()
    assert status == "ERROR" and "not recorded" in message and ended is not None


def test_a_run_that_finds_nothing_is_no_data_and_advances_the_watermark(db: str) -> None:
    adapter = _adapter("ecfr_title38")

    class _Empty(type(adapter)):
        def pages(self, client, *, since, cursor) -> Iterator[Page]:
            yield Page(records=[], next_cursor=None)

    result = run_source(_Empty(adapter.source, adapter.base_url), None, get_pool(db), run_id="r")

    assert result.status.value == "NO_DATA"
    assert _state(db, "ecfr_title38").watermark is not None
