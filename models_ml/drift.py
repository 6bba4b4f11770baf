"""Drift between two runs: population stability index (PSI) of segment shares and features.

PSI = sum over bins of (actual - expected) * ln(actual / expected), with shares floored at
`EPSILON` so an empty bin does not make it infinite. Conventional reading: < 0.1 stable,
0.1-0.2 moderate, > 0.2 a real shift.

- A segment's share drift treats membership as two bins (in the segment / not in it).
- A feature's drift bins the current values with the previous run's quantile edges
  (`feature_bins`), so only the previous run's edges and shares need keeping, not its people.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

EPSILON = 1e-4
SEGMENT_SHARE = "segment_share"
FEATURE = "feature"
DRIFT_COLUMNS = (
    "drift_kind",
    "subject",
    "previous_share",
    "current_share",
    "psi",
)


def psi(expected: np.ndarray, actual: np.ndarray, epsilon: float = EPSILON) -> float:
    """Population stability index of two share vectors over the same bins."""
    expected = np.maximum(np.asarray(expected, dtype=float), epsilon)
    actual = np.maximum(np.asarray(actual, dtype=float), epsilon)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def segment_shares(members: pd.Series, n_people: int) -> pd.DataFrame:
    """Share of `n_people` in each segment (`members`: people per segment, indexed by subject),
    ordered by subject."""
    members = members.sort_index(kind="stable")
    return pd.DataFrame(
        {"subject": members.index.astype(str), "share": members.to_numpy() / max(n_people, 1)}
    )


def segment_share_drift(previous: pd.DataFrame, current: pd.DataFrame) -> pd.DataFrame:
    """PSI per segment between two `segment_shares` frames (a missing segment has share 0)."""
    merged = previous.merge(
        current, on="subject", how="outer", suffixes=("_previous", "_current")
    ).fillna(0.0)
    merged = merged.sort_values("subject", kind="stable")
    before, after = merged["share_previous"].to_numpy(), merged["share_current"].to_numpy()
    values = [psi([b, 1 - b], [a, 1 - a]) for b, a in zip(before, after, strict=True)]
    return pd.DataFrame(
        {
            "drift_kind": SEGMENT_SHARE,
            "subject": merged["subject"].to_numpy(),
            "previous_share": before,
            "current_share": after,
            "psi": values,
        },
        columns=list(DRIFT_COLUMNS),
    )


def feature_bins(features: pd.DataFrame, n_bins: int = 10) -> pd.DataFrame:
    """Per numeric feature: quantile bins (bin, lower, upper) and the share of rows in each.

    Edges are the distinct inner quantiles; bins are (lower, upper], the first open below and
    the last open above, and missing values get a bin of their own (bin -1).
    """
    frames = []
    for feature in features.columns:
        values = features[feature].to_numpy(dtype=float, na_value=np.nan)
        present = values[~np.isnan(values)]
        inner = (
            np.unique(np.quantile(present, np.linspace(0, 1, n_bins + 1)[1:-1]))
            if len(present)
            else np.array([])
        )
        lower = np.r_[-np.inf, inner]
        upper = np.r_[inner, np.inf]
        shares = _bin_shares(values, inner)
        frames.append(
            pd.DataFrame(
                {
                    "feature": feature,
                    "bin": np.r_[-1, np.arange(len(lower))],
                    "lower": np.r_[np.nan, lower],
                    "upper": np.r_[np.nan, upper],
                    "share": shares,
                }
            )
        )
    if not frames:
        return pd.DataFrame(columns=["feature", "bin", "lower", "upper", "share"])
    return pd.concat(frames, ignore_index=True)


def feature_drift(previous_bins: pd.DataFrame, features: pd.DataFrame) -> pd.DataFrame:
    """PSI per feature present in both: current values binned with the previous edges."""
    rows = []
    for feature, bins in previous_bins.groupby("feature", sort=True):
        if feature not in features.columns:
            continue
        bins = bins.sort_values("bin")
        inner = bins.loc[bins["bin"] >= 0, "upper"].to_numpy(dtype=float)[:-1]
        values = features[feature].to_numpy(dtype=float, na_value=np.nan)
        rows.append((feature, psi(bins["share"].to_numpy(), _bin_shares(values, inner))))
    return pd.DataFrame(
        {
            "drift_kind": FEATURE,
            "subject": [r[0] for r in rows],
            "previous_share": np.nan,
            "current_share": np.nan,
            "psi": [r[1] for r in rows],
        },
        columns=list(DRIFT_COLUMNS),
    )


def _bin_shares(values: np.ndarray, inner_edges: np.ndarray) -> np.ndarray:
    """Shares of: missing, then each (lower, upper] bin defined by `inner_edges`."""
    missing = np.isnan(values)
    positions = np.searchsorted(inner_edges, values[~missing], side="left")
    counts = np.r_[missing.sum(), np.bincount(positions, minlength=len(inner_edges) + 1)]
    return counts / max(len(values), 1)
