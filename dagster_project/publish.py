"""Publish a read-only snapshot of the output tables for SQL readers, atomically.

The working warehouse belongs to the pipeline (DuckDB allows one writer and no readers beside
it). Readers use `$PZ_DATA_DIR/published/personalization.duckdb`, which is written next to the
old one under a temporary name and moved into place with one `rename`: a reader sees the old
snapshot or the new one, never half of one, and an open reader keeps its file. A run killed
mid-publish leaves the old snapshot in place and a hidden staging file, which the next publish
deletes.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from datetime import datetime
from pathlib import Path

import duckdb

from dagster_project.ingest.sql import quote_literal

# Published name -> relation in the working warehouse (DESIGN.md "Outputs").
PUBLISHED_TABLES: dict[str, str] = {
    "user_profiles": "marts.user_profiles",
    "identity_map": "marts.identity_map",
    "user_profiles_history": "snapshots.user_profiles_history",
    "identity_evaluation": "ml.identity_evaluation",
    "identity_changes": "ml.identity_changes",
    "identity_guardrail_firings": "ml.identity_guardrail_firings",
    "events": "marts.events",
    "sessions": "marts.sessions",
    "items": "marts.items",
    "user_features": "marts.user_features",
    "user_segments": "marts.user_segments",
    "segment_quality": "marts.segment_quality",
    "segment_drift": "marts.segment_drift",
    "recommendations": "marts.recommendations",
    "recommendation_evaluation": "marts.recommendation_evaluation",
    "experiment_assignments": "marts.experiment_assignments",
    "experiment_results": "marts.experiment_results",
    "load_manifest": "audit.load_manifest",
    "quarantine": "audit.quarantine",
    "data_audit": "audit.data_audit",
}


def existing_relations(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute(
        "select table_schema || '.' || table_name from information_schema.tables "
        "where table_catalog = current_database()"
    ).fetchall()
    return {r[0] for r in rows}


def remove_stale_staging(target: Path) -> list[Path]:
    """Delete staging files a killed publish left next to `target` (and their WAL files).

    Only the pipeline publishes, and it holds the working warehouse's write lock while it does,
    so no other publish can be writing one of these files now.
    """
    stale = sorted(target.parent.glob(f".{target.name}.*.tmp")) + sorted(
        target.parent.glob(f".{target.name}.*.tmp.wal")
    )
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish_snapshot(
    con: duckdb.DuckDBPyConnection,
    target: Path,
    published_at: datetime,
    run_id: str,
    tables: dict[str, str] = PUBLISHED_TABLES,
) -> dict[str, int]:
    """Copy `tables` into a fresh DuckDB file and atomically replace `target` with it."""
    present = existing_relations(con)
    missing = sorted(f"{name} ({rel})" for name, rel in tables.items() if rel not in present)
    if missing:
        raise RuntimeError(f"cannot publish, missing relations: {', '.join(missing)}")
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(target)
    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    counts: dict[str, int] = {}
    con.execute(f"attach {quote_literal(str(staging))} as pz_snapshot")
    try:
        for name, relation in tables.items():
            con.execute(f"create table pz_snapshot.main.{name} as select * from {relation}")
            counts[name] = con.execute(f"select count(*) from pz_snapshot.main.{name}").fetchall()[
                0
            ][0]
        con.execute(
            "create table pz_snapshot.main.publish_info as "
            "select $at::timestamp as published_at, $run as run_id",
            {"at": published_at, "run": run_id},
        )
        con.execute("detach pz_snapshot")  # checkpoints: the staging file is complete
        os.replace(staging, target)
        fsync_directory(target.parent)  # the rename survives a power cut too
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.execute("detach pz_snapshot")
        staging.unlink(missing_ok=True)
        raise
    finally:
        Path(f"{staging}.wal").unlink(missing_ok=True)
    return counts
