"""Revision 0002 creates the shared resilience tables and its downgrade removes them."""

from __future__ import annotations

import psycopg
import pytest

from va_signals.db import migrate

RESILIENCE_TABLES = {"breaker_state", "breaker_events", "rate_limits"}


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
