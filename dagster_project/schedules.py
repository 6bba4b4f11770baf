"""The nightly job over every asset, and its schedule."""

from __future__ import annotations

import os

from dagster import AssetSelection, ScheduleDefinition, define_asset_job, in_process_executor

# DuckDB allows one writer process: run every step in one process, one after another.
nightly_job = define_asset_job(
    name="nightly_refresh",
    selection=AssetSelection.all(),
    executor_def=in_process_executor,
    description="Ingest new files, rebuild dbt models, ML outputs, and publish the snapshot.",
)

nightly_schedule = ScheduleDefinition(
    name="nightly_refresh_schedule",
    job=nightly_job,
    cron_schedule=os.environ.get("PZ_SCHEDULE_CRON", "0 2 * * *"),
    execution_timezone=os.environ.get("PZ_SCHEDULE_TIMEZONE", "UTC"),
    description="Every night at 02:00 (PZ_SCHEDULE_CRON / PZ_SCHEDULE_TIMEZONE to change).",
)
