"""Two classifiers over the same pending documents: no crash, no duplicates, each done once."""

from __future__ import annotations

import threading
from collections.abc import Callable

import psycopg

from va_signals.db.documents import upsert_documents
from va_signals.db.pool import get_pool
from va_signals.db.signals import (
    PendingDocument,
    SignalRow,
    pending_classification,
    replace_signals,
)
from va_signals.signals import keywords
from va_signals.signals.pipeline import BATCH_SIZE, classify_pending
from va_signals.sources.base import SourceRecord

METHOD = keywords.METHOD


def _store(db: str, count: int) -> None:
    records = [
        SourceRecord(
            external_id=str(i),
            title=f"Rule {i} on disability compensation and mental health",
            payload={"id": i},
        )
        for i in range(count)
    ]
    with psycopg.connect(db) as conn:
        upsert_documents(conn, "src", records)


def _run_together(workers: list[Callable[[], None]]) -> list[BaseException]:
    errors: list[BaseException] = []

    def guarded(work: Callable[[], None]) -> None:
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - reported to the test below
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(work,)) for work in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "a classifier hung"
    return errors


def _assert_each_document_classified_once(db: str, count: int) -> None:
    with psycopg.connect(db) as conn:
        duplicates = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM signals "
            "GROUP BY document_id, topic, method HAVING count(*) > 1) AS d"
        ).fetchone()[0]
        per_document = conn.execute(
            "SELECT count(*) FROM signals GROUP BY document_id ORDER BY document_id"
        ).fetchall()
        pending = conn.execute(
            "SELECT count(*) FROM documents WHERE classified_hash IS DISTINCT FROM content_hash"
        ).fetchone()[0]
    assert duplicates == 0
    assert per_document == [(2,)] * count
    assert pending == 0


def _rows(batch: list[PendingDocument]) -> list[SignalRow]:
    return [
        SignalRow(document.id, match.topic, match.relevance)
        for document in batch
        for match in keywords.classify(document.title, document.summary)
    ]


def test_two_classifiers_share_the_pending_set(db: str) -> None:
    count = 20
    _store(db, count)
    both_read = threading.Barrier(2, timeout=10)
    batches: list[list[int]] = []

    def classifier() -> None:
        with psycopg.connect(db) as conn:
            batch = pending_classification(conn, 100)
            both_read.wait()  # both have read before either writes
            replace_signals(conn, METHOD, batch, _rows(batch))
            batches.append([document.id for document in batch])

    assert _run_together([classifier, classifier]) == []
    classified = sorted(i for batch in batches for i in batch)
    assert len(classified) == count == len(set(classified))
    _assert_each_document_classified_once(db, count)


def test_two_writers_of_the_same_documents_do_not_collide(db: str) -> None:
    count = 20
    _store(db, count)
    with psycopg.connect(db) as conn:
        conn.execute("SET statement_timeout = '10s'")
        rows = conn.execute("SELECT id, title, summary, content_hash FROM documents").fetchall()
    documents = [PendingDocument(*row) for row in rows]
    both_ready = threading.Barrier(2, timeout=10)

    def writer(order: int) -> Callable[[], None]:
        def work() -> None:
            batch = documents if order == 0 else list(reversed(documents))
            with psycopg.connect(db) as conn:
                conn.execute("SET statement_timeout = '20s'")
                both_ready.wait()
                replace_signals(conn, METHOD, batch, _rows(batch))

        return work

    assert _run_together([writer(0), writer(1)]) == []
    _assert_each_document_classified_once(db, count)


def test_replace_signals_drops_topics_no_longer_matched(db: str) -> None:
    _store(db, 1)
    with psycopg.connect(db) as conn:
        (document,) = pending_classification(conn, 10)
        replace_signals(
            conn,
            METHOD,
            [document],
            [SignalRow(document.id, "a", 0.5), SignalRow(document.id, "b", 0.5)],
        )
        replace_signals(conn, METHOD, [document], [SignalRow(document.id, "b", 0.9)])
        replace_signals(conn, "other", [document], [SignalRow(document.id, "a", 0.1)])
        stored = conn.execute(
            "SELECT topic, relevance, method FROM signals ORDER BY method, topic"
        ).fetchall()
    assert stored == [("b", 0.9, METHOD), ("a", 0.1, "other")]


def test_concurrent_classify_pending_classifies_every_document_once(db: str) -> None:
    count = BATCH_SIZE * 2 + 7
    _store(db, count)
    pool = get_pool(db)
    results: list[dict[str, object]] = []

    def classifier() -> None:
        results.append(classify_pending(pool))

    assert _run_together([classifier, classifier, classifier]) == []
    assert sum(int(result["documents_classified"]) for result in results) == count
    _assert_each_document_classified_once(db, count)
