"""The one `DbtProject` of this code location (its own module, so `dagster-dbt project
prepare-and-package --file dagster_project/project.py` can build the manifest before load)."""

from pathlib import Path

from dagster_dbt import DbtProject

DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt_project"

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
