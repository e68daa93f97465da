"""The daily signals job and its weekday schedule."""

from __future__ import annotations

import os

import dagster as dg

DAILY_SIGNALS_JOB = "daily_signals"
SCHEDULE_TIMEZONE = "America/New_York"

daily_signals_job = dg.define_asset_job(
    DAILY_SIGNALS_JOB,
    selection=dg.AssetSelection.all(),
    description="Fetch every enabled source, store new and changed documents, classify them.",
    # Sources run in threads inside one step per family, so one process serves the whole run.
    executor_def=dg.in_process_executor,
    # A run whose process crashed is retried by the daemon (run retries enabled in dagster.yaml);
    # a run that failed in an op (a blocking check, say) is not: repeating it changes nothing,
    # and the op's own RetryPolicy already covers transient step failures.
    tags={
        "dagster/max_retries": "2",
        "dagster/retry_strategy": "FROM_FAILURE",
        "dagster/retry_on_asset_or_op_failure": "false",
    },
)

daily_signals_schedule = dg.ScheduleDefinition(
    name="daily_signals_weekdays",
    job=daily_signals_job,
    cron_schedule="0 7 * * 1-5",
    execution_timezone=SCHEDULE_TIMEZONE,
    description="Weekdays at 07:00 Eastern, after the Federal Register's daily issue is online.",
    # On only where VA_SIGNALS_ENABLE_SCHEDULES=1 (production sets it): a laptop running
    # `make dev` should not start live runs by itself.
    default_status=(
        dg.DefaultScheduleStatus.RUNNING
        if os.environ.get("VA_SIGNALS_ENABLE_SCHEDULES") == "1"
        else dg.DefaultScheduleStatus.STOPPED
    ),
)
