"""Behavioral segments: k-means with k chosen by silhouette, each cluster named from its features.

`KMeansSegmenter` standardizes the features, optionally reduces them with PCA, fits k-means for
every k in [k_min, k_max], keeps the k with the best silhouette (ties: the smaller k) and records
Davies-Bouldin alongside. Clusters are renumbered by size (0 = largest), so `segment_id`s stay
comparable between runs that find the same structure.

The cost stays bounded as people grow: k is searched on a seeded sample of at most
`search_sample_size` people (everyone below that), the silhouettes of all k come from one pass
over the pairwise distances of a seeded sample of `silhouette_sample_size`, and only the chosen k
is refitted on everyone, starting from the sample's centroids.

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

import copy
import warnings

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn.base import BaseEstimator
from sklearn.cluster import DBSCAN, AgglomerativeClustering, KMeans, MiniBatchKMeans
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import davies_bouldin_score
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

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
ALGORITHMS = ("kmeans", "minibatch_kmeans", "dbscan", "agglomerative")
CLUSTER_SEGMENT_TYPE = "cluster"
SINGLE_CLUSTER_NAME = "all people"
TYPICAL_CLUSTER_NAME = "typical"
NAME_MIN_EFFECT = 0.5  # standardized mean difference a feature needs to name a cluster
NAME_MAX_WORDS = 3
SILHOUETTE_CHUNK_ROWS = 500  # rows of pairwise distances held at once (x 10k sample: 40 MB)

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


def pca_solver(n_rows: int, n_features: int) -> str:
    """PCA's solver: the eigenvectors of the features' covariance for a tall, narrow matrix
    (many more people than features), else the SVD of the whole matrix. Both give the same
    components. At 1.09M people x 25 features PCA took 1.8-2.9 s by SVD, 0.2-0.3 s by the
    covariance, and fitting the chosen k 6.6 s against 3.6 s, with the same clusters."""
    if n_features <= 1_000 and n_rows >= 10 * n_features:
        return "covariance_eigh"
    return "full"


class KMeansSegmenter(BaseEstimator):
    """Segmentation with automatic k, named clusters, quality metrics and stable cluster ids.

    Parameters:
        k_min, k_max: range of cluster counts tried (capped by the number of distinct people - 1).
        random_state: seeds the clustering, PCA and the samples.
        n_init: k-means restarts per k in the search.
        pca_variance: keep this share of variance with PCA before clustering; None disables.
        search_sample_size: above this many people, k is chosen on a seeded sample of this
            size and the chosen k is refitted on everyone from the sample's centroids
            (`kmeans`, `minibatch_kmeans`; the others assign everyone to the sample's centroids).
        silhouette_sample_size: above this many people (of the search sample) the silhouette
            (and Davies-Bouldin) is computed on a seeded sample of this size (the silhouette is
            quadratic).
        algorithm: `kmeans`, `minibatch_kmeans` (`partial_fit` over chunks; what `kmeans`
            switches to above `minibatch_above` people), `dbscan` (k found by density; noise
            points join their nearest cluster) or `agglomerative` (Ward, fitted on a seeded
            sample of `agglomerative_max_people`, the rest assigned to the nearest centroid).
        minibatch_above, minibatch_chunk: when and in what chunk size MiniBatchKMeans is used
            (counted on the rows a fit sees: the search sample, then everyone for the refit).
        dbscan_eps, dbscan_min_samples: DBSCAN neighbourhood.
        previous_centroids: cluster id x feature means (original feature units) of the
            previous run; new clusters are matched to them (Hungarian assignment on the
            standardized centroid distance) and inherit their ids. Without it, ids follow size.

    Every algorithm ends in centroids: `predict` assigns the nearest centroid.

    Fitted attributes:
        k_: chosen number of clusters (1 when the input cannot be segmented).
        labels_: cluster id of each fitted row.
        cluster_ids_: the ids in use (ascending).
        centroids_: embedded-space centroids, one row per entry of `cluster_ids_`.
        cluster_centers_: cluster id x feature means in original units (what the next run
            passes as `previous_centroids`).
        quality_: one row per k tried: algorithm, k, silhouette, davies_bouldin, n_people,
            is_chosen (the `ml.segment_quality` shape without run_at). The chosen row scores
            the centroids fitted on everyone, the others those of the search sample.
        feature_effects_: cluster x feature standardized mean differences.
        cluster_profiles_: per cluster: segment_id, segment_name, size, share, top_features.
        cluster_names_: {cluster id: human-readable name}, names distinct.
        embedding_: the embedded (standardized, PCA) training rows, for plots.
        feature_names_in_: the feature columns, in order.
    """

    def __init__(
        self,
        k_min: int = 2,
        k_max: int = 8,
        random_state: int | None = 42,
        n_init: int = 10,
        pca_variance: float | None = 0.95,
        search_sample_size: int = 50_000,
        silhouette_sample_size: int = 10_000,
        algorithm: str = ALGORITHM_NAME,
        minibatch_above: int = 200_000,
        minibatch_chunk: int = 50_000,
        dbscan_eps: float = 1.5,
        dbscan_min_samples: int = 10,
        agglomerative_max_people: int = 20_000,
        previous_centroids: pd.DataFrame | None = None,
    ):
        self.k_min = k_min
        self.k_max = k_max
        self.random_state = random_state
        self.n_init = n_init
        self.pca_variance = pca_variance
        self.search_sample_size = search_sample_size
        self.silhouette_sample_size = silhouette_sample_size
        self.algorithm = algorithm
        self.minibatch_above = minibatch_above
        self.minibatch_chunk = minibatch_chunk
        self.dbscan_eps = dbscan_eps
        self.dbscan_min_samples = dbscan_min_samples
        self.agglomerative_max_people = agglomerative_max_people
        self.previous_centroids = previous_centroids

    def fit(self, X: pd.DataFrame, y=None) -> KMeansSegmenter:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, not {self.algorithm!r}")
        values = _numeric_values(X)
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = values.shape[1]
        self.medians_ = _column_medians(values)
        # One matrix, changed in place: filled, then standardized. At 1.09M people x 25
        # features each whole-matrix temporary cost about a second on a 2-core VM.
        standardized = _fill_missing(values, self.medians_)
        self.scaler_ = _fitted_scaler(standardized)
        self.varying_ = _varying(standardized)
        _transform_in_place(self.scaler_, standardized)
        embedded = self._embed_fit(
            standardized if self.varying_.all() else standardized[:, self.varying_]
        )
        self.embedding_ = embedded
        self.algorithm_used_ = self._resolved_algorithm(len(embedded))

        rows, raw_centroids = self._choose_k(embedded)
        self.k_ = len(raw_centroids)
        self.quality_ = pd.DataFrame(rows, columns=[K, SILHOUETTE, DAVIES_BOULDIN])
        self.quality_.insert(0, ALGORITHM, self.algorithm_used_)
        self.quality_[N_PEOPLE] = len(values)
        self.quality_[IS_CHOSEN] = self.quality_[K] == self.k_

        raw_labels = _nearest(embedded, raw_centroids)
        # The clusters' standardized means are their effects; in original units, the means
        # the next run matches its clusters to.
        effects = _group_means(standardized, raw_labels, len(raw_centroids))
        means = effects * self.scaler_.scale_ + self.scaler_.mean_
        ids = self._stable_ids(raw_labels, means)
        order = np.argsort(ids)
        self.cluster_ids_ = ids[order]
        self.centroids_ = raw_centroids[order]
        self.labels_ = ids[raw_labels]
        self.cluster_centers_ = pd.DataFrame(
            means[order], index=pd.Index(self.cluster_ids_, name="cluster"), columns=list(X.columns)
        )
        sizes = np.bincount(raw_labels, minlength=len(raw_centroids))[order]
        self._describe_clusters(effects[order], sizes)
        return self

    def refresh(self, X: pd.DataFrame) -> KMeansSegmenter:
        """Assign the rows of `X` (the features of `fit`, in its order) to the fitted clusters
        without fitting anything: what a night between model selections does with the
        segmenter its selection fitted. The fill values, scaler, PCA, centroids, cluster ids
        and names stay the fit's; labels_, embedding_, quality_ (one row: the silhouette and
        Davies-Bouldin of this assignment, on a seeded sample), cluster_centers_,
        feature_effects_ and cluster_profiles_ become those of `X`."""
        check_is_fitted(self, "k_")
        if list(X.columns) != list(self.feature_names_in_):
            raise ValueError(
                "refresh needs the features the segmenter was fitted on, in the same order"
            )
        values = _numeric_values(X)
        standardized = _fill_missing(values, self.medians_)
        _transform_in_place(self.scaler_, standardized)
        varying = standardized if self.varying_.all() else standardized[:, self.varying_]
        embedded = _pca_transform(self.pca_, varying) if self.pca_ is not None else varying
        self.embedding_ = embedded
        positions = _nearest(embedded, self.centroids_)  # index into cluster_ids_
        self.labels_ = self.cluster_ids_[positions]
        if self.k_ > 1:
            scored = embedded[self._sample(len(embedded), self.silhouette_sample_size)]
            score = self._scores(scored, [self.centroids_])[0]
        else:
            score = {SILHOUETTE: np.nan, DAVIES_BOULDIN: np.nan}
        self.quality_ = pd.DataFrame(
            [_quality_row(self.k_, score[SILHOUETTE], score[DAVIES_BOULDIN])],
            columns=[K, SILHOUETTE, DAVIES_BOULDIN],
        )
        self.quality_.insert(0, ALGORITHM, self.algorithm_used_)
        self.quality_[N_PEOPLE] = len(values)
        self.quality_[IS_CHOSEN] = True
        k = len(self.cluster_ids_)
        effects = _group_means(standardized, positions, k)
        means = effects * self.scaler_.scale_ + self.scaler_.mean_
        self.cluster_centers_ = pd.DataFrame(
            means, index=pd.Index(self.cluster_ids_, name="cluster"), columns=list(X.columns)
        )
        self._describe_clusters(
            effects, np.bincount(positions, minlength=k), names=self.cluster_names_
        )
        return self

    def without_rows(self) -> KMeansSegmenter:
        """A copy without the per-row attributes (labels_, embedding_): what is worth storing
        (at 1M people the embedding alone is about 90 MB)."""
        check_is_fitted(self, "k_")
        stored = copy.copy(self)
        for name in ("labels_", "embedding_"):
            stored.__dict__.pop(name, None)
        return stored

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "k_")
        return self.cluster_ids_[_nearest(self._embed(X), self.centroids_)]

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        """Distance of each row to every cluster centroid (columns in `cluster_ids_` order)."""
        check_is_fitted(self, "k_")
        return _distances(self._embed(X), self.centroids_)

    def _resolved_algorithm(self, n_people: int) -> str:
        if self.algorithm == ALGORITHM_NAME and n_people > self.minibatch_above:
            return "minibatch_kmeans"
        return self.algorithm

    def _embed_fit(self, standardized: np.ndarray) -> np.ndarray:
        self.pca_ = None
        if self.pca_variance is not None and standardized.shape[1] > 1 and len(standardized) > 1:
            self.pca_ = PCA(
                n_components=self.pca_variance,
                svd_solver=pca_solver(*standardized.shape),
                random_state=self.random_state,
            ).fit(standardized)
            return _pca_transform(self.pca_, standardized)
        return standardized

    def _embed(self, X: pd.DataFrame) -> np.ndarray:
        values = _numeric_values(X[list(self.feature_names_in_)])
        if not len(values):
            return np.zeros((0, self.centroids_.shape[1]))
        standardized = _fill_missing(values, self.medians_)
        _transform_in_place(self.scaler_, standardized)
        if not self.varying_.all():
            standardized = standardized[:, self.varying_]
        return _pca_transform(self.pca_, standardized) if self.pca_ is not None else standardized

    def _sample(self, n: int, size: int) -> np.ndarray:
        if n <= size:
            return np.arange(n)
        return np.sort(np.random.default_rng(self.random_state).choice(n, size, replace=False))

    def _choose_k(self, embedded: np.ndarray) -> tuple[list[dict], np.ndarray]:
        """Quality rows of every k tried and the chosen k's centroids (fitted on everyone)."""
        search_rows = self._sample(len(embedded), self.search_sample_size)
        search = embedded if len(search_rows) == len(embedded) else embedded[search_rows]
        scored = search[self._sample(len(search), self.silhouette_sample_size)]
        # The search's size is bounded by the samples: one BLAS / OpenMP thread costs little
        # there, while more stall at every k-means iteration on a busy machine (S tier, 2 busy
        # cores: 1.3 s per k with two threads, 0.1 s with one).
        refit = search is not embedded and self.algorithm_used_ in ("kmeans", "minibatch_kmeans")
        with threadpool_limits(limits=1):
            rows, candidates = self._search(search, scored, refit)
        valid = [r for r in rows if not np.isnan(r[SILHOUETTE])]
        if not valid:
            return [_quality_row(1, np.nan, np.nan)], np.zeros((1, embedded.shape[1]))
        best = max(valid, key=lambda r: (r[SILHOUETTE], -r[K]))
        centroids = candidates[best[K]]
        if refit:
            centroids = self._refit(embedded, centroids)
            best.update(self._scores(scored, [centroids])[0])
        return rows, centroids

    def _scores(self, scored: np.ndarray, centroid_sets: list[np.ndarray]) -> list[dict]:
        """Silhouette and Davies-Bouldin of the `scored` rows labelled by each centroid set
        (the same rows for every k: the pairwise distances are computed once for all)."""
        labelings = [_nearest(scored, centroids) for centroids in centroid_sets]
        silhouettes = silhouette_scores(scored, labelings)
        return [
            {
                SILHOUETTE: silhouette,
                DAVIES_BOULDIN: np.nan
                if np.isnan(silhouette)
                else float(davies_bouldin_score(scored, labels)),
            }
            for silhouette, labels in zip(silhouettes, labelings, strict=True)
        ]

    def _search(
        self, search: np.ndarray, scored: np.ndarray, refit: bool = False
    ) -> tuple[list[dict], dict]:
        """Quality rows and {k: centroids} of every k tried on the search sample (`refit`: the
        chosen k is fitted on everyone and scored again after)."""
        max_k = min(self.k_max, _count_distinct_rows(search, self.k_max + 1) - 1)
        if not search.shape[1] or max_k < max(self.k_min, 2):
            return [], {}
        if self.algorithm_used_ == "dbscan":
            return self._try_dbscan(search, scored)
        return self._try_ks(search, scored, list(range(self.k_min, max_k + 1)), refit)

    def _try_ks(
        self, search: np.ndarray, scored: np.ndarray, ks: list[int], refit: bool = False
    ) -> tuple[list[dict], dict]:
        algorithm = self._resolved_algorithm(len(search))
        fit_on = search
        if algorithm == "agglomerative":
            fit_on = search[self._sample(len(search), self.agglomerative_max_people)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            centroid_sets = [self._fit_k(fit_on, k, algorithm) for k in ks]
        if refit and len(ks) == 1:
            # One k (a night that reuses the selection's k): it is scored after its refit on
            # everyone (`_choose_k`). Here only whether its labelling can be scored at all (a
            # silhouette needs 2 to n - 1 clusters); 0.0 is replaced by the refit's score. At
            # L the silhouette of the 10k sample took 0.6 s.
            labels = _nearest(scored, centroid_sets[0])
            scorable = 1 < len(np.unique(labels)) < len(scored)
            scores = [{SILHOUETTE: 0.0 if scorable else np.nan, DAVIES_BOULDIN: np.nan}]
        else:
            scores = self._scores(scored, centroid_sets)
        rows = [
            _quality_row(k, score[SILHOUETTE], score[DAVIES_BOULDIN])
            for k, score in zip(ks, scores, strict=True)
        ]
        candidates = {
            k: centroids
            for k, centroids, score in zip(ks, centroid_sets, scores, strict=True)
            if not np.isnan(score[SILHOUETTE])
        }
        return rows, candidates

    def _refit(self, embedded: np.ndarray, centroids: np.ndarray) -> np.ndarray:
        """The chosen k fitted on everyone, starting from the search sample's centroids."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return self._fit_k(embedded, len(centroids), self.algorithm_used_, init=centroids)

    def _fit_k(
        self, points: np.ndarray, k: int, algorithm: str, init: np.ndarray | None = None
    ) -> np.ndarray:
        if algorithm == "agglomerative":
            labels = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(points)
            return _group_means(points, labels, k)
        start = {"init": "k-means++"} if init is None else {"init": init, "n_init": 1}
        if algorithm == "minibatch_kmeans":
            model = MiniBatchKMeans(
                n_clusters=k,
                random_state=self.random_state,
                **({"n_init": 3} | start),
                batch_size=4096,
            )
            order = np.random.default_rng(self.random_state).permutation(len(points))
            for begin in range(0, len(order), self.minibatch_chunk):
                chunk = points[order[begin : begin + self.minibatch_chunk]]
                if len(chunk) >= k:
                    model.partial_fit(chunk)
            return model.cluster_centers_
        model = KMeans(
            n_clusters=k, random_state=self.random_state, **({"n_init": self.n_init} | start)
        )
        return model.fit(points).cluster_centers_

    def _try_dbscan(self, search: np.ndarray, scored: np.ndarray) -> tuple[list[dict], dict]:
        sample = search[self._sample(len(search), self.agglomerative_max_people)]
        found = DBSCAN(eps=self.dbscan_eps, min_samples=self.dbscan_min_samples).fit_predict(sample)
        k = int(found.max()) + 1
        if k < 2:
            return [_quality_row(max(k, 1), np.nan, np.nan)], {}
        core = found >= 0
        centroids = _group_means(sample[core], found[core], k)
        score = self._scores(scored, [centroids])[0]
        return [_quality_row(k, score[SILHOUETTE], score[DAVIES_BOULDIN])], {k: centroids}

    def _stable_ids(self, raw_labels: np.ndarray, means: np.ndarray) -> np.ndarray:
        """Cluster id of each raw cluster: the matched previous id, else by size."""
        k = len(means)
        by_size = _order_by_size(raw_labels, k)
        previous = self.previous_centroids
        if previous is None or not len(previous) or k == 1:
            return by_size
        shared = [c for c in self.feature_names_in_ if c in previous.columns]
        if not shared:
            return by_size
        columns = [list(self.feature_names_in_).index(c) for c in shared]
        scale = np.where(self.scaler_.scale_[columns] > 0, self.scaler_.scale_[columns], 1.0)
        current = means[:, columns] / scale
        old = previous[shared].to_numpy(dtype=float) / scale
        rows, cols = linear_sum_assignment(_distances(current, np.nan_to_num(old)))
        ids = np.full(k, -1, dtype=np.int64)
        ids[rows] = np.asarray(previous.index, dtype=np.int64)[cols]
        # Clusters without a predecessor take fresh ids, larger ones first.
        fresh = iter(i for i in range(k + len(previous)) if i not in set(ids))
        for raw in np.argsort(by_size):
            if ids[raw] < 0:
                ids[raw] = next(fresh)
        return ids

    def _describe_clusters(
        self, effects: np.ndarray, sizes: np.ndarray, names: dict[int, str] | None = None
    ) -> None:
        """Effects, names and profiles of the clusters (`effects`, `sizes`: one row each, in
        `cluster_ids_` order; `names`: keep these names instead of naming them again)."""
        features = list(self.feature_names_in_)
        clusters = self.cluster_ids_
        self.feature_effects_ = pd.DataFrame(effects, index=clusters, columns=features)
        self.feature_effects_.index.name = "cluster"
        if names is not None:
            self.cluster_names_ = dict(names)
        elif self.k_ == 1:
            self.cluster_names_ = {int(clusters[0]): SINGLE_CLUSTER_NAME}
        else:
            self.cluster_names_ = {
                int(c): name for c, name in name_clusters(self.feature_effects_).items()
            }
        self.cluster_profiles_ = pd.DataFrame(
            {
                SEGMENT_ID: [segment_id(c) for c in clusters],
                SEGMENT_NAME: [self.cluster_names_[int(c)] for c in clusters],
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
    refresh: bool = False,
) -> pd.DataFrame:
    """Cluster people into `ml.user_segments` rows.

    Args:
        features: numeric features indexed by person_id (or with a person_id column).
        segmenter: fitted here on `features` unless it is already fitted, then only predicts.
        refresh: a fitted segmenter is `refresh`ed with `features` (its per-run attributes
            describe them), then assigns them.

    Returns:
        person_id, segment_type="cluster", segment_id ("cluster_<n>", 0 = largest),
        segment_name, score. The score is 1 / (1 + distance to the assigned centroid) in the
        standardized (and PCA) space: 1 at the centroid, towards 0 at the cluster's edge; every
        member scores 1 when the input could not be segmented.
    """
    if col_person in features.columns:
        features = features.set_index(col_person)
    if refresh:  # assigned to the fitted clusters: their embedding is at hand
        distances = _distances(segmenter.refresh(features).embedding_, segmenter.centroids_)
    elif hasattr(segmenter, "k_"):
        distances = segmenter.transform(features)
    else:  # fitted on these rows: their embedding is at hand
        distances = _distances(segmenter.fit(features).embedding_, segmenter.centroids_)
    nearest = distances.argmin(axis=1) if len(features) else np.zeros(0, dtype=np.int64)
    clusters = segmenter.cluster_ids_
    names = np.array([segmenter.cluster_names_[int(c)] for c in clusters], dtype=object)
    return pd.DataFrame(
        {
            PERSON_ID: features.index.to_numpy(),
            SEGMENT_TYPE: CLUSTER_SEGMENT_TYPE,
            SEGMENT_ID: np.array([segment_id(c) for c in clusters], dtype=object)[nearest],
            SEGMENT_NAME: names[nearest],
            SCORE: 1.0 / (1.0 + distances[np.arange(len(nearest)), nearest])
            if segmenter.k_ > 1
            else 1.0,
        },
        columns=list(USER_SEGMENT_COLUMNS),
    ).rename(columns={PERSON_ID: col_person})


def _numeric_values(X: pd.DataFrame) -> np.ndarray:
    """The features as a float matrix of its own (changed in place by the callers)."""
    not_numeric = [
        c
        for c, dtype in X.dtypes.items()
        if not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype))
    ]
    if not_numeric:
        raise ValueError(f"features must be numeric or boolean; not: {not_numeric}")
    return X.to_numpy(dtype=float, na_value=np.nan, copy=True)


def _column_medians(values: np.ndarray) -> np.ndarray:
    """Median of each column ignoring NaN, 0 for a column without values: what
    SimpleImputer(strategy="median", keep_empty_features=True) learns, 10x faster on millions."""
    if not len(values):
        return np.zeros(values.shape[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        return np.nan_to_num(np.nanmedian(values, axis=0), nan=0.0)


# Rows of a block the whole-matrix passes work on at once (x 25 features: 13 MB): their
# temporaries are reused instead of first-touching a fresh matrix-sized one each time.
CHUNK_ROWS = 65_536


def _chunks(n: int) -> list[slice]:
    return [slice(start, min(start + CHUNK_ROWS, n)) for start in range(0, n, CHUNK_ROWS)]


def _fill_missing(values: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """`values` with each NaN replaced by its column's `fill`, in place."""
    for rows in _chunks(len(values)):
        block = values[rows]
        np.copyto(block, fill, where=np.isnan(block))
    return values


def _fitted_scaler(values: np.ndarray) -> StandardScaler:
    """A StandardScaler fitted on `values` block by block (the same mean and variance, up to
    float rounding: its incremental fit combines them)."""
    scaler = StandardScaler()
    if not len(values):  # nothing to learn: the identity
        scaler.mean_, scaler.var_ = np.zeros(values.shape[1]), np.zeros(values.shape[1])
        scaler.scale_, scaler.n_samples_seen_ = np.ones(values.shape[1]), 0
        return scaler
    for rows in _chunks(len(values)):
        scaler.partial_fit(values[rows])
    return scaler


def _transform_in_place(scaler: StandardScaler, values: np.ndarray) -> None:
    for rows in _chunks(len(values)):
        block = values[rows]
        block -= scaler.mean_
        block /= scaler.scale_


def _varying(values: np.ndarray) -> np.ndarray:
    """Whether each column takes more than one value."""
    if not len(values):
        return np.zeros(values.shape[1], dtype=bool)
    return values.max(axis=0) > values.min(axis=0)


def _pca_transform(pca: PCA, values: np.ndarray) -> np.ndarray:
    """`pca.transform(values)` block by block (it centers a copy of its input)."""
    out = np.empty((len(values), pca.n_components_))
    for rows in _chunks(len(values)):
        out[rows] = pca.transform(values[rows])
    return out


def _count_distinct_rows(values: np.ndarray, cap: int) -> int:
    """Number of distinct rows, capped at `cap` (all that bounding k needs)."""
    if values.shape[1] == 0:
        return min(len(values), 1)
    return min(len(pd.DataFrame(values).drop_duplicates()), cap)


def silhouette_scores(points: np.ndarray, labelings: list[np.ndarray]) -> list[float]:
    """Mean silhouette of each labeling of the same `points` (what sklearn's `silhouette_score`
    gives for each), the pairwise distances computed once, in chunks of rows, for all of them.
    NaN for a labeling with fewer than 2 or as many labels as points."""
    n = len(points)
    codes = [np.unique(labels, return_inverse=True)[1].ravel() for labels in labelings]
    counts = [np.bincount(code) for code in codes]
    offsets = np.cumsum([0] + [len(count) for count in counts])
    valid = [1 < len(count) < n for count in counts]
    members = np.zeros((n, offsets[-1]))
    for code, offset in zip(codes, offsets, strict=False):
        members[np.arange(n), offset + code] = 1.0
    totals = np.zeros(len(labelings))
    squared_norms = (points**2).sum(axis=1)
    buffer = np.empty((min(SILHOUETTE_CHUNK_ROWS, n), n))  # one for every chunk
    for start in range(0, n if any(valid) else 0, SILHOUETTE_CHUNK_ROWS):
        stop = min(start + SILHOUETTE_CHUNK_ROWS, n)
        rows = np.arange(stop - start)
        distances = _distances(
            points[start:stop], points, out=buffer[: stop - start], centroid_norms=squared_norms
        )
        distances[rows, rows + start] = 0.0
        sums = distances @ members  # per row: distance sums to each cluster of each labeling
        for i, (code, count, offset) in enumerate(zip(codes, counts, offsets, strict=False)):
            if not valid[i]:
                continue
            own = code[start:stop]
            with np.errstate(divide="ignore", invalid="ignore"):
                block = sums[:, offset : offset + len(count)]
                intra = block[rows, own] / (count[own] - 1)
                means = block / count
                means[rows, own] = np.inf
                inter = means.min(axis=1)
                # 0/0 (a cluster of one, or duplicate points) counts 0, as in sklearn
                totals[i] += np.nan_to_num((inter - intra) / np.maximum(intra, inter)).sum()
    return [float(total / n) if ok else np.nan for total, ok in zip(totals, valid, strict=True)]


def _quality_row(k: int, silhouette: float, davies_bouldin: float) -> dict:
    return {K: k, SILHOUETTE: float(silhouette), DAVIES_BOULDIN: float(davies_bouldin)}


def _nearest(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid of each point (chunked: bounded memory for millions)."""
    out = np.empty(len(points), dtype=np.int64)
    for start in range(0, len(points), 200_000):
        out[start : start + 200_000] = _distances(
            points[start : start + 200_000], centroids
        ).argmin(axis=1)
    return out


def _distances(
    points: np.ndarray,
    centroids: np.ndarray,
    *,
    out: np.ndarray | None = None,
    centroid_norms: np.ndarray | None = None,
) -> np.ndarray:
    """Euclidean distance of every point to every centroid: |p|^2 - 2 p.c + |c|^2, in place
    (in `out` when given). The silhouette calls this on 500 x 10k blocks, with one `out` and
    the squared norms of the 10k (`centroid_norms`) computed once."""
    squared = np.matmul(points, centroids.T, out=out)
    squared *= -2.0
    squared += (points**2).sum(axis=1)[:, None]
    if centroid_norms is None:
        centroid_norms = (centroids**2).sum(axis=1)
    squared += centroid_norms[None, :]
    return np.sqrt(np.maximum(squared, 0.0, out=squared), out=squared)


def _group_means(values: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    sums = np.zeros((k, values.shape[1]))
    for column in range(values.shape[1]):  # bincount: ~10x faster than np.add.at on millions
        sums[:, column] = np.bincount(labels, weights=values[:, column], minlength=k)
    return sums / np.maximum(np.bincount(labels, minlength=k), 1)[:, None]


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
