"""All dbt models as Dagster assets (one asset per model; dbt tests become asset checks)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from dagster import AssetExecutionContext
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets

from dagster_project.project import dbt_project
from dagster_project.resources import WarehouseResource

LAYER_GROUPS = {"staging": "staging", "intermediate": "intermediate", "marts": "marts"}


class WarehouseDbtTranslator(DagsterDbtTranslator):
    """Groups by dbt folder (layer); sources keep their `<schema>/<table>` keys."""

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        fqn = dbt_resource_props.get("fqn", [])
        for part in fqn[1:-1]:
            if part in LAYER_GROUPS:
                return LAYER_GROUPS[part]
        return super().get_group_name(dbt_resource_props)


def dbt_build_args() -> list[str]:
    """The dbt command every materialization runs; Dagster adds the `--select` of the subset."""
    return ["build"]


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    dagster_dbt_translator=WarehouseDbtTranslator(),
)
def dbt_models(context: AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource):
    """Staging, intermediate and marts models of `dbt_project/` on the working warehouse."""
    # dbt-duckdb reads the warehouse path from the environment (see dbt_project/profiles.yml).
    os.environ["PZ_WAREHOUSE_PATH"] = str(warehouse.settings().warehouse_path)
    yield from dbt.cli(dbt_build_args(), context=context).stream()
