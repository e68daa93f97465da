"""An index for the health score's latency dimension: each source's finished runs by start time.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The latency dimension reads each source's newest run start, then the month of runs before
    # it: two range reads per source in start order. Only runs that measured a latency are
    # indexed, and with their end and latency included the reads can skip the table when the
    # visibility map allows. Built inside the revision's transaction (not CONCURRENTLY): writes
    # to source_runs wait while it builds, about a second per million rows.
    op.execute(
        "CREATE INDEX source_runs_latency_idx ON source_runs (source_id, started_at) "
        "INCLUDE (ended_at, latency_p50_ms) "
        "WHERE status <> 'RUNNING' AND latency_p50_ms IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX source_runs_latency_idx")
