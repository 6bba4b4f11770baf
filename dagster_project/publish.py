"""Publish a read-only snapshot of the output tables for SQL readers, atomically.

The working warehouse belongs to the pipeline (DuckDB allows one writer and no readers beside
it). Readers use `$PZ_DATA_DIR/published/personalization.duckdb`, which is written next to the
old one under a temporary name and moved into place with one `rename`: a reader sees the old
snapshot or the new one, never half of one, and an open reader keeps its file.
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
    "events": "marts.events",
    "sessions": "marts.sessions",
    "items": "marts.items",
    "user_features": "marts.user_features",
    "user_segments": "marts.user_segments",
    "segment_quality": "marts.segment_quality",
    "recommendations": "marts.recommendations",
    "load_manifest": "audit.load_manifest",
    "quarantine": "audit.quarantine",
}


def existing_relations(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute(
        "select table_schema || '.' || table_name from information_schema.tables "
        "where table_catalog = current_database()"
    ).fetchall()
    return {r[0] for r in rows}


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
        con.execute("detach pz_snapshot")
        os.replace(staging, target)
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.execute("detach pz_snapshot")
        staging.unlink(missing_ok=True)
        raise
    finally:
        Path(f"{staging}.wal").unlink(missing_ok=True)
    return counts
