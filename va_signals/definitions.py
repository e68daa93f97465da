"""Assembles every VA Signals asset, job, schedule and resource into one Dagster code location."""

from __future__ import annotations

import os

import dagster as dg

from va_signals.assets import build_pipeline
from va_signals.catalog import default_catalog
from va_signals.jobs import daily_signals_job, daily_signals_schedule
from va_signals.resources import DatabaseResource, HttpResource


def _secret(name: str) -> dg.EnvVar | None:
    # dg.EnvVar keeps the value out of the UI and run config; unset keys fall back to demo keys.
    return dg.EnvVar(name) if os.environ.get(name) else None


def build_definitions() -> dg.Definitions:
    catalog = default_catalog()
    return dg.Definitions(
        assets=[build_pipeline(catalog)],
        jobs=[daily_signals_job],
        schedules=[daily_signals_schedule],
        resources={
            "database": DatabaseResource(),
            "http": HttpResource(
                data_gov_api_key=_secret("DATA_GOV_API_KEY"),
                lda_api_key=_secret("LDA_API_KEY"),
            ),
        },
    )


defs = build_definitions()
