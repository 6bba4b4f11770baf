"""The benchmark says which dbt models a dbt step's time went to, in the full and the
incremental run."""

from __future__ import annotations

from dagster import MetadataValue

from tests.test_bench_floor import load_bench


def _run(total: float, models: dict[str, float]) -> dict:
    stages = {s: 1.0 for s in ("ingest", "dbt", "identity", "segments", "recommendations")}
    return {
        "total_s": total,
        "stages_s": {**stages, "publish": 1.0, "other": 1.0},
        "steps_s": {},
        "dbt_models_s": models,
    }


def _tier(full_models: dict[str, float], incremental_models: dict[str, float]) -> dict:
    return {
        "tier": "S",
        "events": 1000,
        "full": _run(100.0, full_models),
        "incremental": _run(20.0, incremental_models),
        "events_per_s": 10,
        "ingest_vs_floor": 2.0,
        "incremental_share": 0.2,
        "peak_rss_mb": 100,
        "peak_rss_total_mb": 120,
    }


def test_seconds_come_from_dbt_materializations_only():
    bench = load_bench()
    assert bench.dbt_model_seconds({"Execution Duration": MetadataValue.float(3.456)}) == 3.46
    assert bench.dbt_model_seconds({"Execution Duration": 1.5}) == 1.5
    # a Python asset's materialization: no dbt duration
    assert bench.dbt_model_seconds({"rows": MetadataValue.int(10)}) is None


def test_the_table_lists_the_slowest_models_of_either_run():
    full = {f"marts.m{i}": float(20 - i) for i in range(12)}  # m0 slowest ... m11
    incremental = {"marts.only_incremental": 30.0, "marts.m11": 9.0, "marts.m0": 5.0}

    table = load_bench().slowest_dbt_models(_tier(full, incremental), top=3)
    lines = [line for line in table.splitlines() if line.startswith("| marts.")]

    # the full run's three slowest first, then what only the incremental run put on top
    assert lines == [
        "| marts.m0 | 20.0 | 5.0 |",
        "| marts.m1 | 19.0 | - |",
        "| marts.m2 | 18.0 | - |",
        "| marts.m11 | 9.0 | 9.0 |",
        "| marts.only_incremental | - | 30.0 |",
    ]


def test_results_without_model_times_still_render():
    """results.json files written before the per-model times have no `dbt_models_s`."""
    bench = load_bench()
    tier = _tier({}, {})
    del tier["full"]["dbt_models_s"], tier["incremental"]["dbt_models_s"]

    table = bench.markdown([tier])

    assert "| S | 1,000 | 100.0 |" in table
    assert "Slowest dbt models" not in table
    assert "Slowest dbt models of tier S" in bench.markdown([_tier({"marts.a": 1.0}, {})])
