"""Issue-5 targets on a warehouse built from generated sample data (reads its ground truth).

    PZ_DATA_DIR=/path/to/run .venv/bin/python bench/segments_targets.py

Prints: adjusted Rand index of the cluster segments against the planted personas, precision
and recall of `engaged_shoppers` against truth/engaged_sessions.csv, and the held-out AUC and
calibration of the propensity models (evaluated on the later period).
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pandas as pd
from sklearn.metrics import adjusted_rand_score, roc_auc_score

from dagster_project.assets.segments import LABEL, propensity_frames
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
    # session count over the whole window (future included) scores the same held-out labels.
    settings = load_tunables().segment_settings("propensity")
    test = propensity_frames(con, settings["target_event"], int(settings["horizon_days"]))["test"]
    oracle = test[[LABEL]].reset_index().merge(users, on="person_id")
    oracle_auc = roc_auc_score(oracle[LABEL], oracle["purchase_rate"] * oracle["n_sessions"])
    print(
        f"oracle AUC (true purchase_rate x true sessions, future included) = {oracle_auc:.3f} "
        f"on {len(oracle)} users"
    )


if __name__ == "__main__":
    main()
