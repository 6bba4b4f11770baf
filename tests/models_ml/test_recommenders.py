import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from models_ml.recommenders import (
    ItemCooccurrenceRecommender,
    PopularityRecommender,
    cooccurrence,
    recommend_with_fallback,
)
from models_ml.recommenders._base import lexsort_runs, shared_indexing, top_k_cells
from models_ml.recommenders.cooccurrence import cooccurrence_matrix, similarity_matrix
from models_ml.recommenders.popularity import first_k_allowed

COOC = "item_cooccurrence: because you interacted with similar items"
POP = "popularity: popular right now"

# People with a positive affinity per item:  a: p1 p2 p4 | b: p1 p2 p3 | c: p2 p3 | d: p3 p5 | e: p4
# Co-occurrence: ab 2, ac 1, ae 1, bc 2, bd 1, cd 1.  Jaccard c_ij / (c_ii + c_jj - c_ij):
# ab 2/4, ac 1/4, ae 1/3, bc 2/3, bd 1/4, cd 1/3.
INTERACTIONS = pd.DataFrame(
    {
        "person_id": ["p1", "p1", "p2", "p2", "p2", "p3", "p3", "p3", "p4", "p4", "p5"],
        "item_id": ["a", "b", "a", "b", "c", "b", "c", "d", "a", "e", "d"],
        "weight": [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 5.0, 1.0, 1.0],
        "occurred_at": pd.to_datetime(["2024-03-01"] * 11),
    }
)


def _recs(rows, algorithm="item_cooccurrence"):
    reason = {"item_cooccurrence": COOC, "popularity": POP}
    frame = pd.DataFrame([r[:4] for r in rows], columns=["person_id", "rank", "item_id", "score"])
    frame["algorithm"] = [r[4] if len(r) > 4 else algorithm for r in rows]
    frame["reason"] = frame["algorithm"].map(reason)
    return frame


def _assert_recs(actual, expected):
    assert list(actual.columns) == ["person_id", "rank", "item_id", "score", "algorithm", "reason"]
    assert isinstance(actual["algorithm"].dtype, pd.CategoricalDtype)
    assert isinstance(actual["reason"].dtype, pd.CategoricalDtype)
    labels = {"algorithm": str, "reason": str}
    pd.testing.assert_frame_equal(
        actual.reset_index(drop=True).astype(labels), expected, check_dtype=False, rtol=1e-6
    )


COUNTS = [
    [3, 2, 1, 0, 1],
    [2, 3, 2, 1, 0],
    [1, 2, 2, 1, 0],
    [0, 1, 1, 2, 0],
    [1, 0, 0, 0, 1],
]


def test_cooccurrence_and_jaccard_by_hand():
    counts = ItemCooccurrenceRecommender(similarity_type="counts").fit(INTERACTIONS)
    assert counts.item_index_.tolist() == ["a", "b", "c", "d", "e"]
    np.testing.assert_array_equal(counts.similarity_, COUNTS)
    np.testing.assert_array_equal(counts.item_frequencies_, [3, 3, 2, 2, 1])
    jaccard = ItemCooccurrenceRecommender().fit(INTERACTIONS).similarity_
    assert jaccard[0, 1] == pytest.approx(2 / 4)
    assert jaccard[1, 2] == pytest.approx(2 / 3)
    assert jaccard[2, 3] == pytest.approx(1 / 3)
    assert jaccard[0, 3] == 0.0


@pytest.mark.parametrize("similarity_type", ["jaccard", "lift", "counts"])
def test_dense_chunked_and_sparse_matrices_agree(similarity_type):
    model = ItemCooccurrenceRecommender().fit(INTERACTIONS)
    presence = model.affinity_ > 0
    chunked = cooccurrence_matrix(presence, dense=True, max_pairs_per_chunk=5)
    single = cooccurrence_matrix(presence, dense=False)
    np.testing.assert_array_equal(chunked, COUNTS)
    np.testing.assert_array_equal(single.toarray(), COUNTS)
    np.testing.assert_allclose(
        similarity_matrix(chunked, similarity_type),
        similarity_matrix(single, similarity_type).toarray(),
    )
    pruned = cooccurrence_matrix(presence, min_cooccurrence=2, dense=True)
    np.testing.assert_array_equal(pruned, np.where(np.array(COUNTS) >= 2, COUNTS, 0))


def test_cooccurrence_recommendations_exact():
    model = ItemCooccurrenceRecommender().fit(INTERACTIONS)
    result = model.recommend_k_items(["p1", "p4", "p5", "nobody"], k=2)
    # p1 (a, b): c = 1/4 + 2/3, e = 1/3, d = 1/4.  p4 (5a, e): b = 5/2, c = 5/4.
    # p5 (d): c = 1/3, b = 1/4.  Unknown people get nothing from this model.
    expected = _recs(
        [
            ("p1", 1, "c", 1 / 4 + 2 / 3),
            ("p1", 2, "e", 1 / 3),
            ("p4", 1, "b", 5 / 2),
            ("p4", 2, "c", 5 / 4),
            ("p5", 1, "c", 1 / 3),
            ("p5", 2, "b", 1 / 4),
        ]
    )
    _assert_recs(result, expected)


def test_seen_items_come_back_only_when_asked():
    model = ItemCooccurrenceRecommender().fit(INTERACTIONS)
    result = model.recommend_k_items(["p1"], k=3, remove_seen=False)
    # a and b both score 1 + 1/2: the tie goes to the smaller item_id.
    expected = _recs([("p1", 1, "a", 1.5), ("p1", 2, "b", 1.5), ("p1", 3, "c", 1 / 4 + 2 / 3)])
    _assert_recs(result, expected)


def test_exclusions_pairs_and_items():
    model = ItemCooccurrenceRecommender().fit(INTERACTIONS)
    pairs = pd.DataFrame({"person_id": ["p1", "p4"], "item_id": ["c", "b"]})
    result = model.recommend_k_items(["p1", "p4"], k=3, exclude_pairs=pairs, exclude_items={"e"})
    expected = _recs([("p1", 1, "d", 1 / 4), ("p4", 1, "c", 5 / 4)])
    _assert_recs(result, expected)


