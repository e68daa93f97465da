"""A real canary failure pages once, end to end.

The daily_signals job replays a copy of the real Federal Register page in which VA published
more documents than federal_register_va's catalog ceiling allows: the source's blocking
value_range canary fails in Dagster. The failed-check sensor of the code location, ticked
against the same instance with its alerts pointed at a fake PagerDuty on 127.0.0.1, pages once
however often it ticks, and resolves once when a normal run lets the check pass again.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from va_signals.catalog import default_catalog
from va_signals.checks.canaries import DUPLICATES_CHECK, VALUE_RANGE_CHECK
from va_signals.definitions import defs
from va_signals.launch import run_daily_signals
from va_signals.resources import DatabaseResource
from va_signals.sensors.asset_checks import FAILED_CHECK_SENSOR
from va_signals_tests.alerting_support import (
    ROUTING_KEY,
    FakeReceiver,
    alerts_resource,
    outbox_rows,
    pagerduty_events,
)
from va_signals_tests.recordings import shared_recordings

SOURCE_ID = "federal_register_va"
FR_VA = dg.AssetKey(["federal_register", SOURCE_ID])
FR_BODY = "documents-2024-page1.json"
VA_AGENCY = "veterans-affairs-department"
DEDUP_KEY = f"va-signals/check/federal_register/{SOURCE_ID}:{VALUE_RANGE_CHECK}"
# The most documents the Federal Register API returns on one page.
PER_PAGE = 1000
# Sensor ticks after each run: the sensor runs every minute and must not page again.
TICKS = 3


def _replay(tmp_path: Path, name: str, va_documents: int | None = None) -> Path:
    """A recordings folder with a copy of the real Federal Register page as the listing's first
    page, and the listing's last unless `va_documents` asks for more.

    With `va_documents`, pages of at most PER_PAGE documents follow it, repeating VA's
    documents under new numbers, titles and URLs until VA has that many. The replay matches a
    path and ignores the query, so each further page has a path of its own; the adapter follows
    `next_page_url` as an opaque cursor. (The real page's own next page was never recorded: a
    run meeting that 404 would stop as ERROR.) The shared files themselves are only read.
    """
    recorded = shared_recordings() / "federal_register"
    folder = tmp_path / name / "federal_register"
    folder.mkdir(parents=True)
    manifest = yaml.safe_load((recorded / "manifest.yaml").read_text(encoding="utf-8"))
    [first] = manifest["responses"]
    body = json.loads((recorded / FR_BODY).read_bytes())
    pages = [body["results"]]
    if va_documents is not None:
        pages += _repeats(body["results"], va_documents)
    responses = []
    for number, results in enumerate(pages, start=1):
        last = number == len(pages)
        page = {**body, "results": results, "total_pages": len(pages)}
        page["next_page_url"] = None if last else _page_url(number + 1)
        file = FR_BODY if number == 1 else f"repeats-page{number}.json"
        (folder / file).write_text(json.dumps(page), encoding="utf-8")
        url = first["url"] if number == 1 else _page_url(number)
        responses.append({**first, "url": url, "body": file, "note": f"page {number}"})
    manifest["responses"] = responses
    (folder / "manifest.yaml").write_text(yaml.safe_dump(manifest), encoding="utf-8")
    return folder.parent


def _page_url(number: int) -> str:
    return f"https://www.federalregister.gov/api/v1/documents/repeats-page{number}"


def _repeats(results: list[dict[str, Any]], va_documents: int) -> list[list[dict[str, Any]]]:
    """Pages of VA's documents on `results`, repeated until VA has `va_documents` in all."""
    va = [
        item
        for item in results
        if any(agency.get("slug") == VA_AGENCY for agency in item["agencies"])
    ]
    repeats = []
    for n in range(va_documents - len(va)):
        item = copy.deepcopy(va[n % len(va)])
        number = f"{item['document_number']}-r{n}"
        item["document_number"] = number
        item["title"] = f"{item['title']} (repeat {n})"
        item["html_url"] = f"https://www.federalregister.gov/documents/repeat/{number}"
        repeats.append(item)
    return [repeats[start : start + PER_PAGE] for start in range(0, len(repeats), PER_PAGE)]


def _evaluation(instance: dg.DagsterInstance, run_id: str, check: str) -> dg.AssetCheckEvaluation:
    records = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    evaluations = [record.dagster_event.event_specific_data for record in records]
    [evaluation] = [e for e in evaluations if e.asset_key == FR_VA and e.check_name == check]
    return evaluation


