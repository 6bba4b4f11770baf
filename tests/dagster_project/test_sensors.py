"""The landing-files sensor and the nightly schedule, evaluated by Dagster on a temp folder."""

import os
import time
from pathlib import Path

import pytest
from dagster import SkipReason, build_schedule_context, build_sensor_context

from dagster_project.definitions import defs
from dagster_project.schedules import build_nightly_schedule
from dagster_project.sensors import evaluate_landing, landing_files_sensor


@pytest.fixture
def raw_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PZ_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PZ_SENSOR_SETTLE_SECONDS", "0")
    raw = tmp_path / "raw"
    (raw / "events").mkdir(parents=True)
    return raw


def tick(cursor: str | None):
    """One evaluation through Dagster: (run keys requested, new cursor, skip message)."""
    data = landing_files_sensor.evaluate_tick(build_sensor_context(cursor=cursor))
    return [r.run_key for r in data.run_requests or []], data.cursor, data.skip_message


def test_sensor_runs_once_per_change_and_ignores_hidden_files(raw_dir: Path) -> None:
    runs, cursor, skip = tick(None)
    assert runs == [] and cursor is None and "no landing files" in skip

    (raw_dir / ".generated_sample_data").write_text("marker")
    (raw_dir / "events" / ".half.jsonl.part").write_text("{}")
    assert tick(None)[0] == []  # hidden files alone start nothing

    events = raw_dir / "events" / "events_2026-01-01.jsonl"
    events.write_text('{"event_id": 1}\n')
    runs, first, _ = tick(None)
    assert runs == [first] and first is not None

    runs, cursor, skip = tick(first)  # nothing changed: no second run
    assert runs == [] and "no new or changed files" in skip

    (raw_dir / "events" / ".tmp_copy").write_text("ignored")
    assert tick(first)[0] == []

    (raw_dir / "events" / "events_2026-01-02.jsonl").write_text('{"event_id": 2}\n')
    runs, second, _ = tick(first)  # a new file
    assert runs == [second] and second != first

    events.write_text('{"event_id": 1}\n{"event_id": 3}\n')  # a changed file (size)
    runs, third, _ = tick(second)
    assert runs == [third] and third not in (first, second)

    stamp = time.time() - 3600
    os.utime(events, (stamp, stamp))  # same size, new mtime: a replaced file
    runs, fourth, _ = tick(third)
    assert runs == [fourth] and fourth != third


def test_sensor_waits_for_files_still_being_written(raw_dir: Path) -> None:
    events = raw_dir / "events" / "events_2026-01-01.jsonl"
    events.write_text('{"event_id": 1}\n')
    now = time.time()
    waiting = evaluate_landing(raw_dir, None, now=now, settle=60)
    assert isinstance(waiting, SkipReason) and "settle" in waiting.skip_message
    ready = evaluate_landing(raw_dir, None, now=now + 120, settle=60)
    assert [r.run_key for r in ready.run_requests] == [ready.cursor]


def test_sensor_and_schedule_are_registered_on_the_nightly_job() -> None:
    sensor = defs.resolve_sensor_def("landing_files_sensor")
    assert sensor.job_name == "nightly_refresh"
    schedule = defs.resolve_schedule_def("nightly_refresh_schedule")
    assert schedule.job_name == "nightly_refresh"
    assert schedule.execution_timezone
    context = build_schedule_context(scheduled_execution_time=None)
    assert len(list(schedule.evaluate_tick(context).run_requests or [])) == 1


def test_schedule_time_zone_comes_from_the_environment() -> None:
    paris = build_nightly_schedule({"PZ_SCHEDULE_TIMEZONE": "Europe/Paris"})
    assert paris.execution_timezone == "Europe/Paris" and paris.cron_schedule == "0 2 * * *"
    with pytest.raises(ValueError, match="IANA"):
        build_nightly_schedule({"PZ_SCHEDULE_TIMEZONE": "Mars/Olympus"})