def test_lift_similarity_and_unknown_type():
    lift = ItemCooccurrenceRecommender(similarity_type="lift").fit(INTERACTIONS)
    assert lift.similarity_[0, 1] == pytest.approx(2 / 9)
    with pytest.raises(ValueError):
        ItemCooccurrenceRecommender(similarity_type="cosine").fit(INTERACTIONS)


def test_time_decay_and_as_of_cut():
    interactions = pd.DataFrame(
        {
            "person_id": ["p1", "p1", "p1"],
            "item_id": ["a", "b", "c"],
            "weight": [1.0, 1.0, 1.0],
            "occurred_at": pd.to_datetime(["2024-03-10", "2024-03-08", "2024-03-12"]),
        }
    )
    model = ItemCooccurrenceRecommender(half_life_days=2).fit(
        interactions, as_of=pd.Timestamp("2024-03-10")
    )
    assert model.as_of_ == pd.Timestamp("2024-03-10")
    assert model.item_index_.tolist() == ["a", "b"]  # c happened after as_of
    np.testing.assert_allclose(model.affinity_.toarray(), [[1.0, 0.5]])
    default = ItemCooccurrenceRecommender().fit(interactions)
    assert default.as_of_ == pd.Timestamp("2024-03-12")


def test_models_fitted_in_shared_indexing_index_a_frame_once_and_fit_the_same():
    """Within `shared_indexing`, a second model on the same frame and as_of reuses the first
    one's people and items (the same objects), and each still decays by its own half-life;
    a model weighing rows as an earlier one did shares its matrices, and fits as it would
    alone; another as_of, another frame or no block at all indexes afresh."""
    as_of = pd.Timestamp("2024-03-05")
    alone = ItemCooccurrenceRecommender(half_life_days=2).fit(INTERACTIONS, as_of=as_of)
    content_alone = ContentRecommender(half_life_days=2).fit(INTERACTIONS, as_of=as_of)
    with shared_indexing():
        first = PopularityRecommender().fit(INTERACTIONS, as_of=as_of)
        second = ItemCooccurrenceRecommender(half_life_days=2).fit(INTERACTIONS, as_of=as_of)
        third = ContentRecommender(half_life_days=2).fit(INTERACTIONS, as_of=as_of)
        later = PopularityRecommender().fit(INTERACTIONS, as_of=pd.Timestamp("2024-03-09"))
        copied = PopularityRecommender().fit(INTERACTIONS.copy(), as_of=as_of)
    outside = PopularityRecommender().fit(INTERACTIONS, as_of=as_of)
    assert second.person_index_ is first.person_index_
    assert second.item_index_ is first.item_index_
    for other in (later, copied, outside):
        assert other.person_index_ is not first.person_index_
    # the same weighing (half-life 2): the same matrices; another (no decay): its own
    assert third.seen_ is second.seen_ and third.affinity_ is second.affinity_
    assert second.affinity_ is not first.affinity_
    pd.testing.assert_frame_equal(
        third.recommend_k_items(k=3, remove_seen=False),
        content_alone.recommend_k_items(k=3, remove_seen=False),
    )
    assert (second.affinity_ != alone.affinity_).nnz == 0
    assert (second.seen_ != alone.seen_).nnz == 0
    assert second.as_of_ == alone.as_of_ == as_of
    # popularity does not decay by default: its weights are the frame's own
    assert first.affinity_.sum() == pytest.approx(INTERACTIONS["weight"].sum())
    assert second.affinity_.sum() < first.affinity_.sum()


def test_negative_net_weight_is_seen_but_not_cooccurring():
    interactions = pd.DataFrame(
        {
            "person_id": ["p1", "p1", "p1", "p2", "p2"],
            "item_id": ["a", "b", "b", "a", "b"],
            "weight": [1.0, 1.0, -1.0, 1.0, 1.0],
            "occurred_at": pd.to_datetime(["2024-03-01"] * 5),
        }
    )
    model = ItemCooccurrenceRecommender(similarity_type="counts").fit(interactions)
    np.testing.assert_array_equal(model.similarity_, [[2, 1], [1, 1]])
    assert model.recommend_k_items(["p1"], k=2).empty  # b was added then removed: still seen


def test_popularity_exact_with_seen_and_exclusions():
    # Totals: a 7, b 3, c 2, d 2, e 1 (c before d on the tie).
    model = PopularityRecommender().fit(INTERACTIONS)
    result = model.recommend_k_items(
        ["p1", "new"],
        k=2,
        exclude_pairs=pd.DataFrame({"person_id": ["new"], "item_id": ["b"]}),
        exclude_items=["c"],
    )
    expected = _recs(
        [("p1", 1, "d", 2.0), ("p1", 2, "e", 1.0), ("new", 1, "a", 7.0), ("new", 2, "d", 2.0)],
        algorithm="popularity",
    )
    _assert_recs(result, expected)


def test_hybrid_tops_up_and_falls_back():
    result = recommend_with_fallback(
        INTERACTIONS,
        ["p1", "p4", "p5", "new"],
        3,
        ItemCooccurrenceRecommender(),
        PopularityRecommender(),
    )
    expected = _recs(
        [
            ("p1", 1, "c", 1 / 4 + 2 / 3),
            ("p1", 2, "e", 1 / 3),
            ("p1", 3, "d", 1 / 4),
            ("p4", 1, "b", 5 / 2),
            ("p4", 2, "c", 5 / 4),
            ("p4", 3, "d", 2.0, "popularity"),
            ("p5", 1, "c", 1 / 3),
            ("p5", 2, "b", 1 / 4),
            ("p5", 3, "a", 7.0, "popularity"),
            ("new", 1, "a", 7.0, "popularity"),
            ("new", 2, "b", 3.0, "popularity"),
            ("new", 3, "c", 2.0, "popularity"),
        ]
    )
    _assert_recs(result, expected)


