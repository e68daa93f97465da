"""What an alert says on each channel: PagerDuty Events v2 bodies and Slack texts, built purely.

Bodies carry no secret: the routing key is added by the sender at the moment of sending.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from va_signals.resilience.correlation import Severity

ALERT_SOURCE = "va-signals"
DEDUP_PREFIX = "va-signals"
# PagerDuty rejects a summary longer than 1024 characters; stay strictly below.
SUMMARY_MAX_CHARS = 1023
SLACK_MAX_CHARS = 3000


class Channel(StrEnum):
    PAGERDUTY = "pagerduty"
    SLACK = "slack"


class Action(StrEnum):
    TRIGGER = "trigger"
    RESOLVE = "resolve"


@dataclass(frozen=True)
class AlertContent:
    """One alert, channel-neutral: the PagerDuty payload fields plus a stable dedup key."""

    dedup_key: str
    summary: str
    severity: Severity
    component: str
    group: str
    event_class: str
    custom_details: Mapping[str, Any] = field(default_factory=dict)
    source: str = ALERT_SOURCE


@dataclass(frozen=True)
class AlertMessage:
    """One row of the outbox: a request body for one channel, sent at most once per version."""

    channel: Channel
    dedup_key: str
    action: Action
    version: str
    summary: str
    body: dict[str, Any]
    incident_id: int | None = None
    # The incident's `alert_state` follows this row (the first configured channel).
    tracks_incident: bool = False


def incident_dedup_key(incident_id: int) -> str:
    """One key per incident, so every source of a correlated outage lands on one page."""
    return f"{DEDUP_PREFIX}/incident/{incident_id}"


def check_dedup_key(check_key: str) -> str:
    """One key per asset check (`family/source:check_name`), reused until the check passes."""
    return f"{DEDUP_PREFIX}/check/{check_key}"


def run_failure_dedup_key(job_name: str) -> str:
    """One key per job: repeated failures of a job stay one page until a run succeeds."""
    return f"{DEDUP_PREFIX}/run-failure/{job_name}"


def truncate(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, marked with an ellipsis when cut."""
    if len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def pagerduty_body(content: AlertContent, action: Action) -> dict[str, Any]:
    """An Events API v2 body without `routing_key`; a resolve needs only the dedup key."""
    body: dict[str, Any] = {"event_action": action.value, "dedup_key": content.dedup_key}
    if action is Action.TRIGGER:
        body["payload"] = {
            "summary": truncate(content.summary, SUMMARY_MAX_CHARS),
            "source": content.source,
            "severity": content.severity.value,
            "component": content.component,
            "group": content.group,
            "class": content.event_class,
            "custom_details": dict(content.custom_details),
        }
    return body


def slack_body(content: AlertContent, action: Action) -> dict[str, Any]:
    """An incoming-webhook body: one line saying what fired or recovered."""
    if action is Action.TRIGGER:
        text = f"[{content.severity.value.upper()}] {content.summary}"
    else:
        text = f"[RESOLVED] {content.summary}"
    return {"text": truncate(f"{text} ({content.dedup_key})", SLACK_MAX_CHARS)}


def alert_messages(
    content: AlertContent,
    action: Action,
    version: str,
    channels: Iterable[Channel],
    *,
    incident_id: int | None = None,
) -> list[AlertMessage]:
    """One outbox message per configured channel, the first of which tracks the incident."""
    builders = {Channel.PAGERDUTY: pagerduty_body, Channel.SLACK: slack_body}
    return [
        AlertMessage(
            channel=channel,
            dedup_key=content.dedup_key,
            action=action,
            version=version,
            summary=truncate(content.summary, SUMMARY_MAX_CHARS),
            body=builders[channel](content, action),
            incident_id=incident_id,
            tracks_incident=incident_id is not None and index == 0,
        )
        for index, channel in enumerate(channels)
    ]
