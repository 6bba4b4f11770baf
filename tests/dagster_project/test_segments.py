"""Segments on generated data: real ingest, dbt and Dagster assets, two runs and a shifted one.

Trigger segments (dbt, from segments.yaml) are checked against the generator's planted engaged
sessions; cluster and propensity segments only reach consenting people; cluster ids, names and
centroids persist between runs; drift is ~0 between identical runs and flagged (the asset check
warns) after a planted shift; model selection (k, the propensity family) is reused until due.
"""

import dataclasses
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from dagster import materialize

from dagster_project.assets.identity import identity_assets
from dagster_project.assets.ingest import ingest_assets, pipeline_config
from dagster_project.assets.segments import (
    AFFINITY_SQL,
    FEATURES_SQL,
    PROPENSITY_SCORES_SQL,
    cluster_segments_asset,
    drift_inputs,
    previous_k,
    previous_propensity_evaluation,
    propensity_segments_asset,
    read_clustering_matrix,
    segment_assets,
    segment_checks,
)
from dagster_project.resources import WarehouseResource
from dagster_project.sample_data import generate
from dagster_project.tunables import load_tunables
from dagster_project.warehouse_io import read_frame
from models_ml.features import clustering_matrix

ROOT = Path(__file__).resolve().parents[2]
DBT = str(Path(sys.executable).with_name("dbt"))


def _dbt(*args: str) -> None:
    profiles_dir = os.environ.get("PZ_TEST_DBT_PROFILES_DIR", str(ROOT / "dbt_project"))
    command = [DBT, "build", "--project-dir", str(ROOT / "dbt_project")]
    done = subprocess.run(
        [*command, "--profiles-dir", profiles_dir, *args], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-4000:]


def _frame(data_dir: Path, sql: str) -> pd.DataFrame:
    con = duckdb.connect(str(data_dir / "warehouse/warehouse.duckdb"), read_only=True)
    try:
        return con.sql(sql).df()
    finally:
        con.close()


def _segment_run(data_dir: Path):
    resources = {"warehouse": WarehouseResource(data_dir=str(data_dir))}
    result = materialize([*segment_assets, *segment_checks], resources=resources)
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == 1
    return evaluations[0]


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("segments")
    generate(data_dir, users=400, items=80, days=21, seed=5)
    os.environ["PZ_WAREHOUSE_PATH"] = str(data_dir / "warehouse/warehouse.duckdb")
    resources = {"warehouse": WarehouseResource(data_dir=str(data_dir))}
    assert materialize([pipeline_config, *ingest_assets], resources=resources).success
    _dbt("--selector", "pre_identity")
    assert materialize(identity_assets, resources=resources).success
    _dbt("--selector", "post_identity")
    return data_dir


@pytest.fixture(scope="module")
def people(warehouse):
    """person_id -> user_id and the truth about that user."""
    identity = _frame(
        warehouse,
        "select identifier as user_id, person_id from marts.identity_map "
        "where identifier_type = 'user_id'",
    )
    truth = pd.read_csv(warehouse / "truth/users.csv")
    return identity.merge(truth, on="user_id")


def test_engaged_shoppers_match_the_planted_sessions(warehouse, people):
    members = _frame(
        warehouse,
        "select person_id from intermediate.int_segment_triggers "
        "where segment_id = 'engaged_shoppers'",
    )
    planted = set(people.loc[people["is_engaged_shopper"], "person_id"])
    found = set(members["person_id"])
    true_positives = len(found & planted)
    assert true_positives / len(found) >= 0.95
    assert true_positives / len(planted) >= 0.95


def test_every_trigger_of_the_yaml_is_compiled_and_rfm_tiers_split_the_buyers(warehouse):
    triggers = _frame(warehouse, "select * from intermediate.int_segment_triggers")
    configured = set(load_tunables().trigger_rules["segment_id"])
    assert set(triggers["segment_id"]) == configured
    assert (triggers["segment_type"] == "trigger").all()
    buyers = _frame(
        warehouse, "select person_id from intermediate.int_segment_metrics where frequency >= 1"
    )
    tiers = triggers[triggers["segment_id"].str.startswith("rfm_")]
    assert sorted(tiers["person_id"]) == sorted(buyers["person_id"])  # each buyer in one tier
    assert tiers["score"].between(0, 1).all()
    assert (triggers.loc[triggers["segment_id"] == "new_visitors", "score"] == 1.0).all()


@pytest.fixture(scope="module")
def two_runs(warehouse):
    first_check = _segment_run(warehouse)
    first = _frame(warehouse, "select * from ml.user_segments")
    second_check = _segment_run(warehouse)
    second = _frame(warehouse, "select * from ml.user_segments")
    return first, second, first_check, second_check


