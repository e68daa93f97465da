"""Outbox delivery against real HTTP fakes of PagerDuty and Slack: retries, rejects, hangs,
crashes between writing and sending, concurrent senders, order per dedup key."""

from __future__ import annotations

import logging
import socket
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from va_signals.alerts.messages import (
    Action,
    AlertContent,
    Channel,
    alert_messages,
    incident_dedup_key,
)
from va_signals.catalog import default_catalog
from va_signals.db import alert_outbox
from va_signals.db.pool import get_pool
from va_signals.resilience.correlation import Severity
from va_signals.resources import DatabaseResource
from va_signals.resources.alerts import AlertsResource
from va_signals.sensors.incidents import evaluate_incidents
from va_signals_tests.alerting_support import (
    PAGERDUTY_INVALID,
    ROUTING_KEY,
    Answer,
    FakeReceiver,
    alerts_resource,
    insert_run,
    outbox_rows,
    pagerduty_events,
)

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
KEY = incident_dedup_key(41)
SERVER_ERROR = Answer(500, {"status": "error", "message": "internal"})


def _content(dedup_key: str = KEY) -> AlertContent:
    return AlertContent(
        dedup_key=dedup_key,
        summary="api.congress.gov down: 3 sources failing",
        severity=Severity.ERROR,
        component="api.congress.gov",
        group="service",
        event_class="source_failures",
        custom_details={"sources": ["congress_crs_reports"]},
    )


def _enqueue(url: str, action: Action = Action.TRIGGER, version: str = "1", channels=None) -> int:
    messages = alert_messages(_content(), action, version, channels or [Channel.PAGERDUTY])
    with get_pool(url).connection() as conn:
        return alert_outbox.enqueue(conn, messages, T0)


def _deliver(url: str, alerts: AlertsResource, now: datetime):
    return alerts.deliver(get_pool(url), now=now)


def test_500_twice_then_accepted_is_delivered_once_with_exponential_backoff(
    obs_db: str, fake_pagerduty: FakeReceiver
) -> None:
    fake_pagerduty.answer_next(SERVER_ERROR, times=2)
    alerts = alerts_resource(fake_pagerduty)
    _enqueue(obs_db)

    first = _deliver(obs_db, alerts, T0)
    [row] = outbox_rows(obs_db)
    assert (first.retried, row["attempts"], row["next_attempt_at"]) == (
        1,
        1,
        T0 + timedelta(seconds=30),
    )
    early = _deliver(obs_db, alerts, T0 + timedelta(seconds=29))
    second = _deliver(obs_db, alerts, T0 + timedelta(seconds=30))
    [row] = outbox_rows(obs_db)
    assert row["next_attempt_at"] == T0 + timedelta(seconds=90)
    third = _deliver(obs_db, alerts, T0 + timedelta(seconds=90))
    later = _deliver(obs_db, alerts, T0 + timedelta(hours=1))

    assert (early.sent, early.retried, second.retried, third.sent, later.sent) == (0, 0, 1, 1, 0)
    events = pagerduty_events(fake_pagerduty)
    assert len(events) == 3
    assert events[0] == events[1] == events[2]
    [row] = outbox_rows(obs_db)
    assert (row["status"], row["attempts"], row["last_status_code"]) == ("SENT", 3, 202)
    assert row["sent_at"] == T0 + timedelta(seconds=90)


