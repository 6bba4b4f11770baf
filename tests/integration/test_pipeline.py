"""The whole pipeline, really run: generated sample data -> Dagster job -> published snapshot.

One materialization of every asset (ingest, three dbt phases, identity, segments,
recommendations, publish) on a small generated sample in a temporary directory, checked
against the generator's ground truth; then a second run over the same files, and a run on a
landing folder that holds only events.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from dagster import DagsterInstance

from dagster_project.cli import prepare_dbt_manifest
from dagster_project.project import dbt_project
from dagster_project.sample_data import generate
from dagster_project.tunables import load_tunables

pytestmark = pytest.mark.integration

DESIGN_COLUMNS = {
    "identity_map": [
        "identifier_type",
        "identifier",
        "source_system",
        "person_id",
        "method",
        "match_probability",
    ],
    "user_segments": ["person_id", "segment_type", "segment_id", "segment_name", "score"],
    "recommendations": ["person_id", "rank", "item_id", "score", "algorithm", "reason"],
    "quarantine": ["source", "file", "line", "reason", "raw_record"],
    "load_manifest": [
        "file",
        "sha256",
        "rows_read",
        "rows_loaded",
        "rows_quarantined",
        "loaded_at",
    ],
    "user_profiles": ["person_id"],
    "events": ["event_id", "event_type", "occurred_at", "person_id", "session_id", "item_id"],
    "sessions": ["session_id", "person_id"],
    "user_features": ["person_id", "recency_days", "frequency", "monetary"],
    "segment_quality": ["k", "silhouette", "davies_bouldin", "is_chosen"],
}


def run_pipeline(data_dir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PZ_DATA_DIR", str(data_dir))
    from dagster_project.definitions import defs

    result = defs.resolve_job_def("nightly_refresh").execute_in_process(
        instance=DagsterInstance.ephemeral(), raise_on_error=False
    )
    failures = [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert result.success, f"failed steps: {failures}"
    return result


def published(data_dir: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(data_dir / "published" / "personalization.duckdb"), read_only=True)


def frame(con: duckdb.DuckDBPyConnection, sql: str) -> pd.DataFrame:
    return con.execute(sql).df()


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory: pytest.TempPathFactory):
    prepare_dbt_manifest()
    data_dir = tmp_path_factory.mktemp("pipeline")
    generate(data_dir, users=200, items=80, days=14, seed=7)
    with pytest.MonkeyPatch.context() as monkeypatch:
        result = run_pipeline(data_dir, monkeypatch)
    truth = json.loads((data_dir / "truth" / "manifest.json").read_text())
    metadata_text = " ".join(
        str(value.value)
        for event in result.get_asset_materialization_events()
        for value in event.materialization.metadata.values()
    )
    return data_dir, truth, metadata_text


def test_published_tables_have_the_design_columns_and_rows(sample_run):
    data_dir, _, _ = sample_run
    con = published(data_dir)
    for table, columns in DESIGN_COLUMNS.items():
        present = [r[0] for r in con.execute(f"describe {table}").fetchall()]
        assert set(columns) <= set(present), f"{table} lacks {set(columns) - set(present)}"
        assert con.execute(f"select count(*) from {table}").fetchall()[0][0] > 0, table


def test_every_file_reconciles_and_planted_broken_rows_are_quarantined(sample_run):
    data_dir, truth, _ = sample_run
    con = published(data_dir)
    manifest = frame(con, "select * from load_manifest")
    assert (manifest.rows_read == manifest.rows_loaded + manifest.rows_quarantined).all()
    written = {f["path"] for s in truth["sources"].values() for f in s["files"]}
    assert written <= set(manifest.file)
    quarantined = set(
        map(tuple, frame(con, "select file, line from quarantine")[["file", "line"]].values)
    )
    planted = {(b["file"], b["file_line"]) for b in truth["sources"]["events"]["broken_rows"]}
    assert planted <= quarantined


def test_events_are_deduplicated_utc_and_canonical(sample_run):
    data_dir, _, _ = sample_run
    con = published(data_dir)
    truth_events = duckdb.sql(
        f"select event_id, occurred_at from '{data_dir / 'truth' / 'events.parquet'}'"
    ).df()
    events = frame(con, "select event_id, occurred_at, event_type from events")
    assert events.event_id.is_unique
    merged = events.merge(truth_events, on="event_id", suffixes=("", "_true"))
    assert len(merged) == len(events), "every published event is a true event"
    assert (merged.occurred_at == merged.occurred_at_true).all(), "timestamps are true UTC"
    canonical = set(load_tunables().event_types) | {"unknown"}
    assert set(events.event_type) <= canonical


def test_every_profile_record_and_logged_in_visitor_maps_to_the_true_person(sample_run):
    data_dir, truth, _ = sample_run
    con = published(data_dir)
    records = pd.read_csv(data_dir / "truth" / "profile_records.csv")
    erased = {s["true_user_id"] for s in truth["erasure_subjects"]}
    records = records[~records.true_user_id.isin(erased)]
    mapped = frame(
        con,
        "select identifier as record_id, person_id from identity_map "
        "where identifier_type = 'record_id'",
    )
    joined = records.merge(mapped, on="record_id", how="left")
    assert joined.person_id.notna().all(), "every profile record is mapped to a person"
    # No two true people share a person_id (no over-merge) ...
    assert (joined.groupby("person_id").true_user_id.nunique() == 1).all()
    # ... and each anonymous id that logged in belongs to its user's person.
    anonymous = pd.read_csv(data_dir / "truth" / "anonymous_ids.csv")
    anonymous = anonymous[anonymous.logs_in & ~anonymous.true_user_id.isin(erased)]
    ids = frame(con, "select identifier_type, identifier, person_id from identity_map")
    users = ids[ids.identifier_type == "user_id"].set_index("identifier").person_id
    anons = ids[ids.identifier_type == "anonymous_id"].set_index("identifier").person_id
    stitched = (
        anons.reindex(anonymous.anonymous_id).to_numpy()
        == users.reindex(anonymous.true_user_id).to_numpy()
    )
    assert stitched.mean() >= 0.99


def test_every_consenting_person_gets_k_clean_recommendations(sample_run):
    data_dir, _, _ = sample_run
    con = published(data_dir)
    k = load_tunables().recommendations["top_k"]
    people = set(
        frame(
            con, "select person_id from user_profiles where has_personalization_consent"
        ).person_id
    )
    recs = frame(con, "select * from recommendations")
    assert set(recs.person_id) == people
    per_person = recs.groupby("person_id").agg(n=("rank", "size"), top=("rank", "max"))
    assert (per_person.n == k).all() and (per_person.top == k).all()
    assert not recs.duplicated(["person_id", "item_id"]).any()
    bought = frame(
        con, "select distinct person_id, item_id from events where event_type = 'purchase'"
    )
    assert recs.merge(bought, on=["person_id", "item_id"]).empty, "purchased items excluded"
    out_of_stock = set(frame(con, "select item_id from items where not is_in_stock").item_id)
    assert not set(recs.item_id) & out_of_stock


def test_revoked_consent_means_no_segments_and_no_recommendations(sample_run):
    data_dir, truth, _ = sample_run
    con = published(data_dir)
    revokers = truth["consent_revoking_users"]
    assert revokers, "the sample plants consent revocations"
    people = frame(
        con,
        "select person_id from identity_map where identifier_type = 'user_id' "
        f"and identifier in ({', '.join(repr(u) for u in revokers)})",
    ).person_id
    for table in ("recommendations", "user_segments"):
        held = frame(con, f"select distinct person_id from {table}").person_id
        assert not set(people) & set(held), table


def test_erased_people_are_gone_from_the_published_snapshot(sample_run):
    """Erased by user id or by email, each subject goes whole: their user id and every one of
    their profile records (linked deterministically or only by Splink) are in no published
    table, and the PII zone keeps no erasure evidence after the run."""
    data_dir, truth, _ = sample_run
    con = published(data_dir)
    erased_users = {s["true_user_id"] for s in truth["erasure_subjects"]}
    records = pd.read_csv(data_dir / "truth" / "profile_records.csv", dtype=str)
    erased_records = set(records[records["true_user_id"].isin(erased_users)]["record_id"])
    assert erased_records, "the erased subjects have profile records"
    for user in erased_users:
        hits = con.execute(
            "select count(*) from identity_map where identifier = $u", {"u": user}
        ).fetchall()[0][0]
        assert hits == 0, user
    tables = [
        r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()
    ]
    dump = " ".join(str(con.execute(f"select * from {t}").fetchall()) for t in tables)
    for identifier in sorted(erased_users | erased_records):
        assert f"'{identifier}'" not in dump, identifier
    pii = duckdb.connect(str(data_dir / "warehouse" / "pii.duckdb"), read_only=True)
    try:
        assert pii.execute("select count(*) from erasure_evidence").fetchall() == [(0,)]
    finally:
        pii.close()


def test_clusters_are_named_and_scored(sample_run):
    data_dir, _, _ = sample_run
    con = published(data_dir)
    quality = frame(con, "select * from segment_quality")
    assert quality.is_chosen.sum() == 1
    segments = frame(con, "select * from user_segments where segment_type = 'cluster'")
    assert segments.person_id.is_unique
    assert segments.segment_name.str.len().gt(0).all()
    assert segments.score.between(0, 1).all()


def test_the_nightly_dbt_builds_run_the_data_tests_and_not_the_unit_tests(sample_run):
    """dbt's unit tests check each model's SQL on fixed rows: tests/dbt_project runs them, the
    pipeline's builds do not (`dbt_build_args`), its data tests still run in every phase."""
    data_dir, _, _ = sample_run
    with published(data_dir) as con:
        (run_id,) = con.execute("select run_id from publish_info").fetchone()
    target = Path(dbt_project.project_dir) / os.getenv("DBT_TARGET_PATH", "target")
    manifest = json.loads((target / "manifest.json").read_text())
    assert manifest["unit_tests"], "the project has unit tests to leave out"
    ran: dict[str, set[str]] = {}
    for phase in ("dbt_pre_identity", "dbt_post_identity", "dbt_ml_marts"):
        (folder,) = target.glob(f"{phase}-{run_id[:7]}-*")
        results = json.loads((folder / "run_results.json").read_text())["results"]
        ran[phase] = {result["unique_id"].split(".")[0] for result in results}
    assert all("test" in kinds and "unit_test" not in kinds for kinds in ran.values()), ran
    assert {"model", "snapshot"} <= set().union(*ran.values())


