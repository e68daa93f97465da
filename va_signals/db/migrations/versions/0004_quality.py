"""Data-quality bookkeeping for asset checks: repeats of a natural key seen in each run.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Repeats are dropped before the upsert, so the ledger is the only place they are counted.
    op.execute(
        "ALTER TABLE source_runs ADD COLUMN records_duplicate INTEGER NOT NULL DEFAULT 0 "
        "CHECK (records_duplicate >= 0)"
    )
    # The canaries read the documents a run touched; last_seen_at is set by every upsert.
    op.execute("CREATE INDEX documents_source_last_seen_idx ON documents (source_id, last_seen_at)")


def downgrade() -> None:
    op.execute("DROP INDEX documents_source_last_seen_idx")
    op.execute("ALTER TABLE source_runs DROP COLUMN records_duplicate")
