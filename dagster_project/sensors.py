"""A sensor that starts the nightly job when files land in (or change in) `$PZ_DATA_DIR/raw`.

The cursor is a digest of `(path, size, mtime)` over every visible landing file, so a new
file, a replaced file or a deleted file each change it once; hidden files (the sample-data
marker, editors' swap files, half-copied `.part` files named with a dot) are ignored. A file
modified less than `PZ_SENSOR_SETTLE_SECONDS` (default 30) ago may still be being written: the
sensor waits for the next tick instead of starting a run on half a file.
"""

import hashlib
import os
import time
from pathlib import Path

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from dagster_project.schedules import nightly_job
from dagster_project.settings import Settings

DEFAULT_SETTLE_SECONDS = 30.0


def landing_files(raw_dir: Path) -> list[tuple[str, int, int]]:
    """`(relative path, size, mtime_ns)` of every visible file under `raw_dir`, sorted."""
    if not raw_dir.is_dir():
        return []
    found = []
    for path in raw_dir.rglob("*"):
        relative = path.relative_to(raw_dir)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        stat = path.stat()
        found.append((relative.as_posix(), stat.st_size, stat.st_mtime_ns))
    return sorted(found)


def landing_digest(files: list[tuple[str, int, int]]) -> str:
    digest = hashlib.sha256()
    for relative, size, mtime_ns in files:
        digest.update(f"{relative}\0{size}\0{mtime_ns}\n".encode())
    return digest.hexdigest()


def settle_seconds() -> float:
    return float(os.environ.get("PZ_SENSOR_SETTLE_SECONDS", DEFAULT_SETTLE_SECONDS))


def evaluate_landing(
    raw_dir: Path, cursor: str | None, now: float, settle: float
) -> SensorResult | SkipReason:
    """The sensor's decision, apart from Dagster: run (new cursor) or skip (with the reason)."""
    files = landing_files(raw_dir)
    if not files:
        return SkipReason(f"no landing files in {raw_dir}")
    digest = landing_digest(files)
    if digest == cursor:
        return SkipReason(f"no new or changed files in {raw_dir} ({len(files)} files)")
    newest = max(mtime_ns for _, _, mtime_ns in files) / 1e9
    if now - newest < settle:
        return SkipReason(
            f"files in {raw_dir} changed {now - newest:.0f} s ago: waiting {settle:.0f} s "
            "for them to settle"
        )
    return SensorResult(
        run_requests=[
            RunRequest(
                run_key=digest,
                tags={"pz/trigger": "landing_files", "pz/landing_files": str(len(files))},
            )
        ],
        cursor=digest,
    )


@sensor(
    name="landing_files_sensor",
    job=nightly_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.STOPPED,
    description=(
        "Starts the nightly job when new or changed files land in $PZ_DATA_DIR/raw "
        "(hidden files ignored; waits PZ_SENSOR_SETTLE_SECONDS for files to settle)."
    ),
)
def landing_files_sensor(context: SensorEvaluationContext):
    raw_dir = Settings.from_env().raw_dir
    return evaluate_landing(raw_dir, context.cursor, time.time(), settle_seconds())