class _Ticker:
    """Ticks one sensor against the instance, carrying its cursor as the daemon would."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        resources: dict[str, Any],
        definitions: dg.Definitions = defs,
    ) -> None:
        self.sensor = definitions.resolve_sensor_def(FAILED_CHECK_SENSOR)
        self.definitions = definitions
        self.instance = instance
        self.resources = resources
        self.cursor: str | None = None

    def tick(self) -> str:
        context = dg.build_sensor_context(
            instance=self.instance,
            cursor=self.cursor,
            resources=self.resources,
            definitions=self.definitions,
        )
        result = self.sensor.evaluate_tick(context)
        self.cursor = result.cursor
        return result.skip_message or ""


def test_a_real_value_range_failure_pages_once_and_a_normal_run_resolves_it(
    obs_db: str,
    dagster_instance: dg.DagsterInstance,
    fake_pagerduty: FakeReceiver,
    tmp_path: Path,
) -> None:
    source = default_catalog().source(SOURCE_ID)
    ceiling = source.quality.max_records_per_run
    assert source.critical, "the page's severity below follows the catalog"
    ticker = _Ticker(
        dagster_instance,
        {"database": DatabaseResource(url=obs_db), "alerts": alerts_resource(fake_pagerduty)},
    )
    assert ticker.tick().startswith("started at check execution")

    flood_replay = _replay(tmp_path, "flood", va_documents=ceiling + 1)
    flood = run_daily_signals(
        replay_dir=flood_replay, select=[SOURCE_ID], instance=dagster_instance
    )

    # The source itself was fine: every page of the listing was read and stored.
    [ledger] = flood.source_runs
    assert (ledger["status"], ledger["records_new"]) == ("SUCCESS", ceiling + 1)
    assert ledger["pages"] == len(list(flood_replay.glob("federal_register/*.json"))) > 1
    # Its blocking canary failed with ERROR and failed the run; the other blocking one passed.
    failed = _evaluation(dagster_instance, flood.run_id, VALUE_RANGE_CHECK)
    assert _evaluation(dagster_instance, flood.run_id, DUPLICATES_CHECK).passed
    assert not failed.passed
    assert failed.blocking and failed.severity is dg.AssetCheckSeverity.ERROR
    assert f"outside the catalog's 0..{ceiling}" in failed.description
    assert not flood.success
    assert any("blocking asset check" in failure for failure in flood.step_failures)

    messages = [ticker.tick() for _ in range(TICKS)]

    assert messages[0].startswith("1 check alerts triggered, 0 resolved")
    assert all(m.startswith("0 check alerts triggered, 0 resolved") for m in messages[1:])
    [trigger] = pagerduty_events(fake_pagerduty)
    assert trigger["event_action"] == "trigger"
    assert trigger["routing_key"] == ROUTING_KEY
    assert trigger["dedup_key"] == DEDUP_KEY
    payload = trigger["payload"]
    assert payload["severity"] == "critical"
    assert payload["summary"] == (
        f"asset check {VALUE_RANGE_CHECK} failed on federal_register/{SOURCE_ID}: "
        f"{ceiling + 1} records, outside the catalog's 0..{ceiling}"
    )
    details = payload["custom_details"]
    assert details["run_id"] == flood.run_id
    assert details["blocking"] is True
    assert details["check_severity"] == "ERROR"

    normal = run_daily_signals(
        replay_dir=_replay(tmp_path, "normal"), select=[SOURCE_ID], instance=dagster_instance
    )

    [ledger] = normal.source_runs
    va_on_page = ledger["records_new"] + ledger["records_updated"] + ledger["records_unchanged"]
    assert ledger["status"] == "SUCCESS" and 0 < va_on_page <= ceiling
    passed = _evaluation(dagster_instance, normal.run_id, VALUE_RANGE_CHECK)
    assert passed.passed, passed.description
    assert normal.success, normal.step_failures

    messages = [ticker.tick() for _ in range(TICKS)]

    assert messages[0].startswith("0 check alerts triggered, 1 resolved")
    assert all(m.startswith("0 check alerts triggered, 0 resolved") for m in messages[1:])
    events = pagerduty_events(fake_pagerduty)
    assert [(e["event_action"], e["dedup_key"]) for e in events] == [
        ("trigger", DEDUP_KEY),
        ("resolve", DEDUP_KEY),
    ]
    assert events[1]["routing_key"] == ROUTING_KEY

    ticker.tick()

    assert len(fake_pagerduty.received) == 2
    assert [(row["action"], row["status"]) for row in outbox_rows(obs_db)] == [
        ("trigger", "SENT"),
        ("resolve", "SENT"),
    ]


# The same mechanism without recordings: a blocking check fails, so Dagster skips what is
# downstream of its asset and the checks planned there never run. Their PLANNED records carry
# an AssetCheckEvaluationPlanned event, not an evaluation, and must not be read as one.


@dg.asset(key=["lda", "lda_filings"])
def filings() -> int:
    return 1


@dg.asset_check(asset=filings, blocking=True, description="row count within bounds")
def filings_rows() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, description="0 rows, expected at least 1")


@dg.asset(deps=[filings])
def filings_digest() -> int:
    return 1


@dg.asset_check(asset=filings_digest, blocking=True)
def digest_rows() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True)


GATED = dg.Definitions(
    assets=[filings, filings_digest],
    asset_checks=[filings_rows, digest_rows],
    sensors=[defs.resolve_sensor_def(FAILED_CHECK_SENSOR)],
)


def test_checks_planned_but_never_run_neither_page_nor_stop_the_sensor(
    obs_db: str, dagster_instance: dg.DagsterInstance, fake_pagerduty: FakeReceiver
) -> None:
    ticker = _Ticker(
        dagster_instance,
        {"database": DatabaseResource(url=obs_db), "alerts": alerts_resource(fake_pagerduty)},
        definitions=GATED,
    )
    ticker.tick()

    result = dg.materialize(
        [filings, filings_digest, filings_rows, digest_rows],
        instance=dagster_instance,
        raise_on_error=False,
    )

    assert not result.success
    planned = dagster_instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [digest_rows.check_key]
    )[digest_rows.check_key]
    assert planned.status.value == "PLANNED"
    messages = [ticker.tick() for _ in range(TICKS)]
    assert messages[0].startswith("1 check alerts triggered, 0 resolved")
    [trigger] = pagerduty_events(fake_pagerduty)
    assert trigger["dedup_key"] == "va-signals/check/lda/lda_filings:filings_rows"
