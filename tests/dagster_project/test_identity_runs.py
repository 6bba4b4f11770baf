"""Identity resolution across two runs on generated data: real ingest, dbt and Dagster assets.

Run 1 resolves the sample data; run 2 sees one record with a changed address and one new
record for an existing user. Checks: stitching quality against the truth, junk values linking
nothing, invalid field values nulled but the record still matched, person_ids kept across runs,
the SCD2 history (`user_profiles_history`) gaining a version for the changed address, and run 2
scoring only those two records with Splink's stored model.
"""

import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from dagster_project.sample_data import generate
from tests.dagster_project.pipeline_runs import run_until_profiles


def _frame(data_dir: Path, sql: str) -> pd.DataFrame:
    con = duckdb.connect(str(data_dir / "warehouse/warehouse.duckdb"), read_only=True)
    try:
        return con.sql(sql).df()
    finally:
        con.close()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("identity_runs")
    generate(data_dir, users=200, items=60, days=5, seed=11)
    first = {
        "links_run": run_until_profiles(data_dir),
        "map": _frame(data_dir, "select * from marts.identity_map"),
        "history": _frame(data_dir, "select * from snapshots.user_profiles_history"),
    }
    crm_a = data_dir / "raw/profiles/crm_a_customers.csv"
    records = pd.read_csv(crm_a, dtype=str, keep_default_na=False)
    moved = records[(records["user_id"] != "") & (records["address"] != "")].iloc[0]
    newest = records["updated_at"].max()  # the changed record becomes the freshest one
    is_moved = records["record_id"] == moved["record_id"]
    records.loc[is_moved, "address"] = "1 New Street"
    records.loc[is_moved, "updated_at"] = newest
    records.to_csv(crm_a, index=False)
    extra = records[records["record_id"] == moved["record_id"]].assign(
        record_id="C-000001", source_system="crm_c", address="1 New Street"
    )
    extra.to_csv(data_dir / "raw/profiles/crm_c_extra.csv", index=False)
    second = {
        "links_run": run_until_profiles(data_dir),
        "links": _frame(data_dir, "select * from ml.identity_links"),
        "map": _frame(data_dir, "select * from marts.identity_map"),
        "history": _frame(data_dir, "select * from snapshots.user_profiles_history"),
    }
    return data_dir, first, second, moved


def test_resolution_matches_the_truth_every_run(runs):
    data_dir, *_ = runs
    scores = _frame(data_dir, "select * from ml.identity_evaluation order by evaluated_at")
    assert len(scores) == 2
    assert (scores["f1"] >= 0.95).all(), scores
    assert (scores["anonymous_ids_stitched_share"] >= 0.95).all(), scores


def test_junk_values_never_link_and_no_person_holds_two_user_ids(runs):
    data_dir, _, second, _ = runs
    truth = pd.read_csv(data_dir / "truth/profile_records.csv", dtype=str)
    records = second["map"][second["map"]["identifier_type"] == "record_id"]
    joined = records.merge(truth, left_on="identifier", right_on="record_id")
    # records of different true users never share a person (junk emails included)
    assert (joined.groupby("person_id")["true_user_id"].nunique() == 1).all()
    users = second["map"][second["map"]["identifier_type"] == "user_id"]
    assert (users.groupby("person_id")["identifier"].nunique() == 1).all()
    edges = _frame(data_dir, "select * from intermediate.int_identity_edges")
    junk = _frame(data_dir, "select junk_value from staging.stg_config__identity_junk_values")
    linked = edges["node_key_b"].str.split("|").str[2]
    assert not linked.isin(junk["junk_value"]).any()


def test_invalid_field_values_are_nulled_but_the_record_is_matched(runs):
    data_dir, _, second, _ = runs
    manifest = pd.read_json(data_dir / "truth/manifest.json", typ="series")
    impossible = pd.DataFrame(manifest["sources"]["profiles"]["impossible_values"])
    bad_dates = impossible[impossible["field"] == "birth_date"]["record_id"]
    profiles = _frame(data_dir, "select * from intermediate.int_profiles_deduplicated")
    bad = profiles[profiles["record_id"].isin(bad_dates)]
    assert len(bad) > 0 and bad["birth_date"].isna().all()
    assert set(bad["record_id"]) <= set(second["map"]["identifier"])


def test_person_ids_are_stable_across_runs(runs):
    _, first, second, moved = runs
    keys = ["identifier_type", "identifier", "source_system"]
    both = first["map"].merge(second["map"], on=keys, suffixes=("_1", "_2"))
    assert len(both) == len(first["map"])
    assert (both["person_id_1"] == both["person_id_2"]).all()
    new = second["map"][second["map"]["identifier"] == "C-000001"]["person_id"]
    old = second["map"][second["map"]["identifier"] == moved["record_id"]]["person_id"]
    assert new.tolist() == old.tolist()  # the new record joined the existing person


