import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.impute import SimpleImputer
from sklearn.metrics import adjusted_rand_score, silhouette_score

from models_ml.clustering import (
    SINGLE_CLUSTER_NAME,
    KMeansSegmenter,
    _column_medians,
    _nearest,
    cluster_segments,
    feature_word,
    name_cluster,
    name_clusters,
    silhouette_scores,
)

FEATURES = ["share_device_mobile", "share_daypart_evening", "affinity_electronics", "monetary"]


def _blobs(n_per_blob=40, seed=0):
    """Three well-separated groups: mobile evening electronics fans, big spenders, the rest."""
    rng = np.random.default_rng(seed)
    centers = np.array(
        [
            [0.9, 0.8, 0.7, 100.0],
            [0.1, 0.2, 0.1, 900.0],
            [0.1, 0.2, 0.1, 100.0],
        ]
    )
    spread = np.array([0.03, 0.03, 0.03, 15.0])
    truth = np.repeat(np.arange(3), n_per_blob)
    values = centers[truth] + rng.normal(0.0, spread, (len(truth), len(spread)))
    index = pd.Index([f"p{i:03d}" for i in range(len(truth))], name="person_id")
    return pd.DataFrame(values, columns=FEATURES, index=index), truth


@pytest.fixture(scope="module")
def fitted():
    features, truth = _blobs()
    return features, truth, KMeansSegmenter(random_state=0).fit(features)


def test_three_blobs_give_three_named_clusters(fitted):
    features, truth, segmenter = fitted

    assert segmenter.k_ == 3
    assert adjusted_rand_score(truth, segmenter.labels_) == 1.0
    assert segmenter.quality_["k"].tolist() == list(range(2, 9))
    assert segmenter.quality_.loc[segmenter.quality_["is_chosen"], "k"].tolist() == [3]
    assert list(segmenter.quality_.columns) == [
        "algorithm",
        "k",
        "silhouette",
        "davies_bouldin",
        "n_people",
        "is_chosen",
    ]
    names = list(segmenter.cluster_names_.values())
    assert all(names) and len(set(names)) == 3
    fans = segmenter.labels_[truth == 0][0]
    spenders = segmenter.labels_[truth == 1][0]
    assert segmenter.cluster_names_[fans] == "mobile evening electronics"
    assert segmenter.cluster_names_[spenders].startswith("high-value")
    assert segmenter.cluster_profiles_["size"].tolist() == [40, 40, 40]
    assert segmenter.cluster_profiles_["share"].sum() == pytest.approx(1.0)


def test_cluster_segments_shape_and_scores(fitted):
    features, _, segmenter = fitted
    segments = cluster_segments(features, segmenter)

    assert list(segments.columns) == [
        "person_id",
        "segment_type",
        "segment_id",
        "segment_name",
        "score",
    ]
    assert segments["person_id"].tolist() == features.index.tolist()
    assert (segments["segment_type"] == "cluster").all()
    assert sorted(segments["segment_id"].unique()) == ["cluster_0", "cluster_1", "cluster_2"]
    assert segments["score"].between(0.0, 1.0, inclusive="right").all()
    expected_names = segments["segment_id"].str.removeprefix("cluster_").astype(int)
    assert (segments["segment_name"] == expected_names.map(segmenter.cluster_names_)).all()


def test_person_id_column_and_refit_are_reproducible():
    features, _ = _blobs()
    first = cluster_segments(features.reset_index(), KMeansSegmenter(k_max=4, random_state=7))
    second = cluster_segments(features, KMeansSegmenter(k_max=4, random_state=7))
    pd.testing.assert_frame_equal(first, second)


def test_predict_matches_fit_labels(fitted):
    features, _, segmenter = fitted
    np.testing.assert_array_equal(segmenter.predict(features), segmenter.labels_)


@pytest.mark.parametrize(
    "features",
    [
        pd.DataFrame({"monetary": [10.0, 20.0]}, index=["p1", "p2"]),
        pd.DataFrame({"monetary": [5.0] * 6, "frequency": [2.0] * 6}, index=list("abcdef")),
        pd.DataFrame({"monetary": [1.0, 1.0, 1.0, 2.0]}, index=list("abcd")).iloc[:0],
    ],
    ids=["fewer_people_than_k_min_plus_1", "constant_features", "no_people"],
)
def test_degenerate_input_gives_one_named_cluster(features):
    segmenter = KMeansSegmenter()
    segments = cluster_segments(features, segmenter)

    assert segmenter.k_ == 1
    assert segmenter.cluster_names_ == {0: SINGLE_CLUSTER_NAME}
    assert len(segments) == len(features)
    assert (segments["segment_id"] == "cluster_0").all()
    assert (segments["segment_name"] == SINGLE_CLUSTER_NAME).all()
    assert (segments["score"] == 1.0).all()
    assert segmenter.quality_[["k", "is_chosen"]].to_dict("records") == [
        {"k": 1, "is_chosen": True}
    ]


