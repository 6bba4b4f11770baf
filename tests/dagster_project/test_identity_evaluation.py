"""Scoring the identity map against labels in DuckDB gives the pairwise scores of pandas."""

from __future__ import annotations

import os

import duckdb
import numpy as np
import pandas as pd
import pytest

from dagster_project.identity.evaluation import (
    EVALUATION_TABLE,
    evaluate_against_files,
    score_anonymous_ids,
    score_records,
)
from models_ml.linkage import pairwise_scores


@pytest.fixture
def labelled():
    """An identity map of 3,000 records and labels for them: some records unmapped, some
    labels empty, a record id used by two source systems."""
    rng = np.random.default_rng(3)
    n = 3_000
    record_id = np.array([f"R{i % 2_900}" for i in range(n)])  # 100 ids in two systems
    source = np.where(np.arange(n) < 2_900, "crm_a", "crm_b")
    truth = rng.integers(0, 900, n).astype(str)
    truth[rng.random(n) < 0.02] = ""
    person = np.where(rng.random(n) < 0.9, "p" + truth, "p" + rng.integers(0, 900, n).astype(str))
    mapped = rng.random(n) < 0.95
    con = duckdb.connect()
    con.execute("create schema ml")
    con.register(
        "_map",
        pd.DataFrame({"identifier": record_id, "source_system": source, "person_id": person})[
            mapped
        ],
    )
    con.execute(
        "create table ml.identity_assignments as select 'record_id' as identifier_type, "
        "identifier, source_system, person_id from _map union all "
        "select 'user_id', 'R1', null, 'p-user'"  # another type with a record's id
    )
    labels = pd.DataFrame({"record_id": record_id, "source_system": source, "true_user_id": truth})
    expected = pairwise_scores(
        pd.Series(np.where(mapped, person, None)), pd.Series(truth, dtype=object)
    )
    yield con, labels, expected
    con.close()


def test_scores_in_duckdb_are_the_pairwise_scores(labelled):
    con, labels, expected = labelled
    scores = score_records(
        con,
        labels,
        record_id_column="record_id",
        cluster_column="true_user_id",
        source_system_column="source_system",
    )
    assert scores == pytest.approx(expected)
    assert 0 < scores["precision"] < 1 and 0 < scores["recall"] < 1
    assert scores["records"] == 3_000


def test_a_labels_file_is_scored_like_its_frame(labelled, tmp_path):
    con, labels, expected = labelled
    (tmp_path / "truth").mkdir()
    labels.to_csv(tmp_path / "truth/labels.csv", index=False)
    anonymous = pd.DataFrame(
        {"anonymous_id": ["a1", "a2", "a3"], "true_user_id": ["u1", "u2", "u3"]}
    ).assign(logs_in=["true", "True", "false"])
    anonymous.to_csv(tmp_path / "truth/anonymous.csv", index=False)
    con.execute(
        "insert into ml.identity_assignments values ('anonymous_id', 'a1', null, 'px'), "
        "('user_id', 'u1', null, 'px'), ('anonymous_id', 'a2', null, 'py'), "
        "('user_id', 'u2', null, 'pz')"
    )
    scores = evaluate_against_files(
        con,
        tmp_path,
        {
            "labels_path": "truth/labels.csv",
            "record_id_column": "record_id",
            "cluster_column": "true_user_id",
            "source_system_column": "source_system",
            "anonymous_ids_path": "truth/anonymous.csv",
        },
        run_id="r1",
    )
    assert {k: scores[k] for k in expected} == pytest.approx(expected)
    assert scores["anonymous_ids_checked"] == 2
    assert scores["anonymous_ids_stitched_share"] == 0.5
    assert score_anonymous_ids(con, anonymous) == {
        "anonymous_ids_checked": 2,
        "anonymous_ids_stitched_share": 0.5,
    }
    stored = con.execute(f"select run_id, f1 from {EVALUATION_TABLE}").fetchall()
    assert stored == [("r1", pytest.approx(expected["f1"]))]


def test_the_record_scores_are_reused_until_a_record_or_the_labels_change(labelled, tmp_path):
    """A night that moved no record and left the labels file alone stores the last record
    scores again; a record moved to another person, or a rewritten labels file, is scored."""
    con, labels, expected = labelled
    (tmp_path / "truth").mkdir()
    labels_file = tmp_path / "truth/labels.csv"
    labels.to_csv(labels_file, index=False)
    config = {
        "labels_path": "truth/labels.csv",
        "record_id_column": "record_id",
        "cluster_column": "true_user_id",
        "source_system_column": "source_system",
    }

    def evaluate(run_id: str) -> dict:
        return evaluate_against_files(con, tmp_path, config, run_id=run_id)

    first = evaluate("r1")
    assert first["record_scores_reused"] is False
    # devices move nightly; they are not records
    con.execute("insert into ml.identity_assignments values ('anonymous_id', 'a9', null, 'px')")
    second = evaluate("r2")
    assert second["record_scores_reused"] is True
    assert {k: second[k] for k in expected} == pytest.approx(expected)

    # one record joins another person: scored again, and the scores move
    record, person = con.execute(
        "select identifier, person_id from ml.identity_assignments "
        "where identifier_type = 'record_id' order by identifier limit 1"
    ).fetchall()[0]
    other = con.execute(
        "select person_id from ml.identity_assignments where identifier_type = 'record_id' "
        "and person_id <> $p order by identifier limit 1",
        {"p": person},
    ).fetchall()[0][0]
    con.execute(
        "update ml.identity_assignments set person_id = $o where identifier = $r",
        {"o": other, "r": record},
    )
    third = evaluate("r3")
    assert third["record_scores_reused"] is False
    rescored = score_records(
        con,
        labels,
        record_id_column="record_id",
        cluster_column="true_user_id",
        source_system_column="source_system",
    )
    assert {k: third[k] for k in rescored} == pytest.approx(rescored)
    assert (third["predicted_pairs"], third["true_positive_pairs"]) != (
        first["predicted_pairs"],
        first["true_positive_pairs"],
    )

    # a new labels file (one label changed) is scored again
    labels.loc[0, "true_user_id"] = "someone-else"
    labels.to_csv(labels_file, index=False)
    os.utime(labels_file, ns=(1, 1))
    fourth = evaluate("r4")
    assert fourth["record_scores_reused"] is False
    assert fourth["true_pairs"] != third["true_pairs"] or fourth["f1"] != third["f1"]
    runs = con.execute(f"select run_id from {EVALUATION_TABLE} order by run_id").fetchall()
    assert runs == [("r1",), ("r2",), ("r3",), ("r4",)]
