"""Sends due outbox rows to PagerDuty and Slack; transient failures back off exponentially.

Each row is claimed, sent and marked inside one transaction, so a process that dies mid-way
leaves the row PENDING for the next pass: delivery is at least once, and PagerDuty folds a
repeated trigger into the same incident through its dedup key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import httpx
from psycopg_pool import ConnectionPool

from va_signals.alerts.messages import Channel
from va_signals.db import alert_outbox

logger = logging.getLogger(__name__)

PAGERDUTY_ENQUEUE_PATH = "/v2/enqueue"
_REDACTED = "***"


class Outcome(StrEnum):
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    status_code: int | None = None
    error: str = ""
    retry_after: float | None = None


@dataclass(frozen=True)
class DeliveryPolicy:
    """How often and how long a row is retried before it is given up as FAILED."""

    max_attempts: int = 10
    backoff_base_seconds: float = 30.0
    backoff_max_seconds: float = 3600.0

    def delay(self, attempts: int, retry_after: float | None = None) -> timedelta:
        """The wait after `attempts` failed tries: base * 2^(attempts-1), capped; a longer
        Retry-After from the service wins, up to the same cap."""
        seconds = min(
            self.backoff_max_seconds, self.backoff_base_seconds * 2 ** max(0, attempts - 1)
        )
        if retry_after is not None:
            seconds = max(seconds, min(retry_after, self.backoff_max_seconds))
        return timedelta(seconds=seconds)


@dataclass
class DeliveryReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0

    def __str__(self) -> str:
        return f"alerts sent {self.sent}, retrying {self.retried}, failed {self.failed}"


def outcome_for_status(status_code: int) -> Outcome:
    """2xx is delivered; 429 and 5xx are worth retrying; any other answer never will be."""
    if 200 <= status_code < 300:
        return Outcome.SENT
    if status_code == 429 or status_code >= 500:
        return Outcome.RETRY
    return Outcome.FAILED


class AlertSender:
    """Posts outbox bodies to their channel; never logs or returns the routing key or webhook."""

    def __init__(
        self,
        *,
        pagerduty_url: str,
        routing_key: str | None,
        slack_webhook_url: str | None,
        timeout_seconds: float = 10.0,
    ) -> None:
        self._pagerduty_url = pagerduty_url.rstrip("/") + PAGERDUTY_ENQUEUE_PATH
        self._routing_key = routing_key or None
        self._slack_webhook_url = slack_webhook_url or None
        self._client = httpx.Client(timeout=timeout_seconds, follow_redirects=False)
        self._secrets = [
            secret for secret in (self._routing_key, self._slack_webhook_url) if secret
        ]

    def send(self, channel: Channel, body: dict[str, Any]) -> SendResult:
        if channel is Channel.PAGERDUTY and self._routing_key:
            url, payload = self._pagerduty_url, {"routing_key": self._routing_key, **body}
        elif channel is Channel.SLACK and self._slack_webhook_url:
            url, payload = self._slack_webhook_url, body
        else:
            return SendResult(Outcome.FAILED, error=f"channel {channel.value} is not configured")
        try:
            response = self._client.post(url, json=payload)
        except httpx.TimeoutException as exc:
            return SendResult(Outcome.RETRY, error=f"timed out ({type(exc).__name__})")
        except httpx.TransportError as exc:
            return SendResult(Outcome.RETRY, error=self._scrub(f"connection failed: {exc}"))
        outcome = outcome_for_status(response.status_code)
        error = "" if outcome is Outcome.SENT else self._scrub(_snippet(response))
        return SendResult(outcome, response.status_code, error, _retry_after(response))

    def close(self) -> None:
        self._client.close()

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, _REDACTED)
        return text


def deliver_pending(
    pool: ConnectionPool,
    sender: AlertSender,
    policy: DeliveryPolicy,
    *,
    now: datetime | None = None,
    limit: int = 50,
    log: logging.Logger | logging.LoggerAdapter | None = None,
) -> DeliveryReport:
    """Send up to `limit` due rows, one transaction each; return what happened to them."""
    log = log or logger
    report = DeliveryReport()
    for _ in range(limit):
        moment = now or datetime.now(UTC)
        with pool.connection() as conn:
            row = alert_outbox.claim_due(conn, moment)
            if row is None:
                break
            result = sender.send(row.channel, row.body)
            _record(conn, row, result, policy, moment, report, log)
    return report


def _record(
    conn,
    row: alert_outbox.OutboxRow,
    result: SendResult,
    policy: DeliveryPolicy,
    now: datetime,
    report: DeliveryReport,
    log: logging.Logger | logging.LoggerAdapter,
) -> None:
    what = f"{row.channel.value} {row.action.value} {row.dedup_key}"
    attempt = row.attempts + 1
    if result.outcome is Outcome.SENT:
        alert_outbox.mark_sent(conn, row, result.status_code or 0, now)
        report.sent += 1
        log.info("alert sent: %s (HTTP %s, attempt %d)", what, result.status_code, attempt)
        return
    status = f"HTTP {result.status_code}" if result.status_code else "no answer"
    if result.outcome is Outcome.RETRY and attempt < policy.max_attempts:
        delay = policy.delay(attempt, result.retry_after)
        alert_outbox.mark_retry(conn, row, result.status_code, result.error, now + delay)
        report.retried += 1
        log.warning(
            "alert not delivered: %s (%s: %s); attempt %d, retrying in %ds",
            what,
            status,
            result.error,
            attempt,
            delay.total_seconds(),
        )
        return
    alert_outbox.mark_failed(conn, row, result.status_code, result.error)
    report.failed += 1
    reason = "rejected, not retried" if result.outcome is Outcome.FAILED else "gave up"
    log.error(
        "alert %s: %s (%s: %s) after %d attempts", reason, what, status, result.error, attempt
    )


def _snippet(response: httpx.Response) -> str:
    text = response.text[:300]
    return " ".join(text.split()) or response.reason_phrase


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    return float(value) if value.isdigit() else None