def test_missing_values_and_booleans_are_accepted():
    features, truth = _blobs()
    features = features.assign(has_app=truth == 0)
    features.iloc[::7, 3] = np.nan
    segmenter = KMeansSegmenter(k_max=4, n_init=3, random_state=0).fit(features)
    assert segmenter.k_ == 3


def test_text_features_are_rejected():
    with pytest.raises(ValueError, match="city"):
        KMeansSegmenter().fit(pd.DataFrame({"monetary": [1.0, 2.0], "city": ["x", "y"]}))


@pytest.mark.parametrize(
    ("feature", "effect", "word"),
    [
        ("share_device_mobile", 1.0, "mobile"),
        ("share_device_mobile", -1.0, None),
        ("share_daypart_late_night", 1.0, "late night"),
        ("affinity_home_garden", 1.0, "home garden"),
        ("monetary", 1.0, "high-value"),
        ("monetary", -1.0, "low-value"),
        ("frequency", 1.0, "frequent"),
        ("recency_days", 1.0, "lapsed"),
        ("recency_days", -1.0, "recent"),
        ("is_subscriber", -1.0, "non-subscriber"),
        ("sessions_per_week", 1.0, "high sessions per week"),
    ],
)
def test_feature_words(feature, effect, word):
    assert feature_word(feature, effect)[0] == word


def test_name_orders_qualifiers_context_categories():
    effects = pd.Series(
        {
            "affinity_electronics": 1.5,
            "share_daypart_evening": 1.1,
            "share_device_mobile": 1.2,
            "frequency": 0.1,
        }
    )
    assert name_cluster(effects) == "mobile evening electronics"
    effects["monetary"] = 2.0
    assert name_cluster(effects) == "high-value mobile electronics"
    assert name_cluster(pd.Series({"monetary": 0.1}), min_effect=0.5) == "typical"


def test_cluster_names_are_made_distinct():
    effects = pd.DataFrame(
        {"monetary": [2.0, 2.0, 0.0], "frequency": [0.0, 0.0, 0.0], "age": [0.1, -0.1, 0.0]}
    )
    names = name_clusters(effects)
    assert names == {0: "high-value older", 1: "high-value younger", 2: "typical"}


@pytest.mark.parametrize("search_sample_size", [50_000, 60], ids=["everyone", "sample"])
def test_cluster_ids_stay_stable_when_the_previous_centroids_are_given(search_sample_size):
    features, truth = _blobs(seed=0)
    first = KMeansSegmenter(k_max=4, random_state=0).fit(features)
    # The next run: new people from the same groups, in another order, with another seed.
    later, later_truth = _blobs(seed=1)
    shuffled = later.sample(frac=1.0, random_state=3)
    later_truth = later_truth[later.index.get_indexer(shuffled.index)]
    second = KMeansSegmenter(
        k_max=4,
        random_state=5,
        search_sample_size=search_sample_size,
        previous_centroids=first.cluster_centers_,
    ).fit(shuffled)

    for group in range(3):
        before = set(first.labels_[truth == group])
        after = set(second.labels_[later_truth == group])
        assert before == after and len(before) == 1
    assert second.cluster_names_ == first.cluster_names_


def test_a_new_cluster_takes_a_fresh_id_and_the_old_ones_keep_theirs():
    features, truth = _blobs()
    two_groups = features[truth != 1]
    first = KMeansSegmenter(k_max=4, random_state=0).fit(two_groups)
    assert first.k_ == 2
    second = KMeansSegmenter(
        k_max=4, random_state=0, previous_centroids=first.cluster_centers_
    ).fit(features)

    assert second.k_ == 3
    for group in (0, 2):
        assert set(second.labels_[truth == group]) == set(first.labels_[truth[truth != 1] == group])
    assert set(second.labels_[truth == 1]) == {2}


