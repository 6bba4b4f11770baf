import numpy as np
import pandas as pd
import pytest

from models_ml.propensity import (
    PropensityModel,
    calibration_table,
    evaluate,
    expected_calibration_error,
    fit_propensity_model,
    propensity_segments,
    select_propensity_model,
)


def _period(n, seed):
    """Buying depends on activity and past purchase rate, as in the sample generator."""
    rng = np.random.default_rng(seed)
    sessions = rng.poisson(4, n) + 1
    rate = rng.beta(1, 3, n)
    purchases = rng.binomial(sessions, rate)
    features = pd.DataFrame(
        {
            "n_sessions": sessions.astype(float),
            "frequency": purchases.astype(float),
            "recency_days": rng.exponential(5, n),
        },
        index=pd.Index([f"p{seed}_{i}" for i in range(n)], name="person_id"),
    )
    chance = 1 - (1 - rate) ** sessions
    return features, (rng.random(n) < chance).astype(int)


def test_both_families_beat_chance_on_a_later_period_and_the_best_is_chosen():
    train_X, train_y = _period(1200, 1)
    test_X, test_y = _period(1200, 2)
    model, evaluation, calibration = select_propensity_model(
        train_X, train_y, test_X, test_y, random_state=0
    )

    assert evaluation["model"].tolist() == ["logistic_regression", "gradient_boosting"]
    assert (evaluation["auc"] > 0.7).all()
    assert evaluation["is_chosen"].sum() == 1
    chosen = evaluation.loc[evaluation["is_chosen"]].iloc[0]
    assert chosen["auc"] == evaluation["auc"].max()
    assert model.family == chosen["model"]
    assert chosen["ece"] < 0.06  # calibrated
    assert calibration["n"].sum() == len(test_y)
    # one model scores (calibrated on out-of-fold predictions), not one per calibration fold
    assert len(model.model_.calibrated_classifiers_) == 1


def test_a_reused_choice_of_family_scores_as_the_selection_did():
    train_X, train_y = _period(300, 3)
    test_X, test_y = _period(300, 4)
    selected, _, _ = select_propensity_model(train_X, train_y, test_X, test_y, random_state=0)
    refitted = fit_propensity_model(selected.family, test_X, test_y, random_state=0)
    score_X, _ = _period(50, 5)
    np.testing.assert_array_equal(refitted.predict_proba(score_X), selected.predict_proba(score_X))


def test_calibration_helpers_exact():
    y = [0, 0, 1, 1]
    p = [0.05, 0.15, 0.95, 0.85]
    table = calibration_table(y, p, n_bins=2)
    assert table.to_dict("records") == [
        {"bin": 0, "n": 2, "mean_predicted": pytest.approx(0.1), "observed_rate": 0.0},
        {"bin": 1, "n": 2, "mean_predicted": pytest.approx(0.9), "observed_rate": 1.0},
    ]
    assert expected_calibration_error(y, p, n_bins=2) == pytest.approx(0.1)
    assert evaluate(y, p)["auc"] == 1.0


def test_single_class_predicts_the_base_rate():
    X = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    model = PropensityModel().fit(X, [0, 0, 0])
    assert model.predict_proba(X)[:, 1].tolist() == [0.0, 0.0, 0.0]


def test_propensity_segments_rows():
    X, y = _period(200, 3)
    model = PropensityModel(family="gradient_boosting", random_state=0).fit(X, y)
    segments = propensity_segments(model, X, "propensity_purchase_7d", "purchase within 7 days")

    assert list(segments.columns) == [
        "person_id",
        "segment_type",
        "segment_id",
        "segment_name",
        "score",
    ]
    assert segments["person_id"].tolist() == X.index.tolist()
    assert (segments["segment_type"] == "propensity").all()
    assert segments["score"].between(0, 1).all()


def test_unknown_family_is_rejected():
    with pytest.raises(ValueError, match="family"):
        PropensityModel(family="svm").fit(pd.DataFrame({"x": [0.0, 1.0] * 5}), [0, 1] * 5)


def test_a_model_fitted_on_a_sample_of_rows_scores_everyone_about_as_well():
    """`max_rows`: the model learns from a seeded sample of that many rows (the base rate from
    all of them), scores every row, gives the same scores for the same seed, and keeps the
    held-out AUC of a fit on all rows."""
    train_X, train_y = _period(3000, 1)
    test_X, test_y = _period(2000, 2)
    everyone = fit_propensity_model("logistic_regression", train_X, train_y, random_state=0)
    sampled = fit_propensity_model(
        "logistic_regression", train_X, train_y, random_state=0, max_rows=1200
    )
    again = fit_propensity_model(
        "logistic_regression", train_X, train_y, random_state=0, max_rows=1200
    )
    assert everyone.n_rows_fitted_ == 3000 and sampled.n_rows_fitted_ == 1200
    assert sampled.base_rate_ == everyone.base_rate_ == train_y.mean()
    scores = sampled.predict_proba(test_X)[:, 1]
    assert len(scores) == len(test_X)
    np.testing.assert_array_equal(scores, again.predict_proba(test_X)[:, 1])
    assert not np.allclose(scores, everyone.predict_proba(test_X)[:, 1])  # not all rows
    auc_all = evaluate(test_y, everyone.predict_proba(test_X)[:, 1])["auc"]
    assert evaluate(test_y, scores)["auc"] > auc_all - 0.02

    _, evaluation, _ = select_propensity_model(
        train_X, train_y, test_X, test_y, random_state=0, max_rows=1200
    )
    assert (evaluation["n_people"] == len(test_y)).all()  # scored on the whole test period
