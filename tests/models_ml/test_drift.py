import numpy as np
import pandas as pd
import pytest

from models_ml.drift import (
    feature_bins,
    feature_drift,
    psi,
    segment_share_drift,
    segment_shares,
)


def test_psi_known_values():
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    expected = (0.7 - 0.5) * np.log(0.7 / 0.5) + (0.3 - 0.5) * np.log(0.3 / 0.5)
    assert psi([0.5, 0.5], [0.7, 0.3]) == pytest.approx(expected)
    assert np.isfinite(psi([0.5, 0.5], [1.0, 0.0]))  # empty bins are floored, not infinite


def test_segment_shares_and_their_drift():
    members = pd.DataFrame(
        {
            "person_id": ["a", "b", "c", "a", "d"],
            "subject": ["cluster:cluster_0"] * 3 + ["trigger:new_visitors"] * 2,
        }
    )
    shares = segment_shares(members.groupby("subject").size(), n_people=10)
    assert shares.to_dict("records") == [
        {"subject": "cluster:cluster_0", "share": 0.3},
        {"subject": "trigger:new_visitors", "share": 0.2},
    ]
    previous = pd.DataFrame(
        {"subject": ["cluster:cluster_0", "cluster:cluster_9"], "share": [0.3, 0.4]}
    )
    drift = segment_share_drift(previous, shares)

    assert drift["subject"].tolist() == [
        "cluster:cluster_0",
        "cluster:cluster_9",
        "trigger:new_visitors",
    ]
    assert drift["previous_share"].tolist() == [0.3, 0.4, 0.0]
    assert drift["current_share"].tolist() == [0.3, 0.0, 0.2]
    assert drift["psi"].iloc[0] == 0.0
    assert drift["psi"].iloc[1] > 0.2 and drift["psi"].iloc[2] > 0.2
    assert (drift["drift_kind"] == "segment_share").all()


def test_feature_bins_with_missing_values():
    features = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, np.nan]})
    bins = feature_bins(features, n_bins=2)
    assert bins["bin"].tolist() == [-1, 0, 1]
    assert bins["share"].tolist() == [0.2, 0.4, 0.4]
    assert bins["upper"].iloc[1] == 2.5


def test_feature_drift_is_zero_on_the_same_data_and_large_on_a_shift():
    rng = np.random.default_rng(0)
    before = pd.DataFrame({"x": rng.normal(0, 1, 2000), "y": rng.random(2000)})
    bins = feature_bins(before)
    again = pd.DataFrame({"x": rng.normal(0, 1, 2000), "y": rng.random(2000)})
    shifted = again.assign(x=again["x"] + 1.0)

    same = feature_drift(bins, before).set_index("subject")["psi"]
    assert same.tolist() == [0.0, 0.0]
    resampled = feature_drift(bins, again).set_index("subject")["psi"]
    assert (resampled < 0.05).all()
    moved = feature_drift(bins, shifted).set_index("subject")["psi"]
    assert moved["x"] > 0.5 and moved["y"] < 0.05


def test_feature_drift_ignores_features_no_longer_present():
    bins = feature_bins(pd.DataFrame({"x": [1.0, 2.0], "gone": [1.0, 2.0]}))
    drift = feature_drift(bins, pd.DataFrame({"x": [1.0, 2.0]}))
    assert drift["subject"].tolist() == ["x"]
