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

from dagster_project.ingest.sql import quote_identifier, quote_literal

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
    labels: pd.DataFrame | str,
    *,
    record_id_column: str,
    cluster_column: str,
    source_system_column: str | None = None,
) -> dict:
    """Pairwise scores of `ml.identity_assignments` against one label per record: `labels` is
    a frame or a relation (SQL) of text columns; an empty value is a value like any other.

    Counted in DuckDB (`pairwise_scores` is the same count in pandas): at 1.36 M labelled
    records reading them into pandas and grouping there took 23 s of the identity step.
    """
    relation = labels if isinstance(labels, str) else "_pz_labels"
    if not isinstance(labels, str):
        con.register(relation, labels)
    try:
        present = set(con.sql(f"select * from {relation} limit 0").columns)
        text = "coalesce(cast({} as varchar), '')"
        columns = [
            f"{text.format(quote_identifier(record_id_column))} as record_id",
            f"{text.format(quote_identifier(cluster_column))} as cluster",
        ]
        on = "a.identifier = l.record_id"
        if source_system_column and source_system_column in present:
            columns.append(f"{text.format(quote_identifier(source_system_column))} as source")
            on += " and coalesce(a.source_system, '') = l.source"
        con.execute(
            f"""
            create or replace temp table _pz_scored_labels as
            select l.cluster, a.person_id
            from (select {", ".join(columns)} from {relation}) as l
            left join ml.identity_assignments as a
                on a.identifier_type = 'record_id' and {on}
            """
        )
    finally:
        if not isinstance(labels, str):
            con.unregister(relation)
    try:
        records, predicted, true, both = con.execute(
            f"""
            select
                (select count(*) from _pz_scored_labels),
                ({_PAIRS.format(by="person_id", where="person_id is not null")}),
                ({_PAIRS.format(by="cluster", where="true")}),
                ({_PAIRS.format(by="person_id, cluster", where="person_id is not null")})
            """
        ).fetchall()[0]
    finally:
        con.execute("drop table if exists _pz_scored_labels")
    precision = both / predicted if predicted else 1.0
    recall = both / true if true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "records": int(records),
        "predicted_pairs": int(predicted),
        "true_pairs": int(true),
        "true_positive_pairs": int(both),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
    }


# The pairs of records a grouping puts together. A record without a person is a person of
# its own (no pairs); a label is never null (an empty one is '').
_PAIRS = """
    select coalesce(sum(n * (n - 1) // 2), 0)::bigint from (
        select count(*) as n from _pz_scored_labels
        where {where}
        group by {by}
    )
"""


def score_anonymous_ids(con: duckdb.DuckDBPyConnection, truth: pd.DataFrame | str) -> dict:
    """Share of anonymous ids that logged in and share the person of their true user_id
    (`truth`: a frame, or a relation of text columns anonymous_id, true_user_id, logs_in)."""
    relation = truth if isinstance(truth, str) else "_pz_anon"
    if not isinstance(truth, str):
        con.register(relation, truth)
    try:
        checked, stitched = con.execute(
            f"""
            select count(*), count(*) filter (where device.person_id = person.person_id)
            from (
                select cast(anonymous_id as varchar) as anonymous_id,
                       cast(true_user_id as varchar) as true_user_id
                from {relation} where lower(cast(logs_in as varchar)) = 'true'
            ) as t
            left join ml.identity_assignments as device
                on device.identifier_type = 'anonymous_id' and device.identifier = t.anonymous_id
            left join ml.identity_assignments as person
                on person.identifier_type = 'user_id' and person.identifier = t.true_user_id
            """
        ).fetchall()[0]
    finally:
        if not isinstance(truth, str):
            con.unregister(relation)
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


# The record scores of the last evaluation and what they were computed from: the labels file
# and the records' people. A night that changed neither (most nights: the events of a day move
# devices, rarely records) stores them again instead of scoring the 1.36M labelled records of
# the L tier once more (3.6 s of the identity step on session 47's machine; the check takes
# about 0.2 s). Every evaluation still appends its row.
RECORD_SCORES_STATE = "ml.identity_evaluation_record_state"
RECORD_SCORES = (
    "records",
    "predicted_pairs",
    "true_pairs",
    "true_positive_pairs",
    "precision",
    "recall",
    "f1",
)
RECORD_LABEL_KEYS = ("record_id_column", "cluster_column", "source_system_column")


def record_scores_inputs(
    con: duckdb.DuckDBPyConnection, labels_path: Path, evaluation: dict
) -> str:
    """What the record scores depend on: the labels file (path, size, modification time), the
    columns read from it, and a hash of every record's person in `ml.identity_assignments`."""
    stat = labels_path.stat()
    count, digest = con.execute(
        "select count(*), coalesce(bit_xor(hash(identifier, source_system, person_id)), 0) "
        "from ml.identity_assignments where identifier_type = 'record_id'"
    ).fetchall()[0]
    columns = [evaluation.get(key) for key in RECORD_LABEL_KEYS]
    return f"{labels_path}|{stat.st_size}|{stat.st_mtime_ns}|{columns}|{count}|{digest}"


def _reused_record_scores(con: duckdb.DuckDBPyConnection, inputs: str) -> dict | None:
    exists = con.execute(
        "select count(*) from information_schema.tables where table_catalog = current_database() "
        "and table_schema = 'ml' and table_name = $t",
        {"t": RECORD_SCORES_STATE.split(".")[1]},
    ).fetchall()[0][0]
    if not exists:
        return None
    rows = con.execute(
        f"select {', '.join(RECORD_SCORES)} from {RECORD_SCORES_STATE} where inputs = $i",
        {"i": inputs},
    ).fetchall()
    return dict(zip(RECORD_SCORES, rows[0], strict=True)) if rows else None


def _keep_record_scores(con: duckdb.DuckDBPyConnection, inputs: str, scores: dict) -> None:
    con.execute(
        f"create or replace table {RECORD_SCORES_STATE} as select $i as inputs, "
        + ", ".join(f"${name} as {name}" for name in RECORD_SCORES),
        {"i": inputs, **{name: scores[name] for name in RECORD_SCORES}},
    )


def evaluate_against_files(
    con: duckdb.DuckDBPyConnection,
    data_dir: Path,
    evaluation: dict,
    *,
    run_id: str,
) -> dict | None:
    """Score against the configured labels file under `data_dir`; None when it is absent.
    The record scores of the last evaluation are reused when neither the labels file nor any
    record's person changed since (`record_scores_inputs`); `reused` in the returned scores
    says which."""
    labels_path = data_dir / evaluation["labels_path"]
    if not labels_path.exists():
        return None
    inputs = record_scores_inputs(con, labels_path, evaluation)
    scores = _reused_record_scores(con, inputs)
    reused = scores is not None
    if scores is None:
        scores = score_records(
            con,
            _csv_relation(labels_path),
            record_id_column=evaluation["record_id_column"],
            cluster_column=evaluation["cluster_column"],
            source_system_column=evaluation.get("source_system_column"),
        )
        _keep_record_scores(con, inputs, scores)
    anonymous_path = data_dir / evaluation.get("anonymous_ids_path", "")
    if evaluation.get("anonymous_ids_path") and anonymous_path.is_file():
        scores.update(score_anonymous_ids(con, _csv_relation(anonymous_path)))
    store_evaluation(con, scores, dataset=str(evaluation["labels_path"]), run_id=run_id)
    return {**scores, "record_scores_reused": reused}


def _csv_relation(path: Path) -> str:
    """A CSV file as a relation of text columns, read by DuckDB."""
    return f"read_csv({quote_literal(str(path))}, header = true, all_varchar = true)"
