"""Record which host ran each source, so a dead run on another machine can be told apart.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE source_runs ADD COLUMN host TEXT")


def downgrade() -> None:
    op.execute("ALTER TABLE source_runs DROP COLUMN host")