def test_cluster_and_propensity_segments_only_for_consenting_people(warehouse, two_runs):
    consenting = set(
        _frame(
            warehouse, "select person_id from marts.user_features where has_personalization_consent"
        )["person_id"]
    )
    clusters = two_runs[0]
    propensity = _frame(warehouse, "select * from ml.propensity_segments")
    assert set(clusters["person_id"]) == consenting
    assert set(propensity["person_id"]) <= consenting and len(propensity) > 0
    assert propensity["score"].between(0, 1).all()
    assert (propensity["segment_type"] == "propensity").all()
    evaluation = _frame(warehouse, "select * from ml.propensity_evaluation")
    assert set(evaluation["model"]) == {"logistic_regression", "gradient_boosting"}
    assert evaluation["auc"].notna().all()


def test_cluster_ids_and_names_are_stable_across_runs(warehouse, two_runs):
    first, second = two_runs[0], two_runs[1]
    merged = first.merge(second, on="person_id", suffixes=("_1", "_2"))
    assert len(merged) == len(first)
    assert (merged["segment_id_1"] == merged["segment_id_2"]).all()
    assert (merged["segment_name_1"] == merged["segment_name_2"]).all()
    runs = _frame(warehouse, "select count(distinct run_at) as n from ml.cluster_centroids")
    assert runs["n"].iloc[0] == 2
    quality = _frame(warehouse, "select count(distinct run_at) as n from ml.segment_quality")
    assert quality["n"].iloc[0] == 2


def test_identical_runs_do_not_drift_and_a_shift_is_flagged(warehouse, two_runs):
    first_check, second_check = two_runs[2], two_runs[3]
    assert first_check.passed and second_check.passed
    drift = _frame(warehouse, "select * from ml.segment_drift")
    assert drift["run_at"].nunique() == 1  # the first run had nothing to compare with
    assert drift["psi"].max() < 1e-9
    kinds = set(drift["drift_kind"])
    assert kinds == {"segment_share", "feature"}

    con = duckdb.connect(str(warehouse / "warehouse/warehouse.duckdb"))
    try:  # a planted shift: half of the people move to mobile
        con.execute(
            "update marts.user_features set share_device_mobile = 1.0 where hash(person_id) % 2 = 0"
        )
    finally:
        con.close()
    shifted_check = _segment_run(warehouse)
    assert not shifted_check.passed
    assert shifted_check.severity.value == "WARN"
    latest = _frame(
        warehouse,
        "select * from ml.segment_drift where run_at = (select max(run_at) from ml.segment_drift)",
    ).set_index("subject")
    assert latest.loc["share_device_mobile", "is_above_threshold"]

    _dbt("--select", "user_segments", "segment_drift", "segment_quality")
    segments = _frame(
        warehouse, "select segment_type, count(*) as n from marts.user_segments group by all"
    )
    assert set(segments["segment_type"]) == {"trigger", "cluster", "propensity"}
    assert _frame(warehouse, "select count(*) as n from marts.segment_drift")["n"].iloc[0] > 0


