"""Incidents in PostgreSQL: one pass per tick, resolution, re-failure, history, the cursor."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from va_signals.alerts.messages import Channel
from va_signals.cli import main
from va_signals.db import migrate
from va_signals.db.incidents import (
    CorrelatorCursor,
    correlate_pass,
    incidents_open_at,
    initial_cursor,
    open_and_recent_incidents,
)
from va_signals.db.pool import get_pool
from va_signals.resilience.correlation import CorrelationPolicy, DependencyGraph
from va_signals_tests.alerting_support import insert_run, outbox_rows
from va_signals_tests.incidents.catalogs import make_catalog, shipped_catalog

T0 = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)
CONGRESS = ("congress_committee_meetings", "congress_committee_reports", "congress_crs_reports")
CHANNELS = (Channel.PAGERDUTY, Channel.SLACK)


def _pass(url: str, cursor: CorrelatorCursor, now: datetime, graph=None, **kwargs):
    graph = graph or DependencyGraph(shipped_catalog())
    kwargs.setdefault("channels", CHANNELS)
    with get_pool(url).connection() as conn:
        return correlate_pass(conn, graph, CorrelationPolicy(), cursor, now=now, **kwargs)


def _insert(url: str, *rows: tuple) -> list[int]:
    with get_pool(url).connection() as conn:
        return [insert_run(conn, *row[:3], **(row[3] if len(row) > 3 else {})) for row in rows]


def _start(url: str, now: datetime = T0) -> CorrelatorCursor:
    with get_pool(url).connection() as conn:
        return initial_cursor(conn, now)


def _incidents(url: str) -> list[dict]:
    with get_pool(url).connection() as conn:
        return open_and_recent_incidents(conn, datetime(2000, 1, 1, tzinfo=UTC))


def test_outage_opens_one_incident_with_one_alert_per_channel(obs_db: str) -> None:
    cursor = _start(obs_db)
    _insert(
        obs_db, *[(source, "ERROR", T0 + timedelta(seconds=i)) for i, source in enumerate(CONGRESS)]
    )

    report = _pass(obs_db, cursor, T0 + timedelta(minutes=1))

    [incident] = _incidents(obs_db)
    assert report.opened == [incident["id"]]
    assert incident["tier"] == "service"
    assert incident["root_cause"] == "api.congress.gov"
    assert incident["sources"] == sorted(CONGRESS)
    assert incident["opened_at"] == T0
    assert incident["last_seen_at"] == T0 + timedelta(seconds=2)
    assert incident["resolved_at"] is None
    assert incident["alert_state"] == "trigger_pending"
    assert incident["dedup_key"] == f"va-signals/incident/{incident['id']}"
    rows = outbox_rows(obs_db)
    assert [(r["channel"], r["action"], r["dedup_key"]) for r in rows] == [
        ("pagerduty", "trigger", incident["dedup_key"]),
        ("slack", "trigger", incident["dedup_key"]),
    ]
    assert [r["tracks_incident"] for r in rows] == [True, False]
    assert report.cursor.source_run_id == 3


def test_a_second_pass_over_the_same_rows_changes_nothing(obs_db: str) -> None:
    cursor = _start(obs_db)
    _insert(obs_db, *[(source, "ERROR", T0) for source in CONGRESS])
    first = _pass(obs_db, cursor, T0 + timedelta(minutes=1))

    # The cursor was lost (a tick died after committing): the same rows are read again.
    replay = _pass(obs_db, cursor, T0 + timedelta(minutes=2))
    later = _pass(obs_db, first.cursor, T0 + timedelta(minutes=3))

    assert replay.opened == [] and later.opened == []
    assert replay.attached == 3
    assert len(_incidents(obs_db)) == 1
    assert len(outbox_rows(obs_db)) == 2


def test_recovery_resolves_and_a_new_failure_opens_a_new_incident(obs_db: str) -> None:
    cursor = _start(obs_db)
    _insert(obs_db, *[(source, "ERROR", T0) for source in CONGRESS])
    cursor = _pass(obs_db, cursor, T0 + timedelta(minutes=1)).cursor

    recovered_at = T0 + timedelta(hours=2)
    _insert(obs_db, *[(source, "SUCCESS", recovered_at) for source in CONGRESS])
    report = _pass(obs_db, cursor, recovered_at + timedelta(minutes=1))

    [first] = _incidents(obs_db)
    assert report.resolved == [first["id"]]
    assert first["resolved_at"] == recovered_at
    assert first["alert_state"] == "resolve_pending"
    assert first["version"] == 2
    resolves = [r for r in outbox_rows(obs_db) if r["action"] == "resolve"]
    assert [(r["channel"], r["dedup_key"], r["version"]) for r in resolves] == [
        ("pagerduty", first["dedup_key"], "2"),
        ("slack", first["dedup_key"], "2"),
    ]

    again = recovered_at + timedelta(days=1)
    _insert(obs_db, ("congress_crs_reports", "ERROR", again))
    report = _pass(obs_db, report.cursor, again + timedelta(minutes=1))

    second = _incidents(obs_db)[1]
    assert report.opened == [second["id"]]
    assert second["id"] != first["id"] and second["dedup_key"] != first["dedup_key"]
    assert (second["tier"], second["sources"]) == ("isolated", ["congress_crs_reports"])


def test_partial_recovery_keeps_the_incident_open(obs_db: str) -> None:
    cursor = _start(obs_db)
    _insert(obs_db, *[(source, "ERROR", T0) for source in CONGRESS])
    cursor = _pass(obs_db, cursor, T0 + timedelta(minutes=1)).cursor
    _insert(obs_db, (CONGRESS[0], "NO_DATA", T0 + timedelta(hours=1)))

    report = _pass(obs_db, cursor, T0 + timedelta(hours=1, minutes=1))

    assert report.resolved == []
    [incident] = _incidents(obs_db)
    assert incident["resolved_at"] is None
    with get_pool(obs_db).connection() as conn:
        active = conn.execute(
            "SELECT source_id FROM incident_sources WHERE active ORDER BY source_id"
        ).fetchall()
    assert [row[0] for row in active] == list(CONGRESS[1:])


def test_first_start_does_not_replay_old_failures(obs_db: str) -> None:
    _insert(obs_db, *[(source, "ERROR", T0 - timedelta(days=3)) for source in CONGRESS])
    cursor = _start(obs_db, T0)

    report = _pass(obs_db, cursor, T0 + timedelta(minutes=1))

    assert cursor.source_run_id == 3
    assert report.opened == []
    assert _incidents(obs_db) == []
    assert outbox_rows(obs_db) == []


def test_cursor_waits_for_a_source_still_running(obs_db: str) -> None:
    cursor = _start(obs_db)
    [slow] = _insert(obs_db, (CONGRESS[0], "RUNNING", None, {"started_at": T0}))
    _insert(obs_db, (CONGRESS[1], "ERROR", T0 + timedelta(seconds=5)))

    first = _pass(obs_db, cursor, T0 + timedelta(minutes=1))
    assert first.cursor.source_run_id == slow - 1
    with get_pool(obs_db).connection() as conn:
        conn.execute(
            "UPDATE source_runs SET status = 'ERROR', ended_at = %s, "
            "error_class = 'UpstreamUnavailable' WHERE id = %s",
            (T0 + timedelta(seconds=20), slow),
        )
    second = _pass(obs_db, first.cursor, T0 + timedelta(minutes=2))

    # The slow source's failure is not lost: it joins its sibling's incident, which now
    # blames their service (same incident, same dedup key: no second page).
    assert second.cursor.source_run_id == 2
    # Both rows are linked: the sibling's was read again (the cursor had waited) and refreshed.
    assert second.opened == [] and second.attached == 2
    [incident] = _incidents(obs_db)
    assert (incident["tier"], incident["root_cause"]) == ("service", "api.congress.gov")
    assert incident["sources"] == sorted(CONGRESS[:2])
    assert len(outbox_rows(obs_db)) == 2


def test_failures_of_an_unfinished_run_wait_and_are_grouped_together(obs_db: str) -> None:
    cursor = _start(obs_db)
    _insert(obs_db, (CONGRESS[0], "ERROR", T0, {"run_id": "run-a"}))
    running = {"run-a"}

    first = _pass(obs_db, cursor, T0 + timedelta(minutes=1), unfinished_runs=lambda ids: running)
    _insert(
        obs_db,
        *[(s, "ERROR", T0 + timedelta(minutes=2), {"run_id": "run-a"}) for s in CONGRESS[1:]],
    )
    running.clear()
    second = _pass(
        obs_db, first.cursor, T0 + timedelta(minutes=3), unfinished_runs=lambda ids: running
    )

    assert first.opened == [] and first.cursor.source_run_id == 0
    [incident] = _incidents(obs_db)
    assert second.opened == [incident["id"]]
    assert (incident["tier"], incident["sources"]) == ("service", sorted(CONGRESS))


def test_exact_source_matching_in_storage(obs_db: str) -> None:
    graph = DependencyGraph(
        make_catalog(
            {"a.example": (), "b.example": ()},
            [("congress_bills", "a.example"), ("congress_bills_senate", "b.example")],
        )
    )
    cursor = _start(obs_db)
    _insert(obs_db, ("congress_bills_senate", "ERROR", T0))
    cursor = _pass(obs_db, cursor, T0 + timedelta(minutes=1), graph).cursor
    _insert(obs_db, ("congress_bills", "SUCCESS", T0 + timedelta(minutes=2)))
    _insert(obs_db, ("congress_bills", "ERROR", T0 + timedelta(minutes=3)))

    report = _pass(obs_db, cursor, T0 + timedelta(minutes=4), graph)

    assert report.resolved == [] and report.attached == 0
    incidents = _incidents(obs_db)
    assert [(i["root_cause"], i["sources"]) for i in incidents] == [
        ("congress_bills_senate", ["congress_bills_senate"]),
        ("congress_bills", ["congress_bills"]),
    ]


def test_history_query_returns_the_incident_open_at_a_past_moment(obs_db: str) -> None:
    cursor = _start(obs_db)
    tuesday_night = datetime(2026, 11, 24, 1, 30, tzinfo=UTC)
    _insert(obs_db, *[(source, "ERROR", tuesday_night) for source in CONGRESS])
    cursor = _pass(obs_db, cursor, tuesday_night + timedelta(minutes=1)).cursor
    morning = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)
    _insert(obs_db, *[(source, "SUCCESS", morning) for source in CONGRESS])
    _pass(obs_db, cursor, morning + timedelta(minutes=1))

    with get_pool(obs_db).connection() as conn:
        at_two = incidents_open_at(conn, datetime(2026, 11, 24, 2, 0, tzinfo=UTC))
        before = incidents_open_at(conn, datetime(2026, 11, 24, 1, 0, tzinfo=UTC))
        after = incidents_open_at(conn, datetime(2026, 11, 24, 7, 0, tzinfo=UTC))

    assert [(i["root_cause"], i["sources"]) for i in at_two] == [
        ("api.congress.gov", sorted(CONGRESS))
    ]
    assert before == [] and after == []


def test_cli_answers_what_was_open_at_two_am(obs_db: str, capsys: pytest.CaptureFixture) -> None:
    cursor = _start(obs_db)
    _insert(
        obs_db,
        *[(source, "ERROR", datetime(2026, 11, 24, 1, 30, tzinfo=UTC)) for source in CONGRESS],
    )
    _pass(obs_db, cursor, datetime(2026, 11, 24, 1, 31, tzinfo=UTC))

    code = main(["incidents", "--at", "2026-11-24T02:00+00:00", "--json"])
    rows = json.loads(capsys.readouterr().out)
    code_before = main(["incidents", "--at", "2026-11-24T01:00+00:00", "--json"])
    rows_before = json.loads(capsys.readouterr().out)

    assert code == 0 and code_before == 0
    assert [(r["tier"], r["root_cause"], r["sources"]) for r in rows] == [
        ("service", "api.congress.gov", sorted(CONGRESS))
    ]
    assert rows[0]["opened_at"] == "2026-11-24T01:30:00+00:00"
    assert rows_before == []


def test_cli_lists_open_incidents_and_rejects_a_bad_time(
    obs_db: str, capsys: pytest.CaptureFixture
) -> None:
    now = datetime.now(UTC)
    cursor = _start(obs_db, now)
    _insert(obs_db, ("lda_filings", "ERROR", now))
    _pass(obs_db, cursor, now)

    assert main(["incidents"]) == 0
    table = capsys.readouterr().out
    assert main(["incidents", "--at", "last tuesday"]) == 2

    assert "lda_filings" in table and "isolated" in table
    assert "not an ISO date-time" in capsys.readouterr().err


def test_breaker_cascade_from_breaker_events(obs_db: str) -> None:
    catalog = make_catalog(
        {"gw.example": (), "a.example": ("gw.example",), "b.example": ("gw.example",)},
        [("alpha_one", "a.example"), ("beta_one", "b.example")],
    )
    graph = DependencyGraph(catalog)
    cursor = _start(obs_db, T0)
    with get_pool(obs_db).connection() as conn:
        for service, at in (
            ("a.example", T0 + timedelta(seconds=5)),
            ("b.example", T0 + timedelta(seconds=9)),
        ):
            conn.execute(
                "INSERT INTO breaker_events (service, from_state, to_state, reason, at) "
                "VALUES (%s, 'CLOSED', 'OPEN', 'failures', %s)",
                (service, at),
            )
            conn.execute(
                "INSERT INTO breaker_state (service, state, opened_at, open_until) "
                "VALUES (%s, 'OPEN', %s, %s)",
                (service, at, at + timedelta(hours=1)),
            )
    first = _pass(obs_db, cursor, T0 + timedelta(minutes=1), graph)
    again = _pass(obs_db, first.cursor, T0 + timedelta(minutes=2), graph)

    [cascade] = _incidents(obs_db)
    assert first.opened == [cascade["id"]] and again.opened == []
    assert (cascade["tier"], cascade["root_cause"]) == ("breaker_cascade", "gw.example")
    assert cascade["services"] == ["a.example", "b.example", "gw.example"]

    with get_pool(obs_db).connection() as conn:
        conn.execute(
            "INSERT INTO breaker_events (service, from_state, to_state, reason, at) VALUES "
            "('a.example', 'HALF_OPEN', 'CLOSED', 'probes passed', %s), "
            "('b.example', 'HALF_OPEN', 'CLOSED', 'probes passed', %s)",
            (T0 + timedelta(minutes=3), T0 + timedelta(minutes=3)),
        )
        conn.execute(
            "UPDATE breaker_state SET state = 'CLOSED', opened_at = NULL, open_until = NULL"
        )
    closed = _pass(obs_db, again.cursor, T0 + timedelta(minutes=4), graph)
    assert closed.resolved == [cascade["id"]]


def test_absent_breaker_tables_are_no_evidence(obs_db: str) -> None:
    cursor = _start(obs_db)
    _insert(obs_db, *[(source, "ERROR", T0) for source in CONGRESS])
    with psycopg.connect(obs_db) as conn:
        # Dropped inside this transaction only, then rolled back.
        for table in ("breaker_events", "breakers"):
            conn.execute(f"DROP TABLE IF EXISTS {table}")
        report = correlate_pass(
            conn,
            DependencyGraph(shipped_catalog()),
            CorrelationPolicy(),
            cursor,
            now=T0 + timedelta(minutes=1),
            channels=CHANNELS,
        )
        conn.rollback()
    assert len(report.opened) == 1


def test_migration_0003_downgrades_and_upgrades(empty_database: str) -> None:
    url = empty_database
    tables = ("incidents", "incident_sources", "alert_outbox")
    migrate.upgrade(url, "0003")
    with psycopg.connect(url) as conn:
        present = [conn.execute("SELECT to_regclass(%s)", (t,)).fetchone()[0] for t in tables]
    migrate.downgrade(url, "0002")
    with psycopg.connect(url) as conn:
        absent = [conn.execute("SELECT to_regclass(%s)", (t,)).fetchone()[0] for t in tables]
    migrate.upgrade(url, "0003")
    assert migrate.current_revision(url) == "0003"
    assert all(present) and absent == [None, None, None]


def test_a_source_skipped_because_another_run_holds_it_opens_no_incident(obs_db: str) -> None:
    cursor = _start(obs_db)
    _insert(
        obs_db,
        *[
            (source, "ERROR", T0 + timedelta(seconds=i), {"error_class": "SourceBusy"})
            for i, source in enumerate(CONGRESS)
        ],
    )

    report = _pass(obs_db, cursor, T0 + timedelta(minutes=1))

    assert report.opened == []
    assert _incidents(obs_db) == []