def _tested_at(data_dir: Path) -> list:
    with duckdb.connect(str(data_dir / "warehouse" / "warehouse.duckdb"), read_only=True) as con:
        return [
            row[0]
            for row in con.execute(
                "select built_at from audit.incremental_baseline "
                "where kind = 'tested' and key = 'ml_marts'"
            ).fetchall()
        ]


def test_second_run_over_the_same_files_changes_nothing(sample_run, monkeypatch):
    data_dir, _, _ = sample_run
    con = published(data_dir)
    before = {
        t: frame(con, f"select * from {t}") for t in ("events", "identity_map", "recommendations")
    }
    manifest_rows = con.execute("select count(*) from load_manifest").fetchall()[0][0]
    con.close()
    first_tested = _tested_at(data_dir)
    run_pipeline(data_dir, monkeypatch)
    con = published(data_dir)
    assert con.execute("select count(*) from load_manifest").fetchall()[0][0] == manifest_rows
    # the whole ml_marts phase passed again: its tests read the lists served from then on
    assert len(first_tested) == 1 and len(_tested_at(data_dir)) == 1
    assert _tested_at(data_dir)[0] > first_tested[0]
    for table, old in before.items():
        new = frame(con, f"select * from {table}")
        keys = list(old.columns)
        pd.testing.assert_frame_equal(
            old.sort_values(keys).reset_index(drop=True),
            new.sort_values(keys).reset_index(drop=True),
        )


