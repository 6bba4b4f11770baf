"""Behavioral segments: k-means with k chosen by silhouette, each cluster named from its features.

`KMeansSegmenter` standardizes the features, optionally reduces them with PCA, fits k-means for
every k in [k_min, k_max], keeps the k with the best silhouette (ties: the smaller k) and records
Davies-Bouldin alongside. Clusters are renumbered by size (0 = largest), so `segment_id`s stay
comparable between runs that find the same structure.

Naming convention
-----------------
A cluster is described by its most distinguishing features: the standardized mean difference
(cluster mean - overall mean) / overall std, largest absolute values first, keeping those of at
least `NAME_MIN_EFFECT`. Feature names are turned into words like this:

==============================  ==================  =====================
feature name                    above average       below average
==============================  ==================  =====================
``share_<dimension>_<value>``   ``<value>``         (not used)
``affinity_<category>``         ``<category>``      (not used)
``monetary``                    ``high-value``      ``low-value``
``frequency``                   ``frequent``        ``occasional``
``recency_days``                ``lapsed``          ``recent``
``tenure_days``                 ``long-standing``   ``new``
``age``                         ``older``           ``younger``
``avg_order_value``             ``big-basket``      ``small-basket``
``n_events``                    ``highly active``   ``low-activity``
``n_sessions``                  ``returning``       ``one-visit``
``n_product_views``             ``browsing``        ``non-browsing``
``n_cart_adds``                 ``cart-adding``     ``non-cart-adding``
``avg_session_events``          ``deep-session``    ``short-session``
``is_<x>`` / ``has_<x>``        ``<x>``             ``non-<x>``
any other ``<name>``            ``high <name>``     ``low <name>``
==============================  ==================  =====================

`<dimension>` is one word (device, os, daypart, weekday, channel, ...); `<value>` and
`<category>` may contain underscores, which become spaces. Words are ordered qualifiers first
(high-value, lapsed, ...), then `share_` words, then categories, so features
`share_device_mobile`, `share_daypart_evening`, `affinity_electronics` read
"mobile evening electronics". A cluster with no feature past the threshold is "typical"; names
are made distinct by adding further features, then a number. Too few people or no varying
feature gives a single cluster named `SINGLE_CLUSTER_NAME`.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.metrics import davies_bouldin_score, silhouette_score
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from models_ml.columns import (
    ALGORITHM,
    DAVIES_BOULDIN,
    IS_CHOSEN,
    N_PEOPLE,
    PERSON_ID,
    SCORE,
    SEGMENT_ID,
    SEGMENT_NAME,
    SEGMENT_TYPE,
    SILHOUETTE,
    USER_SEGMENT_COLUMNS,
    K,
)

ALGORITHM_NAME = "kmeans"
CLUSTER_SEGMENT_TYPE = "cluster"
SINGLE_CLUSTER_NAME = "all people"
TYPICAL_CLUSTER_NAME = "typical"
NAME_MIN_EFFECT = 0.5  # standardized mean difference a feature needs to name a cluster
NAME_MAX_WORDS = 3

# feature name -> (word when above average, word when below average)
_NUMERIC_WORDS = {
    "monetary": ("high-value", "low-value"),
    "frequency": ("frequent", "occasional"),
    "recency_days": ("lapsed", "recent"),
    "tenure_days": ("long-standing", "new"),
    "age": ("older", "younger"),
    "avg_order_value": ("big-basket", "small-basket"),
    "n_events": ("highly active", "low-activity"),
    "n_sessions": ("returning", "one-visit"),
    "n_product_views": ("browsing", "non-browsing"),
    "n_cart_adds": ("cart-adding", "non-cart-adding"),
    "avg_session_events": ("deep-session", "short-session"),
}
# Word order in a name: qualifiers, then context (share_), then categories (affinity_).
_QUALIFIER, _CONTEXT, _CATEGORY = 0, 1, 2


def feature_word(feature: str, effect: float) -> tuple[str | None, int]:
    """Word describing a cluster whose mean of `feature` is `effect` std from the overall mean.

    Returns (word or None when the convention has no word for that direction, word order class).
    """
    above = effect > 0
    if feature.startswith("share_"):
        parts = feature.split("_", 2)
        value = parts[2] if len(parts) == 3 else parts[-1]
        return (value.replace("_", " ") if above else None), _CONTEXT
    if feature.startswith("affinity_"):
        category = feature.removeprefix("affinity_").replace("_", " ")
        return (category if above else None), _CATEGORY
    if feature in _NUMERIC_WORDS:
        high, low = _NUMERIC_WORDS[feature]
        return (high if above else low), _QUALIFIER
    for prefix in ("is_", "has_"):
        if feature.startswith(prefix):
            flag = feature.removeprefix(prefix).replace("_", " ")
            return (flag if above else f"non-{flag}"), _QUALIFIER
    words = feature.replace("_", " ")
    return (f"high {words}" if above else f"low {words}"), _QUALIFIER


def name_cluster(effects: pd.Series, n_words: int = NAME_MAX_WORDS, min_effect: float = 0.0) -> str:
    """Name from the `n_words` strongest effects (feature -> standardized mean difference)."""
    ranked = effects[(effects.abs() >= min_effect) & (effects != 0)]
    ranked = ranked.reindex(ranked.abs().sort_values(ascending=False, kind="stable").index)
    chosen: list[tuple[int, int, str]] = []
    for position, (feature, effect) in enumerate(ranked.items()):
        word, order = feature_word(str(feature), float(effect))
        if word is not None and word not in {w for _, _, w in chosen}:
            chosen.append((order, position, word))
        if len(chosen) == n_words:
            break
    if not chosen:
        return TYPICAL_CLUSTER_NAME
    return " ".join(word for _, _, word in sorted(chosen))


def name_clusters(effects: pd.DataFrame) -> dict[int, str]:
    """Distinct names for all clusters (rows of `effects`: cluster x feature effect)."""
    names = {c: name_cluster(effects.loc[c], min_effect=NAME_MIN_EFFECT) for c in effects.index}
    # Clashing names drop the effect threshold and take more words until they differ.
    for n_words in range(2, effects.shape[1] + 1):
        clashing = _clashing(names)
        if not clashing:
            break
        names.update({c: name_cluster(effects.loc[c], n_words=n_words) for c in clashing})
    for c in _clashing(names):
        names[c] = f"{names[c]} {c + 1}"
    return names


def _clashing(names: dict[int, str]) -> list[int]:
    counts = pd.Series(names).value_counts()
    return [c for c, name in names.items() if counts[name] > 1]


class KMeansSegmenter(BaseEstimator):
    """K-means segmentation with automatic k, named clusters and quality metrics.

    Parameters:
        k_min, k_max: range of cluster counts tried (capped by the number of distinct people - 1).
        random_state: seeds k-means, PCA and the silhouette sample.
        n_init: k-means restarts per k.
        pca_variance: keep this share of variance with PCA before clustering; None disables.
        silhouette_sample_size: above this many people the silhouette is computed on a seeded
            sample of this size (the full computation is quadratic).

    Fitted attributes:
        k_: chosen number of clusters (1 when the input cannot be segmented).
        labels_: cluster of each fitted row (0 = largest cluster).
        quality_: one row per k tried: algorithm, k, silhouette, davies_bouldin, n_people,
            is_chosen (the `ml.segment_quality` shape without run_at).
        feature_effects_: cluster x feature standardized mean differences.
        cluster_profiles_: per cluster: segment_id, segment_name, size, share, top_features.
        cluster_names_: {cluster: human-readable name}, names distinct.
        feature_names_in_: the feature columns, in order.
    """

    def __init__(
        self,
        k_min: int = 2,
        k_max: int = 8,
        random_state: int | None = 42,
        n_init: int = 10,
        pca_variance: float | None = 0.95,
        silhouette_sample_size: int = 10_000,
    ):
        self.k_min = k_min
        self.k_max = k_max
        self.random_state = random_state
        self.n_init = n_init
        self.pca_variance = pca_variance
        self.silhouette_sample_size = silhouette_sample_size

    def fit(self, X: pd.DataFrame, y=None) -> KMeansSegmenter:
        values = _numeric_values(X)
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = values.shape[1]
        self.imputer_ = SimpleImputer(strategy="median", keep_empty_features=True)
        filled = self.imputer_.fit_transform(values) if len(values) else values
        self.scaler_ = StandardScaler()
        standardized = self.scaler_.fit_transform(filled) if len(filled) else filled
        self.varying_ = filled.std(axis=0) > 0 if len(filled) else np.zeros(values.shape[1], bool)
        embedded = self._embed_fit(standardized[:, self.varying_])

        max_k = min(self.k_max, _count_distinct_rows(embedded, self.k_max + 1) - 1)
        ks = list(range(self.k_min, max_k + 1)) if embedded.shape[1] else []
        rows, models = self._try_ks(embedded, ks)
        valid = [r for r in rows if not np.isnan(r[SILHOUETTE])]
        if valid:
            best = max(valid, key=lambda r: (r[SILHOUETTE], -r[K]))
            self.kmeans_ = models[best[K]]
            raw_labels = self.kmeans_.labels_
            self.k_ = best[K]
        else:
            self.kmeans_ = None
            raw_labels = np.zeros(len(values), dtype=np.int64)
            self.k_ = 1
            rows = [_quality_row(1, np.nan, np.nan)]
        self.quality_ = pd.DataFrame(rows, columns=[K, SILHOUETTE, DAVIES_BOULDIN])
        self.quality_.insert(0, ALGORITHM, ALGORITHM_NAME)
        self.quality_[N_PEOPLE] = len(values)
        self.quality_[IS_CHOSEN] = self.quality_[K] == self.k_

        self.relabel_ = _order_by_size(raw_labels, self.k_)
        self.labels_ = self.relabel_[raw_labels]
        self._describe_clusters(standardized)
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "k_")
        if self.kmeans_ is None:
            return np.zeros(len(X), dtype=np.int64)
        return self.relabel_[self.kmeans_.predict(self._embed(X))]

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        """Distance of each row to every cluster centroid (columns in cluster order)."""
        check_is_fitted(self, "k_")
        if self.kmeans_ is None:
            return np.zeros((len(X), 1))
        distances = self.kmeans_.transform(self._embed(X))
        inverse = np.argsort(self.relabel_)
        return distances[:, inverse]

    def _embed_fit(self, standardized: np.ndarray) -> np.ndarray:
        self.pca_ = None
        if self.pca_variance is not None and standardized.shape[1] > 1 and len(standardized) > 1:
            self.pca_ = PCA(
                n_components=self.pca_variance, svd_solver="full", random_state=self.random_state
            )
            return self.pca_.fit_transform(standardized)
        return standardized

    def _embed(self, X: pd.DataFrame) -> np.ndarray:
        values = _numeric_values(X[list(self.feature_names_in_)])
        standardized = self.scaler_.transform(self.imputer_.transform(values))[:, self.varying_]
        return self.pca_.transform(standardized) if self.pca_ is not None else standardized

    def _try_ks(self, embedded: np.ndarray, ks: list[int]) -> tuple[list[dict], dict]:
        rows, models = [], {}
        n = len(embedded)
        sample_size = self.silhouette_sample_size if n > self.silhouette_sample_size else None
        for k in ks:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model = KMeans(n_clusters=k, n_init=self.n_init, random_state=self.random_state)
                labels = model.fit_predict(embedded)
            if len(np.unique(labels)) < 2:
                rows.append(_quality_row(k, np.nan, np.nan))
                continue
            silhouette = silhouette_score(
                embedded, labels, sample_size=sample_size, random_state=self.random_state
            )
            rows.append(_quality_row(k, silhouette, davies_bouldin_score(embedded, labels)))
            models[k] = model
        return rows, models

    def _describe_clusters(self, standardized: np.ndarray) -> None:
        features = list(self.feature_names_in_)
        clusters = np.arange(self.k_)
        sizes = np.bincount(self.labels_, minlength=self.k_)
        if len(standardized):
            sums = np.zeros((self.k_, standardized.shape[1]))
            np.add.at(sums, self.labels_, standardized)
            effects = sums / np.maximum(sizes, 1)[:, None]
        else:
            effects = np.zeros((self.k_, len(features)))
        self.feature_effects_ = pd.DataFrame(effects, index=clusters, columns=features)
        self.feature_effects_.index.name = "cluster"
        if self.k_ == 1:
            self.cluster_names_ = {0: SINGLE_CLUSTER_NAME}
        else:
            self.cluster_names_ = name_clusters(self.feature_effects_)
        self.cluster_profiles_ = pd.DataFrame(
            {
                SEGMENT_ID: [segment_id(c) for c in clusters],
                SEGMENT_NAME: [self.cluster_names_[c] for c in clusters],
                "size": sizes,
                "share": sizes / max(sizes.sum(), 1),
                "top_features": [_top_features(self.feature_effects_.loc[c]) for c in clusters],
            },
            index=pd.Index(clusters, name="cluster"),
        )


def segment_id(cluster: int) -> str:
    return f"{CLUSTER_SEGMENT_TYPE}_{cluster}"


def cluster_segments(
    features: pd.DataFrame,
    segmenter: KMeansSegmenter,
    *,
    col_person: str = PERSON_ID,
) -> pd.DataFrame:
    """Cluster people into `ml.user_segments` rows.

    Args:
        features: numeric features indexed by person_id (or with a person_id column).
        segmenter: fitted here on `features` unless it is already fitted, then only predicts.

    Returns:
        person_id, segment_type="cluster", segment_id ("cluster_<n>", 0 = largest),
        segment_name, score. The score is 1 / (1 + distance to the assigned centroid) in the
        standardized (and PCA) space: 1 at the centroid, towards 0 at the cluster's edge; every
        member scores 1 when the input could not be segmented.
    """
    if col_person in features.columns:
        features = features.set_index(col_person)
    if not hasattr(segmenter, "k_"):
        segmenter.fit(features)
    labels = segmenter.predict(features)
    distances = segmenter.transform(features)
    nearest = distances[np.arange(len(labels)), labels] if len(labels) else np.zeros(0)
    return pd.DataFrame(
        {
            PERSON_ID: features.index.to_numpy(),
            SEGMENT_TYPE: CLUSTER_SEGMENT_TYPE,
            SEGMENT_ID: np.array([segment_id(c) for c in range(segmenter.k_)], dtype=object)[
                labels
            ],
            SEGMENT_NAME: np.array(
                [segmenter.cluster_names_[c] for c in range(segmenter.k_)], dtype=object
            )[labels],
            SCORE: 1.0 / (1.0 + nearest),
        },
        columns=list(USER_SEGMENT_COLUMNS),
    ).rename(columns={PERSON_ID: col_person})


def _numeric_values(X: pd.DataFrame) -> np.ndarray:
    not_numeric = [
        c
        for c, dtype in X.dtypes.items()
        if not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype))
    ]
    if not_numeric:
        raise ValueError(f"features must be numeric or boolean; not: {not_numeric}")
    return X.to_numpy(dtype=float, na_value=np.nan)


def _count_distinct_rows(values: np.ndarray, cap: int) -> int:
    """Number of distinct rows, capped at `cap` (all that bounding k needs)."""
    if values.shape[1] == 0:
        return min(len(values), 1)
    return min(len(pd.DataFrame(values).drop_duplicates()), cap)


def _quality_row(k: int, silhouette: float, davies_bouldin: float) -> dict:
    return {K: k, SILHOUETTE: float(silhouette), DAVIES_BOULDIN: float(davies_bouldin)}


def _order_by_size(labels: np.ndarray, k: int) -> np.ndarray:
    """Map raw labels to 0..k-1 by decreasing size (ties: lower raw label first)."""
    sizes = np.bincount(labels, minlength=k)
    order = np.lexsort((np.arange(k), -sizes))
    relabel = np.empty(k, dtype=np.int64)
    relabel[order] = np.arange(k)
    return relabel


def _top_features(effects: pd.Series, n: int = NAME_MAX_WORDS) -> str:
    top = effects.reindex(effects.abs().sort_values(ascending=False, kind="stable").index)[:n]
    return ", ".join(f"{feature} {effect:+.2f}" for feature, effect in top.items())