@pytest.mark.parametrize("algorithm", ["minibatch_kmeans", "agglomerative", "dbscan"])
def test_other_algorithms_recover_the_blobs(algorithm):
    features, truth = _blobs()
    segmenter = KMeansSegmenter(
        algorithm=algorithm, random_state=0, dbscan_eps=1.0, dbscan_min_samples=5
    ).fit(features)

    assert segmenter.k_ == 3
    assert adjusted_rand_score(truth, segmenter.labels_) == 1.0
    assert set(segmenter.quality_["algorithm"]) == {algorithm}
    np.testing.assert_array_equal(segmenter.predict(features), segmenter.labels_)


def test_kmeans_switches_to_minibatch_above_the_threshold():
    features, truth = _blobs()
    segmenter = KMeansSegmenter(minibatch_above=50, minibatch_chunk=32, random_state=0).fit(
        features
    )
    assert segmenter.algorithm_used_ == "minibatch_kmeans"
    assert adjusted_rand_score(truth, segmenter.labels_) == 1.0


@pytest.mark.parametrize(
    ("minibatch_above", "refit_with"), [(1000, "kmeans"), (100, "minibatch_kmeans")]
)
def test_k_searched_on_a_sample_then_everyone_refitted(minibatch_above, refit_with):
    features, truth = _blobs()
    segmenter = KMeansSegmenter(
        search_sample_size=60,
        silhouette_sample_size=50,
        minibatch_above=minibatch_above,
        minibatch_chunk=32,
        random_state=0,
    ).fit(features)

    assert segmenter.algorithm_used_ == refit_with
    assert segmenter.k_ == 3
    assert len(segmenter.labels_) == len(features)
    assert adjusted_rand_score(truth, segmenter.labels_) == 1.0
    assert segmenter.cluster_profiles_["size"].tolist() == [40, 40, 40]
    assert segmenter.quality_["k"].tolist() == list(range(2, 9))
    assert (segmenter.quality_["n_people"] == len(features)).all()
    np.testing.assert_array_equal(segmenter.predict(features), segmenter.labels_)


def test_silhouette_scores_match_sklearn_for_every_labeling():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(1100, 4))  # more rows than one chunk of distances
    labelings = [
        rng.integers(0, 2, len(points)),
        rng.integers(0, 7, len(points)),
        np.where(points[:, 0] > 0, 5, 9),  # labels need not be 0..k-1
        np.r_[0, np.ones(len(points) - 1, dtype=int)],  # a cluster of one scores 0
    ]
    expected = [silhouette_score(points, labels) for labels in labelings]

    np.testing.assert_allclose(silhouette_scores(points, labelings), expected, atol=1e-10)
    duplicated = np.repeat(points[:30], 3, axis=0)
    labels = rng.integers(0, 3, len(duplicated))
    np.testing.assert_allclose(
        silhouette_scores(duplicated, [labels]), [silhouette_score(duplicated, labels)], atol=1e-8
    )
    one_label, all_distinct = np.zeros(10, dtype=int), np.arange(3)
    assert np.isnan(silhouette_scores(points[:10], [one_label])[0])
    assert np.isnan(silhouette_scores(points[:3], [all_distinct])[0])


def test_column_medians_are_what_the_median_imputer_learns():
    values = np.array([[1.0, np.nan, np.nan], [np.nan, 4.0, np.nan], [3.0, 8.0, np.nan]])
    imputer = SimpleImputer(strategy="median", keep_empty_features=True).fit(values)
    np.testing.assert_array_equal(_column_medians(values), imputer.statistics_)
    np.testing.assert_array_equal(_column_medians(values[:0]), np.zeros(3))


def test_unknown_algorithm_is_rejected():
    features, _ = _blobs()
    with pytest.raises(ValueError, match="algorithm"):
        KMeansSegmenter(algorithm="spectral").fit(features)


