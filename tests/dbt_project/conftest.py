"""Builds the sample warehouse once per session and runs the three dbt phases on it."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pytest

# The fixture builder sits next to this file; tests/ is not a package.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import dbt_warehouse_fixture as wf  # noqa: E402


@dataclass
class BuiltWarehouse:
    path: Path
    # unique_id -> status of every node each phase ran, in phase order
    phase_results: dict[str, dict[str, str]] = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)

    def query(self, sql: str, params: list | None = None) -> list[tuple]:
        with duckdb.connect(str(self.path), read_only=True) as con:
            return con.execute(sql, params or []).fetchall()


def _build(args: list[str], warehouse: Path, work_dir: Path) -> dict[str, str]:
    result = wf.run_dbt(["build", *args], warehouse, work_dir)
    assert result.returncode == 0, f"dbt build {' '.join(args)} failed:\n{result.stdout[-6000:]}"
    run_results = json.loads((work_dir / "target" / "run_results.json").read_text())
    return {node["unique_id"]: node["status"] for node in run_results["results"]}


@pytest.fixture(scope="session")
def built_warehouse(tmp_path_factory: pytest.TempPathFactory) -> BuiltWarehouse:
    work_dir = tmp_path_factory.mktemp("dbt_sample")
    built = BuiltWarehouse(path=work_dir / "warehouse.duckdb")
    with duckdb.connect(str(built.path)) as con:
        wf.create_raw_tables(con)
        wf.load_config(con)
        wf.populate_sample(con)

    built.phase_results["pre_identity"] = _build(
        ["--selector", "pre_identity"], built.path, work_dir
    )
    with duckdb.connect(str(built.path)) as con:
        wf.assign_identities(con)
    built.phase_results["post_identity"] = _build(
        ["--selector", "post_identity"], built.path, work_dir
    )
    with duckdb.connect(str(built.path)) as con:
        wf.write_ml_outputs(con)
    built.phase_results["ml_marts"] = _build(["--selector", "ml_marts"], built.path, work_dir)

    built.manifest = json.loads((work_dir / "target" / "manifest.json").read_text())
    return built


@pytest.fixture(scope="session")
def events_only_warehouse(tmp_path_factory: pytest.TempPathFactory) -> BuiltWarehouse:
    """Only events were delivered: every other raw table exists but is empty."""
    work_dir = tmp_path_factory.mktemp("dbt_events_only")
    built = BuiltWarehouse(path=work_dir / "warehouse.duckdb")
    with duckdb.connect(str(built.path)) as con:
        wf.create_raw_tables(con)
        wf.load_config(con)
        wf.insert_raw(
            con,
            "events",
            [
                wf.make_event("e1", "page_view", "2024-03-01 10:00:00", anonymous_id="a1"),
                wf.make_event("e2", "purchase", "2024-03-01 10:05:00", user_id="u1", value="9.5"),
            ],
        )
        wf.create_empty_ml_tables(con)
    built.phase_results["all"] = _build([], built.path, work_dir)
    return built