def test_hybrid_never_shows_excluded_duplicates_or_rank_gaps():
    pairs = pd.DataFrame({"person_id": ["new", "p5"], "item_id": ["a", "a"]})
    result = recommend_with_fallback(
        INTERACTIONS,
        ["p1", "p4", "p5", "new"],
        4,
        ItemCooccurrenceRecommender(),
        PopularityRecommender(),
        exclude_pairs=pairs,
        exclude_items=["c"],
    )
    assert "c" not in set(result["item_id"])
    assert result.merge(pairs).empty
    assert not result.duplicated(["person_id", "item_id"]).any()
    ranks = result.groupby("person_id", sort=False)["rank"].agg(list)
    assert all(r == list(range(1, len(r) + 1)) for r in ranks)
    # p1 has seen a and b; c is excluded; e, d come from co-occurrence; nothing else is left.
    assert result[result["person_id"] == "p1"]["item_id"].tolist() == ["e", "d"]
    assert result[result["person_id"] == "new"]["item_id"].tolist() == ["b", "d", "e"]


def test_all_people_when_person_ids_is_none():
    model = ItemCooccurrenceRecommender().fit(INTERACTIONS)
    result = model.recommend_k_items(None, k=1)
    assert result["person_id"].tolist() == ["p1", "p2", "p3", "p4", "p5"]


def test_top_k_cells_breaks_ties_by_column_also_at_the_cutoff():
    scores = np.array([[1.0, 2.0, 2.0, 2.0, 0.0], [3.0, -np.inf, 1.0, 1.0, 5.0]])
    rows, columns, values, ranks = top_k_cells(scores, 2)
    assert rows.tolist() == [0, 0, 1, 1]
    assert columns.tolist() == [1, 2, 4, 0]
    assert values.tolist() == [2.0, 2.0, 5.0, 3.0]
    assert ranks.tolist() == [1, 2, 1, 2]


@pytest.mark.parametrize("n_cols", [40, 1000])
@pytest.mark.parametrize("min_score", [-np.inf, 2.5])
@pytest.mark.parametrize("ties", [True, False], ids=["many_ties", "continuous"])
def test_top_k_cells_matches_a_full_sort(n_cols, min_score, ties):
    rng = np.random.default_rng(n_cols)
    scores = rng.integers(0, 6, size=(60, n_cols)) if ties else rng.uniform(0, 6, (60, n_cols))
    scores = scores.astype(np.float32)
    scores[:5, 8:] = 0.0  # rows with few entries above min_score
    rows, columns, values, ranks = top_k_cells(scores, 7, min_score=min_score)

    order = np.lexsort((np.broadcast_to(np.arange(n_cols), scores.shape), -scores), axis=1)
    expected = [
        (r, c, scores[r, c], rank + 1)
        for r in range(len(scores))
        for rank, c in enumerate([c for c in order[r] if scores[r, c] > min_score][:7])
    ]
    actual = list(
        zip(rows.tolist(), columns.tolist(), values.tolist(), ranks.tolist(), strict=True)
    )
    assert actual == [(r, c, float(v), k) for r, c, v, k in expected]


def test_lexsort_runs_is_lexsort_with_ties_in_input_order():
    rng = np.random.default_rng(5)
    # three runs sorted by group, as the stages of a chain or the parts of the rules arrive
    group = np.concatenate([np.sort(rng.integers(0, 50, n)) for n in (400, 300, 200)])
    tier = np.repeat([2, 0, 1], (400, 300, 200))
    value = rng.integers(1, 8, len(group)) / rng.choice([1.0, 2.0, 3.0], len(group))
    value[::97] = np.nan
    assert (lexsort_runs(value, tier, group) == np.lexsort((value, tier, group))).all()
    assert len(lexsort_runs(np.zeros(0), np.zeros(0, int), np.zeros(0, int))) == 0


def test_first_k_allowed_widens_the_window_for_heavy_excluders():
    ranking = np.arange(100)
    excluded = sparse.csr_array(
        (np.ones(60, dtype=bool), (np.zeros(60, dtype=int), np.arange(60))), shape=(2, 100)
    )
    rows, positions, ranks = first_k_allowed(ranking, excluded, 3)
    order = np.lexsort((ranks, rows))
    assert rows[order].tolist() == [0, 0, 0, 1, 1, 1]
    assert positions[order].tolist() == [60, 61, 62, 0, 1, 2]
    assert ranks[order].tolist() == [1, 2, 3, 1, 2, 3]


def test_sparse_similarity_path_gives_the_same_recommendations(monkeypatch):
    dense = ItemCooccurrenceRecommender().fit(INTERACTIONS).recommend_k_items(k=3)
    monkeypatch.setattr(cooccurrence, "MAX_DENSE_SIMILARITY_BYTES", 0)
    model = ItemCooccurrenceRecommender().fit(INTERACTIONS)
    assert sparse.issparse(model.similarity_)
    _assert_recs(model.recommend_k_items(k=3), dense.astype({"algorithm": str, "reason": str}))


# --- EASE, ALS, content-based, the fallback chain ------------------------------------------

from models_ml.recommenders import (  # noqa: E402
    ALSRecommender,
    ContentRecommender,
    EASERecommender,
    recommend_chain,
)
from models_ml.recommenders.ease import _mirror_lower_triangle, ease_weights  # noqa: E402


def test_ease_weights_match_the_closed_form_by_hand():
    model = EASERecommender(l2=2.0).fit(INTERACTIONS)
    presence = np.asarray(COUNTS, dtype=float)  # X'X of the binary matrix is the co-occurrence
    inverse = np.linalg.inv(presence + 2.0 * np.eye(5))
    expected = -inverse / np.diag(inverse)[None, :]
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(model.weights_, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ease_weights(presence, 2.0), expected, rtol=1e-4, atol=1e-6)
    scores = model.score_items(["p1"])
    np.testing.assert_allclose(scores[0], expected[0] + expected[1], rtol=1e-4, atol=1e-6)
    recs = model.recommend_k_items(["p1"], k=2)
    unseen = {"c": 2, "d": 3, "e": 4}
    best = sorted(unseen, key=lambda item: -scores[0, unseen[item]])
    assert recs.item_id.tolist() == best[:2] == ["c", "e"]  # 0.41, then 0.15
    assert not set(recs.item_id) & {"a", "b"}, "seen items removed"
    assert (recs.algorithm == "ease").all()


