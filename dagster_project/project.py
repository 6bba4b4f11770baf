"""The one `DbtProject` of this code location (its own module, so `dagster-dbt project
prepare-and-package --file dagster_project/project.py` can build the manifest before load)."""

import os
import sys
from pathlib import Path

from dagster_dbt import DbtProject

DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt_project"

# dagster-dbt runs the `dbt` found on PATH (also when preparing the manifest). Put this
# environment's own bin directory first, so a virtualenv works without being activated.
_BIN_DIR = str(Path(sys.executable).parent)
if (Path(_BIN_DIR) / "dbt").exists() and _BIN_DIR not in os.environ.get("PATH", "").split(":"):
    os.environ["PATH"] = _BIN_DIR + os.pathsep + os.environ.get("PATH", "")

# dbt loads the encryption plugin `dagster_project.encryption` (profiles.yml): make this repo
# importable in the dbt subprocess.
_REPO_ROOT = str(DBT_PROJECT_DIR.parent)
if _REPO_ROOT not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (_REPO_ROOT, os.environ.get("PYTHONPATH", "")) if p
    )

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
