"""Observability state: incidents, the sources each one covers, and the alert outbox.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE incidents (
            id            BIGSERIAL PRIMARY KEY,
            tier          TEXT NOT NULL
                CHECK (tier IN ('infrastructure', 'service', 'isolated', 'breaker_cascade')),
            root_cause    TEXT NOT NULL,
            severity      TEXT NOT NULL
                CHECK (severity IN ('critical', 'error', 'warning', 'info')),
            summary       TEXT NOT NULL,
            services      TEXT[] NOT NULL DEFAULT '{}',
            dedup_key     TEXT NOT NULL,
            opened_at     TIMESTAMPTZ NOT NULL,
            last_seen_at  TIMESTAMPTZ NOT NULL,
            resolved_at   TIMESTAMPTZ,
            version       INTEGER NOT NULL DEFAULT 1,
            alert_state   TEXT NOT NULL
                CHECK (alert_state IN ('unrouted', 'trigger_pending', 'triggered',
                                       'resolve_pending', 'resolved', 'failed')),
            details       JSONB NOT NULL DEFAULT '{}'::jsonb,
            created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
            updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
            CONSTRAINT incidents_dedup_key UNIQUE (dedup_key),
            CONSTRAINT incidents_seen_after_open CHECK (last_seen_at >= opened_at),
            CONSTRAINT incidents_resolved_after_open
                CHECK (resolved_at IS NULL OR resolved_at >= opened_at)
        )
        """
    )
    # The correlator reads open incidents on every tick.
    op.execute("CREATE INDEX incidents_open_idx ON incidents (opened_at) WHERE resolved_at IS NULL")
    # "What was open at T" is a containment test on the open period; GiST answers it directly.
    op.execute(
        "CREATE INDEX incidents_period_idx ON incidents "
        "USING gist (tstzrange(opened_at, resolved_at))"
    )
    op.execute(
        "CREATE INDEX incidents_resolved_idx ON incidents (resolved_at) "
        "WHERE resolved_at IS NOT NULL"
    )
    op.execute(
        """
        CREATE TABLE incident_sources (
            incident_id        BIGINT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
            source_id          TEXT NOT NULL,
            service            TEXT NOT NULL,
            first_failed_at    TIMESTAMPTZ NOT NULL,
            last_failed_at     TIMESTAMPTZ NOT NULL,
            last_source_run_id BIGINT,
            error_class        TEXT,
            recovered_at       TIMESTAMPTZ,
            active             BOOLEAN NOT NULL DEFAULT true,
            PRIMARY KEY (incident_id, source_id)
        )
        """
    )
    # A source belongs to at most one open incident: the database refuses a second one.
    op.execute(
        "CREATE UNIQUE INDEX incident_sources_active_key ON incident_sources (source_id) "
        "WHERE active"
    )
    op.execute(
        "CREATE INDEX incident_sources_source_idx ON incident_sources (source_id, incident_id)"
    )
    op.execute(
        """
        CREATE TABLE alert_outbox (
            id               BIGSERIAL PRIMARY KEY,
            channel          TEXT NOT NULL CHECK (channel IN ('pagerduty', 'slack')),
            dedup_key        TEXT NOT NULL,
            action           TEXT NOT NULL CHECK (action IN ('trigger', 'resolve')),
            version          TEXT NOT NULL,
            incident_id      BIGINT REFERENCES incidents (id) ON DELETE SET NULL,
            tracks_incident  BOOLEAN NOT NULL DEFAULT false,
            summary          TEXT NOT NULL,
            body             JSONB NOT NULL,
            status           TEXT NOT NULL DEFAULT 'PENDING'
                CHECK (status IN ('PENDING', 'SENT', 'FAILED')),
            attempts         INTEGER NOT NULL DEFAULT 0,
            next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
            last_status_code INTEGER,
            last_error       TEXT,
            created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
            sent_at          TIMESTAMPTZ,
            CONSTRAINT alert_outbox_event_key UNIQUE (channel, dedup_key, action, version)
        )
        """
    )
    op.execute(
        "CREATE INDEX alert_outbox_due_idx ON alert_outbox (next_attempt_at, id) "
        "WHERE status = 'PENDING'"
    )
    op.execute("CREATE INDEX alert_outbox_dedup_idx ON alert_outbox (dedup_key, id)")


def downgrade() -> None:
    op.execute("DROP TABLE alert_outbox")
    op.execute("DROP TABLE incident_sources")
    op.execute("DROP TABLE incidents")
