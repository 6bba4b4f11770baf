import numpy as np
import pandas as pd
import pytest
from sklearn.frozen import FrozenEstimator

from models_ml.propensity import (
    PropensityModel,
    _base_model,
    _held_out_rows,
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


def test_a_model_fitted_on_a_sample_is_calibrated_on_people_it_was_not_fitted_on():
    """With more rows than `max_rows`, the model is fitted once, on its sample, and calibrated
    on a seeded sample of the other rows (as many at most, or `calibration_rows`): as well
    calibrated as on out-of-fold predictions, and the same for the same seed."""
    train_X, train_y = _period(6000, 1)
    test_X, test_y = _period(4000, 2)
    model = fit_propensity_model(
        "gradient_boosting", train_X, train_y, random_state=0, max_rows=2000
    )
    assert model.n_rows_fitted_ == 2000 and model.n_rows_calibrated_ == 2000
    (calibrated,) = model.model_.calibrated_classifiers_
    assert isinstance(calibrated.estimator, FrozenEstimator)  # fitted once, not once per fold
    # fitted on the sample a fit of `max_rows` rows draws, and only on it
    rows = np.sort(np.random.default_rng(0).choice(len(train_y), 2000, replace=False))
    alone = _base_model("gradient_boosting", 0).fit(
        train_X.iloc[rows].to_numpy(float), train_y[rows]
    )
    np.testing.assert_array_equal(
        calibrated.estimator.predict_proba(test_X.to_numpy(float)),
        alone.predict_proba(test_X.to_numpy(float)),
    )
    scores = model.predict_proba(test_X)[:, 1]
    again = fit_propensity_model(
        "gradient_boosting", train_X, train_y, random_state=0, max_rows=2000
    )
    np.testing.assert_array_equal(scores, again.predict_proba(test_X)[:, 1])
    # as good as calibrating on out-of-fold predictions of the sample
    folds = fit_propensity_model(
        "gradient_boosting", train_X.iloc[rows], train_y[rows], random_state=0
    )
    assert folds.n_rows_calibrated_ == 0
    on_folds = evaluate(test_y, folds.predict_proba(test_X)[:, 1])
    held_out = evaluate(test_y, scores)
    assert held_out["auc"] == pytest.approx(on_folds["auc"], abs=0.01)
    assert held_out["ece"] < 0.06 and held_out["brier"] < on_folds["brier"] + 0.005

    smaller = PropensityModel(
        family="logistic_regression", random_state=0, max_rows=2000, calibration_rows=700
    ).fit(train_X, train_y)
    assert smaller.n_rows_calibrated_ == 700


def test_held_out_rows_are_a_sorted_sample_of_the_rows_not_fitted():
    rng = np.random.default_rng(0)
    fitted = np.array([1, 4, 5, 8])
    np.testing.assert_array_equal(_held_out_rows(rng, 10, fitted, 100), [0, 2, 3, 6, 7, 9])
    sample = _held_out_rows(rng, 10, fitted, 3)
    assert len(sample) == 3 and set(sample) <= {0, 2, 3, 6, 7, 9}
    assert (np.diff(sample) > 0).all()


def test_a_held_out_sample_with_too_few_of_a_class_calibrates_on_folds():
    train_X, _ = _period(6000, 1)
    labels = np.zeros(6000, dtype=int)
    labels[:2000:20] = 1  # 100 buyers, all among the first rows
    labels[2000::200] = 1  # 20 more among the rest
    model = fit_propensity_model(
        "logistic_regression", train_X, labels, random_state=0, max_rows=2000
    )
    assert model.n_rows_fitted_ == 2000
    assert model.n_rows_calibrated_ == 0  # under MIN_CALIBRATION_MINORITY of them held out
    assert len(model.model_.calibrated_classifiers_) == 1
