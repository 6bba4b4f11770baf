import numpy as np
import pandas as pd
import pytest

from models_ml.experiments import (
    Experiment,
    assign_variants,
    experiment_results,
    sample_ratio_mismatch,
    two_proportion_test,
)

AB = Experiment("rec_algo", {"control": 0.5, "treatment": 0.5}, None, None, "conversion")
ABC = Experiment("carousel", {"a": 1.0, "b": 1.0, "c": 2.0}, None, None, "ctr")
PEOPLE = [f"person-{i}" for i in range(20_000)]


def test_assignment_is_stable_across_runs_orders_and_subsets():
    first = assign_variants(AB, PEOPLE).set_index("person_id").variant
    shuffled = assign_variants(AB, list(reversed(PEOPLE))).set_index("person_id").variant
    subset = assign_variants(AB, PEOPLE[:100]).set_index("person_id").variant
    pd.testing.assert_series_equal(first, shuffled.reindex(first.index))
    pd.testing.assert_series_equal(first.iloc[:100], subset)
    # another experiment splits people independently of this one
    other = assign_variants(Experiment("other", AB.variants, None, None), PEOPLE)
    agreement = (other.set_index("person_id").variant == first).mean()
    assert 0.47 < agreement < 0.53


def test_multi_variant_split_follows_the_weights():
    shares = assign_variants(ABC, PEOPLE).variant.value_counts(normalize=True)
    assert shares["a"] == pytest.approx(0.25, abs=0.015)
    assert shares["b"] == pytest.approx(0.25, abs=0.015)
    assert shares["c"] == pytest.approx(0.50, abs=0.015)


def test_two_proportion_test_by_hand():
    # control 100/1000, treatment 130/1000. Pooled p = 0.115,
    # se_pooled = sqrt(0.115 * 0.885 * 2/1000) = 0.0142671, z = 0.03 / 0.0142671 = 2.10274,
    # p = 2 * (1 - Phi(2.10274)) = 0.035488. Unpooled se = sqrt(.1*.9/1000 + .13*.87/1000)
    # = 0.0142653; 95% interval 0.03 +- 1.959964 * 0.0142653 = [0.002068, 0.057932];
    # relative lift 0.3 with interval [0.02068, 0.57932].
    result = two_proportion_test(100, 1000, 130, 1000)
    assert result["p_value"] == pytest.approx(0.035488, abs=1e-5)
    assert result["difference"] == pytest.approx(0.03)
    assert result["difference_ci_low"] == pytest.approx(0.002068, abs=1e-5)
    assert result["difference_ci_high"] == pytest.approx(0.057932, abs=1e-5)
    assert result["lift"] == pytest.approx(0.3)
    assert result["lift_ci_low"] == pytest.approx(0.02068, abs=1e-4)
    assert result["lift_ci_high"] == pytest.approx(0.57932, abs=1e-4)


def test_sample_ratio_mismatch_by_hand():
    # 5100 vs 4900 at 50/50: chi2 = (100^2 + 100^2) / 5000 = 4, df 1 -> p = 0.0455003
    assert sample_ratio_mismatch([5100, 4900], [1, 1]) == pytest.approx(0.0455003, abs=1e-6)
    # 1:1:2 with exact counts -> no mismatch at all
    assert sample_ratio_mismatch([250, 250, 500], [1, 1, 2]) == pytest.approx(1.0)


def _outcomes(counts: dict[str, tuple[int, int, int, int]]) -> pd.DataFrame:
    """variant -> (users, exposed, clickers, converters): one row per person."""
    frames = []
    for variant, (users, exposed, clicked, converted) in counts.items():
        index = np.arange(users)
        frames.append(
            pd.DataFrame(
                {
                    "person_id": [f"{variant}-{i}" for i in index],
                    "variant": variant,
                    "is_exposed": index < exposed,
                    "has_clicked": index < clicked,
                    "has_converted": index < converted,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def test_results_per_variant_against_the_control():
    outcomes = _outcomes({"control": (1100, 1000, 300, 100), "treatment": (1100, 1000, 320, 130)})
    results = experiment_results(AB, outcomes).set_index("variant")
    assert results.loc["control", "users"] == 1100
    assert results.loc["control", "exposed_users"] == 1000
    assert results.loc["control", "ctr"] == pytest.approx(0.3)
    assert results.loc["treatment", "conversion_rate"] == pytest.approx(0.13)
    assert results.loc["treatment", "lift"] == pytest.approx(0.3)
    assert results.loc["treatment", "p_value"] == pytest.approx(0.035488, abs=1e-5)
    assert results.loc["treatment", "is_significant"]
    assert np.isnan(results.loc["control", "p_value"])
    assert not results["has_srm"].any()


def test_three_variants_and_a_sample_ratio_mismatch():
    outcomes = _outcomes({"a": (300, 300, 30, 3), "b": (250, 250, 25, 2), "c": (450, 450, 90, 9)})
    results = experiment_results(ABC, outcomes).set_index("variant")
    assert list(results.index) == ["a", "b", "c"]
    assert results.loc["c", "lift"] == pytest.approx(1.0), "CTR 0.2 vs 0.1"
    assert results["has_srm"].all(), "300/250/450 against 1:1:2 (expected 250/250/500)"


def test_experiment_config_is_validated():
    with pytest.raises(ValueError):
        Experiment.from_dict({"name": "x", "variants": [{"name": "a", "weight": 1}]})
    parsed = Experiment.from_dict(
        {
            "name": "x",
            "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 3}],
            "start_date": "2024-01-01",
            "metric": "ctr",
        }
    )
    assert parsed.variants == {"a": 1.0, "b": 3.0} and parsed.end_date is None