def _pandas_matrix(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return clustering_matrix(read_frame(con, FEATURES_SQL), read_frame(con, AFFINITY_SQL))


def test_the_clustering_matrix_query_gives_the_pandas_matrix(warehouse, two_runs):
    con = duckdb.connect(str(warehouse / "warehouse/warehouse.duckdb"), read_only=True)
    try:
        computed, expected = read_clustering_matrix(con), _pandas_matrix(con)
        shares, distributions = drift_inputs(con)
        scores = read_frame(con, PROPENSITY_SCORES_SQL)
        tables = con.execute("select table_name from duckdb_tables() where schema_name = 'ml'")
        assert "_pz_clustering_matrix" not in {name for (name,) in tables.fetchall()}
    finally:
        con.close()
    assert len(computed) > 100 and any(c.startswith("affinity_") for c in computed.columns)
    pd.testing.assert_frame_equal(computed, expected)
    assert len(shares) > 0
    # the drift step's features: the matrix and each propensity score, pivoted in DuckDB
    pivoted = scores.pivot(index="person_id", columns="subject", values="score")
    assert len(pivoted.columns) > 0
    pd.testing.assert_frame_equal(distributions, expected.join(pivoted), check_names=False)


def test_the_clustering_matrix_query_on_edge_cases():
    """Categories whose slugs meet, a category only a person without consent has, null and
    negative values, a person without affinities, a text and a timestamp column."""
    con = duckdb.connect()
    con.execute("create schema marts")
    con.execute(
        """create table marts.user_features as select * from (values
            ('p2', null::double, 3::bigint, -5.0::double, null::bigint, true, 'x', now(), 30, true),
            ('p1', 2.0, null, 120.0, 4, false, 'y', now(), null, true),
            ('p3', 9.0, 0, 0.0, 7, false, 'z', now(), 50, false),
            ('p4', 5.0, 1, 10.0, 0, true, null, now(), 40, true)
        ) as t(person_id, recency_days, frequency, monetary, n_events, is_member, segment_note,
               updated_at, age, has_personalization_consent)"""
    )
    con.execute(
        """create table marts.user_category_affinity as select * from (values
            ('p1', 'Home & Garden', 0.5), ('p1', 'home garden', 0.25), ('p1', null, 0.1),
            ('p2', 'Toys', null), ('p2', 'books', 1.0), ('p3', 'Only Unconsented', 0.9)
        ) as t(person_id, category, affinity)"""
    )
    computed, expected = read_clustering_matrix(con), _pandas_matrix(con)
    assert list(computed.columns) == [
        "recency_days",
        "frequency",
        "monetary",
        "n_events",
        "is_member",
        "age",
        "affinity_books",
        "affinity_home_garden",
        "affinity_toys",
    ]
    pd.testing.assert_frame_equal(computed, expected)
    assert computed.loc["p1", "affinity_home_garden"] == 0.75
    assert computed.loc["p2", "recency_days"] == 5.0  # missing: the largest recency


def _selections(data_dir: Path) -> pd.DataFrame:
    return _frame(data_dir, "select * from audit.model_selection order by selected_at")


def _model_selection_run(data_dir: Path) -> dict[str, str]:
    """Cluster and propensity segments materialized once: step -> `model_selection` metadata."""
    resources = {"warehouse": WarehouseResource(data_dir=str(data_dir))}
    result = materialize([cluster_segments_asset, propensity_segments_asset], resources=resources)
    assert result.success
    return {
        step: result.asset_materializations_for_node(node)[0].metadata["model_selection"].text
        for step, node in (
            ("clustering", "cluster_segments"),
            ("propensity", "propensity_segments"),
        )
    }


def test_model_selection_is_reused_until_it_is_due(warehouse, two_runs, tmp_path, monkeypatch):
    """A run within `reselect_every_days` of the last model selection fits only the chosen k
    and refits the chosen propensity family, appending no evaluation; `reselect_every_days: 0`,
    data past the window, a full refresh, changed settings and a backfill select again."""
    selections = _selections(warehouse)
    assert sorted(selections["step"]) == ["clustering", "propensity"]  # the second run reused
    assert _frame(warehouse, "select distinct run_at from ml.propensity_evaluation").shape[0] == 1
    k = int(selections.set_index("step").loc["clustering", "chosen"])
    quality = _frame(warehouse, "select * from ml.segment_quality order by run_at, k")
    assert quality[quality["run_at"] == quality["run_at"].min()]["k"].nunique() > 1
    assert quality[quality["run_at"] == quality["run_at"].max()]["k"].tolist() == [k]

    data_dir = tmp_path / "copy"
    shutil.copytree(warehouse, data_dir)
    evaluation = _frame(data_dir, "select * from ml.propensity_evaluation order by model")
    scores = _frame(data_dir, "select * from ml.propensity_segments order by person_id")
    reused = _model_selection_run(data_dir)
    assert all(text.startswith("reused (selection of ") for text in reused.values()), reused
    assert len(_selections(data_dir)) == 2
    after = _frame(data_dir, "select * from ml.propensity_evaluation order by model")
    pd.testing.assert_frame_equal(after, evaluation)
    # the chosen family refitted on the same window scores as the selection's refit did
    pd.testing.assert_frame_equal(
        _frame(data_dir, "select * from ml.propensity_segments order by person_id"), scores
    )

    tunables = load_tunables()

    def use_settings(clustering: dict, propensity: dict) -> None:
        segments = {**tunables.segments, "clustering": clustering, "propensity": propensity}
        changed = dataclasses.replace(tunables, segments=segments)
        monkeypatch.setattr("dagster_project.assets.segments.load_tunables", lambda: changed)

    clustering, propensity = tunables.clustering, tunables.segment_settings("propensity")
    con = duckdb.connect(str(data_dir / "warehouse/warehouse.duckdb"), read_only=True)
    try:  # a run back in time must not choose with later data
        as_of = _selections(data_dir)["as_of"].iloc[-1] - pd.Timedelta(hours=1)
        assert previous_k(con, clustering, as_of)[0] is None
        _, why = previous_propensity_evaluation(con, propensity, "propensity_purchase_7d", as_of)
        assert "after this run's as_of" in why
    finally:
        con.close()

    def selects_again(reason: str) -> None:
        before = len(_selections(data_dir))
        ran = _model_selection_run(data_dir)
        assert all(text.startswith("ran (") and reason in text for text in ran.values()), ran
        assert len(_selections(data_dir)) == before + 2
        runs = _frame(data_dir, "select count(distinct run_at) as n from ml.propensity_evaluation")
        assert runs["n"].iloc[0] == (before + 2) // 2

    every_run = {"reselect_every_days": 0}
    use_settings({**clustering, **every_run}, {**propensity, **every_run})
    selects_again("every run")
    monkeypatch.undo()

    con = duckdb.connect(str(data_dir / "warehouse/warehouse.duckdb"))
    try:  # the next night's data is a window later
        days = int(clustering["reselect_every_days"])
        assert days == propensity["reselect_every_days"]
        con.execute(
            f"update intermediate.int_run_settings_resolved set as_of = as_of + interval {days} day"
        )
    finally:
        con.close()
    selects_again("days of data old")

    monkeypatch.setenv("PZ_FULL_REFRESH", "1")
    selects_again("full refresh requested")
    monkeypatch.delenv("PZ_FULL_REFRESH")

    reseeded = {"random_state": 7}
    assert clustering["random_state"] != 7 and propensity["random_state"] != 7
    use_settings({**clustering, **reseeded}, {**propensity, **reseeded})
    selects_again("settings changed")


def _model_fitted(data_dir: Path, asset, node: str) -> str:
    """`asset` materialized once: the `model_fitted` metadata of its first materialization."""
    resources = {"warehouse": WarehouseResource(data_dir=str(data_dir))}
    result = materialize([asset], resources=resources)
    assert result.success
    return result.asset_materializations_for_node(node)[0].metadata["model_fitted"].text


def _propensity_run(data_dir: Path) -> str:
    return _model_fitted(data_dir, propensity_segments_asset, "propensity_segments")


def _clustering_run(data_dir: Path) -> str:
    return _model_fitted(data_dir, cluster_segments_asset, "cluster_segments")


def _replace_stored_model(data_dir: Path, step: str, model) -> None:
    con = duckdb.connect(str(data_dir / "warehouse/warehouse.duckdb"))
    try:
        con.execute(
            "update ml.fitted_models set model = $m where step = $step",
            {"m": pickle.dumps(model), "step": step},
        )
    finally:
        con.close()


def _erasure_after_the_stored_model(data_dir: Path, step: str) -> None:
    con = duckdb.connect(str(data_dir / "warehouse/warehouse.duckdb"))
    try:
        con.execute(
            "insert into audit.erasure_registry (subject_token, identifier_type, registered_at) "
            "select 't', 'user_id', fitted_at + interval 1 second from ml.fitted_models "
            "where step = $step",
            {"step": step},
        )
    finally:
        con.close()


def test_between_selections_the_selections_model_scores(warehouse, two_runs, tmp_path):
    """The model a selection fitted is kept in ml.fitted_models and scores the nights until the
    next selection; after an erasure registered since it was fitted, the night refits it on the
    latest labelled window (the erased person's history must not shape scores) and keeps that."""
    data_dir = tmp_path / "copy"
    shutil.copytree(warehouse, data_dir)
    assert _propensity_run(data_dir).startswith("stored model fitted ")
    stored = _frame(data_dir, "select * from ml.fitted_models order by step")
    assert stored[["step", "name"]].values.tolist() == [
        ["clustering", "segmenter"],
        ["propensity", "propensity_purchase_7d"],
    ]
    stored = stored[stored["step"] == "propensity"]
    selection = _frame(data_dir, "select max(run_at) as at from ml.propensity_evaluation")
    assert stored["selection_run_at"].iloc[0] == selection["at"].iloc[0]

    # the stored model is what scores: one that predicts its base rate gives that to everyone
    model = pickle.loads(stored["model"].iloc[0])
    model.model_, model.base_rate_ = None, 0.123
    _replace_stored_model(data_dir, "propensity", model)
    assert _propensity_run(data_dir).startswith("stored model fitted ")
    scores = _frame(data_dir, "select score from ml.propensity_segments")["score"]
    assert len(scores) and (scores == 0.123).all()

    _erasure_after_the_stored_model(data_dir, "propensity")
    said = _propensity_run(data_dir)
    assert said == (
        "refitted on the latest labelled window (an erasure was registered after the stored "
        "model was fitted)"
    )
    scores = _frame(data_dir, "select score from ml.propensity_segments")["score"]
    assert scores.nunique() > 1
    refitted = _frame(data_dir, "select fitted_at from ml.fitted_models where step = 'propensity'")[
        "fitted_at"
    ].iloc[0]
    assert refitted > stored["fitted_at"].iloc[0]
    assert _propensity_run(data_dir).startswith("stored model fitted ")  # and kept


def test_between_selections_people_are_assigned_to_the_selections_clusters(
    warehouse, two_runs, tmp_path
):
    """The segmenter a clustering selection fitted is kept in ml.fitted_models (without its
    per-person rows) and assigns everyone on the nights until the next selection; it is fitted
    again (the chosen k) when the features changed or an erasure was registered since."""
    data_dir = tmp_path / "copy"
    shutil.copytree(warehouse, data_dir)
    assert _clustering_run(data_dir).startswith("stored model fitted ")
    stored = _frame(data_dir, "select * from ml.fitted_models where step = 'clustering'")
    selection = _selections(data_dir).set_index("step").loc["clustering"]
    assert stored["selection_run_at"].iloc[0] == selection["selected_at"]
    segmenter = pickle.loads(stored["model"].iloc[0])
    assert not hasattr(segmenter, "embedding_")
    assert segmenter.k_ == int(selection["chosen"])

    # the stored segmenter is what assigns: its names are tonight's segment names
    segmenter.cluster_names_ = {c: f"renamed {c}" for c in segmenter.cluster_names_}
    _replace_stored_model(data_dir, "clustering", segmenter)
    assert _clustering_run(data_dir).startswith("stored model fitted ")
    segments = _frame(
        data_dir, "select * from ml.user_segments where segment_type = 'cluster' order by person_id"
    )
    con = duckdb.connect(str(data_dir / "warehouse/warehouse.duckdb"), read_only=True)
    try:
        matrix = read_clustering_matrix(con)
    finally:
        con.close()
    expected = segmenter.predict(matrix.loc[segments["person_id"]])
    assert segments["segment_id"].tolist() == [f"cluster_{c}" for c in expected]
    assert segments["segment_name"].tolist() == [f"renamed {c}" for c in expected]
    quality = _frame(data_dir, "select * from ml.segment_quality order by run_at")
    assert quality[quality["run_at"] == quality["run_at"].max()]["k"].tolist() == [segmenter.k_]

    # features it was not fitted on: the chosen k is fitted again, and kept
    segmenter.feature_names_in_ = segmenter.feature_names_in_[::-1]
    _replace_stored_model(data_dir, "clustering", segmenter)
    assert _clustering_run(data_dir) == (
        "the chosen k fitted again (the features changed since the stored segmenter was fitted)"
    )
    names = _frame(data_dir, "select distinct segment_name from ml.user_segments")
    assert not names["segment_name"].str.startswith("renamed").any()
    assert _clustering_run(data_dir).startswith("stored model fitted ")

    _erasure_after_the_stored_model(data_dir, "clustering")
    assert _clustering_run(data_dir) == (
        "the chosen k fitted again (an erasure was registered after the stored model was fitted)"
    )


def test_the_nightly_score_frame_from_person_activity_is_the_one_from_the_events(warehouse):
    """At the as-of time int_person_activity was built with, the propensity score frame is
    read from it (and the events of the last horizon); it equals the frame computed from every
    event. At another cutoff (a selection's past windows) the events are read."""
    from dagster_project.assets.segments import (
        PROPENSITY_FRAME_SQL,
        PROPENSITY_SCORE_FROM_ACTIVITY_SQL,
        _as_of,
        _frame_sql,
    )

    con = duckdb.connect(str(warehouse / "warehouse/warehouse.duckdb"), read_only=True)
    try:
        as_of = _as_of(con)
        assert _frame_sql(con, "purchase", as_of) == PROPENSITY_SCORE_FROM_ACTIVITY_SQL
        earlier = as_of - pd.Timedelta(days=7)
        assert _frame_sql(con, "purchase", earlier) == PROPENSITY_FRAME_SQL
        assert _frame_sql(con, "add_to_cart", as_of) == PROPENSITY_FRAME_SQL
        params = {"cutoff": as_of, "target": "purchase", "horizon": 7}
        fast = con.execute(PROPENSITY_SCORE_FROM_ACTIVITY_SQL, params).df()
        slow = con.execute(PROPENSITY_FRAME_SQL, params).df()
    finally:
        con.close()
    assert len(slow) > 100 and slow["n_recent_sessions"].gt(0).any()
    assert slow["days_since_target"].notna().any() and slow["days_since_target"].isna().any()
    pd.testing.assert_frame_equal(fast, slow, check_dtype=False, rtol=1e-12)
