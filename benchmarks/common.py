"""Shared benchmark plumbing: a scratch database on the configured server, and the recordings."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

from va_signals.db import migrate
from va_signals.db.location import database_url, with_database

ROOT = Path(__file__).resolve().parent.parent
SHARED_RECORDINGS = Path(os.environ.get("VA_SIGNALS_RECORDINGS", ROOT.parent / "shared/recordings"))


def server_url() -> str:
    """The server to benchmark on: the test server if configured, else DATABASE_URL/embedded."""
    return os.environ.get("VA_SIGNALS_TEST_DATABASE_URL") or database_url()


@contextmanager
def scratch_database(prefix: str = "va_signals_bench") -> Iterator[str]:
    """A freshly migrated database, dropped afterwards."""
    admin_url = server_url()
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_database(admin_url, name)
    try:
        migrate.upgrade(url)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
