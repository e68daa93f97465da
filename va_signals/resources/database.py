"""The PostgreSQL resource: one pooled connection source per process, schema kept current."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from psycopg import Connection
from psycopg_pool import ConnectionPool
from pydantic import Field

from va_signals.db import migrate
from va_signals.db.location import database_url
from va_signals.db.pool import get_pool

_migrated: set[str] = set()
_migrate_lock = threading.Lock()


class DatabaseResource(dg.ConfigurableResource):
    """PostgreSQL for documents, runs and signals.

    Leave `url` empty to use `DATABASE_URL`, or the embedded server when that is unset too.
    """

    url: str = Field(default="", description="PostgreSQL URL; empty means DATABASE_URL/embedded.")
    max_pool_size: int = Field(default=10, ge=1, description="Most connections this process opens.")
    pool_timeout_seconds: float = Field(default=30.0, gt=0)

    def resolved_url(self) -> str:
        return self.url or database_url()

    @property
    def pool(self) -> ConnectionPool:
        return get_pool(self.resolved_url(), self.max_pool_size, self.pool_timeout_seconds)

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A pooled connection in a transaction: committed on success, rolled back on error,
        and returned to the pool on every path."""
        with self.pool.connection() as conn:
            yield conn

    def ensure_schema(self) -> None:
        """Upgrade the schema to the newest revision, once per process and URL."""
        url = self.resolved_url()
        with _migrate_lock:
            if url in _migrated:
                return
            self.pool  # noqa: B018 - opening the pool first reports an absent server clearly
            migrate.upgrade(url)
            _migrated.add(url)
