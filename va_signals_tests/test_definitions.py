"""Loading every definition: a broken import or a bad catalog fails here first."""

from __future__ import annotations

import dagster as dg

from va_signals.catalog import default_catalog
from va_signals.definitions import defs
from va_signals.jobs import DAILY_SIGNALS_JOB


def test_one_asset_per_enabled_source_keyed_and_grouped_by_family() -> None:
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    for source in default_catalog().enabled_sources:
        key = f"{source.family}/{source.id}"
        assert key in keys
        node = graph.get(dg.AssetKey([source.family, source.id]))
        assert node.group_name == source.family
        assert node.owners == list(source.owners)
        assert "api" in node.kinds
        assert node.description == source.description
    assert {"documents", "signals"} <= keys


def test_documents_depend_on_every_source_and_signals_on_documents() -> None:
    graph = defs.resolve_asset_graph()
    documents = graph.get(dg.AssetKey("documents"))
    sources = {
        dg.AssetKey([source.family, source.id]) for source in default_catalog().enabled_sources
    }
    assert sources <= set(documents.parent_keys)
    assert graph.get(dg.AssetKey("signals")).parent_keys == {dg.AssetKey("documents")}


def test_job_and_weekday_schedule_in_new_york() -> None:
    job = defs.resolve_job_def(DAILY_SIGNALS_JOB)
    assert job.executor_def.name == "in_process"
    schedule = defs.resolve_schedule_def("daily_signals_weekdays")
    assert schedule.execution_timezone == "America/New_York"
    assert schedule.cron_schedule.endswith("1-5")


def test_production_log_format_is_json(monkeypatch) -> None:
    from va_signals.definitions import build_definitions

    monkeypatch.setenv("VA_SIGNALS_LOG_FORMAT", "json")
    assert build_definitions().loggers == {"console": dg.json_console_logger}
    monkeypatch.delenv("VA_SIGNALS_LOG_FORMAT")
    assert not build_definitions().loggers


def test_only_crashed_runs_are_retried_by_the_daemon() -> None:
    tags = defs.resolve_job_def(DAILY_SIGNALS_JOB).tags
    assert tags["dagster/max_retries"] == "2"
    assert tags["dagster/retry_on_asset_or_op_failure"] == "false"
