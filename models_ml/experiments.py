"""A/B experiments: deterministic assignment and the statistics of the results.

Assignment hashes (experiment, person) to a point in [0, 1) and walks the variants' cumulative
weights: the same person always lands in the same variant of an experiment, whoever else is
assigned and in whatever order, and different experiments split people independently.

Results compare each variant with the control (the first variant): rates per variant, the
absolute difference with a 95% (Wald) interval, relative lift = difference / control rate with
the interval scaled the same way, a pooled two-proportion z-test p-value, and a chi-square
sample-ratio-mismatch test of the assigned counts against the configured weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from models_ml.columns import PERSON_ID

EXPERIMENT, VARIANT = "experiment", "variant"
METRICS = ("ctr", "conversion")
SRM_ALPHA = 0.001  # a sample-ratio-mismatch p-value below this flags the experiment


@dataclass(frozen=True)
class Experiment:
    name: str
    variants: dict[str, float]  # variant -> weight; the first is the control
    start_date: pd.Timestamp | None
    end_date: pd.Timestamp | None
    metric: str = "conversion"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Experiment:
        name = str(data.get("name") or "")
        variants = {str(v["name"]): float(v["weight"]) for v in data.get("variants") or []}
        if not name or len(variants) < 2 or min(variants.values()) <= 0:
            raise ValueError(f"experiment {name!r}: needs a name and >= 2 positive-weight variants")
        metric = str(data.get("metric", "conversion"))
        if metric not in METRICS:
            raise ValueError(f"experiment {name}: metric must be one of {METRICS}")
        start, end = (
            pd.Timestamp(data[key]) if data.get(key) else None for key in ("start_date", "end_date")
        )
        return cls(name, variants, start, end, metric)


def hash_unit_interval(experiment: str, person_ids) -> np.ndarray:
    """A stable point in [0, 1) per person for this experiment (SipHash of "experiment|id")."""
    keys = pd.Series(person_ids, dtype="object").astype(str)
    # categorize=False: the same hash of every key without factorizing them first (the keys
    # are distinct people: factorizing found nothing to share and took most of the time).
    hashed = pd.util.hash_array((experiment + "|" + keys).to_numpy(dtype=object), categorize=False)
    return (hashed >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def assign_variants(experiment: Experiment, person_ids) -> pd.DataFrame:
    """experiment, person_id, variant, bucket (the hashed point) for every person."""
    people = pd.unique(pd.Series(person_ids, dtype="object").to_numpy())
    bucket = hash_unit_interval(experiment.name, people)
    weights = np.array(list(experiment.variants.values()))
    edges = np.cumsum(weights) / weights.sum()
    index = np.minimum(np.searchsorted(edges, bucket, side="right"), len(edges) - 1)
    return pd.DataFrame(
        {
            EXPERIMENT: experiment.name,
            PERSON_ID: people,
            VARIANT: np.array(list(experiment.variants), dtype=object)[index],
            "bucket": bucket,
        }
    )


def two_proportion_test(
    successes_a: int, n_a: int, successes_b: int, n_b: int, confidence: float = 0.95
) -> dict[str, float]:
    """B against A: rates, difference b - a with a Wald interval, relative lift (difference /
    rate a, interval scaled alike) and the pooled two-sided z-test p-value."""
    rate_a = successes_a / n_a if n_a else float("nan")
    rate_b = successes_b / n_b if n_b else float("nan")
    difference = rate_b - rate_a
    z_critical = stats.norm.ppf(0.5 + confidence / 2)
    if n_a and n_b:
        se = np.sqrt(rate_a * (1 - rate_a) / n_a + rate_b * (1 - rate_b) / n_b)
        pooled = (successes_a + successes_b) / (n_a + n_b)
        se_pooled = np.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
        p_value = 2 * stats.norm.sf(abs(difference) / se_pooled) if se_pooled > 0 else 1.0
    else:
        se, p_value = float("nan"), float("nan")
    low, high = difference - z_critical * se, difference + z_critical * se
    scale = 1 / rate_a if rate_a else float("nan")
    return {
        "rate_a": rate_a,
        "rate_b": rate_b,
        "difference": difference,
        "difference_ci_low": low,
        "difference_ci_high": high,
        "lift": difference * scale,
        "lift_ci_low": low * scale,
        "lift_ci_high": high * scale,
        "p_value": float(p_value),
    }


def sample_ratio_mismatch(observed, weights) -> float:
    """Chi-square goodness-of-fit p-value of observed counts against the expected weights."""
    observed = np.asarray(observed, dtype=float)
    weights = np.asarray(weights, dtype=float)
    if observed.sum() == 0:
        return 1.0
    expected = observed.sum() * weights / weights.sum()
    return float(stats.chisquare(observed, expected).pvalue)


RESULT_COLUMNS = (
    EXPERIMENT,
    VARIANT,
    "is_control",
    "metric",
    "users",
    "exposed_users",
    "clickers",
    "converters",
    "ctr",
    "conversion_rate",
    "lift",
    "lift_ci_low",
    "lift_ci_high",
    "p_value",
    "is_significant",
    "srm_p_value",
    "has_srm",
)


COUNT_COLUMNS = ("users", "exposed_users", "clickers", "converters")


def variant_counts(outcomes: pd.DataFrame) -> pd.DataFrame:
    """Per variant (index): users, exposed_users, clickers, converters (COUNT_COLUMNS).

    `outcomes`: person_id, variant, is_exposed, has_clicked, has_converted (booleans; one row
    per assigned person). Clickers and converters count exposed users only.
    """
    exposed = outcomes["is_exposed"].astype(bool)
    grouped = (
        outcomes.assign(
            exposed=exposed,
            clicked=exposed & outcomes["has_clicked"].astype(bool),
            converted=exposed & outcomes["has_converted"].astype(bool),
        )
        .groupby(VARIANT)[["exposed", "clicked", "converted"]]
        .agg(["sum", "size"])
    )
    return pd.DataFrame(
        {
            "users": grouped[("exposed", "size")],
            "exposed_users": grouped[("exposed", "sum")],
            "clickers": grouped[("clicked", "sum")],
            "converters": grouped[("converted", "sum")],
        }
    )


def experiment_results(
    experiment: Experiment, outcomes: pd.DataFrame, alpha: float = 0.05
) -> pd.DataFrame:
    """One row per variant (RESULT_COLUMNS) from per-person outcomes (see `variant_counts`)."""
    return variant_results(experiment, variant_counts(outcomes), alpha)


def variant_results(
    experiment: Experiment, counts: pd.DataFrame, alpha: float = 0.05
) -> pd.DataFrame:
    """One row per variant (RESULT_COLUMNS) from the counts per variant (COUNT_COLUMNS,
    indexed by variant; a variant without a row has no users).

    CTR = clickers / exposed users, conversion = converters / exposed users; lift, interval
    and p-value compare the experiment's metric with the control.
    """
    variants = list(experiment.variants)
    counts = counts[list(COUNT_COLUMNS)].reindex(variants, fill_value=0)
    srm_p = sample_ratio_mismatch(counts["users"], list(experiment.variants.values()))
    successes = counts["clickers" if experiment.metric == "ctr" else "converters"]
    control = variants[0]
    rows = []
    for variant in variants:
        test = two_proportion_test(
            int(successes[control]),
            int(counts.at[control, "exposed_users"]),
            int(successes[variant]),
            int(counts.at[variant, "exposed_users"]),
        )
        is_control = variant == control
        exposed = counts.at[variant, "exposed_users"]
        rows.append(
            {
                EXPERIMENT: experiment.name,
                VARIANT: variant,
                "is_control": is_control,
                "metric": experiment.metric,
                "users": int(counts.at[variant, "users"]),
                "exposed_users": int(exposed),
                "clickers": int(counts.at[variant, "clickers"]),
                "converters": int(counts.at[variant, "converters"]),
                "ctr": counts.at[variant, "clickers"] / exposed if exposed else float("nan"),
                "conversion_rate": counts.at[variant, "converters"] / exposed
                if exposed
                else float("nan"),
                "lift": None if is_control else test["lift"],
                "lift_ci_low": None if is_control else test["lift_ci_low"],
                "lift_ci_high": None if is_control else test["lift_ci_high"],
                "p_value": None if is_control else test["p_value"],
                "is_significant": False if is_control else bool(test["p_value"] < alpha),
                "srm_p_value": srm_p,
                "has_srm": bool(srm_p < SRM_ALPHA),
            }
        )
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS)).astype(
        {"lift": float, "lift_ci_low": float, "lift_ci_high": float, "p_value": float}
    )