def test_a_tall_matrix_is_reduced_through_the_covariance_with_the_components_of_the_svd(
    monkeypatch,
):
    import models_ml.clustering as clustering

    assert clustering.pca_solver(1_000_000, 25) == "covariance_eigh"
    assert clustering.pca_solver(200, 25) == "full"  # fewer than 10 rows per feature
    assert clustering.pca_solver(10**7, 2_000) == "full"  # a wide covariance matrix
    features, _ = _blobs(n_per_blob=200)
    segmenters = {}
    for solver in ("full", "covariance_eigh"):
        monkeypatch.setattr(
            clustering, "pca_solver", lambda n_rows, n_features, chosen=solver: chosen
        )
        segmenters[solver] = KMeansSegmenter(k_max=4, random_state=3, pca_variance=0.9).fit(
            features
        )
        assert segmenters[solver].pca_.svd_solver == solver
    by_svd, by_covariance = segmenters["full"], segmenters["covariance_eigh"]
    np.testing.assert_allclose(by_covariance.pca_.components_, by_svd.pca_.components_, atol=1e-9)
    np.testing.assert_allclose(by_covariance.embedding_, by_svd.embedding_, atol=1e-9)
    np.testing.assert_array_equal(by_covariance.labels_, by_svd.labels_)


def test_a_single_k_is_scored_once_after_its_refit_on_everyone():
    """A night that reuses the selection's k fits it on the search sample, refits it on
    everyone, and reports the silhouette and Davies-Bouldin of the refit's labelling of the
    scored sample (the sample's own score is not computed)."""
    rng = np.random.default_rng(0)
    centers = np.repeat([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]], 700, axis=0)
    X = pd.DataFrame(centers + rng.normal(0, 0.4, size=centers.shape), columns=["a", "b"])
    segmenter = KMeansSegmenter(
        k_min=3, k_max=3, search_sample_size=600, silhouette_sample_size=300, pca_variance=None
    ).fit(X)
    (row,) = segmenter.quality_.to_dict("records")
    search = segmenter.embedding_[segmenter._sample(len(X), 600)]
    scored = search[segmenter._sample(len(search), 300)]
    labels = _nearest(scored, segmenter.centroids_)
    assert row["k"] == 3 and row["is_chosen"]
    assert row["silhouette"] == pytest.approx(silhouette_score(scored, labels), abs=1e-9)
    assert row["silhouette"] > 0.5 and row["davies_bouldin"] > 0


def test_refresh_assigns_new_people_to_the_fitted_clusters_without_fitting():
    """A night between model selections: the stored segmenter assigns tonight's people (its
    scaler, PCA, centroids, ids and names unchanged) and describes tonight's clusters: their
    means, sizes, and the silhouette of this assignment."""
    features, _ = _blobs(seed=0)
    segmenter = KMeansSegmenter(random_state=0).fit(features)
    stored = pickle.loads(pickle.dumps(segmenter.without_rows()))
    assert not hasattr(stored, "embedding_") and not hasattr(stored, "labels_")
    assert hasattr(segmenter, "embedding_")  # the fitted one keeps them
    centroids, ids, names = (
        stored.centroids_.copy(),
        stored.cluster_ids_.copy(),
        stored.cluster_names_,
    )

    tonight, _ = _blobs(n_per_blob=30, seed=1)
    tonight = tonight.iloc[: 30 + 30 + 12]  # fewer of the third group tonight
    tonight.iloc[0, 3] = np.nan  # a missing value takes the fit's median
    segments = cluster_segments(tonight, stored, refresh=True)

    np.testing.assert_array_equal(stored.centroids_, centroids)
    np.testing.assert_array_equal(stored.cluster_ids_, ids)
    assert stored.cluster_names_ == names
    np.testing.assert_array_equal(stored.labels_, segmenter.predict(tonight))
    expected = pd.Series(stored.labels_).map(lambda c: f"cluster_{c}")
    assert segments["segment_id"].tolist() == expected.tolist()
    assert segments["segment_name"].tolist() == [names[c] for c in stored.labels_]

    filled = tonight.fillna(pd.Series(stored.medians_, index=tonight.columns))
    means = filled.groupby(stored.labels_).mean()
    np.testing.assert_allclose(stored.cluster_centers_.loc[means.index].to_numpy(), means)
    sizes = stored.cluster_profiles_["size"].to_dict()
    assert sizes == pd.Series(stored.labels_).value_counts().to_dict()
    quality = stored.quality_
    assert len(quality) == 1 and quality["is_chosen"].all() and quality["k"].tolist() == [3]
    assert quality["n_people"].tolist() == [len(tonight)]
    assert quality["silhouette"].iloc[0] == pytest.approx(
        silhouette_score(stored.embedding_, stored.labels_)
    )
    assert len(stored.embedding_) == len(tonight)

    with pytest.raises(ValueError, match="features"):
        stored.refresh(tonight[FEATURES[::-1]])
