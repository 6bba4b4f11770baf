"""Ranking metrics for recommendations, with Microsoft Recommenders' definitions.

`recommendations` holds (person_id, item_id, rank), `truth` the (person_id, item_id) pairs a
person actually interacted with in the holdout. As in `recommenders.evaluation.python_evaluation`:

- only people present in both frames count (n_users = their number);
- a person's recommendations are ordered by rank and renumbered 1..n, then cut at k;
- relevance is binary; duplicate truth pairs count once;
- precision@k = hits / k (so fewer than k recommendations caps precision below 1);
- recall@k = hits / |truth|;
- nDCG@k = sum over hits of 1/log2(1 + rank), divided by the ideal sum over
  min(|truth|, k) positions;
- MAP@k = sum over hits of (hits so far / rank), divided by min(|truth|, k);
- each is averaged over n_users, people without a hit adding 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models_ml.columns import ITEM_ID, PERSON_ID, RANK
from models_ml.frames import isin

_HIT_PERSON, _HIT_RANK, _HIT_NUMBER = "person", "rank", "hit_number"


def _hits(
    truth: pd.DataFrame,
    recommendations: pd.DataFrame,
    k: int,
    col_person: str,
    col_item: str,
    col_rank: str,
) -> tuple[pd.DataFrame, pd.Series, int]:
    """(hits: person, rank, hit_number; |truth| per common person; n_users)."""
    truth = truth[[col_person, col_item]].drop_duplicates()
    common = pd.Index(truth[col_person].unique()).intersection(
        pd.Index(recommendations[col_person].unique())
    )
    truth = truth[isin(truth[col_person], common)]
    recs = recommendations[isin(recommendations[col_person], common)]
    recs = recs.sort_values([col_person, col_rank], kind="stable")[[col_person, col_item]]
    recs = recs.assign(**{col_rank: recs.groupby(col_person, sort=False).cumcount() + 1})
    recs = recs[recs[col_rank] <= k]
    hits = recs.merge(truth, on=[col_person, col_item], how="inner")
    hits = hits.sort_values([col_person, col_rank], kind="stable")
    hits = pd.DataFrame(
        {
            _HIT_PERSON: hits[col_person].to_numpy(),
            _HIT_RANK: hits[col_rank].to_numpy(dtype=float),
            _HIT_NUMBER: (hits.groupby(col_person, sort=False).cumcount() + 1).to_numpy(),
        }
    )
    actual = truth.groupby(col_person).size().rename_axis(_HIT_PERSON)
    return hits, actual, len(common)


def precision_at_k(
    truth: pd.DataFrame,
    recommendations: pd.DataFrame,
    k: int = 10,
    *,
    col_person: str = PERSON_ID,
    col_item: str = ITEM_ID,
    col_rank: str = RANK,
) -> float:
    return _precision(*_hits(truth, recommendations, k, col_person, col_item, col_rank), k)


def recall_at_k(
    truth: pd.DataFrame,
    recommendations: pd.DataFrame,
    k: int = 10,
    *,
    col_person: str = PERSON_ID,
    col_item: str = ITEM_ID,
    col_rank: str = RANK,
) -> float:
    return _recall(*_hits(truth, recommendations, k, col_person, col_item, col_rank), k)


def ndcg_at_k(
    truth: pd.DataFrame,
    recommendations: pd.DataFrame,
    k: int = 10,
    *,
    col_person: str = PERSON_ID,
    col_item: str = ITEM_ID,
    col_rank: str = RANK,
) -> float:
    return _ndcg(*_hits(truth, recommendations, k, col_person, col_item, col_rank), k)


def map_at_k(
    truth: pd.DataFrame,
    recommendations: pd.DataFrame,
    k: int = 10,
    *,
    col_person: str = PERSON_ID,
    col_item: str = ITEM_ID,
    col_rank: str = RANK,
) -> float:
    return _map(*_hits(truth, recommendations, k, col_person, col_item, col_rank), k)


def _precision(hits: pd.DataFrame, actual: pd.Series, n_users: int, k: int) -> float:
    return float(len(hits) / (k * n_users)) if n_users else 0.0


def _recall(hits: pd.DataFrame, actual: pd.Series, n_users: int, k: int) -> float:
    if not n_users:
        return 0.0
    per_person = hits.groupby(_HIT_PERSON).size() / actual
    return float(per_person.sum() / n_users)


def _ndcg(hits: pd.DataFrame, actual: pd.Series, n_users: int, k: int) -> float:
    if not n_users:
        return 0.0
    dcg = (1.0 / np.log2(1.0 + hits[_HIT_RANK])).groupby(hits[_HIT_PERSON]).sum()
    ideal_by_length = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(2.0 + np.arange(k)))])
    ideal = pd.Series(ideal_by_length[np.minimum(actual.to_numpy(), k)], index=actual.index)
    return float((dcg / ideal).sum() / n_users)


def _map(hits: pd.DataFrame, actual: pd.Series, n_users: int, k: int) -> float:
    if not n_users:
        return 0.0
    precision_at_hits = (hits[_HIT_NUMBER] / hits[_HIT_RANK]).groupby(hits[_HIT_PERSON]).sum()
    return float((precision_at_hits / np.minimum(actual, k)).sum() / n_users)


def catalog_coverage(
    recommendations: pd.DataFrame,
    catalog,
    *,
    col_item: str = ITEM_ID,
) -> float:
    """Share of the catalog's distinct items recommended to at least one person.

    `catalog` is a DataFrame with an item column or any list-like of item ids.
    """
    catalog_items = pd.Index(
        catalog[col_item] if isinstance(catalog, pd.DataFrame) else list(catalog)
    ).unique()
    if not len(catalog_items):
        return 0.0
    recommended = catalog_items.isin(recommendations[col_item].unique())
    return float(recommended.sum() / len(catalog_items))


def ranking_metrics(
    truth: pd.DataFrame,
    recommendations: pd.DataFrame,
    k: int = 10,
    catalog=None,
    *,
    col_person: str = PERSON_ID,
    col_item: str = ITEM_ID,
    col_rank: str = RANK,
) -> dict[str, float]:
    """All metrics at once (one `recommendation_evaluation` row): precision_at_k, recall_at_k,
    ndcg_at_k, map_at_k, catalog_coverage (when a catalog is given), k, n_users."""
    hits = _hits(truth, recommendations, k, col_person, col_item, col_rank)
    metrics = {
        "k": k,
        "n_users": hits[2],
        "precision_at_k": _precision(*hits, k),
        "recall_at_k": _recall(*hits, k),
        "ndcg_at_k": _ndcg(*hits, k),
        "map_at_k": _map(*hits, k),
    }
    if catalog is not None:
        metrics["catalog_coverage"] = catalog_coverage(recommendations, catalog, col_item=col_item)
    return metrics


def item_popularity(
    interactions: pd.DataFrame,
    *,
    col_person: str = PERSON_ID,
    col_item: str = ITEM_ID,
) -> tuple[pd.Series, int]:
    """(people per item, number of people) of `interactions`: what `novelty` measures
    against. Computed once for a model selection (at 1M people the distinct pairs of the
    training split took 10 s, once per candidate)."""
    pairs = interactions[[col_person, col_item]].drop_duplicates()
    return pairs.groupby(col_item).size(), max(pairs[col_person].nunique(), 1)


def novelty(
    recommendations: pd.DataFrame,
    interactions: pd.DataFrame | None = None,
    *,
    popularity: tuple[pd.Series, int] | None = None,
    col_person: str = PERSON_ID,
    col_item: str = ITEM_ID,
) -> float:
    """Mean self-information -log2(p(i)) of the recommended items, p(i) = share of people who
    interacted with item i (items nobody interacted with count as seen by one person).

    p comes from `interactions`, or from `popularity` (`item_popularity` of them)."""
    if recommendations.empty:
        return 0.0
    if popularity is None:
        if interactions is None:
            raise ValueError("novelty needs the interactions or their item_popularity")
        popularity = item_popularity(interactions, col_person=col_person, col_item=col_item)
    people_per_item, n_people = popularity
    counts = people_per_item.reindex(recommendations[col_item]).fillna(1.0).clip(lower=1.0)
    return float(np.mean(-np.log2(counts.to_numpy() / n_people)))


def latest_holdout(
    interactions: pd.DataFrame,
    n_latest: int = 1,
    min_history: int = 3,
    *,
    col_person: str = PERSON_ID,
    col_item: str = ITEM_ID,
    col_timestamp: str = "occurred_at",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test): each person's `n_latest` most recent distinct items are held out.

    Only people with at least `min_history` distinct items give a holdout; every interaction
    with a held-out item (earlier ones too) leaves train, so the model cannot see the answer.
    A person's items are ranked by their latest interaction, newest first, then by item id
    (category order for categorical ids); `test` is in person, then that order.

    Computed on integer codes (`_latest_holdout_codes`): on the 2.7M interactions of the L
    tier's model selection 0.9-1.6 s, where grouping, sorting and merging the text ids in
    pandas took 2.9-3.5 s (the same split).
    """
    split = _latest_holdout_codes(
        interactions, n_latest, min_history, col_person, col_item, col_timestamp
    )
    if split is not None:
        return split
    return _latest_holdout_frames(
        interactions, n_latest, min_history, col_person, col_item, col_timestamp
    )


