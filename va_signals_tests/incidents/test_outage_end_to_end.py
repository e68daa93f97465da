"""A Congress.gov outage end to end: the daily job fails three sources of one service, the
incident sensor opens one incident and pages once; the service recovers, one resolve follows.

The upstream is a recordings folder written here whose manifest answers 503 to everything on
api.congress.gov; the healthy rerun replays the project's example recordings. PagerDuty and
Slack are real HTTP servers on 127.0.0.1.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from va_signals.assets import build_pipeline
from va_signals.catalog import Catalog, default_catalog
from va_signals.catalog.models import BreakerPolicy, RetryPolicy
from va_signals.db.incidents import open_and_recent_incidents
from va_signals.db.pool import get_pool
from va_signals.jobs import daily_signals_job
from va_signals.launch import run_daily_signals
from va_signals.resources import DatabaseResource, HttpResource
from va_signals.sensors.incidents import build_incident_sensor
from va_signals_tests.alerting_support import (
    ROUTING_KEY,
    FakeReceiver,
    alerts_resource,
    outbox_rows,
    pagerduty_events,
)
from va_signals_tests.recordings import EXAMPLE_RECORDINGS

CONGRESS = ("congress_committee_meetings", "congress_committee_reports", "congress_crs_reports")
_OUTAGE_MANIFEST = """\
service: api.congress.gov
provenance: written by the test; every path answers 503
responses:
"""


def _outage_recordings(root: Path) -> Path:
    folder = root / "congress"
    folder.mkdir(parents=True)
    (folder / "unavailable.json").write_text('{"error": "service unavailable"}')
    patterns = ["/v3" + "/*" * depth for depth in range(1, 5)]
    entries = "".join(
        f"  - {{method: GET, url: 'https://api.congress.gov{pattern}', status: 503, "
        "body: unavailable.json}\n"
        for pattern in patterns
    )
    (folder / "manifest.yaml").write_text(_OUTAGE_MANIFEST + entries)
    return root


def _without_breaker_trips(catalog: Catalog) -> Catalog:
    # The breaker has tests of its own; here it must not stay open into the healthy rerun.
    lenient = BreakerPolicy(failure_threshold=10_000, min_calls_for_rate=10_000)
    quick = RetryPolicy(max_attempts=2, base_delay_seconds=0.05, max_delay_seconds=0.1)
    services = tuple(
        service.model_copy(update={"breaker": lenient, "retry": quick})
        if service.name == "api.congress.gov"
        else service
        for service in catalog.services
    )
    return catalog.model_copy(update={"services": services})


def _definitions(catalog: Catalog) -> dg.Definitions:
    return dg.Definitions(
        assets=[build_pipeline(catalog)],
        jobs=[daily_signals_job],
        resources={"database": DatabaseResource(), "http": HttpResource()},
    )


class _Ticker:
    """Evaluates the incident sensor the way the daemon does, carrying its cursor."""

    def __init__(self, catalog: Catalog, instance, resources: dict) -> None:
        self.sensor = build_incident_sensor(catalog)
        self.instance = instance
        self.resources = resources
        self.cursor: str | None = None

    def tick(self) -> str:
        context = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources=self.resources
        )
        result = self.sensor.evaluate_tick(context)
        self.cursor = result.cursor
        return result.skip_message or ""


def _incidents(url: str) -> list[dict]:
    with get_pool(url).connection() as conn:
        return open_and_recent_incidents(conn, datetime(2000, 1, 1, tzinfo=UTC))


def test_congress_outage_pages_once_and_resolves_once(
    obs_db: str,
    dagster_instance,
    tmp_path: Path,
    fake_pagerduty: FakeReceiver,
    fake_slack: FakeReceiver,
) -> None:
    catalog = _without_breaker_trips(default_catalog())
    definitions = _definitions(catalog)
    ticker = _Ticker(
        catalog,
        dagster_instance,
        {
            "database": DatabaseResource(url=obs_db),
            "alerts": alerts_resource(fake_pagerduty, fake_slack),
        },
    )

    def run(replay: Path):
        return run_daily_signals(
            replay_dir=replay,
            select=CONGRESS,
            instance=dagster_instance,
            definitions=definitions,
            catalog=catalog,
        )

    assert ticker.tick().startswith("started after source run 0")

    outage = run(_outage_recordings(tmp_path / "outage"))
    assert [(r["source_id"], r["status"], r["error_class"]) for r in outage.source_runs] == [
        (source, "ERROR", "UpstreamUnavailable") for source in CONGRESS
    ]
    ticker.tick()

    [incident] = _incidents(obs_db)
    assert (incident["tier"], incident["root_cause"]) == ("service", "api.congress.gov")
    assert incident["sources"] == list(CONGRESS)
    assert incident["severity"] == "error"
    assert incident["alert_state"] == "triggered"
    [trigger] = pagerduty_events(fake_pagerduty)
    assert trigger["routing_key"] == ROUTING_KEY
    assert trigger["event_action"] == "trigger"
    assert trigger["dedup_key"] == incident["dedup_key"]
    assert trigger["payload"]["severity"] == "error"
    assert trigger["payload"]["component"] == "api.congress.gov"
    assert trigger["payload"]["summary"].startswith("api.congress.gov down: 3 sources failing")
    assert trigger["payload"]["custom_details"]["sources"] == list(CONGRESS)
    [slack_trigger] = fake_slack.bodies()
    assert slack_trigger["text"].startswith("[ERROR] api.congress.gov down")

    # A duplicate tick (the daemon retrying, a second scheduler) pages nobody again.
    ticker.tick()
    assert len(fake_pagerduty.received) == 1 and len(fake_slack.received) == 1

    healthy = run(EXAMPLE_RECORDINGS)
    assert [r["status"] for r in healthy.source_runs] == ["SUCCESS"] * 3
    ticker.tick()
    ticker.tick()

    [resolved] = _incidents(obs_db)
    assert resolved["id"] == incident["id"]
    assert resolved["resolved_at"] == max(r["ended_at"] for r in healthy.source_runs)
    assert resolved["alert_state"] == "resolved"
    assert [(e["event_action"], e["dedup_key"]) for e in pagerduty_events(fake_pagerduty)] == [
        ("trigger", incident["dedup_key"]),
        ("resolve", incident["dedup_key"]),
    ]
    assert [body["text"][:10] for body in fake_slack.bodies()] == ["[ERROR] ap", "[RESOLVED]"]
    assert {row["status"] for row in outbox_rows(obs_db)} == {"SENT"}


def test_outage_under_the_shipped_breaker_still_pages_once(
    obs_db: str, dagster_instance, tmp_path: Path, fake_pagerduty: FakeReceiver
) -> None:
    catalog = default_catalog()
    ticker = _Ticker(
        catalog,
        dagster_instance,
        {"database": DatabaseResource(url=obs_db), "alerts": alerts_resource(fake_pagerduty)},
    )
    ticker.tick()

    outage = run_daily_signals(
        replay_dir=_outage_recordings(tmp_path / "outage"),
        select=CONGRESS,
        instance=dagster_instance,
        definitions=_definitions(catalog),
        catalog=catalog,
    )
    ticker.tick()

    # However each source met the outage (503s, or a breaker opened by its siblings' 503s),
    # the three failures are one incident about the service and one page.
    assert {r["status"] for r in outage.source_runs} == {"ERROR"}
    [incident] = _incidents(obs_db)
    assert (incident["tier"], incident["root_cause"]) == ("service", "api.congress.gov")
    assert incident["sources"] == list(CONGRESS)
    assert [e["dedup_key"] for e in pagerduty_events(fake_pagerduty, "trigger")] == [
        incident["dedup_key"]
    ]
