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
    """Canonical documents that are new or changed since they were last classified."""
    rows = conn.execute(
        """
        SELECT id, title, summary, content_hash FROM documents
        WHERE classified_hash IS DISTINCT FROM content_hash AND duplicate_of IS NULL
        ORDER BY id
        LIMIT %s
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
    """Replace one method's signals for `documents` and mark them classified at their hash."""
    ids = [document.id for document in documents]
    conn.execute("DELETE FROM signals WHERE method = %s AND document_id = ANY(%s)", (method, ids))
    hashes = {document.id: document.content_hash for document in documents}
    rows = [
        (signal.document_id, signal.topic, signal.relevance, method, hashes[signal.document_id])
        for signal in signals
    ]
    if rows:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO signals (document_id, topic, relevance, method, content_hash) "
                "VALUES (%s, %s, %s, %s, %s)",
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
