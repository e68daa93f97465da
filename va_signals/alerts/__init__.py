"""Alert delivery: PagerDuty Events API v2 and Slack messages, sent through a database outbox."""
