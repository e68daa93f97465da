"""Idempotent writes of normalized records into `documents`, counted as new/updated/unchanged."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from psycopg import Connection

from va_signals.sources.base import SourceRecord


@dataclass(frozen=True)
class UpsertCounts:
    """How one batch of records changed the table."""

    new: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0

    def __add__(self, other: UpsertCounts) -> UpsertCounts:
        return UpsertCounts(
            self.new + other.new,
            self.updated + other.updated,
            self.unchanged + other.unchanged,
            self.duplicates + other.duplicates,
        )


def dedup_key(record: SourceRecord) -> str | None:
    """The key under which two sources' copies of one document meet: canonical URL and title.

    The title is part of the key because some sources point many records (a bill's actions)
    at one URL; only the same page under the same title is the same document.
    """
    if not record.url:
        return None
    parts = urlsplit(record.url.strip())
    host = parts.netloc.lower().removeprefix("www.")
    title = " ".join(record.title.lower().split())
    return f"{host}{parts.path.rstrip('/')}|{title}"


def content_hash(record: SourceRecord) -> str:
    """A stable digest of everything stored for a record, so a change upstream is detected."""
    return _hash_and_payload(record)[0]


def _hash_and_payload(record: SourceRecord) -> tuple[str, str]:
    # The payload is serialized once and used twice: for the digest and as the stored JSONB.
    # SourceRecord already turned NaN/Infinity into null; a payload changed after validation
    # must fail here, by record, rather than as an unnamed COPY error (JSONB has no NaN).
    payload = json.dumps(
        record.payload, sort_keys=True, separators=(",", ":"), default=str, allow_nan=False
    )
    header = json.dumps(
        [
            record.title,
            record.summary,
            record.url,
            record.published_at.isoformat() if record.published_at else None,
            record.published_on.isoformat() if record.published_on else None,
        ],
        separators=(",", ":"),
    )
    digest = hashlib.sha256(f"{header}\n{payload}".encode()).hexdigest()
    return digest, payload


_STAGING_COLUMNS = (
    "external_id, title, summary, url, published_at, published_on, content_hash, dedup_key, payload"
)

# Rows arrive by COPY into a per-session staging table, then one statement merges them.
# `existing` is read before the merge so each row can be counted as new, updated or
# unchanged; a per-source advisory lock keeps concurrent writers of one source from racing
# between the read and the write.
_CREATE_STAGING_SQL = """
CREATE TEMP TABLE IF NOT EXISTS incoming_documents (
    external_id TEXT, title TEXT, summary TEXT, url TEXT, published_at TIMESTAMPTZ,
    published_on DATE, content_hash TEXT, dedup_key TEXT, payload JSONB
)
"""

_MERGE_SQL = """
WITH existing AS (
    SELECT d.external_id, d.content_hash
    FROM documents AS d
    JOIN incoming_documents AS i ON d.source_id = %(source_id)s AND d.external_id = i.external_id
),
written AS (
    INSERT INTO documents AS d (
        source_id, external_id, title, summary, url, published_at, published_on,
        content_hash, dedup_key, payload
    )
    SELECT %(source_id)s, external_id, title, summary, url, published_at, published_on,
           content_hash, dedup_key, payload
    FROM incoming_documents
    ON CONFLICT (source_id, external_id) DO UPDATE SET
        last_seen_at = now(),
        title = EXCLUDED.title,
        summary = EXCLUDED.summary,
        url = EXCLUDED.url,
        published_at = EXCLUDED.published_at,
        published_on = EXCLUDED.published_on,
        payload = EXCLUDED.payload,
        dedup_key = EXCLUDED.dedup_key,
        content_hash = EXCLUDED.content_hash,
        updated_at = CASE WHEN d.content_hash = EXCLUDED.content_hash
                          THEN d.updated_at ELSE now() END
    RETURNING d.external_id
)
SELECT
    count(*) FILTER (WHERE e.external_id IS NULL),
    count(*) FILTER (WHERE e.content_hash <> i.content_hash),
    count(*) FILTER (WHERE e.content_hash = i.content_hash),
    (SELECT count(*) FROM written)
FROM incoming_documents AS i
LEFT JOIN existing AS e ON e.external_id = i.external_id
"""


def upsert_documents(
    conn: Connection, source_id: str, records: Sequence[SourceRecord]
) -> UpsertCounts:
    """Insert new records, update changed ones, and count unchanged ones; never duplicates."""
    unique: dict[str, SourceRecord] = {}
    for record in records:
        unique[record.external_id] = record
    duplicates = len(records) - len(unique)
    if not unique:
        return UpsertCounts(duplicates=duplicates)

    rows = list(unique.values())
    with conn.cursor() as cur:
        cur.execute(_CREATE_STAGING_SQL)
        cur.execute("TRUNCATE incoming_documents")
        with cur.copy(f"COPY incoming_documents ({_STAGING_COLUMNS}) FROM STDIN") as copy:
            for record in rows:
                try:
                    digest, payload = _hash_and_payload(record)
                except ValueError as exc:
                    raise ValueError(
                        f"source {source_id!r}: record {record.external_id!r} cannot be "
                        f"stored: {exc}"
                    ) from exc
                copy.write_row(
                    (
                        record.external_id,
                        record.title,
                        record.summary,
                        record.url,
                        record.published_at,
                        record.published_on,
                        digest,
                        dedup_key(record),
                        payload,
                    )
                )
        new, updated, unchanged, written = cur.execute(
            _MERGE_SQL, {"source_id": source_id}
        ).fetchone()
        cur.execute("TRUNCATE incoming_documents")
    if written != len(rows):
        raise RuntimeError(
            f"source {source_id!r}: upsert wrote {written} of {len(rows)} rows; refusing to guess"
        )
    return UpsertCounts(new=new, updated=updated, unchanged=unchanged, duplicates=duplicates)
