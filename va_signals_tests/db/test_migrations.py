"""Alembic migrations on a real server: up, down to base, up again; a failing one rolls back."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from alembic import command

from va_signals.db import migrate

CORE_TABLES = {"documents", "source_runs", "source_state", "signals"}


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    return {row[0] for row in rows} - {"alembic_version"}


def test_upgrade_downgrade_to_base_and_upgrade_again(empty_database: str) -> None:
    assert migrate.current_revision(empty_database) is None

    migrate.upgrade(empty_database)
    assert migrate.current_revision(empty_database) == migrate.head_revision()
    after_first_upgrade = _tables(empty_database)
    assert CORE_TABLES <= after_first_upgrade

    migrate.downgrade(empty_database, "base")
    assert migrate.current_revision(empty_database) is None
    assert _tables(empty_database) == set()

    migrate.upgrade(empty_database)
    assert migrate.current_revision(empty_database) == migrate.head_revision()
    assert _tables(empty_database) == after_first_upgrade


def test_concurrent_upgrades_of_a_fresh_database_all_succeed(empty_database: str) -> None:
    """Three `db upgrade` processes at once: they take turns and all end at head."""
    script = "import sys; from va_signals.db import migrate; migrate.upgrade(sys.argv[1])"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, empty_database],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outcomes = []
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        outcomes.append((process.returncode, stderr))
    assert [code for code, _ in outcomes] == [0, 0, 0], [err for _, err in outcomes]
    assert migrate.current_revision(empty_database) == migrate.head_revision()
    assert CORE_TABLES <= _tables(empty_database)
    with psycopg.connect(empty_database) as conn:
        held = conn.execute(
            """
            SELECT count(*) FROM pg_locks
            WHERE locktype = 'advisory'
              AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
            """
        ).fetchone()[0]
    assert held == 0, "the migration lock outlived the upgrades"


def test_failing_migration_leaves_schema_at_previous_revision(
    empty_database: str, tmp_path: Path
) -> None:
    scripts = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS_DIR, scripts)
    head = migrate.head_revision()
    (scripts / "versions" / "9999_broken.py").write_text(
        f'''"""A revision that creates a table, then fails."""
from alembic import op

revision = "9999"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE TABLE half_done (id int)")
    op.execute("ALTER TABLE documents ADD COLUMN half_done_flag boolean")
    op.execute("SELECT 1 / 0")


def downgrade() -> None:
    pass
'''
    )
    migrate.upgrade(empty_database)
    config = migrate.alembic_config(empty_database)
    config.set_main_option("script_location", str(scripts))

    with pytest.raises(Exception, match="division by zero"):
        command.upgrade(config, "head")

    assert migrate.current_revision(empty_database) == head
    assert "half_done" not in _tables(empty_database)
    with psycopg.connect(empty_database) as conn:
        columns = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'documents'"
        ).fetchall()
    assert "half_done_flag" not in {row[0] for row in columns}


def test_cli_db_commands_on_the_embedded_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no DATABASE_URL the CLI starts the embedded server under VA_SIGNALS_HOME."""
    from va_signals.cli import main
    from va_signals.db.location import stop_embedded

    home = Path("/tmp") / f"vas-home-{uuid.uuid4().hex[:6]}"  # short: the socket lives here
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("VA_SIGNALS_HOME", str(home))
    try:
        assert main(["db", "upgrade"]) == 0
        assert main(["db", "current"]) == 0
        assert migrate.head_revision() in capsys.readouterr().out
        assert main(["db", "downgrade", "0001"]) == 0
        assert main(["db", "current"]) == 0
        assert capsys.readouterr().out.strip().endswith("0001")
        assert (home / "pgdata" / "PG_VERSION").is_file()
    finally:
        stop_embedded(home / "pgdata")
        shutil.rmtree(home, ignore_errors=True)
