"""Issue-5 targets on a warehouse built from generated sample data (reads its ground truth).

    PZ_DATA_DIR=/path/to/run .venv/bin/python bench/segments_targets.py

Prints: adjusted Rand index of the cluster segments against the planted personas, precision
and recall of `engaged_shoppers` against truth/engaged_sessions.csv, the held-out AUC and
calibration of the propensity models (evaluated on the later period), and the AUC of an oracle
that knows the future sessions, as a ceiling.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import duckdb
import pandas as pd
from sklearn.metrics import adjusted_rand_score, roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dagster_project.assets.segments import AS_OF_SQL, LABEL, propensity_frames
from dagster_project.tunables import load_tunables


def main() -> None:
    data_dir = Path(os.environ.get("PZ_DATA_DIR", "data"))
    con = duckdb.connect(str(data_dir / "warehouse/warehouse.duckdb"), read_only=True)
    people = con.sql(
        "select identifier as user_id, min(person_id) as person_id from marts.identity_map "
        "where identifier_type = 'user_id' group by identifier"
    ).df()
    users = pd.read_csv(data_dir / "truth/users.csv").merge(people, on="user_id")

    clusters = con.sql("select person_id, segment_id from ml.user_segments").df()
    joined = clusters.merge(users, on="person_id").drop_duplicates("person_id")
    ari = adjusted_rand_score(joined["persona"], joined["segment_id"])
    print(
        f"clusters: {clusters['segment_id'].nunique()} for {len(joined)} consenting users; "
        f"ARI vs planted personas = {ari:.3f}"
    )

    engaged_users = set(pd.read_csv(data_dir / "truth/engaged_sessions.csv")["user_id"])
    planted = set(users.loc[users["user_id"].isin(engaged_users), "person_id"])
    found = set(
        con.sql(
            "select person_id from intermediate.int_segment_triggers "
            "where segment_id = 'engaged_shoppers'"
        ).df()["person_id"]
    )
    hits = len(found & planted)
    print(
        f"engaged_shoppers: found {len(found)}, planted {len(planted)}; "
        f"precision = {hits / max(len(found), 1):.3f}, recall = {hits / max(len(planted), 1):.3f}"
    )

    evaluation = con.sql(
        "select * from ml.propensity_evaluation "
        "where run_at = (select max(run_at) from ml.propensity_evaluation)"
    ).df()
    print("propensity (trained on features as of as_of - 2N, evaluated on the later period):")
    print(
        evaluation[
            ["segment_id", "model", "auc", "brier", "ece", "n_people", "positive_rate", "is_chosen"]
        ].to_string(index=False)
    )

    # What the generator allows: an oracle that knows each user's planted purchase rate and
    # how many sessions they will have in the labelled period (the future) scores the same
    # held-out labels.
    settings = load_tunables().segment_settings("propensity")
    horizon = int(settings["horizon_days"])
    test = propensity_frames(con, settings["target_event"], horizon)["test"]
    as_of = pd.Timestamp(con.execute(AS_OF_SQL).fetchall()[0][0])
    start, end = as_of - pd.Timedelta(days=horizon), as_of
    events = pd.read_parquet(
        data_dir / "truth/events.parquet", columns=["true_user_id", "session_key", "occurred_at"]
    )
    in_period = events[(events["occurred_at"] > start) & (events["occurred_at"] <= end)]
    future_sessions = in_period.groupby("true_user_id")["session_key"].nunique()
    oracle = test[[LABEL]].reset_index().merge(users, on="person_id")
    oracle["future_sessions"] = oracle["user_id"].map(future_sessions).fillna(0)
    oracle_auc = roc_auc_score(oracle[LABEL], oracle["purchase_rate"] * oracle["future_sessions"])
    print(
        f"oracle AUC (true purchase_rate x true sessions in the labelled period) = "
        f"{oracle_auc:.3f} on {len(oracle)} users"
    )


if __name__ == "__main__":
    main()
