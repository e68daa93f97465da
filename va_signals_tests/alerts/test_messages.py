"""Alert bodies, backoff and response classification, without a network or database."""

from __future__ import annotations

from datetime import timedelta

import pytest

from va_signals.alerts.delivery import DeliveryPolicy, Outcome, outcome_for_status
from va_signals.alerts.messages import (
    SUMMARY_MAX_CHARS,
    Action,
    AlertContent,
    Channel,
    alert_messages,
    pagerduty_body,
    slack_body,
)
from va_signals.resilience.correlation import Severity
from va_signals.resources.alerts import AlertsResource

CONTENT = AlertContent(
    dedup_key="va-signals/incident/7",
    summary="api.congress.gov down: 3 sources failing",
    severity=Severity.ERROR,
    component="api.congress.gov",
    group="service",
    event_class="source_failures",
    custom_details={"sources": ["congress_crs_reports"]},
)


def test_pagerduty_trigger_body_has_every_payload_field_and_no_routing_key() -> None:
    body = pagerduty_body(CONTENT, Action.TRIGGER)

    assert body == {
        "event_action": "trigger",
        "dedup_key": "va-signals/incident/7",
        "payload": {
            "summary": "api.congress.gov down: 3 sources failing",
            "source": "va-signals",
            "severity": "error",
            "component": "api.congress.gov",
            "group": "service",
            "class": "source_failures",
            "custom_details": {"sources": ["congress_crs_reports"]},
        },
    }


def test_pagerduty_resolve_body_carries_only_the_dedup_key() -> None:
    assert pagerduty_body(CONTENT, Action.RESOLVE) == {
        "event_action": "resolve",
        "dedup_key": "va-signals/incident/7",
    }


def test_long_summary_is_truncated_below_pagerduty_limit() -> None:
    long = AlertContent(**{**CONTENT.__dict__, "summary": "x" * 5000})

    summary = pagerduty_body(long, Action.TRIGGER)["payload"]["summary"]

    assert len(summary) == SUMMARY_MAX_CHARS == 1023
    assert summary.endswith("…")


def test_slack_texts_for_trigger_and_resolve() -> None:
    assert slack_body(CONTENT, Action.TRIGGER) == {
        "text": "[ERROR] api.congress.gov down: 3 sources failing (va-signals/incident/7)"
    }
    assert slack_body(CONTENT, Action.RESOLVE)["text"].startswith("[RESOLVED] api.congress.gov")


def test_one_message_per_channel_and_only_the_first_tracks_the_incident() -> None:
    messages = alert_messages(
        CONTENT, Action.TRIGGER, "1", [Channel.PAGERDUTY, Channel.SLACK], incident_id=7
    )

    assert [(m.channel, m.tracks_incident, m.version) for m in messages] == [
        (Channel.PAGERDUTY, True, "1"),
        (Channel.SLACK, False, "1"),
    ]
    assert {m.dedup_key for m in messages} == {"va-signals/incident/7"}


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.SENT),
        (202, Outcome.SENT),
        (400, Outcome.FAILED),
        (401, Outcome.FAILED),
        (404, Outcome.FAILED),
        (429, Outcome.RETRY),
        (500, Outcome.RETRY),
        (503, Outcome.RETRY),
    ],
)
def test_outcome_for_status(status: int, outcome: Outcome) -> None:
    assert outcome_for_status(status) is outcome


def test_backoff_doubles_up_to_its_cap_and_honours_retry_after() -> None:
    policy = DeliveryPolicy(backoff_base_seconds=30, backoff_max_seconds=300)

    assert [policy.delay(attempt).total_seconds() for attempt in range(1, 6)] == [
        30,
        60,
        120,
        240,
        300,
    ]
    assert policy.delay(1, retry_after=90) == timedelta(seconds=90)
    assert policy.delay(3, retry_after=10) == timedelta(seconds=120)
    assert policy.delay(1, retry_after=10_000) == timedelta(seconds=300)


def test_resource_reads_its_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", "from-env-key")
    monkeypatch.setenv("PAGERDUTY_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("SLACK_WEBHOOK_URL", raising=False)

    resource = AlertsResource.from_env().process_config_and_initialize()

    assert resource.pagerduty_routing_key == "from-env-key"
    assert resource.pagerduty_url == "http://127.0.0.1:9"
    assert resource.channels == (Channel.PAGERDUTY,)


def test_resource_without_settings_routes_nowhere(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PAGERDUTY_ROUTING_KEY", "PAGERDUTY_URL", "SLACK_WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)

    resource = AlertsResource.from_env().process_config_and_initialize()

    assert resource.channels == ()
    assert resource.pagerduty_url == "https://events.pagerduty.com"
