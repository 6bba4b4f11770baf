"""dbt in the Dagster process (dagster_project/dbt_in_process.py), for real, on a tiny warehouse:
the pipeline's dbt resource runs `dbt run` through dbtRunner in a thread, dagster-dbt reads its
events as it reads a subprocess's, and the warehouse file is free again when dbt returns."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from dagster_dbt.core import dbt_cli_invocation

from dagster_project.assets.dbt import WarehouseDbtCliResource
from dagster_project.dbt_in_process import SUBPROCESS_ENV, DbtInProcess, dbt_args
from dagster_project.project import dbt_project

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dbt_project"))

import dbt_warehouse_fixture as wf  # noqa: E402

MODEL = "stg_catalog__items"


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:
        wf.create_raw_tables(con)
        wf.load_config(con)
        wf.create_empty_ml_tables(con)
        wf.populate_sample(con)
    monkeypatch.setenv("PZ_WAREHOUSE_PATH", str(path))
    monkeypatch.delenv(SUBPROCESS_ENV, raising=False)
    return path


def start_model(target: Path, *extra: str, raise_on_error: bool = True):
    resource = WarehouseDbtCliResource(project_dir=dbt_project)
    args = ["run", "--select", f"+{MODEL}", *extra]  # with the config models it reads
    return resource.cli(args, target_path=target, raise_on_error=raise_on_error)


def run_model(target: Path, *extra: str, raise_on_error: bool = True):
    return start_model(target, *extra, raise_on_error=raise_on_error).wait()


def statuses(target: Path) -> set[tuple[str, str]]:
    """(model, status) of the model `run_model` selects and whether all its parents succeeded."""
    results = json.loads((target / "run_results.json").read_text())["results"]
    status = {node["unique_id"].split(".")[-1]: node["status"] for node in results}
    parents = {value for name, value in status.items() if name != MODEL}
    return {(MODEL, status.get(MODEL, "not run")), ("parents", "/".join(sorted(parents)))}


def open_in_another_process(path: Path) -> subprocess.CompletedProcess:
    """Open the warehouse read-write from another process (it needs the file's lock)."""
    code = (
        f"import duckdb; con = duckdb.connect({str(path)!r}); "
        f"print(con.execute('select count(*) from staging.{MODEL}').fetchone()[0])"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_dbt_runs_in_this_process_and_leaves_the_warehouse_free(
    warehouse: Path, tmp_path: Path
) -> None:
    first = run_model(tmp_path / "first")
    assert isinstance(first.process, DbtInProcess)
    assert first.process.returncode == 0
    assert statuses(tmp_path / "first") == {(MODEL, "success"), ("parents", "success")}
    # dagster-dbt's module is as it was outside the invocation
    assert dbt_cli_invocation.subprocess is subprocess
    # dbt-duckdb keeps its database open; the runner closed it when dbt returned
    opened = open_in_another_process(warehouse)
    assert opened.returncode == 0, opened.stderr
    assert int(opened.stdout) > 0
    # a second invocation in the same process opens the database again; the events streamed
    # are dbt's own, as dagster-dbt reads them from a subprocess
    second = start_model(tmp_path / "second")
    names = {event.raw_event["info"]["name"] for event in second.stream_raw_events()}
    assert second.process.returncode == 0
    assert statuses(tmp_path / "second") == {(MODEL, "success"), ("parents", "success")}
    assert {"MainReportVersion", "LogModelResult"} <= names


def test_a_failing_model_and_a_failing_dbt_are_reported_with_their_errors(
    warehouse: Path, tmp_path: Path
) -> None:
    with duckdb.connect(str(warehouse)) as con:
        con.execute("drop table raw.catalog")
    failed = run_model(tmp_path / "model", raise_on_error=False)
    assert not failed.is_successful()
    assert failed.process.returncode == 1
    assert "catalog" in str(failed.get_error())
    assert (MODEL, "error") in statuses(tmp_path / "model")
    broken = run_model(tmp_path / "profile", "--target", "no_such_target", raise_on_error=False)
    assert not broken.is_successful()
    assert broken.process.returncode == 2
    assert "no_such_target" in str(broken.get_error())
    # the warehouse is free after a failure too
    with duckdb.connect(str(warehouse)) as con:
        con.execute("select 1").fetchall()


def test_the_subprocess_is_there_when_asked_for(
    warehouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SUBPROCESS_ENV, "1")
    invocation = run_model(tmp_path / "target")
    assert isinstance(invocation.process, subprocess.Popen)
    assert statuses(tmp_path / "target") == {(MODEL, "success"), ("parents", "success")}


def test_the_subprocess_environment_becomes_flags(tmp_path: Path) -> None:
    env = {
        "DBT_TARGET_PATH": "target/phase-1",
        "DBT_LOG_PATH": str(tmp_path / "logs"),
        "DBT_PROJECT_DIR": str(tmp_path),
        "DBT_INDIRECT_SELECTION": "empty",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    args = dbt_args(["/venv/bin/dbt", "build", "--selector", "pre_identity"], env, tmp_path)
    assert args == [
        "build",
        "--selector",
        "pre_identity",
        "--target-path",
        str(tmp_path / "target/phase-1"),
        "--log-path",
        str(tmp_path / "logs"),
        "--project-dir",
        str(tmp_path),
        "--indirect-selection",
        "empty",
        "--no-send-anonymous-usage-stats",
        "--log-level",
        "none",
    ]
