"""The code location: every asset, resource, job and schedule of the warehouse."""

from __future__ import annotations

from dagster import Definitions, in_process_executor
from dagster_dbt import DbtCliResource

from dagster_project.assets.dbt import dbt_phases
from dagster_project.assets.identity import identity_assignments
from dagster_project.assets.ingest import ingest_assets, pipeline_config
from dagster_project.assets.publish import published_snapshot
from dagster_project.assets.recommendations import recommendations
from dagster_project.assets.segments import cluster_segments_asset
from dagster_project.project import dbt_project
from dagster_project.resources import WarehouseResource
from dagster_project.schedules import nightly_job, nightly_schedule

defs = Definitions(
    assets=[
        pipeline_config,
        *ingest_assets,
        *dbt_phases,
        identity_assignments,
        cluster_segments_asset,
        recommendations,
        published_snapshot,
    ],
    jobs=[nightly_job],
    schedules=[nightly_schedule],
    resources={
        "warehouse": WarehouseResource(),
        "dbt": DbtCliResource(project_dir=dbt_project),
    },
    # DuckDB has one writer: every materialization runs its steps in one process.
    executor=in_process_executor,
)