def test_a_changed_address_adds_a_history_version(runs):
    _, first, second, moved = runs
    person = first["map"].set_index("identifier").loc[moved["record_id"], "person_id"]
    before = first["history"][first["history"]["person_id"] == person]
    after = second["history"][second["history"]["person_id"] == person]
    assert len(before) == 1 and before["valid_to"].isna().all()
    assert len(after) == 2
    assert after["valid_to"].isna().sum() == 1
    assert after["address_token"].nunique() == 2
    unchanged = second["history"].groupby("person_id").size()
    assert (unchanged.drop(person) == 1).sum() > 0.9 * len(unchanged)


def _pairs(links: pd.DataFrame) -> pd.DataFrame:
    return links.sort_values(["node_key_a", "node_key_b"], ignore_index=True)


def test_the_second_run_scores_only_the_changed_records_and_links_as_scoring_all(runs):
    """Run 2 reused run 1's model and scored the changed and the new record against all: its
    links are those of every pair scored with the same model (a kept link's probability may
    move with the term frequencies of the record added); a run with nothing changed keeps
    them all without Splink."""
    from datetime import UTC, datetime

    from dagster_project.identity.erasure import link_and_erase
    from dagster_project.resources import WarehouseResource
    from dagster_project.tunables import load_identity_tunables

    data_dir, first, second, moved = runs
    assert first["links_run"]["splink_model"] == "trained"
    assert first["links_run"]["records_rescored"] == first["links_run"]["records"]
    assert second["links_run"]["splink_model"] == "stored model reused"
    assert second["links_run"]["records_rescored"] == 2, second["links_run"]["scoring"]
    stored = _pairs(second["links"])
    changed = {f"record_id|crm_a|{moved['record_id']}", "record_id|crm_c|C-000001"}
    touching = stored["node_key_a"].isin(changed) | stored["node_key_b"].isin(changed)
    pairs = set(zip(stored["node_key_a"], stored["node_key_b"], strict=True))
    assert tuple(sorted(changed)) in pairs

    warehouse = WarehouseResource(data_dir=str(data_dir))
    now = datetime.now(UTC).replace(tzinfo=None)
    tunables = load_identity_tunables()
    with warehouse.connect(with_pii_zone=True) as con:
        every_pair, info, _ = link_and_erase(con, tunables, now, score_all=True)
        kept, info_kept, _ = link_and_erase(con, tunables, now)
    assert info["model_trained"] is False and info["records_rescored"] == info["records"]
    every_pair = _pairs(every_pair)
    pd.testing.assert_frame_equal(
        stored[["node_key_a", "node_key_b", "method"]],
        every_pair[["node_key_a", "node_key_b", "method"]],
    )
    pd.testing.assert_series_equal(
        stored["match_probability"][touching], every_pair["match_probability"][touching]
    )
    assert (stored["match_probability"] - every_pair["match_probability"]).abs().max() < 0.01
    assert info_kept["records_rescored"] == 0 and "seconds_model" not in info_kept
    pd.testing.assert_frame_equal(_pairs(kept), every_pair)


def test_a_run_with_no_record_changed_keeps_every_link_without_reading_the_records(
    runs, tmp_path, monkeypatch
):
    """When the records are as the last run left them (a digest of what they are read from)
    and the stored model still fits, the links are kept without reading the records into
    pandas: the same links and run metadata as reading them. One changed field reads them."""
    from datetime import UTC, datetime

    from dagster_project.identity import erasure as identity_erasure
    from dagster_project.identity.erasure import link_and_erase
    from dagster_project.resources import WarehouseResource
    from dagster_project.tunables import load_identity_tunables

    data_dir, *_ = runs
    copy = tmp_path / "data"
    shutil.copytree(data_dir / "warehouse", copy / "warehouse")
    warehouse = WarehouseResource(data_dir=str(copy))
    now = datetime.now(UTC).replace(tzinfo=None)
    tunables = load_identity_tunables()
    timings = ("step_seconds", "seconds")
    with warehouse.connect(with_pii_zone=True) as con:
        con.execute("drop table if exists pii.main.identity_records_digest")
        read, read_info, _ = link_and_erase(con, tunables, now)
        assert read_info["records_rescored"] == 0, read_info["scoring"]

        def not_read(_con):
            raise AssertionError("the records were read")

        monkeypatch.setattr(identity_erasure, "read_profile_records", not_read)
        kept, kept_info, _ = link_and_erase(con, tunables, now)
        pd.testing.assert_frame_equal(kept, read)
        assert {k: v for k, v in kept_info.items() if k not in timings} == {
            k: v for k, v in read_info.items() if k not in timings
        }
        con.execute(
            """
            update pii.main.profiles set first_name = 'Zebulon'
            from (select _file, _line from intermediate.int_profiles_deduplicated
                  order by record_id limit 1) as d
            where profiles._file = d._file and profiles._line = d._line
            """
        )
        with pytest.raises(AssertionError, match="the records were read"):
            link_and_erase(con, tunables, now)
