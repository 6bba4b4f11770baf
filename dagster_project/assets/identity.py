"""Identity resolution: the identity graph from dbt -> one person_id per human."""

import pandas as pd
from dagster import AssetExecutionContext, AssetKey, MaterializeResult, asset

from dagster_project.assets._metadata import markdown_table
from dagster_project.resources import WarehouseResource
from dagster_project.warehouse_io import read_frame, write_frame
from models_ml.identity import identity_stats, resolve_identities


@asset(
    key=AssetKey(["ml", "identity_assignments"]),
    deps=[
        AssetKey(["intermediate", "int_identity_nodes"]),
        AssetKey(["intermediate", "int_identity_edges"]),
    ],
    group_name="identity",
    kinds={"python", "scipy", "duckdb"},
    owners=["team:data-platform"],
    description=(
        "One row per source identifier (record_id, user_id, anonymous_id) with its stable "
        "person_id: connected components of the identity graph built by dbt."
    ),
)
def identity_assignments(
    context: AssetExecutionContext, warehouse: WarehouseResource
) -> MaterializeResult:
    with warehouse.connect() as con:
        nodes = read_frame(con, "select * from intermediate.int_identity_nodes")
        edges = read_frame(con, "select * from intermediate.int_identity_edges")
        context.log.info(f"identity graph: {len(nodes)} nodes, {len(edges)} edges")
        assignments = resolve_identities(nodes, edges)
        rows = write_frame(con, "ml.identity_assignments", assignments)
    stats = identity_stats(assignments)
    context.log.info(f"identity: {stats}")
    by_method = stats.pop("identifiers_by_method")
    return MaterializeResult(
        metadata={
            "rows": rows,
            **stats,
            "identifiers_by_method": markdown_table(
                pd.DataFrame(sorted(by_method.items()), columns=["method", "identifiers"])
            ),
        }
    )