def test_ease_weights_of_a_catalog_over_several_blocks_match_the_general_inverse():
    """The inverse's other triangle is filled a block of rows at a time, in place: over
    several blocks (and a last, shorter one) the weights are those of a general inverse."""
    rng = np.random.default_rng(3)
    presence = (rng.random((400, 37)) < 0.2).astype(float)
    gram = presence.T @ presence
    inverse = np.linalg.inv(gram + 5.0 * np.eye(37))
    expected = -inverse / np.diag(inverse)[None, :]
    np.fill_diagonal(expected, 0.0)
    lower = np.tril(rng.random((37, 37)))
    mirrored = np.asfortranarray(lower.copy())
    _mirror_lower_triangle(mirrored, block=8)
    np.testing.assert_array_equal(mirrored, lower + np.tril(lower, -1).T)
    weights = ease_weights(gram, 5.0)
    assert weights.flags["C_CONTIGUOUS"] and weights.dtype == np.float32
    np.testing.assert_allclose(weights, expected, rtol=1e-3, atol=1e-5)


def test_ease_keeps_only_the_most_popular_items_when_the_catalog_is_too_large():
    model = EASERecommender(l2=1.0, max_items=3).fit(INTERACTIONS)
    assert model.item_index_[model.modelled_items_].tolist() == ["a", "b", "c"]
    scores = model.score_items(["p3", "p5"])
    assert (scores[:, 3:] == 0).all(), "items outside the model get no score"


# Two taste groups: p1-p3 like x1..x3, p4-p6 like y1..y3; each misses one item of their group.
GROUPS = pd.DataFrame(
    {
        "person_id": ["p1", "p1", "p2", "p2", "p3", "p3", "p3"]
        + ["p4", "p4", "p5", "p5", "p6", "p6", "p6"],
        "item_id": ["x1", "x2", "x1", "x2", "x1", "x2", "x3"]
        + ["y1", "y2", "y1", "y2", "y1", "y2", "y3"],
        "weight": 1.0,
        "occurred_at": pd.Timestamp("2024-03-01"),
    }
)


def test_als_recommends_the_missing_item_of_the_persons_taste_group():
    model = ALSRecommender(factors=2, iterations=30, regularization=0.01, random_state=7)
    model.fit(GROUPS)
    assert model.user_factors_.shape == (6, 2) and model.item_factors_.shape == (6, 2)
    recs = model.recommend_k_items(["p1", "p4"], k=1)
    assert recs.set_index("person_id").item_id.to_dict() == {"p1": "x3", "p4": "y3"}
    assert (recs.reason == "als: matches your taste profile").all()
    again = ALSRecommender(factors=2, iterations=30, regularization=0.01, random_state=7)
    np.testing.assert_allclose(again.fit(GROUPS).item_factors_, model.item_factors_, rtol=1e-5)


CATALOG = pd.DataFrame(
    {
        "item_id": ["x1", "x2", "x3", "y1", "y2", "y3", "new_book"],
        "title": ["Red Novel", "Blue Novel", "Green Novel", "Tent", "Helmet", "Yoga Mat", "Novel"],
        "category": ["books", "books", "books", "sports", "sports", "sports", "books"],
        "tags": ["paperback|classic", "paperback", "hardcover", "outdoor", "bike", "fitness", None],
    }
)


def test_content_recommends_similar_and_brand_new_items():
    history = GROUPS[GROUPS.person_id.isin(["p1", "p4"])]
    model = ContentRecommender().fit(history, items=CATALOG)
    assert set(model.item_index_) == set(CATALOG.item_id), "catalog items without history too"
    recs = model.recommend_k_items(["p1", "p4"], k=3)
    by_person = recs.groupby("person_id").item_id.apply(set).to_dict()
    assert by_person["p1"] == {"x3", "new_book"}, "books only, the unseen new one included"
    assert by_person["p4"] == {"y3"}, "only the same-category item shares any term"
    assert (recs.algorithm == "content").all()


@pytest.mark.parametrize("items", [7, 60], ids=["more_terms_than_items", "more_items"])
def test_content_scores_alike_with_dense_and_sparse_item_vectors(monkeypatch, items):
    """Small catalogs score with a dense terms x items array (a dense product when there are
    fewer terms than items), large ones sparse: the same scores and recommendations."""
    import models_ml.recommenders.content as content

    words = ["red", "blue", "green", "tent", "novel", "mat"]
    catalog = pd.DataFrame(
        {
            "item_id": [f"i{n}" for n in range(items)],
            "title": [f"{words[n % 6]} {words[n // 6 % 6]}" for n in range(items)],
            "category": [["books", "sports"][n % 2] for n in range(items)],
            "tags": [["paperback", "outdoor|bike", None][n % 3] for n in range(items)],
        }
    )
    ids = {"x1": "i0", "x2": "i1", "x3": "i2", "y1": "i3", "y2": "i4", "y3": "i5"}
    history = GROUPS.assign(item_id=GROUPS.item_id.map(ids))
    people = sorted(history.person_id.unique())
    dense = content.ContentRecommender().fit(history, items=catalog)
    assert dense.dense_terms_by_items_ is not None
    assert (dense.dense_terms_by_items_.shape[0] <= items) == (items == 60)
    monkeypatch.setattr(content, "MAX_DENSE_VECTORS_BYTES", 0)
    sparse_model = content.ContentRecommender().fit(history, items=catalog)
    assert sparse_model.dense_terms_by_items_ is None
    np.testing.assert_allclose(
        dense.score_items(people), sparse_model.score_items(people), rtol=1e-5, atol=1e-7
    )
    # The same cosine summed in another order can differ in its last bit, so items tied in
    # exact arithmetic may swap ranks: each (person, rank) has the same score.
    left, right = (m.recommend_k_items(people, k=5) for m in (dense, sparse_model))
    assert left[["person_id", "rank"]].equals(right[["person_id", "rank"]])
    np.testing.assert_allclose(left["score"], right["score"], rtol=1e-5)
    assert (left.item_id != right.item_id).mean() < 0.5


