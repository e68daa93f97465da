"""Assembles every VA Signals asset, job, schedule and resource into one Dagster code location."""

from __future__ import annotations

import os

import dagster as dg

from va_signals.assets import build_pipeline, source_asset_key
from va_signals.assets.health import build_health_asset, build_health_job
from va_signals.catalog import default_catalog
from va_signals.checks.freshness_checks import build_freshness_checks, build_freshness_job
from va_signals.jobs import daily_signals_job, daily_signals_schedule
from va_signals.resources import DatabaseResource, HttpResource
from va_signals.resources.alerts import AlertsResource
from va_signals.resources.http import api_key_settings
from va_signals.sensors.alerting import build_alert_sensors
from va_signals.sensors.freshness import build_freshness_sensor


def _loggers() -> dict[str, dg.LoggerDefinition]:
    # Production sets VA_SIGNALS_LOG_FORMAT=json so the console log is one JSON object a line,
    # which Cloud Logging parses; locally the readable default stays.
    if os.environ.get("VA_SIGNALS_LOG_FORMAT") == "json":
        return {"console": dg.json_console_logger}
    return {}


def build_definitions() -> dg.Definitions:
    catalog = default_catalog()
    freshness_checks = build_freshness_checks(catalog, source_asset_key)
    freshness_job = build_freshness_job(freshness_checks)
    health_job = build_health_job()
    return dg.Definitions(
        assets=[build_pipeline(catalog), build_health_asset(catalog)],
        asset_checks=[freshness_checks],
        jobs=[daily_signals_job, freshness_job, health_job],
        schedules=[daily_signals_schedule],
        sensors=[
            *build_alert_sensors(catalog),
            build_freshness_sensor(freshness_job, sorted(freshness_checks.check_keys), health_job),
        ],
        resources={
            "database": DatabaseResource(),
            # Keys as dg.EnvVar: out of the UI and run config; unset ones fall back to demo keys.
            "http": HttpResource(**api_key_settings()),
            "alerts": AlertsResource.from_env(),
        },
        loggers=_loggers(),
    )


defs = build_definitions()
