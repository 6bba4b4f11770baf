"""Ingest assets: one per landing source, plus the run's tunables as `config.*` tables."""

from dataclasses import asdict
from datetime import UTC, datetime

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    MaterializeResult,
    asset,
    multi_asset,
)

from dagster_project.assets._metadata import markdown_table
from dagster_project.ingest.erasure import enforce_erasures
from dagster_project.ingest.loader import ensure_tables, ingest_source
from dagster_project.ingest.sources import SOURCES
from dagster_project.resources import WarehouseResource
from dagster_project.tunables import config_frames, load_tunables, write_config_tables

CONFIG_TABLES = list(config_frames(load_tunables(), None))


@multi_asset(
    specs=[
        AssetSpec(
            AssetKey(["config", name]),
            description=f"`config.{name}`, from the YAML tunables in dagster_project/config.",
            group_name="config",
            kinds={"duckdb", "yaml"},
        )
        for name in CONFIG_TABLES
    ],
    name="pipeline_config",
)
def pipeline_config(context: AssetExecutionContext, warehouse: WarehouseResource):
    """Validate the YAML tunables and write them as `config.*` tables for dbt."""
    tunables = load_tunables()
    settings = warehouse.settings()
    with warehouse.connect(with_pii_zone=True) as con:
        counts = write_config_tables(con, tunables, settings.as_of)
    context.log.info(f"config tables written: {counts}; as_of={settings.as_of or 'newest event'}")
    for name, rows in counts.items():
        yield MaterializeResult(asset_key=AssetKey(["config", name]), metadata={"rows": rows})


def _build_ingest_asset(source: str):
    spec = SOURCES[source]

    @asset(
        key=AssetKey(["raw", source]),
        group_name="ingest",
        kinds={"duckdb", "python"},
        owners=["team:data-platform"],
        description=(
            f"{spec.description} Every file under `$PZ_DATA_DIR/raw/{source}/` loaded into "
            f"`raw.{source}` (all contract columns as text, PII tokenized, timestamps parsed to "
            "UTC); bad rows quarantined with file, line and reason; each file recorded in "
            "`audit.load_manifest` by sha256 so nothing is loaded twice."
        ),
    )
    def _ingest(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
        settings = warehouse.settings()
        loaded_at = datetime.now(UTC).replace(tzinfo=None)
        with warehouse.connect(with_pii_zone=True) as con:
            ensure_tables(con)
            results = ingest_source(con, source, settings.raw_dir, loaded_at, context.log.info)
            # An erasure request purges every source; any other load purges its own rows of
            # people erased before (so a re-delivered file cannot bring them back).
            purge = list(SOURCES) if source == "erasure" else [source]
            new_files = [
                r.file for r in results if r.status not in ("unchanged", "duplicate_content")
            ]
            erasure = enforce_erasures(
                con, purge, loaded_at, trigger=f"raw/{source}", new_files=new_files
            )
            if erasure.skipped:
                context.log.info("erasure: no new file and no new erasure token: nothing to do")
            elif erasure.requests_processed or erasure.total_removed:
                context.log.info(
                    f"erasure: {erasure.requests_processed} request(s) processed, "
                    f"{erasure.identifiers_registered} identifier token(s) registered, "
                    f"{erasure.total_removed} row(s) removed"
                )
            total_rows = con.execute(f"select count(*) from raw.{source}").fetchall()[0][0]
        files = pd.DataFrame([asdict(r) for r in results])
        if files.empty:
            context.log.info(f"{source}: no files in {settings.raw_dir / source}")
            files = pd.DataFrame(columns=["file", "status", "rows_read", "rows_loaded"])
        new = files[~files["status"].isin(["unchanged"])]
        return MaterializeResult(
            metadata={
                "files_seen": len(files),
                "files_new_or_changed": len(new),
                "rows_read": int(new.get("rows_read", pd.Series(dtype=int)).sum()),
                "rows_loaded": int(new.get("rows_loaded", pd.Series(dtype=int)).sum()),
                "rows_quarantined": int(new.get("rows_quarantined", pd.Series(dtype=int)).sum()),
                "table_rows": int(total_rows),
                "rows_removed_by_erasure": erasure.total_removed,
                "files": markdown_table(
                    new.drop(columns=["sha256", "mtime_ns"], errors="ignore"), max_rows=50
                ),
            }
        )

    _ingest.__name__ = f"raw_{source}"
    return _ingest


ingest_assets = [_build_ingest_asset(source) for source in SOURCES]