def test_chain_skips_short_histories_and_tops_up_in_order():
    ease = EASERecommender(l2=1.0).fit(GROUPS)
    content = ContentRecommender().fit(GROUPS, items=CATALOG)
    popular = PopularityRecommender().fit(GROUPS)
    skipped = recommend_chain([ease, content, popular], ["p1"], 3, min_history=[3, 0, 0])
    assert skipped.algorithm.astype(str).iloc[0] == "content", "2 items < 3: EASE skipped"
    recs = recommend_chain([ease, content, popular], ["p1", "nobody"], 3, min_history=[2, 0, 0])
    first = recs[recs["rank"] == 1].set_index("person_id").algorithm.astype(str).to_dict()
    assert first == {"p1": "ease", "nobody": "popularity"}
    assert recs[recs.person_id == "p1"].item_id.iloc[0] == "x3"
    assert (recs.groupby("person_id").size() == 3).all(), "topped up to k"
    assert not recs.duplicated(["person_id", "item_id"]).any()
    ranks = recs.groupby("person_id")["rank"].apply(list).to_dict()
    assert all(r == list(range(1, len(r) + 1)) for r in ranks.values())


# --- per-segment popularity -----------------------------------------------------------------

from models_ml.recommenders import SegmentPopularityRecommender  # noqa: E402
from models_ml.recommenders.serving import popularity_fallback  # noqa: E402

SEG = "segment_popularity: popular with people like you"
# s1 = p1, p2: a 2, b 2, c 1.  s2 = p3, p5 (and "new", without history): d 2, b 1, c 1.
SEGMENTS = pd.DataFrame(
    {"person_id": ["p1", "p2", "p3", "p5", "new"], "segment_id": ["s1", "s1", "s2", "s2", "s2"]}
)


def _labelled(rows):
    frame = _recs(rows)
    frame["reason"] = frame["algorithm"].map({"segment_popularity": SEG, "popularity": POP})
    return frame


def test_segment_popularity_exact_with_overall_after_and_for_the_unsegmented():
    model = SegmentPopularityRecommender(min_segment_people=1)
    model.fit(INTERACTIONS, segments=SEGMENTS)
    np.testing.assert_array_equal(model.segment_item_scores_, [[2, 2, 1, 0, 0], [0, 1, 1, 2, 0]])
    np.testing.assert_array_equal(model.segment_sizes_, [2, 2])
    result = model.recommend_k_items(["p1", "p4", "new"], k=3)
    # p1 (s1) has seen a, b: c from the segment, then overall (a 7, b 3, c 2, d 2, e 1).
    # p4 has no segment: overall without a, e.  "new" (s2) has no history: s2's items.
    expected = _labelled(
        [
            ("p1", 1, "c", 1.0, "segment_popularity"),
            ("p1", 2, "d", 2.0, "popularity"),
            ("p1", 3, "e", 1.0, "popularity"),
            ("p4", 1, "b", 3.0, "popularity"),
            ("p4", 2, "c", 2.0, "popularity"),
            ("p4", 3, "d", 2.0, "popularity"),
            ("new", 1, "d", 2.0, "segment_popularity"),
            ("new", 2, "b", 1.0, "segment_popularity"),
            ("new", 3, "c", 1.0, "segment_popularity"),
        ]
    )
    _assert_recs(result, expected)


def test_a_too_small_segment_and_no_segments_mean_overall_popularity():
    overall = PopularityRecommender().fit(INTERACTIONS).recommend_k_items(["p1", "new"], k=3)
    expected = overall.astype({"algorithm": str, "reason": str})
    small = SegmentPopularityRecommender(min_segment_people=3).fit(INTERACTIONS, segments=SEGMENTS)
    _assert_recs(small.recommend_k_items(["p1", "new"], k=3), expected)
    none = SegmentPopularityRecommender().fit(INTERACTIONS)
    _assert_recs(none.recommend_k_items(["p1", "new"], k=3), expected)


def test_segment_popularity_respects_exclusions_in_the_chain():
    model = SegmentPopularityRecommender(min_segment_people=1).fit(INTERACTIONS, segments=SEGMENTS)
    pairs = pd.DataFrame({"person_id": ["new"], "item_id": ["d"]})
    result = recommend_chain([model], ["new", "p1"], 2, exclude_pairs=pairs, exclude_items=["c"])
    assert result.set_index(["person_id", "rank"]).item_id.to_dict() == {
        ("new", 1): "b",
        ("new", 2): "a",  # s2 has no other item left: overall comes next
        ("p1", 1): "d",
        ("p1", 2): "e",
    }
    assert result.algorithm.astype(str).tolist() == [
        "segment_popularity",
        "popularity",
        "popularity",
        "popularity",
    ]


def test_the_popularity_fallback_is_per_segment_only_when_it_evaluated_better():
    evaluation = pd.DataFrame(
        {"algorithm": ["popularity", "segment_popularity", "als"], "ndcg_at_k": [0.2, 0.3, 0.4]}
    )
    assert popularity_fallback(evaluation) == "segment_popularity"
    evaluation["ndcg_at_k"] = [0.3, 0.3, 0.4]
    assert popularity_fallback(evaluation) == "popularity", "a tie keeps the simpler one"
    assert popularity_fallback(evaluation.iloc[[0, 2]]) == "popularity"


# --- analytics consent: aggregates count only people whose analytics consent allows ---------


