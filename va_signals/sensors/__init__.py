"""Dagster sensors: freshness evaluation, and alerts on run failures, failed asset checks and
incidents."""

import psycopg
import sqlalchemy.exc
from psycopg_pool import PoolTimeout

from va_signals.db.pool import DatabaseUnavailableError

# What reaching PostgreSQL can raise when it is down: through the pool, a live connection, or
# Alembic checking the schema.
DATABASE_DOWN: tuple[type[Exception], ...] = (
    DatabaseUnavailableError,
    PoolTimeout,
    psycopg.OperationalError,
    sqlalchemy.exc.OperationalError,
)
