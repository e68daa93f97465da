"""Queries behind the documents stage (cross-source duplicates) and the signals table."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from psycopg import Connection


@dataclass(frozen=True)
class PendingDocument:
    id: int
    title: str
    summary: str | None
    content_hash: str


@dataclass(frozen=True)
class SignalRow:
    document_id: int
    topic: str
    relevance: float


def link_duplicates(conn: Connection) -> int:
    """Point each cross-source copy of a document at the first copy stored; return changes.

    Copies within one source are distinct records by definition (their ids differ), so only
    copies held by different sources are linked.
    """
    cursor = conn.execute(
        """
        WITH canonical AS (
            SELECT DISTINCT ON (dedup_key) dedup_key, id, source_id
            FROM documents
            WHERE dedup_key IS NOT NULL
            ORDER BY dedup_key, id
        )
        UPDATE documents AS d SET duplicate_of = c.id
        FROM canonical AS c
        WHERE d.dedup_key = c.dedup_key
          AND d.id <> c.id
          AND d.source_id <> c.source_id
          AND d.duplicate_of IS DISTINCT FROM c.id
        """
    )
    return cursor.rowcount


def pending_classification(conn: Connection, limit: int) -> list[PendingDocument]:
    """Canonical documents that are new or changed since they were last classified.

    The rows are locked until the caller's transaction ends and rows another classifier holds
    are skipped, so concurrent classifiers share the pending set instead of both writing the
    same documents' signals. Call it in a transaction (not autocommit) with `replace_signals`.
    """
    rows = conn.execute(
        """
        SELECT id, title, summary, content_hash FROM documents
        WHERE classified_hash IS DISTINCT FROM content_hash AND duplicate_of IS NULL
        ORDER BY id
        LIMIT %s
        FOR UPDATE SKIP LOCKED
        """,
        (limit,),
    ).fetchall()
    return [PendingDocument(*row) for row in rows]


def replace_signals(
    conn: Connection,
    method: str,
    documents: Sequence[PendingDocument],
    signals: Iterable[SignalRow],
) -> int:
    """Replace one method's signals for `documents` and mark them classified at their hash.

    Safe when two writers classify the same documents at once: the documents' rows are locked
    first (in id order, so two writers cannot deadlock), and signals are upserted on their
    unique key rather than deleted and re-inserted, so neither writer hits a duplicate key.
    """
    ids = sorted({document.id for document in documents})
    if not ids:
        return 0
    conn.execute(
        "SELECT id FROM documents WHERE id = ANY(%s) ORDER BY id FOR UPDATE", (ids,)
    ).fetchall()
    hashes = {document.id: document.content_hash for document in documents}
    latest: dict[tuple[int, str], float] = {}
    for signal in signals:
        latest[(signal.document_id, signal.topic)] = signal.relevance
    rows = [
        (document_id, topic, relevance, method, hashes[document_id])
        for (document_id, topic), relevance in latest.items()
    ]
    # Topics the documents no longer match lose their signal; the rest are upserted below.
    conn.execute(
        """
        DELETE FROM signals AS s
        WHERE s.method = %s AND s.document_id = ANY(%s)
          AND (s.document_id, s.topic) NOT IN (
              SELECT * FROM unnest(%s::bigint[], %s::text[])
          )
        """,
        (method, ids, [row[0] for row in rows], [row[1] for row in rows]),
    )
    if rows:
        with conn.cursor() as cur:
            cur.executemany(
                """
                INSERT INTO signals (document_id, topic, relevance, method, content_hash)
                VALUES (%s, %s, %s, %s, %s)
                ON CONFLICT (document_id, topic, method) DO UPDATE SET
                    relevance = EXCLUDED.relevance,
                    content_hash = EXCLUDED.content_hash,
                    created_at = now()
                """,
                rows,
            )
    conn.execute(
        """
        UPDATE documents AS d SET classified_hash = t.content_hash
        FROM unnest(%s::bigint[], %s::text[]) AS t(id, content_hash)
        WHERE d.id = t.id
        """,
        (ids, [hashes[i] for i in ids]),
    )
    return len(rows)


def topic_counts(conn: Connection) -> dict[str, int]:
    """Documents per topic across all stored signals."""
    rows = conn.execute(
        "SELECT topic, count(DISTINCT document_id) FROM signals GROUP BY topic ORDER BY topic"
    ).fetchall()
    return {topic: count for topic, count in rows}