def _with_revoked(interactions: pd.DataFrame, person: str, items: list[str]) -> pd.DataFrame:
    """`interactions` (all consenting) plus heavy interactions of one person who revoked
    analytics consent (has_analytics_consent False on their rows)."""
    revoked = pd.DataFrame(
        {
            "person_id": person,
            "item_id": items,
            "weight": 50.0,
            "occurred_at": interactions["occurred_at"].max(),
            "has_analytics_consent": False,
        }
    )
    return pd.concat([interactions.assign(has_analytics_consent=True), revoked], ignore_index=True)


def test_revoked_analytics_consent_changes_no_popularity_count():
    with_revoked = _with_revoked(INTERACTIONS, "p9", ["e", "z", "z"])
    plain = PopularityRecommender().fit(INTERACTIONS)
    model = PopularityRecommender().fit(with_revoked)
    assert model.item_index_.tolist() == ["a", "b", "c", "d", "e", "z"]
    np.testing.assert_array_equal(model.item_scores_, [*plain.item_scores_, 0.0])
    _assert_recs(
        model.recommend_k_items(["new"], k=5),
        plain.recommend_k_items(["new"], k=5).astype({"algorithm": str, "reason": str}),
    )
    # p9's own history still counts for p9: what they have seen is not recommended to them.
    assert model.recommend_k_items(["p9"], k=5).item_id.tolist() == ["a", "b", "c", "d"]

    segments = pd.concat([SEGMENTS, pd.DataFrame({"person_id": ["p9"], "segment_id": ["s1"]})])
    segmented = SegmentPopularityRecommender(min_segment_people=1)
    segmented.fit(with_revoked, segments=segments)
    np.testing.assert_array_equal(
        segmented.segment_item_scores_, [[2, 2, 1, 0, 0, 0], [0, 1, 1, 2, 0, 0]]
    )
    np.testing.assert_array_equal(segmented.segment_sizes_, [2, 2])


def test_revoked_analytics_consent_changes_no_item_model_but_still_personalizes():
    with_revoked = _with_revoked(INTERACTIONS, "p9", ["e", "z"])
    cooc = ItemCooccurrenceRecommender(similarity_type="counts").fit(with_revoked)
    np.testing.assert_array_equal(cooc.similarity_[:5, :5], COUNTS)
    assert not cooc.similarity_[5].any() and not cooc.similarity_[:, 5].any()
    # p9's history (e) is scored against everyone else's co-occurrences: e goes with a.
    assert cooc.recommend_k_items(["p9"], k=1).item_id.tolist() == ["a"]

    ease = EASERecommender(l2=2.0).fit(with_revoked)
    plain = EASERecommender(l2=2.0).fit(INTERACTIONS)
    np.testing.assert_allclose(ease.weights_[:5, :5], plain.weights_, rtol=1e-5, atol=1e-7)
    assert not ease.weights_[5].any() and not ease.weights_[:, 5].any()

    als_data = _with_revoked(GROUPS, "p9", ["x1", "x2"])
    params = {"factors": 2, "iterations": 30, "regularization": 0.01, "random_state": 7}
    als = ALSRecommender(**params).fit(als_data)
    plain_als = ALSRecommender(**params).fit(GROUPS)
    np.testing.assert_allclose(als.item_factors_, plain_als.item_factors_, rtol=1e-5)
    assert als.recommend_k_items(["p9"], k=1).item_id.tolist() == ["x3"]


def test_model_selection_scores_a_seeded_sample_of_people_when_asked():
    from models_ml.recommenders.selection import evaluate_recommenders

    rng = np.random.default_rng(0)
    n = 4_000
    interactions = pd.DataFrame(
        {
            "person_id": np.repeat([f"p{i}" for i in range(n)], 4),
            "item_id": rng.choice([f"i{j}" for j in range(50)], n * 4),
            "weight": 1.0,
            "occurred_at": pd.Timestamp("2024-03-01")
            + pd.to_timedelta(np.tile(np.arange(4), n), unit="D"),
        }
    )
    candidates = {"popularity": PopularityRecommender(), "cooc": ItemCooccurrenceRecommender()}
    everyone = evaluate_recommenders(candidates, interactions, None, k=5, min_history=3)
    sampled = evaluate_recommenders(
        candidates, interactions, None, k=5, min_history=3, max_people=1_000
    )
    again = evaluate_recommenders(
        candidates, interactions, None, k=5, min_history=3, max_people=1_000
    )
    assert (everyone["n_users"] > 3_900).all()  # people whose holdout item is new to them
    assert (sampled["n_users"] == 1_000).all()
    pd.testing.assert_frame_equal(
        sampled.drop(columns="fit_seconds"), again.drop(columns="fit_seconds")
    )
    # a sample estimates the same metric: within a few standard errors of everyone's
    assert np.allclose(sampled["ndcg_at_k"], everyone["ndcg_at_k"], atol=0.05)

    # sample_people: the whole selection runs on that many people's interactions, as if
    # they were all there was (the same rows as evaluating that subset), seeded
    on_sample = evaluate_recommenders(
        candidates, interactions, None, k=5, min_history=3, sample_people=1_500, seed=3
    )
    kept = np.random.default_rng(3).choice(interactions["person_id"].unique(), 1_500, False)
    subset = interactions[interactions["person_id"].isin(kept)]
    assert subset["person_id"].nunique() == 1_500
    pd.testing.assert_frame_equal(
        on_sample.drop(columns="fit_seconds"),
        evaluate_recommenders(candidates, subset, None, k=5, min_history=3, seed=3).drop(
            columns="fit_seconds"
        ),
    )
    assert (on_sample["n_users"] <= 1_500).all() and (on_sample["n_users"] > 1_400).all()
    assert np.allclose(on_sample["ndcg_at_k"], everyone["ndcg_at_k"], atol=0.05)


