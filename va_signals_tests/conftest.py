"""Shared fixtures: a real PostgreSQL database per test session, and quiet telemetry."""

from __future__ import annotations

import os
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
from va_signals.db.location import embedded_database_url, with_database  # noqa: E402
from va_signals.db.pool import close_all_pools  # noqa: E402

TEST_DATABASE_URL_ENV = "VA_SIGNALS_TEST_DATABASE_URL"
TABLES = ("signals", "documents", "source_runs", "source_state")


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An admin URL: the server named by VA_SIGNALS_TEST_DATABASE_URL, else an embedded one."""
    configured = os.environ.get(TEST_DATABASE_URL_ENV, "").strip()
    if configured:
        return configured
    # Short path: the embedded server's Unix socket lives in its data folder.
    data_dir = Path(tempfile.mkdtemp(prefix="vas-pg-")) / "data"
    return embedded_database_url(data_dir)


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