def _latest_holdout_frames(
    interactions: pd.DataFrame,
    n_latest: int,
    min_history: int,
    col_person: str,
    col_item: str,
    col_timestamp: str,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`latest_holdout` by pandas' grouping and merging (any id and time types)."""
    latest = (
        interactions.groupby([col_person, col_item], sort=False)[col_timestamp].max().reset_index()
    )
    latest = latest.sort_values(
        [col_person, col_timestamp, col_item], ascending=[True, False, True]
    )
    size = latest.groupby(col_person)[col_item].transform("size")
    recency = latest.groupby(col_person).cumcount()
    test = latest[(size >= min_history) & (recency < n_latest)][[col_person, col_item]]
    held = interactions.merge(test.assign(_held=True), on=[col_person, col_item], how="left")
    train = interactions[held["_held"].isna().to_numpy()]
    return train.reset_index(drop=True), test.reset_index(drop=True)


def _sorted_codes(column: pd.Series) -> np.ndarray:
    """Integer codes in the order `sort_values` puts the values (-1: missing)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return column.cat.codes.to_numpy(dtype=np.int64)
    return pd.factorize(column, sort=True)[0].astype(np.int64, copy=False)


def _latest_holdout_codes(
    interactions: pd.DataFrame,
    n_latest: int,
    min_history: int,
    col_person: str,
    col_item: str,
    col_timestamp: str,
) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """`latest_holdout` on integer codes (None where it does not apply: no rows, or times
    that are not naive datetime64 without a missing one, which pandas' path handles)."""
    times = interactions[col_timestamp].to_numpy()
    if not len(interactions) or times.dtype.kind != "M":
        return None
    times = times.view(np.int64)
    if (times == np.iinfo(np.int64).min).any():  # NaT
        return None
    person = _sorted_codes(interactions[col_person])
    item = _sorted_codes(interactions[col_item])
    # rows with a missing id are never held out (pandas' groupby drops them)
    rows = np.flatnonzero((person >= 0) & (item >= 0))
    n_items = int(item.max()) + 1 if len(rows) else 1
    key = person[rows] * n_items + item[rows]
    if len(key) > 1 and (key[1:] < key[:-1]).any():
        by_key = np.argsort(key, kind="stable")
        rows, key = rows[by_key], key[by_key]
    # the (person, item) pairs, each with its latest interaction
    new_pair = np.r_[True, key[1:] != key[:-1]] if len(key) else np.zeros(0, dtype=bool)
    starts = np.flatnonzero(new_pair)
    pair_key = key[starts]
    pair_person, pair_item = pair_key // n_items, pair_key % n_items
    pair_latest = np.maximum.reduceat(times[rows], starts) if len(starts) else pair_key
    # each person's pairs, newest first, then by item; their rank and how many they have
    ranked = np.lexsort((pair_item, -pair_latest, pair_person))
    ranked_person = pair_person[ranked]
    first = np.r_[True, ranked_person[1:] != ranked_person[:-1]]
    group = np.cumsum(first) - 1
    group_starts = np.flatnonzero(first)
    size = np.diff(np.r_[group_starts, len(ranked)])[group]
    recency = np.arange(len(ranked)) - group_starts[group]
    held_pairs = ranked[(size >= min_history) & (recency < n_latest)]
    is_held_pair = np.zeros(len(starts), dtype=bool)
    is_held_pair[held_pairs] = True
    held = np.zeros(len(interactions), dtype=bool)
    held[rows] = is_held_pair[np.cumsum(new_pair) - 1]
    test = interactions[[col_person, col_item]].iloc[rows[starts[held_pairs]]]
    train = interactions[~held]
    return train.reset_index(drop=True), test.reset_index(drop=True)