def test_serving_in_batches_gives_the_rows_of_one_pass_over_everyone():
    from dataclasses import replace

    from models_ml.recommenders.serving import fit_serving_chain, serve
    from models_ml.rules import RecommendationRules

    rng = np.random.default_rng(3)
    n_people, n_items = 300, 40
    person = rng.integers(0, n_people, 3_000)
    # two taste groups, so the collaborative models have something to find
    item = (person % 2) * (n_items // 2) + rng.zipf(1.5, 3_000) % (n_items // 2)
    interactions = pd.DataFrame(
        {
            "person_id": [f"p{i:03d}" for i in person],
            "item_id": [f"i{j:02d}" for j in item],
            "weight": rng.choice([1.0, 3.0, 5.0], 3_000),
            "occurred_at": pd.Timestamp("2024-03-01")
            + pd.to_timedelta(rng.integers(0, 60 * 86400, 3_000), unit="s"),
        }
    )
    items = pd.DataFrame(
        {
            "item_id": [f"i{j:02d}" for j in range(n_items)],
            "title": [f"thing {j % 7}" for j in range(n_items)],
            "category": [f"c{j % 3}" for j in range(n_items)],
            "tags": [f"t{j % 5}" for j in range(n_items)],
        }
    )
    settings = {
        "candidates": ["popularity", "item_cooccurrence", "content"],
        "top_k": 5,
        "serve_batch_people": 7,
    }
    rules = RecommendationRules.from_dict(
        {
            "context_rules": [{"name": "checkout", "when": "open_checkout"}],
            "pins": [{"name": "pinned", "item_ids": ["i39"]}],
            "boosts": [{"name": "c1", "factor": 2.0, "categories": ["c1"]}],
        }
    )
    # everyone with history, two people without any, in a non-sorted order
    people = pd.Index([f"p{i:03d}" for i in range(n_people)][::-1] + ["new1", "new2"])
    serving = fit_serving_chain(interactions, items, settings)
    served = dict(
        rules=rules,
        items=items,
        contexts={"open_checkout": ["p005", "p200", "new1"]},
        curated_items=["i01", "i30"],
        exclude_pairs=interactions.iloc[::10][["person_id", "item_id"]],
        exclude_items=["i02"],
    )
    batches = list(serve(serving, people, **served))
    one_pass = list(serve(replace(serving, batch_people=10**6), people, **served))
    assert len(batches) == 44 and len(one_pass) == 1  # ceil(302 / 7)
    assert all(batch["person_id"].nunique() <= 7 for batch in batches)
    as_text = {"algorithm": str, "reason": str}
    pd.testing.assert_frame_equal(
        pd.concat(batches, ignore_index=True).astype(as_text), one_pass[0].astype(as_text)
    )
    assert one_pass[0]["person_id"].drop_duplicates().tolist() == people.tolist()
    # the chain and the rules both reach the output: pins, a model, the popularity fallback
    algorithms = set(one_pass[0]["algorithm"].astype(str))
    assert {"rule", "popularity"} < algorithms, algorithms

    nobody = list(serve(serving, [], **served))
    assert len(nobody) == 1 and nobody[0].empty
    assert list(nobody[0].columns) == list(one_pass[0].columns)
    with pytest.raises(ValueError, match="serve_batch_people"):
        fit_serving_chain(interactions, items, {**settings, "serve_batch_people": -1})


def _two_taste_groups(n_people: int = 300, n_items: int = 40, rows: int = 3_000):
    rng = np.random.default_rng(5)
    person = rng.integers(0, n_people, rows)
    item = (person % 2) * (n_items // 2) + rng.zipf(1.5, rows) % (n_items // 2)
    return pd.DataFrame(
        {
            "person_id": [f"p{i:03d}" for i in person],
            "item_id": [f"i{j:02d}" for j in item],
            "weight": rng.choice([1.0, 3.0, 5.0], rows),
            "occurred_at": pd.Timestamp("2024-03-01")
            + pd.to_timedelta(rng.integers(0, 60 * 86400, rows), unit="s"),
        }
    )


def test_score_threads_reach_every_block_scoring_model_and_are_checked():
    from models_ml.recommenders.serving import build_candidates

    threaded = ("item_cooccurrence", "als", "ease", "content")
    assert all(build_candidates({})[name].n_jobs == -1 for name in threaded)  # one per core
    two = build_candidates({"score_threads": 2})
    assert all(two[name].n_jobs == 2 for name in threaded)
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(ValueError, match="score_threads"):
            build_candidates({"score_threads": bad})


@pytest.mark.parametrize("algorithm", ["item_cooccurrence", "als", "ease", "content"])
def test_scoring_in_threads_gives_the_rows_of_one_thread(monkeypatch, algorithm):
    import models_ml.recommenders._base as base
    from models_ml.recommenders.serving import build_candidates

    # blocks of 16 people: the 300 people are scored in 19 blocks, over two threads
    blocks = base.row_blocks
    monkeypatch.setattr(
        base, "row_blocks", lambda n_rows, n_cols: blocks(n_rows, n_cols, 16 * n_cols)
    )
    interactions = _two_taste_groups()
    items = pd.DataFrame({"item_id": sorted(interactions["item_id"].unique())})
    items["title"] = "thing " + items["item_id"].str[-1]
    fitted = {}
    for threads in (1, 2):
        model = build_candidates({"score_threads": threads, "als_iterations": 3})[algorithm]
        kwargs = {"items": items} if algorithm == "content" else {}
        fitted[threads] = model.fit(interactions, **kwargs).recommend_k_items(k=5)
    assert len(fitted[1]) > 1_000
    pd.testing.assert_frame_equal(fitted[2], fitted[1])


@pytest.mark.parametrize("sorted_categories", [True, False])
def test_categorical_ids_select_fit_and_serve_as_their_values(sorted_categories):
    """The nightly step reads ids as categoricals (some categories unused, e.g. a person
    whose rows are not read); the selection, the fitted chain and the lists are those of
    the plain ids. Unsorted categories take the plain path."""
    from models_ml.recommenders.serving import fit_serving_chain, serve
    from models_ml.rules import RecommendationRules

    plain = _two_taste_groups().sort_values(["person_id", "item_id", "occurred_at"])
    plain = plain.reset_index(drop=True)
    coded = plain.copy()
    for column, unused in (("person_id", ["p000a", "zz"]), ("item_id", ["i00x"])):
        categories = sorted(set(plain[column]) | set(unused))
        if not sorted_categories:
            categories = categories[::-1]
        coded[column] = pd.Categorical(plain[column], categories=categories)
    items = pd.DataFrame(
        {
            "item_id": [f"i{j:02d}" for j in range(40)],
            "title": [f"thing {j % 7}" for j in range(40)],
            "category": [f"c{j % 3}" for j in range(40)],
            "tags": [f"t{j % 5}" for j in range(40)],
        }
    )
    settings = {
        "candidates": ["popularity", "item_cooccurrence", "ease", "content"],
        "top_k": 5,
        "half_life_days": 30,
        "eval_sample_people": 200,  # drawn from the codes, then turned into values
    }
    as_of = pd.Timestamp("2024-04-20")  # some rows are after it
    people = [f"p{i:03d}" for i in range(0, 300, 3)] + ["p000a", "new"]
    served = {}
    for name, frame in (("plain", plain), ("coded", coded)):
        serving = fit_serving_chain(frame, items, settings, as_of=as_of)
        rows = pd.concat(list(serve(serving, people, RecommendationRules.from_dict({}))))
        timings = [c for c in serving.evaluation.columns if c.endswith("_seconds")]
        served[name] = (serving.evaluation.drop(columns=timings), rows.astype(str))
    pd.testing.assert_frame_equal(served["coded"][0], served["plain"][0])
    pd.testing.assert_frame_equal(served["coded"][1], served["plain"][1])
    assert served["plain"][1]["algorithm"].nunique() >= 2


def test_a_sample_of_coded_people_is_the_sample_of_their_values():
    from models_ml.recommenders.selection import sample_people_rows

    plain = _two_taste_groups().sample(frac=1.0, random_state=5).reset_index(drop=True)
    coded = plain.assign(
        person_id=pd.Categorical(
            plain["person_id"], categories=sorted(set(plain["person_id"]) | {"unused"})
        )
    )
    for n in (50, 150):
        expected = sample_people_rows(plain, n, seed=7)
        got = sample_people_rows(coded, n, seed=7)
        assert expected["person_id"].nunique() == n
        pd.testing.assert_frame_equal(got.assign(person_id=got["person_id"].astype(str)), expected)
    assert sample_people_rows(coded, 10_000) is coded
    # `among`: the sample of the masked rows, without filtering them first
    among = np.random.default_rng(3).random(len(plain)) < 0.7
    for frame in (plain, coded):
        for n in (50, 10_000):
            pd.testing.assert_frame_equal(
                sample_people_rows(frame, n, seed=7, among=among),
                sample_people_rows(frame[among], n, seed=7),
            )


def test_summed_csr_is_the_csr_of_coo_cells_sorted_or_not():
    from models_ml.recommenders._base import summed_csr

    rng = np.random.default_rng(11)
    rows, columns = rng.integers(0, 50, 2_000), rng.integers(0, 30, 2_000)
    data = rng.normal(size=2_000)
    order = np.lexsort((columns, rows))
    for r, c, d in ((rows[order], columns[order], data[order]), (rows, columns, data)):
        for values in (d, np.ones(len(d), dtype=bool)):
            expected = sparse.coo_array((values, (r, c)), shape=(60, 30)).tocsr()
            given = (values.copy(), r.copy(), c.astype(np.int32))
            got = summed_csr(*given, (60, 30))
            # the inputs are left as they were (summing duplicates compacts arrays in place)
            np.testing.assert_array_equal(given[0], values)
            np.testing.assert_array_equal(given[2], c)
            assert got.has_canonical_format
            np.testing.assert_array_equal(got.indptr, expected.indptr)
            np.testing.assert_array_equal(got.indices, expected.indices)
            np.testing.assert_array_equal(got.data, expected.data)
    empty = summed_csr(np.zeros(0), np.zeros(0, int), np.zeros(0, int), (3, 4))
    assert empty.shape == (3, 4) and empty.nnz == 0


def test_age_in_days_is_pandas_timedelta_arithmetic():
    from models_ml.recommenders._base import age_in_days

    occurred = pd.Series(
        pd.to_datetime(["2024-03-01 10:00:00.5", "2024-03-10 00:00:00.0", "2024-04-01 00:00:00.0"])
    )
    as_of = pd.Timestamp("2024-04-01 06:00")
    expected = ((as_of - occurred) / pd.Timedelta(days=1)).to_numpy(dtype=float)
    np.testing.assert_allclose(age_in_days(occurred, as_of), expected, rtol=1e-14)


def test_item_totals_from_rows_read_in_order_with_people_outside_aggregates_are_by_hand():
    """The nightly read: rows sorted by person and item (the csr made without coo), some of
    people whose rows count in no aggregate, cells with several rows. Every model's aggregate
    matrix (here popularity's totals) sums the decayed weights of the counted rows only."""
    interactions = _two_taste_groups()
    interactions["has_analytics_consent"] = ~interactions["person_id"].isin(["p001", "p002"])
    interactions = interactions.sort_values(["person_id", "item_id", "occurred_at"])
    as_of = pd.Timestamp("2024-04-10")  # some rows are after it
    model = PopularityRecommender(half_life_days=20).fit(interactions, as_of=as_of)
    counted = interactions[interactions["has_analytics_consent"]]
    counted = counted[counted["occurred_at"] <= as_of]
    age = (as_of - counted["occurred_at"]).dt.total_seconds() / 86_400
    by_hand = (counted["weight"] * np.exp2(-age / 20)).groupby(counted["item_id"]).sum()
    assert counted.duplicated(["person_id", "item_id"]).sum() > 100
    np.testing.assert_allclose(
        model.item_scores_, by_hand.reindex(model.item_index_, fill_value=0.0), rtol=1e-12
    )
