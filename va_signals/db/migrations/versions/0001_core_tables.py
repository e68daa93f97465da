"""Core tables: documents, source_runs, source_state, signals.

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE documents (
            id              BIGSERIAL PRIMARY KEY,
            source_id       TEXT NOT NULL,
            external_id     TEXT NOT NULL,
            title           TEXT NOT NULL,
            summary         TEXT,
            url             TEXT,
            published_at    TIMESTAMPTZ,
            published_on    DATE,
            first_seen_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
            last_seen_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
            updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
            content_hash    TEXT NOT NULL,
            classified_hash TEXT,
            dedup_key       TEXT,
            duplicate_of    BIGINT REFERENCES documents (id) ON DELETE SET NULL,
            payload         JSONB NOT NULL,
            CONSTRAINT documents_source_external_key UNIQUE (source_id, external_id)
        )
        """
    )
    op.execute("CREATE INDEX documents_published_on_idx ON documents (published_on)")
    op.execute("CREATE INDEX documents_published_at_idx ON documents (published_at)")
    op.execute("CREATE INDEX documents_dedup_key_idx ON documents (dedup_key)")
    op.execute(
        "CREATE INDEX documents_unclassified_idx ON documents (id) "
        "WHERE classified_hash IS DISTINCT FROM content_hash"
    )
    op.execute(
        """
        CREATE TABLE source_runs (
            id                BIGSERIAL PRIMARY KEY,
            source_id         TEXT NOT NULL,
            run_id            TEXT,
            status            TEXT NOT NULL
                CHECK (status IN ('RUNNING', 'SUCCESS', 'NO_DATA', 'ERROR')),
            started_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
            ended_at          TIMESTAMPTZ,
            duration_ms       INTEGER,
            pages             INTEGER NOT NULL DEFAULT 0,
            records_new       INTEGER NOT NULL DEFAULT 0,
            records_updated   INTEGER NOT NULL DEFAULT 0,
            records_unchanged INTEGER NOT NULL DEFAULT 0,
            truncated         BOOLEAN NOT NULL DEFAULT false,
            error_class       TEXT,
            error_message     TEXT,
            latency_p50_ms    INTEGER,
            latency_max_ms    INTEGER,
            requests          INTEGER NOT NULL DEFAULT 0,
            pid               INTEGER
        )
        """
    )
    op.execute("CREATE INDEX source_runs_source_ended_idx ON source_runs (source_id, ended_at)")
    op.execute("CREATE INDEX source_runs_ended_idx ON source_runs (ended_at)")
    op.execute("CREATE INDEX source_runs_running_idx ON source_runs (id) WHERE status = 'RUNNING'")
    op.execute(
        """
        CREATE TABLE source_state (
            source_id     TEXT PRIMARY KEY,
            watermark     TIMESTAMPTZ,
            resume_cursor TEXT,
            updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE signals (
            id            BIGSERIAL PRIMARY KEY,
            document_id   BIGINT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
            topic         TEXT NOT NULL,
            relevance     REAL NOT NULL CHECK (relevance >= 0 AND relevance <= 1),
            method        TEXT NOT NULL,
            content_hash  TEXT NOT NULL,
            created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
            CONSTRAINT signals_document_topic_method_key UNIQUE (document_id, topic, method)
        )
        """
    )
    op.execute("CREATE INDEX signals_topic_idx ON signals (topic, relevance DESC)")


def downgrade() -> None:
    op.execute("DROP TABLE signals")
    op.execute("DROP TABLE source_state")
    op.execute("DROP TABLE source_runs")
    op.execute("DROP TABLE documents")
