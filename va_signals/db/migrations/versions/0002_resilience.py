"""Resilience state shared by processes: circuit breakers and rate limits.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE breaker_state (
            service              TEXT PRIMARY KEY,
            state                TEXT NOT NULL DEFAULT 'CLOSED'
                CHECK (state IN ('CLOSED', 'OPEN', 'HALF_OPEN')),
            opened_at            TIMESTAMPTZ,
            open_until           TIMESTAMPTZ,
            reopen_count         INTEGER NOT NULL DEFAULT 0 CHECK (reopen_count >= 0),
            consecutive_failures INTEGER NOT NULL DEFAULT 0,
            window_started_at    TIMESTAMPTZ,
            window_successes     INTEGER NOT NULL DEFAULT 0,
            window_failures      INTEGER NOT NULL DEFAULT 0,
            half_open_since      TIMESTAMPTZ,
            probe_leases         JSONB NOT NULL DEFAULT '{}'::jsonb,
            probe_successes      INTEGER NOT NULL DEFAULT 0,
            recovery_step        INTEGER CHECK (recovery_step >= 0),
            step_successes       INTEGER NOT NULL DEFAULT 0,
            step_admitted        INTEGER NOT NULL DEFAULT 0,
            step_refused         INTEGER NOT NULL DEFAULT 0,
            last_failure         TEXT,
            updated_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
            CONSTRAINT breaker_state_open_has_deadline
                CHECK (state <> 'OPEN' OR open_until IS NOT NULL)
        )
        """
    )
    op.execute(
        "COMMENT ON COLUMN breaker_state.probe_leases IS "
        "'Probes in flight while HALF_OPEN: slot token -> lease expiry in Unix seconds'"
    )
    op.execute(
        """
        CREATE TABLE breaker_events (
            id          BIGSERIAL PRIMARY KEY,
            service     TEXT NOT NULL,
            from_state  TEXT NOT NULL CHECK (from_state IN ('CLOSED', 'OPEN', 'HALF_OPEN')),
            to_state    TEXT NOT NULL CHECK (to_state IN ('CLOSED', 'OPEN', 'HALF_OPEN')),
            reason      TEXT NOT NULL,
            source_id   TEXT,
            at          TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX breaker_events_at_idx ON breaker_events (at)")
    op.execute(
        """
        CREATE TABLE rate_limits (
            service       TEXT PRIMARY KEY,
            next_slot_at  TIMESTAMPTZ,
            paused_until  TIMESTAMPTZ,
            granted       BIGINT NOT NULL DEFAULT 0,
            updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE rate_limits")
    op.execute("DROP TABLE breaker_events")
    op.execute("DROP TABLE breaker_state")
