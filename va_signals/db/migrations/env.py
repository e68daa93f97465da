"""Alembic environment: runs migrations online, one transaction per revision."""

from __future__ import annotations

import contextlib

from alembic import context
from sqlalchemy import create_engine, pool, text

config = context.config

# Session-level advisory lock key held while migrating ("vasigmig" as ASCII bytes).
# Concurrent upgrades wait for it, then find the schema at the revision the first one reached.
MIGRATION_LOCK_KEY = 0x7661_7369_676D_6967


def run_migrations_online() -> None:
    engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
    with engine.connect() as connection:
        # Taken before Alembic reads the current revision; session-level, so it outlives the
        # per-revision transactions. It is committed at once to leave no transaction open.
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        connection.commit()
        try:
            # PostgreSQL has transactional DDL: a revision that fails rolls back whole and
            # leaves the schema at the previous revision.
            context.configure(connection=connection, transaction_per_migration=True)
            with context.begin_transaction():
                context.run_migrations()
        finally:
            # If the connection itself broke, closing it below releases the lock anyway; a
            # failed unlock must not hide the error that stopped the migration.
            with contextlib.suppress(Exception):
                if connection.in_transaction():
                    connection.rollback()
                connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
                connection.commit()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run against a server")
run_migrations_online()
