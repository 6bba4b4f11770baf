"""Feed Splink's `fake_1000` through the pipeline as profile records and score it.

    PZ_PII_KEY=... .venv/bin/python bench/identity_splink_fake1000.py [DATASET_DIR] [WORK_DIR]

Writes the CSV as `raw/profiles/fake_1000.csv` (record_id, first_name, last_name, birth_date,
city, email) in a scratch data dir, runs ingest, dbt phase 1 and the identity assets, then
prints the pairwise precision / recall / F1 of the clusters against the dataset's labels.
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

DATASET = Path(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/datasets/splink-fake_1000")
WORK = Path(sys.argv[2] if len(sys.argv) > 2 else tempfile.mkdtemp(prefix="pz_fake1000_"))
ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    source = pd.read_csv(DATASET / "fake_1000.csv", dtype=str, keep_default_na=False)
    profiles = source.rename(
        columns={"unique_id": "record_id", "surname": "last_name", "dob": "birth_date"}
    ).assign(source_system="fake_1000")
    (WORK / "raw/profiles").mkdir(parents=True, exist_ok=True)
    profiles.drop(columns=["cluster"]).to_csv(WORK / "raw/profiles/fake_1000.csv", index=False)
    labels = WORK / "labels.csv"
    profiles[["record_id", "cluster"]].to_csv(labels, index=False)

    os.environ["PZ_DATA_DIR"] = str(WORK)
    os.environ.setdefault("PZ_PII_KEY", "fake1000-bench-key-0123456789abcdef")
    os.environ["PZ_WAREHOUSE_PATH"] = str(WORK / "warehouse/warehouse.duckdb")
    from dagster import materialize

    from dagster_project.assets.identity import identity_assets
    from dagster_project.assets.ingest import ingest_assets, pipeline_config
    from dagster_project.resources import WarehouseResource

    resources = {"warehouse": WarehouseResource()}
    assert materialize([pipeline_config, *ingest_assets], resources=resources).success
    dbt = [str(ROOT / ".venv/bin/dbt"), "build", "--selector", "pre_identity"]
    dbt += ["--project-dir", str(ROOT / "dbt_project")]
    dbt += ["--profiles-dir", os.environ.get("PZ_DBT_PROFILES_DIR", str(ROOT / "dbt_project"))]
    subprocess.run(dbt, check=True, capture_output=True)
    assert materialize(identity_assets, resources=resources).success
    subprocess.run(
        [sys.executable, "-m", "dagster_project.identity.evaluate", "--labels", str(labels)],
        check=True,
        cwd=ROOT,
    )


if __name__ == "__main__":
    main()
