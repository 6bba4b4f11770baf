"""The code location: every asset, resource, job and schedule of the warehouse."""

from __future__ import annotations

from dagster import Definitions, in_process_executor

from dagster_project.assets.dbt import WarehouseDbtCliResource, dbt_phases
from dagster_project.assets.experiments import experiments
from dagster_project.assets.identity import identity_assets
from dagster_project.assets.ingest import ingest_assets, pipeline_config
from dagster_project.assets.privacy import compliance_report
from dagster_project.assets.publish import published_snapshot
from dagster_project.assets.quality import data_audit, quality_checks
from dagster_project.assets.recommendations import recommendations
from dagster_project.assets.segments import segment_assets, segment_checks
from dagster_project.project import dbt_project
from dagster_project.resources import WarehouseResource
from dagster_project.schedules import nightly_job, nightly_schedule
from dagster_project.sensors import landing_files_sensor

defs = Definitions(
    assets=[
        # The config tables are the data platform's (set here until ingest.py declares owners).
        pipeline_config.map_asset_specs(
            lambda spec: spec.replace_attributes(owners=spec.owners or ["team:data-platform"])
        ),
        *ingest_assets,
        *dbt_phases,
        *identity_assets,
        *segment_assets,
        recommendations,
        experiments,
        data_audit,
        compliance_report,
        published_snapshot,
    ],
    asset_checks=[*quality_checks, *segment_checks],
    jobs=[nightly_job],
    schedules=[nightly_schedule],
    sensors=[landing_files_sensor],
    resources={
        "warehouse": WarehouseResource(),
        "dbt": WarehouseDbtCliResource(project_dir=dbt_project),
    },
    # DuckDB has one writer: every materialization runs its steps in one process.
    executor=in_process_executor,
)
