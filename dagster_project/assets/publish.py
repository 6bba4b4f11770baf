"""Publish the output tables as a read-only snapshot for SQL clients."""

from datetime import UTC, datetime

from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset

from dagster_project.ingest.sources import SOURCES
from dagster_project.publish import PUBLISHED_TABLES, publish_snapshot
from dagster_project.resources import WarehouseResource

# The dbt marts feed the snapshot; raw ingest assets feed the audit tables.
_UPSTREAM = [
    AssetKey(rel.split(".")) for rel in PUBLISHED_TABLES.values() if rel.startswith("marts.")
]
_UPSTREAM += [AssetKey(["raw", source]) for source in SOURCES]
# Published audit tables and the compliance report of the same run come before the snapshot.
_UPSTREAM += [AssetKey(["audit", "data_audit"]), AssetKey(["audit", "compliance_report"])]


@asset(
    key=AssetKey(["published_snapshot"]),
    deps=_UPSTREAM,
    group_name="publish",
    kinds={"duckdb"},
    owners=["team:data-platform"],
    description=(
        "`$PZ_DATA_DIR/published/personalization.duckdb`: every output table of DESIGN.md, "
        "replaced atomically at the end of a successful run. SQL clients read this file, "
        "never the working warehouse."
    ),
)
def published_snapshot(
    context: AssetExecutionContext, warehouse: WarehouseResource
) -> MaterializeResult:
    settings = warehouse.settings()
    published_at = datetime.now(UTC).replace(tzinfo=None)
    with warehouse.connect() as con:
        counts = publish_snapshot(
            con, settings.published_path, published_at, context.run.run_id, log=context.log.info
        )
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(str(settings.published_path)),
            "tables": MetadataValue.md(
                "| table | rows |\n|---|---|\n"
                + "\n".join(f"| {name} | {rows} |" for name, rows in counts.items())
            ),
            **{f"rows_{name}": rows for name, rows in counts.items()},
        }
    )
