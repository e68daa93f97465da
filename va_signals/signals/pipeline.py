"""The steps after ingest: link cross-source copies, then classify what is new or changed."""

from __future__ import annotations

import logging
from collections import Counter

from psycopg import Connection
from psycopg_pool import ConnectionPool

from va_signals.db.signals import (
    SignalRow,
    link_duplicates,
    pending_classification,
    replace_signals,
)
from va_signals.signals import keywords

logger = logging.getLogger(__name__)

BATCH_SIZE = 500


def build_documents_stage(conn: Connection) -> dict[str, object]:
    """Link duplicates across sources and describe the table for the asset's metadata."""
    linked = link_duplicates(conn)
    total, canonical, sources = conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE duplicate_of IS NULL), "
        "count(DISTINCT source_id) FROM documents"
    ).fetchone()
    return {
        "documents_total": total,
        "documents_canonical": canonical,
        "sources_with_documents": sources,
        "duplicates_linked_now": linked,
    }


def classify_pending(
    pool: ConnectionPool, *, log: logging.Logger | logging.LoggerAdapter | None = None
) -> dict[str, object]:
    """Classify every canonical document whose content changed since it was last classified."""
    log = log or logger
    classified = 0
    written = 0
    topics: Counter[str] = Counter()
    while True:
        # One transaction per batch: a crash keeps finished batches and redoes only the rest.
        with pool.connection() as conn:
            batch = pending_classification(conn, BATCH_SIZE)
            if not batch:
                break
            rows = []
            for document in batch:
                for match in keywords.classify(document.title, document.summary):
                    rows.append(SignalRow(document.id, match.topic, match.relevance))
                    topics[match.topic] += 1
            written += replace_signals(conn, keywords.METHOD, batch, rows)
            classified += len(batch)
    log.info("signals: classified %d documents, wrote %d signals", classified, written)
    metadata: dict[str, object] = {
        "documents_classified": classified,
        "signals_written": written,
        "method": keywords.METHOD,
    }
    metadata.update({f"topic_{topic}": count for topic, count in sorted(topics.items())})
    return metadata
