import math

import numpy as np
import pandas as pd
import pytest

from models_ml.evaluation import (
    catalog_coverage,
    map_at_k,
    ndcg_at_k,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
)

# u1 hits at ranks 1 and 3 of 3 (its c at rank 4 is past k); u2 hits at rank 2;
# u3 has no recommendations and u4 no truth: neither counts (n_users = 2).
TRUTH = pd.DataFrame(
    {
        "person_id": ["u1", "u1", "u1", "u1", "u2", "u3"],
        "item_id": ["a", "b", "c", "a", "d", "e"],
    }
)
RECOMMENDATIONS = pd.DataFrame(
    {
        "person_id": ["u1", "u1", "u1", "u1", "u2", "u2", "u4"],
        "rank": [4, 2, 1, 3, 1, 2, 1],
        "item_id": ["c", "x", "a", "b", "y", "d", "a"],
    }
)
D2, D3, D4 = 1 / math.log2(2), 1 / math.log2(3), 1 / math.log2(4)


def test_precision_at_k():
    assert precision_at_k(TRUTH, RECOMMENDATIONS, k=3) == pytest.approx((2 / 3 + 1 / 3) / 2)


def test_recall_at_k():
    assert recall_at_k(TRUTH, RECOMMENDATIONS, k=3) == pytest.approx((2 / 3 + 1 / 1) / 2)


def test_ndcg_at_k():
    u1 = (D2 + D4) / (D2 + D3 + D4)
    u2 = D3 / D2
    assert ndcg_at_k(TRUTH, RECOMMENDATIONS, k=3) == pytest.approx((u1 + u2) / 2)


def test_map_at_k():
    u1 = (1 / 1 + 2 / 3) / 3
    u2 = (1 / 2) / 1
    assert map_at_k(TRUTH, RECOMMENDATIONS, k=3) == pytest.approx((u1 + u2) / 2)


def test_k_beyond_every_list_counts_all_hits():
    assert recall_at_k(TRUTH, RECOMMENDATIONS, k=10) == pytest.approx(1.0)
    assert precision_at_k(TRUTH, RECOMMENDATIONS, k=10) == pytest.approx((3 / 10 + 1 / 10) / 2)


def test_catalog_coverage():
    catalog = pd.DataFrame({"item_id": list("abcdexyz")})
    assert catalog_coverage(RECOMMENDATIONS, catalog) == pytest.approx(6 / 8)
    assert catalog_coverage(RECOMMENDATIONS, ["a", "z"]) == pytest.approx(1 / 2)
    assert catalog_coverage(RECOMMENDATIONS, []) == 0.0


def test_ranking_metrics_bundle_and_no_overlap():
    metrics = ranking_metrics(TRUTH, RECOMMENDATIONS, k=3, catalog=list("abcdexyz"))
    assert metrics["n_users"] == 2
    assert metrics["precision_at_k"] == pytest.approx(0.5)
    assert metrics["catalog_coverage"] == pytest.approx(0.75)
    nobody = RECOMMENDATIONS.assign(person_id="zz")
    assert ranking_metrics(TRUTH, nobody, k=3) == {
        "k": 3,
        "n_users": 0,
        "precision_at_k": 0.0,
        "recall_at_k": 0.0,
        "ndcg_at_k": 0.0,
        "map_at_k": 0.0,
    }


def test_novelty_is_the_mean_self_information_of_recommended_items():
    from models_ml.evaluation import novelty

    history = pd.DataFrame(
        {"person_id": ["p1", "p2", "p3", "p4", "p1"], "item_id": ["a", "a", "a", "a", "b"]}
    )
    recs = pd.DataFrame({"person_id": ["p1", "p2"], "item_id": ["a", "b"], "rank": [1, 1]})
    # p(a) = 4/4 -> 0 bits; p(b) = 1/4 -> 2 bits; mean 1.
    assert novelty(recs, history) == pytest.approx(1.0)


def test_latest_holdout_keeps_each_persons_newest_item_out_of_train():
    from models_ml.evaluation import latest_holdout

    day = pd.Timestamp("2024-01-01")
    interactions = pd.DataFrame(
        {
            "person_id": ["p1", "p1", "p1", "p1", "p2", "p2"],
            "item_id": ["a", "b", "c", "c", "a", "b"],
            "occurred_at": [day, day + pd.Timedelta(days=1), day, day + pd.Timedelta(days=3)]
            + [day, day + pd.Timedelta(days=1)],
        }
    )
    train, test = latest_holdout(interactions, n_latest=1, min_history=3)
    assert test.values.tolist() == [["p1", "c"]], "p2 has too little history"
    assert train.values[:, :2].tolist() == [["p1", "a"], ["p1", "b"], ["p2", "a"], ["p2", "b"]]


@pytest.mark.parametrize("ids", ["text", "categorical"])
def test_latest_holdout_on_codes_splits_as_grouping_the_values_does(ids):
    """The integer-code path gives pandas' split: the same rows held out, the same test pairs
    in the same order, with ties in time, missing ids and categories in no sorted order."""
    from models_ml.evaluation import _latest_holdout_codes, _latest_holdout_frames

    rng = np.random.default_rng(7)
    n = 5000
    person = rng.choice([f"p{i:03d}" for i in range(300)], n).astype(object)
    item = rng.choice([f"i{i:02d}" for i in range(40)], n).astype(object)
    person[rng.choice(n, 50, replace=False)] = None
    item[rng.choice(n, 50, replace=False)] = None
    day = pd.Timestamp("2024-01-01")
    interactions = pd.DataFrame(
        {
            "person_id": person,
            "item_id": item,
            # whole days: many ties, broken by the item id
            "occurred_at": day + pd.to_timedelta(rng.integers(0, 20, n), unit="D"),
            "weight": rng.random(n),
        }
    )
    if ids == "categorical":
        for column in ("person_id", "item_id"):
            values = interactions[column].dropna().unique()
            interactions[column] = pd.Categorical(
                interactions[column], categories=rng.permutation(values)
            )
    for n_latest, min_history in [(1, 3), (2, 1), (3, 5)]:
        by_codes = _latest_holdout_codes(
            interactions, n_latest, min_history, "person_id", "item_id", "occurred_at"
        )
        by_values = _latest_holdout_frames(
            interactions, n_latest, min_history, "person_id", "item_id", "occurred_at"
        )
        assert by_codes is not None
        assert len(by_codes[1]) > 0
        for got, expected in zip(by_codes, by_values, strict=True):
            pd.testing.assert_frame_equal(got, expected)
