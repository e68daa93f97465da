"""The alerts resource: PagerDuty and Slack settings, and delivery of the alert outbox."""

from __future__ import annotations

import logging
import os
from datetime import datetime

import dagster as dg
from psycopg_pool import ConnectionPool
from pydantic import Field

from va_signals.alerts.delivery import (
    AlertSender,
    DeliveryPolicy,
    DeliveryReport,
    SendResult,
    deliver_pending,
)
from va_signals.alerts.messages import Action, AlertContent, Channel, alert_messages

DEFAULT_PAGERDUTY_URL = "https://events.pagerduty.com"
PAGERDUTY_ROUTING_KEY_ENV = "PAGERDUTY_ROUTING_KEY"
PAGERDUTY_URL_ENV = "PAGERDUTY_URL"
SLACK_WEBHOOK_URL_ENV = "SLACK_WEBHOOK_URL"


class AlertsResource(dg.ConfigurableResource):
    """Where alerts go. Set the routing key and webhook through `dg.EnvVar`; they are secrets.

    With neither set, incidents are still recorded but nothing is queued for delivery.
    """

    pagerduty_routing_key: str | None = Field(
        default=None, description="PagerDuty Events API v2 integration (routing) key."
    )
    pagerduty_url: str = Field(
        default=DEFAULT_PAGERDUTY_URL, description="Events API base URL (tests point it locally)."
    )
    slack_webhook_url: str | None = Field(default=None, description="Slack incoming webhook URL.")
    timeout_seconds: float = Field(default=10.0, gt=0)
    max_attempts: int = Field(default=10, ge=1, description="Tries before a row is given up.")
    backoff_base_seconds: float = Field(default=30.0, ge=0)
    backoff_max_seconds: float = Field(default=3600.0, ge=0)
    batch_size: int = Field(default=50, ge=1, description="Most rows sent per delivery pass.")

    @classmethod
    def from_env(cls) -> AlertsResource:
        """Settings from `PAGERDUTY_ROUTING_KEY`, `PAGERDUTY_URL` and `SLACK_WEBHOOK_URL`,
        bound as `dg.EnvVar` so their values never show in the UI; unset ones stay off."""
        settings = {
            field: dg.EnvVar(env)
            for field, env in (
                ("pagerduty_routing_key", PAGERDUTY_ROUTING_KEY_ENV),
                ("pagerduty_url", PAGERDUTY_URL_ENV),
                ("slack_webhook_url", SLACK_WEBHOOK_URL_ENV),
            )
            if os.environ.get(env)
        }
        return cls(**settings)

    @property
    def channels(self) -> tuple[Channel, ...]:
        """Configured channels, PagerDuty first."""
        configured = []
        if self.pagerduty_routing_key:
            configured.append(Channel.PAGERDUTY)
        if self.slack_webhook_url:
            configured.append(Channel.SLACK)
        return tuple(configured)

    @property
    def policy(self) -> DeliveryPolicy:
        return DeliveryPolicy(
            max_attempts=self.max_attempts,
            backoff_base_seconds=self.backoff_base_seconds,
            backoff_max_seconds=self.backoff_max_seconds,
        )

    def send_direct(self, content: AlertContent, action: Action, version: str) -> list[SendResult]:
        """Send once to every channel, bypassing the outbox: only for when the database that
        holds the outbox is itself what failed. No retry, so nothing waits on a dead store."""
        sender = self._sender()
        try:
            return [
                sender.send(message.channel, message.body)
                for message in alert_messages(content, action, version, self.channels)
            ]
        finally:
            sender.close()

    def deliver(
        self,
        pool: ConnectionPool,
        *,
        now: datetime | None = None,
        log: logging.Logger | logging.LoggerAdapter | None = None,
    ) -> DeliveryReport:
        """Send whatever is due in the outbox, written by this process or by one that died."""
        sender = self._sender()
        try:
            return deliver_pending(
                pool, sender, self.policy, now=now, limit=self.batch_size, log=log
            )
        finally:
            sender.close()

    def _sender(self) -> AlertSender:
        return AlertSender(
            pagerduty_url=self.pagerduty_url,
            routing_key=self.pagerduty_routing_key,
            slack_webhook_url=self.slack_webhook_url,
            timeout_seconds=self.timeout_seconds,
        )
