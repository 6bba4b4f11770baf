"""Scoring the resolved identities against labelled records (pairwise precision/recall/F1).

`python -m dagster_project.identity.evaluate --labels FILE.csv` scores the current warehouse
against any labelled CSV; the `ml/identity_evaluation` asset scores every run against the
labels file named in identity.yaml when it exists (the sample generator's ground truth).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd

from dagster_project.warehouse_io import read_frame
from models_ml.linkage import pairwise_scores

EVALUATION_TABLE = "ml.identity_evaluation"
EVALUATION_COLUMNS = {
    "evaluated_at": "timestamp",
    "run_id": "varchar",
    "dataset": "varchar",
    "records": "bigint",
    "predicted_pairs": "bigint",
    "true_pairs": "bigint",
    "true_positive_pairs": "bigint",
    "precision": "double",
    "recall": "double",
    "f1": "double",
    "anonymous_ids_checked": "bigint",
    "anonymous_ids_stitched_share": "double",
}


def ensure_evaluation_table(con: duckdb.DuckDBPyConnection) -> None:
    columns = ", ".join(f"{name} {kind}" for name, kind in EVALUATION_COLUMNS.items())
    con.execute("create schema if not exists ml")
    con.execute(f"create table if not exists {EVALUATION_TABLE} ({columns})")


def score_records(
    con: duckdb.DuckDBPyConnection,
    labels: pd.DataFrame,
    *,
    record_id_column: str,
    cluster_column: str,
    source_system_column: str | None = None,
) -> dict:
    """Pairwise scores of `ml.identity_assignments` against one label per record."""
    columns = [record_id_column, cluster_column]
    if source_system_column and source_system_column in labels.columns:
        columns.append(source_system_column)
    frame = (
        labels[columns]
        .astype(str)
        .rename(columns={record_id_column: "record_id", cluster_column: "cluster"})
    )
    if len(columns) == 3:
        frame = frame.rename(columns={source_system_column: "source_system"})
        on = "a.identifier = l.record_id and coalesce(a.source_system, '') = l.source_system"
    else:
        on = "a.identifier = l.record_id"
    con.register("_pz_labels", frame)
    try:
        joined = read_frame(
            con,
            f"""
            select l.cluster, a.person_id
            from _pz_labels as l
            left join ml.identity_assignments as a
                on a.identifier_type = 'record_id' and {on}
            """,
        )
    finally:
        con.unregister("_pz_labels")
    return pairwise_scores(joined["person_id"], joined["cluster"])


def score_anonymous_ids(con: duckdb.DuckDBPyConnection, truth: pd.DataFrame) -> dict:
    """Share of anonymous ids that logged in and share the person of their true user_id."""
    logged_in = truth[truth["logs_in"].astype(str).str.lower() == "true"]
    con.register("_pz_anon", logged_in[["anonymous_id", "true_user_id"]].astype(str))
    try:
        checked, stitched = con.execute(
            """
            select count(*), count(*) filter (where device.person_id = person.person_id)
            from _pz_anon as t
            left join ml.identity_assignments as device
                on device.identifier_type = 'anonymous_id' and device.identifier = t.anonymous_id
            left join ml.identity_assignments as person
                on person.identifier_type = 'user_id' and person.identifier = t.true_user_id
            """
        ).fetchall()[0]
    finally:
        con.unregister("_pz_anon")
    return {
        "anonymous_ids_checked": int(checked),
        "anonymous_ids_stitched_share": stitched / checked if checked else None,
    }


def store_evaluation(
    con: duckdb.DuckDBPyConnection, scores: dict, *, dataset: str, run_id: str
) -> pd.DataFrame:
    """Append one row to ml.identity_evaluation and return it."""
    ensure_evaluation_table(con)
    row = {name: scores.get(name) for name in EVALUATION_COLUMNS}
    row.update(evaluated_at=datetime.now(UTC).replace(tzinfo=None), run_id=run_id, dataset=dataset)
    frame = pd.DataFrame([row])
    con.register("_pz_eval", frame)
    try:
        names = ", ".join(EVALUATION_COLUMNS)
        casts = ", ".join(f"cast({n} as {k})" for n, k in EVALUATION_COLUMNS.items())
        con.execute(f"insert into {EVALUATION_TABLE} ({names}) select {casts} from _pz_eval")
    finally:
        con.unregister("_pz_eval")
    return frame


def evaluate_against_files(
    con: duckdb.DuckDBPyConnection,
    data_dir: Path,
    evaluation: dict,
    *,
    run_id: str,
) -> dict | None:
    """Score against the configured labels file under `data_dir`; None when it is absent."""
    labels_path = data_dir / evaluation["labels_path"]
    if not labels_path.exists():
        return None
    labels = pd.read_csv(labels_path, dtype=str, keep_default_na=False)
    scores = score_records(
        con,
        labels,
        record_id_column=evaluation["record_id_column"],
        cluster_column=evaluation["cluster_column"],
        source_system_column=evaluation.get("source_system_column"),
    )
    anonymous_path = data_dir / evaluation.get("anonymous_ids_path", "")
    if evaluation.get("anonymous_ids_path") and anonymous_path.is_file():
        scores.update(score_anonymous_ids(con, pd.read_csv(anonymous_path, dtype=str)))
    store_evaluation(con, scores, dataset=str(evaluation["labels_path"]), run_id=run_id)
    return scores
