"""The nightly job over every asset, and its schedule."""

from __future__ import annotations

import os
from collections.abc import Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dagster import AssetSelection, ScheduleDefinition, define_asset_job, in_process_executor

# DuckDB allows one writer process: run every step in one process, one after another.
nightly_job = define_asset_job(
    name="nightly_refresh",
    selection=AssetSelection.all(),
    executor_def=in_process_executor,
    description="Ingest new files, rebuild dbt models, ML outputs, and publish the snapshot.",
)


def build_nightly_schedule(env: Mapping[str, str] = os.environ) -> ScheduleDefinition:
    """The nightly schedule; cron and IANA time zone from `PZ_SCHEDULE_CRON` and
    `PZ_SCHEDULE_TIMEZONE` (02:00 UTC by default; daylight-saving changes follow the zone)."""
    cron = env.get("PZ_SCHEDULE_CRON") or "0 2 * * *"
    timezone = env.get("PZ_SCHEDULE_TIMEZONE") or "UTC"
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"PZ_SCHEDULE_TIMEZONE={timezone!r} is not an IANA time zone") from error
    return ScheduleDefinition(
        name="nightly_refresh_schedule",
        job=nightly_job,
        cron_schedule=cron,
        execution_timezone=timezone,
        description=f"`{cron}` in {timezone} (PZ_SCHEDULE_CRON / PZ_SCHEDULE_TIMEZONE to change).",
    )


nightly_schedule = build_nightly_schedule()
