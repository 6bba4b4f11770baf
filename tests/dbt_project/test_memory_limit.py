"""dbt runs under the warehouse's DuckDB memory limit and spills instead of failing.

The limit and the spill directory are set once, when dbt-duckdb opens the database
(`config_options` in profiles.yml). Set per cursor (`settings`), DuckDB refused the second
model after the first had spilled ("Cannot switch temporary directory"), which stopped the
20M-event benchmark tier; without a limit, DuckDB takes 80% of the machine and was OOM-killed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DBT = Path(sys.executable).parent / "dbt"


def test_models_that_spill_run_one_after_another(tmp_path: Path):
    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    (project / "dbt_project.yml").write_text(
        "name: spill\nversion: '1.0.0'\nprofile: personalization\nmodel-paths: ['models']\n"
        "models:\n  spill:\n    +materialized: table\n"
    )
    # a sort of ~8M rows with a 32-character key: well over a 400MB limit
    (project / "models" / "a.sql").write_text(
        "select i, md5(i::varchar) as h from range(8000000) as t(i) order by h"
    )
    (project / "models" / "b.sql").write_text("select * from {{ ref('a') }} order by i desc")
    warehouse = tmp_path / "warehouse.duckdb"
    env = {
        **os.environ,
        "PZ_WAREHOUSE_PATH": str(warehouse),
        "PZ_DUCKDB_MEMORY_LIMIT": "400MB",
        "PZ_ENCRYPTION_KEY": "",
        "PZ_DBT_THREADS": "",  # unset: the default, one model at a time
    }
    completed = subprocess.run(
        [
            str(DBT),
            "run",
            "--project-dir",
            str(project),
            "--profiles-dir",
            str(REPO / "dbt_project"),
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=project,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:]
    assert "PASS=2" in completed.stdout
    assert "Concurrency: 1 threads" in completed.stdout
    import duckdb

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        assert con.execute("select count(*), max(i) from main.b").fetchall() == [(8000000, 7999999)]
    finally:
        con.close()
