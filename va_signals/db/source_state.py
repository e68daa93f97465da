"""Per-source progress: the watermark of the last complete run and the cursor to resume from."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from psycopg import Connection


@dataclass(frozen=True)
class SourceState:
    watermark: datetime | None = None
    resume_cursor: str | None = None


def load_state(conn: Connection, source_id: str) -> SourceState:
    row = conn.execute(
        "SELECT watermark, resume_cursor FROM source_state WHERE source_id = %s", (source_id,)
    ).fetchone()
    return SourceState(*row) if row else SourceState()


def save_state(conn: Connection, source_id: str, state: SourceState) -> None:
    conn.execute(
        """
        INSERT INTO source_state (source_id, watermark, resume_cursor, updated_at)
        VALUES (%s, %s, %s, now())
        ON CONFLICT (source_id) DO UPDATE SET
            watermark = EXCLUDED.watermark,
            resume_cursor = EXCLUDED.resume_cursor,
            updated_at = now()
        """,
        (source_id, state.watermark, state.resume_cursor),
    )
