"""Passwords never reach messages: URL credentials, URL query and key=value conninfo."""

from __future__ import annotations

import pytest

from va_signals.db.location import redact


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://user:SuperSecret@db:5432/app", "postgresql://user:***@db:5432/app"),
        ("postgresql://user@db/app", "postgresql://user@db/app"),
        ("postgresql://db/app", "postgresql://db/app"),
        ("postgresql://u:Super/Secret@db/app", "postgresql://u:***@db/app"),
        (
            "postgresql://user@db/app?sslmode=require&password=SuperSecret",
            "postgresql://user@db/app?sslmode=require&password=***",
        ),
        (
            "postgresql://db/app?password=SuperSecret&sslmode=require",
            "postgresql://db/app?password=***&sslmode=require",
        ),
        (
            "postgresql://u:pw@db/app?host=/tmp/sock&password=SuperSecret",
            "postgresql://u:***@db/app?host=/tmp/sock&password=***",
        ),
        (
            "host=127.0.0.1 user=app password=SuperSecret dbname=app",
            "host=127.0.0.1 user=app password=*** dbname=app",
        ),
        ("password = SuperSecret port=5432", "password = *** port=5432"),
        (
            "host=db password='Super \\' Secret' dbname=app",
            "host=db password=*** dbname=app",
        ),
        ("host=db dbname=app", "host=db dbname=app"),
    ],
)
def test_redact_hides_every_password_form(url: str, expected: str) -> None:
    shown = redact(url)
    assert shown == expected
    assert "SuperSecret" not in shown
    assert "Secret" not in shown