def test_400_is_not_retried_marked_failed_and_logged_without_the_routing_key(
    obs_db: str, fake_pagerduty: FakeReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    fake_pagerduty.answer_next(PAGERDUTY_INVALID)
    alerts = alerts_resource(fake_pagerduty)
    _enqueue(obs_db)

    with caplog.at_level(logging.INFO, logger="va_signals.alerts.delivery"):
        report = _deliver(obs_db, alerts, T0)
        again = _deliver(obs_db, alerts, T0 + timedelta(days=1))

    assert (report.failed, report.retried, again.sent + again.failed) == (1, 0, 0)
    assert len(fake_pagerduty.received) == 1
    [row] = outbox_rows(obs_db)
    assert (row["status"], row["attempts"], row["last_status_code"]) == ("FAILED", 1, 400)
    assert "Event object is invalid" in row["last_error"]
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "rejected, not retried" in record.getMessage()
    assert "HTTP 400" in record.getMessage() and KEY in record.getMessage()
    assert ROUTING_KEY not in caplog.text and ROUTING_KEY not in row["last_error"]


def test_429_waits_at_least_as_long_as_retry_after(
    obs_db: str, fake_pagerduty: FakeReceiver
) -> None:
    fake_pagerduty.answer_next(Answer(429, {"status": "throttled"}, {"Retry-After": "120"}))
    alerts = alerts_resource(fake_pagerduty)
    _enqueue(obs_db)

    report = _deliver(obs_db, alerts, T0)
    not_yet = _deliver(obs_db, alerts, T0 + timedelta(seconds=119))
    then = _deliver(obs_db, alerts, T0 + timedelta(seconds=120))

    assert (report.retried, not_yet.sent, then.sent) == (1, 0, 1)
    assert len(fake_pagerduty.received) == 2


def test_a_hanging_receiver_times_out_and_is_retried(
    obs_db: str, fake_pagerduty: FakeReceiver
) -> None:
    fake_pagerduty.answer_next(Answer(202, {"status": "success"}, delay_seconds=2.0))
    alerts = alerts_resource(fake_pagerduty, timeout_seconds=0.3)
    _enqueue(obs_db)

    hung = _deliver(obs_db, alerts, T0)
    [row] = outbox_rows(obs_db)
    retried = _deliver(obs_db, alerts, T0 + timedelta(seconds=30))

    assert (hung.retried, row["last_status_code"], row["last_error"]) == (
        1,
        None,
        "timed out (ReadTimeout)",
    )
    assert retried.sent == 1
    assert outbox_rows(obs_db)[0]["status"] == "SENT"


def test_an_unreachable_receiver_is_retried(obs_db: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    alerts = AlertsResource(
        pagerduty_routing_key=ROUTING_KEY,
        pagerduty_url=f"http://127.0.0.1:{closed_port}",
        timeout_seconds=0.5,
    )
    _enqueue(obs_db)

    report = _deliver(obs_db, alerts, T0)

    [row] = outbox_rows(obs_db)
    assert (report.retried, row["status"], row["attempts"]) == (1, "PENDING", 1)
    assert row["last_error"].startswith("connection failed")


def test_gives_up_after_max_attempts(obs_db: str, fake_pagerduty: FakeReceiver) -> None:
    fake_pagerduty.answer_next(SERVER_ERROR, times=5)
    alerts = alerts_resource(fake_pagerduty, max_attempts=2)
    _enqueue(obs_db)

    first = _deliver(obs_db, alerts, T0)
    second = _deliver(obs_db, alerts, T0 + timedelta(minutes=5))
    third = _deliver(obs_db, alerts, T0 + timedelta(hours=5))

    assert (first.retried, second.failed, third.sent + third.failed) == (1, 1, 0)
    assert outbox_rows(obs_db)[0]["status"] == "FAILED"
    assert len(fake_pagerduty.received) == 2


def test_the_same_alert_written_twice_is_one_row(obs_db: str) -> None:
    assert _enqueue(obs_db) == 1
    assert _enqueue(obs_db) == 0
    assert _enqueue(obs_db, Action.RESOLVE, "2") == 1
    assert len(outbox_rows(obs_db)) == 2


def test_a_row_claimed_by_one_sender_is_skipped_by_another(obs_db: str) -> None:
    _enqueue(obs_db)

    with psycopg.connect(obs_db) as first, psycopg.connect(obs_db) as second:
        claimed = alert_outbox.claim_due(first, T0)
        skipped = alert_outbox.claim_due(second, T0)
        first.rollback()
        after_release = alert_outbox.claim_due(second, T0)

    assert claimed is not None and claimed.dedup_key == KEY
    assert skipped is None
    assert after_release is not None and after_release.id == claimed.id


def test_a_resolve_waits_for_its_pending_trigger(obs_db: str, fake_pagerduty: FakeReceiver) -> None:
    fake_pagerduty.answer_next(SERVER_ERROR)
    alerts = alerts_resource(fake_pagerduty)
    _enqueue(obs_db)
    _enqueue(obs_db, Action.RESOLVE, "2")

    first = _deliver(obs_db, alerts, T0)
    second = _deliver(obs_db, alerts, T0 + timedelta(seconds=30))

    assert (first.retried, first.sent) == (1, 0)
    assert second.sent == 2
    assert [e["event_action"] for e in pagerduty_events(fake_pagerduty)] == [
        "trigger",
        "trigger",
        "resolve",
    ]


def test_a_failing_slack_does_not_hold_back_pagerduty(
    obs_db: str, fake_pagerduty: FakeReceiver, fake_slack: FakeReceiver
) -> None:
    fake_slack.answer_next(SERVER_ERROR)
    alerts = alerts_resource(fake_pagerduty, fake_slack)
    _enqueue(obs_db, channels=[Channel.PAGERDUTY, Channel.SLACK])

    report = _deliver(obs_db, alerts, T0)

    assert (report.sent, report.retried) == (1, 1)
    assert len(pagerduty_events(fake_pagerduty)) == 1
    assert fake_slack.bodies() == [
        {"text": "[ERROR] api.congress.gov down: 3 sources failing (va-signals/incident/41)"}
    ]
    assert "SECRETHOOK" not in str(outbox_rows(obs_db))


def test_a_crash_between_writing_and_sending_is_sent_once_by_the_next_tick(
    obs_db: str, fake_pagerduty: FakeReceiver, monkeypatch: pytest.MonkeyPatch, dagster_instance
) -> None:
    database = DatabaseResource(url=obs_db)
    alerts = alerts_resource(fake_pagerduty)
    catalog = default_catalog()
    started, _ = evaluate_incidents(dagster_instance, database, alerts, catalog, None, now=T0)
    with get_pool(obs_db).connection() as conn:
        for source in ("congress_committee_reports", "congress_crs_reports"):
            insert_run(conn, source, "ERROR", T0 + timedelta(seconds=1))

    def die(*args, **kwargs):
        raise SystemExit("killed after the outbox was written")

    with monkeypatch.context() as patched:
        patched.setattr(AlertsResource, "deliver", die)
        with pytest.raises(SystemExit):
            evaluate_incidents(
                dagster_instance, database, alerts, catalog, started, now=T0 + timedelta(minutes=1)
            )
    assert fake_pagerduty.received == []
    assert [r["status"] for r in outbox_rows(obs_db)] == ["PENDING"]

    # The dead tick never saved its cursor, so the next tick reads the same runs again.
    cursor, _ = evaluate_incidents(
        dagster_instance, database, alerts, catalog, started, now=T0 + timedelta(minutes=2)
    )
    evaluate_incidents(
        dagster_instance, database, alerts, catalog, cursor, now=T0 + timedelta(minutes=3)
    )

    [trigger] = pagerduty_events(fake_pagerduty)
    assert trigger["event_action"] == "trigger"
    assert [(r["status"], r["attempts"]) for r in outbox_rows(obs_db)] == [("SENT", 1)]