def test_a_landing_folder_with_only_events_runs_end_to_end(sample_run, tmp_path, monkeypatch):
    source_dir, _, _ = sample_run
    (tmp_path / "raw").mkdir()
    shutil.copytree(source_dir / "raw" / "events", tmp_path / "raw" / "events")
    run_pipeline(tmp_path, monkeypatch)
    con = published(tmp_path)
    for table in (
        "user_profiles",
        "identity_map",
        "events",
        "sessions",
        "user_features",
        "user_segments",
        "recommendations",
    ):
        assert con.execute(f"select count(*) from {table}").fetchall()[0][0] > 0, table


def plaintext_pii(raw: Path) -> list[str]:
    """Every email, phone and full name the generated raw files carry, as delivered."""
    people = duckdb.sql(
        f"""
        select email, phone, first_name || ' ' || last_name as full_name, address
        from read_csv('{raw}/profiles/*.csv', all_varchar = true)
        union all
        select email, phone, first_name || ' ' || last_name, address
        from read_json('{raw}/profiles/*.jsonl', format = 'newline_delimited',
                       columns = {{email: 'varchar', phone: 'varchar', first_name: 'varchar',
                                  last_name: 'varchar', address: 'varchar'}})
        """
    ).df()
    values = pd.concat([people[c] for c in people.columns]).dropna().str.strip().str.lower()
    junk = set(load_tunables().identity_junk_values)
    return sorted({v for v in values if len(v) >= 6 and v not in junk})


def test_no_plaintext_pii_in_published_tables_or_asset_metadata(sample_run):
    data_dir, _, metadata_text = sample_run
    secrets = plaintext_pii(data_dir / "raw")
    assert len(secrets) > 100, "the sample carries emails, phones, names and addresses"
    con = published(data_dir)
    tables = [
        r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()
    ]
    texts = [frame(con, f"select * from {t}").to_csv(index=False).lower() for t in tables]
    texts.append(metadata_text.lower())
    leaks = [s for s in secrets if any(s in text for text in texts)]
    assert not leaks, f"plaintext PII found: {leaks[:5]}"


def test_an_encrypted_warehouse_runs_and_cannot_be_opened_without_its_key(
    sample_run, tmp_path, monkeypatch
):
    source_dir, _, _ = sample_run
    (tmp_path / "raw").mkdir()
    for source in ("events", "profiles"):
        shutil.copytree(source_dir / "raw" / source, tmp_path / "raw" / source)
    key = "integration-test-encryption-key"
    monkeypatch.setenv("PZ_ENCRYPTION_KEY", key)
    result = run_pipeline(tmp_path, monkeypatch)
    logged = " ".join(
        str(event.message) + str(event.event_specific_data) for event in result.all_events
    )
    assert key not in logged, "the encryption key never reaches logs or metadata"
    for name in ("warehouse.duckdb", "pii.duckdb"):
        with pytest.raises(duckdb.Error, match="without a key"):
            duckdb.connect(str(tmp_path / "warehouse" / name))
    con = published(tmp_path)  # the published snapshot is the readers' surface: no PII, plain
    assert con.execute("select count(*) from recommendations").fetchall()[0][0] > 0
