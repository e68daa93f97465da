"""Revision 0002 creates the shared resilience tables and its downgrade removes them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from va_signals.db import migrate
from va_signals.db.location import with_database

RESILIENCE_TABLES = {"breaker_state", "breaker_events", "rate_limits"}


@pytest.fixture
def empty_database(pg_server_url: str) -> Iterator[str]:
    name = f"va_signals_migrate_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    yield with_database(pg_server_url, name)
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(
            psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                psycopg.sql.Identifier(name)
            )
        )


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    return {row[0] for row in rows}


def test_0002_upgrades_and_downgrades_cleanly(empty_database: str) -> None:
    migrate.upgrade(empty_database, "0002")
    assert RESILIENCE_TABLES <= tables(empty_database)
    with psycopg.connect(empty_database) as conn:
        indexes = {
            row[0]
            for row in conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE tablename = 'breaker_events'"
            ).fetchall()
        }
    assert any(definition.endswith("USING btree (at)") for definition in indexes)

    migrate.downgrade(empty_database, "0001")

    assert not RESILIENCE_TABLES & tables(empty_database)
    assert migrate.current_revision(empty_database) == "0001"
    migrate.upgrade(empty_database, "0002")
    assert RESILIENCE_TABLES <= tables(empty_database)


def test_an_open_breaker_row_must_say_until_when(empty_database: str) -> None:
    migrate.upgrade(empty_database, "0002")

    with psycopg.connect(empty_database) as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("INSERT INTO breaker_state (service, state) VALUES ('x', 'OPEN')")
