"""Shared fixtures: a real PostgreSQL database per test session, and quiet telemetry."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

# Set before Dagster or Great Expectations are imported anywhere in the test session.
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

from va_signals.db import migrate  # noqa: E402
from va_signals.db.location import (  # noqa: E402
    embedded_database_url,
    stop_embedded,
    with_database,
)
from va_signals.db.pool import close_all_pools  # noqa: E402

TEST_DATABASE_URL_ENV = "VA_SIGNALS_TEST_DATABASE_URL"
TABLES = (
    "signals",
    "documents",
    "source_runs",
    "source_state",
    # Shared resilience state: a breaker opened or a pause set by one test must not leak.
    "breaker_state",
    "breaker_events",
    "rate_limits",
)


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """An admin URL: the server named by VA_SIGNALS_TEST_DATABASE_URL, else an embedded one
    started for this session and removed with its data when the session ends."""
    configured = os.environ.get(TEST_DATABASE_URL_ENV, "").strip()
    if configured:
        yield configured
        return
    # Short path: the embedded server's Unix socket lives in its data folder.
    folder = Path(tempfile.mkdtemp(prefix="vas-pg-"))
    url = embedded_database_url(folder / "data")
    yield url
    close_all_pools()
    stop_embedded(folder / "data")
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url(pg_server_url: str) -> Iterator[str]:
    """A fresh database for this session, migrated to head, exported as DATABASE_URL."""
    name = f"va_signals_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    url = with_database(pg_server_url, name)
    migrate.upgrade(url)
    previous = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = url
    yield url
    close_all_pools()
    if previous is None:
        os.environ.pop("DATABASE_URL", None)
    else:
        os.environ["DATABASE_URL"] = previous
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(
            psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                psycopg.sql.Identifier(name)
            )
        )


@pytest.fixture
def empty_database(pg_server_url: str) -> Iterator[str]:
    """A new database with no schema at all, dropped after the test (migration tests)."""
    name = f"va_signals_empty_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    yield with_database(pg_server_url, name)
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(
            psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                psycopg.sql.Identifier(name)
            )
        )


@pytest.fixture
def db(database_url: str) -> Iterator[str]:
    """The session database, emptied before the test."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("TRUNCATE " + ", ".join(TABLES) + " RESTART IDENTITY CASCADE")
    yield database_url


@pytest.fixture
def dagster_instance(tmp_path: Path):
    import dagster as dg

    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        yield instance
