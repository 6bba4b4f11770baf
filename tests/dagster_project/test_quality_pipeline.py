"""The quality layer in a real materialization: asset checks run, Data Docs are written, the
data audit counts values nulled as invalid, and every file reconciles."""

from __future__ import annotations

import json

import duckdb
import pytest
from dagster import DagsterInstance

from dagster_project.cli import prepare_dbt_manifest
from dagster_project.sample_data import generate

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def quality_run(tmp_path_factory: pytest.TempPathFactory):
    prepare_dbt_manifest()
    data_dir = tmp_path_factory.mktemp("quality")
    generate(data_dir, users=60, items=30, days=5, seed=3)
    bad = [
        {
            "event_id": "bad-value",
            "event_type": "purchase",
            "timestamp": "2026-10-01T10:00:00Z",
            "user_id": "shared-u1",
            "anonymous_id": "shared-device",
            "value": "abc",
        },
        {
            "event_id": "same-device",
            "event_type": "page_view",
            "timestamp": "1790841600",
            "user_id": "shared-u2",
            "anonymous_id": "shared-device",
        },
    ]
    lines = [json.dumps(r) for r in bad] + ["{broken json"]
    (data_dir / "raw" / "events" / "zz_bad.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("PZ_DATA_DIR", str(data_dir))
        from dagster_project.definitions import defs

        result = defs.resolve_job_def("nightly_refresh").execute_in_process(
            instance=DagsterInstance.ephemeral(), raise_on_error=False
        )
    return data_dir, result


def evaluations(result) -> dict[tuple[str, str], object]:
    return {
        (e.asset_key.to_user_string(), e.check_name): e
        for e in result.get_asset_check_evaluations()
    }


def test_run_succeeds_and_every_quality_check_is_evaluated(quality_run):
    _, result = quality_run
    failures = [
        (e.step_key, e.event_specific_data.error.message[:300])
        for e in result.all_events
        if e.event_type_value == "STEP_FAILURE"
    ]
    assert result.success, failures
    got = evaluations(result)
    expected = [
        ("raw/events", "files_reconcile"),
        ("raw/profiles", "files_reconcile"),
        ("raw/events", "expectations_raw_events"),
        ("raw/catalog", "expectations_raw_catalog"),
        ("marts/events", "expectations_marts_events"),
        ("marts/user_profiles", "expectations_marts_user_profiles"),
        ("marts/recommendations", "expectations_marts_recommendations"),
        ("staging/stg_events__events", "device_with_several_users"),
        ("staging/stg_profiles__profiles", "user_with_conflicting_birth_dates"),
        ("marts/sessions", "session_spanning_days"),
    ]
    missing = [key for key in expected if key not in got]
    assert missing == []
    assert got[("raw/events", "files_reconcile")].passed
    # the two events share one device: flagged as a warning, the run goes on
    device = got[("staging/stg_events__events", "device_with_several_users")]
    assert not device.passed and device.severity.value == "WARN"
    assert device.metadata["inconsistent"].value >= 1
    # no critical expectation fails on the generated data
    critical = [
        k
        for k, e in got.items()
        if k[1].startswith("expectations_") and e.severity.value == "ERROR" and not e.passed
    ]
    assert critical == []


def test_data_docs_are_written_per_layer(quality_run):
    data_dir, _ = quality_run
    for group in ("raw", "marts", "ml_marts"):
        index = data_dir / "reports" / "data_docs" / group / "index.html"
        assert index.exists()
        assert any((index.parent / "validations").rglob("*.html"))


def test_published_data_audit_counts_the_nulled_value_and_the_quarantine(quality_run):
    data_dir, _ = quality_run
    path = data_dir / "published" / "personalization.duckdb"
    with duckdb.connect(str(path), read_only=True) as con:
        value = con.execute(
            "select nulled_invalid from data_audit "
            "where source = 'events' and column_name = 'value'"
        ).fetchall()
        table = con.execute(
            "select rows, rows_quarantined, freshness_hours is not null from data_audit "
            "where source = 'events' and column_name = '*'"
        ).fetchall()
        quarantined = con.execute(
            "select line, reason from quarantine where file = 'events/zz_bad.jsonl'"
        ).fetchall()
    assert value and value[0][0] >= 1
    assert table[0][1] >= 1 and table[0][2]
    assert quarantined == [(3, "malformed JSON")]


def test_a_subset_run_validates_only_what_it_materialized(tmp_path, monkeypatch):
    prepare_dbt_manifest()
    generate(tmp_path, users=20, items=20, days=2, seed=5)
    monkeypatch.setenv("PZ_DATA_DIR", str(tmp_path))
    from dagster import AssetKey

    from dagster_project.definitions import defs

    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=DagsterInstance.ephemeral(),
        asset_selection=[AssetKey(["raw", "events"]), AssetKey(["raw", "catalog"])],
        raise_on_error=False,
    )
    assert result.success
    got = sorted(evaluations(result))
    assert got == [
        ("raw/catalog", "expectations_raw_catalog"),
        ("raw/catalog", "files_reconcile"),
        ("raw/events", "expectations_raw_events"),
        ("raw/events", "files_reconcile"),
    ]
    assert all(e.passed for e in result.get_asset_check_evaluations())
    assert (tmp_path / "reports" / "data_docs" / "raw" / "index.html").exists()
