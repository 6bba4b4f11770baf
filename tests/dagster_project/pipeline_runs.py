"""One run of the pipeline up to the profile marts, for tests on generated data: ingest (with
the config tables), dbt phase 1, identity resolution, dbt phase 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dagster import materialize

from dagster_project.assets.identity import identity_assets
from dagster_project.assets.ingest import ingest_assets, pipeline_config
from dagster_project.resources import WarehouseResource

ROOT = Path(__file__).resolve().parents[2]
DBT = str(Path(sys.executable).with_name("dbt"))


def run_until_profiles(data_dir: Path) -> dict:
    """Returns the metadata of `ml/identity_links`."""
    os.environ["PZ_WAREHOUSE_PATH"] = str(data_dir / "warehouse/warehouse.duckdb")
    resources = {"warehouse": WarehouseResource(data_dir=str(data_dir))}
    assert materialize([pipeline_config, *ingest_assets], resources=resources).success
    profiles_dir = os.environ.get("PZ_TEST_DBT_PROFILES_DIR", str(ROOT / "dbt_project"))
    base = [DBT, "build", "--project-dir", str(ROOT / "dbt_project")]
    base += ["--profiles-dir", profiles_dir]
    links = {}
    for selector in ("pre_identity", "post_identity"):
        if selector == "post_identity":
            identity = materialize(identity_assets, resources=resources)
            assert identity.success
            (event,) = identity.asset_materializations_for_node("ml__identity_links")
            links = {key: value.value for key, value in event.metadata.items()}
        done = subprocess.run([*base, "--selector", selector], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-4000:]
    return links
