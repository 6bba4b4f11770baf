"""Primary recommender first, fallback to fill: every requested person gets up to k items."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from models_ml.columns import ITEM_ID, PERSON_ID, RANK
from models_ml.recommenders._base import InteractionRecommender, as_index, concat_recommendations


def recommend_with_fallback(
    interactions: pd.DataFrame,
    person_ids,
    k: int,
    primary: InteractionRecommender,
    fallback: InteractionRecommender,
    *,
    exclude_pairs: pd.DataFrame | None = None,
    exclude_items: Iterable | None = None,
    remove_seen: bool = True,
    as_of=None,
    col_person: str = PERSON_ID,
    col_item: str = ITEM_ID,
) -> pd.DataFrame:
    """Fit both recommenders on `interactions`, then combine them per person.

    People with history get the primary's items (e.g. item co-occurrence), topped up to k by
    the fallback (e.g. popularity) when the primary has fewer; people without history get the
    fallback's items only. An item appears at most once per person, ranks run 1..n without
    gaps, and excluded pairs / items never appear. Each row's `reason` names the algorithm
    that produced it ("item_cooccurrence: because you interacted with similar items",
    "popularity: popular right now"); scores stay on their own algorithm's scale.

    Returns:
        `ml.recommendations`: person_id, rank, item_id, score, algorithm, reason; rows in
        `person_ids` order, then rank.
    """
    primary.fit(interactions, as_of=as_of)
    fallback.fit(interactions, as_of=as_of)
    return recommend_chain(
        [primary, fallback],
        person_ids,
        k,
        exclude_pairs=exclude_pairs,
        exclude_items=exclude_items,
        remove_seen=remove_seen,
        col_person=col_person,
        col_item=col_item,
    )


def recommend_chain(
    recommenders: list[InteractionRecommender],
    person_ids,
    k: int,
    *,
    min_history: list[int] | None = None,
    exclude_pairs: pd.DataFrame | None = None,
    exclude_items: Iterable | None = None,
    remove_seen: bool = True,
    col_person: str = PERSON_ID,
    col_item: str = ITEM_ID,
) -> pd.DataFrame:
    """Fitted recommenders in order, each topping up the people still short of k items.

    `min_history[i]`: people with fewer distinct items in their history than this skip
    recommender i (a collaborative model says little about someone with one click; content
    and popularity do better there). Rows keep their own algorithm, reason and score; ranks
    are renumbered 1..n per person without gaps, and no item appears twice for a person.

    Returns:
        `ml.recommendations`: person_id, rank, item_id, score, algorithm, reason; rows in
        `person_ids` order, then rank.
    """
    requested = as_index(person_ids)
    thresholds = min_history or [0] * len(recommenders)
    exclusions = {"remove_seen": remove_seen, "exclude_items": exclude_items}
    frames: list[pd.DataFrame] = []
    counts = np.zeros(len(requested), dtype=np.int64)
    already = exclude_pairs[[col_person, col_item]] if exclude_pairs is not None else None
    for recommender, threshold in zip(recommenders, thresholds, strict=True):
        short = counts < k
        if threshold > 0:
            position = recommender.person_index_.get_indexer(requested)
            history = np.zeros(len(requested), dtype=np.int64)
            known = position >= 0
            history[known] = np.diff(recommender.seen_.indptr)[position[known]]
            short &= history >= threshold
        if not short.any():
            continue
        stage = recommender.recommend_k_items(
            requested[short], k, exclude_pairs=already, **exclusions
        )
        frames.append(stage)
        counts += (
            stage.groupby(col_person, sort=False).size().reindex(requested, fill_value=0).to_numpy()
        )
        already = pd.concat([already, stage[[col_person, col_item]]])
    if not frames:
        return recommenders[-1].recommend_k_items(requested[:0], k)

    combined = concat_recommendations(frames)
    combined = combined.drop_duplicates([col_person, col_item], keep="first")
    source = np.repeat(np.arange(len(frames)), [len(f) for f in frames])[combined.index]
    order = np.lexsort(
        (combined[RANK].to_numpy(), source, requested.get_indexer(combined[col_person]))
    )
    combined = combined.iloc[order]
    combined[RANK] = combined.groupby(col_person, sort=False).cumcount().to_numpy() + 1
    return combined[combined[RANK] <= k].reset_index(drop=True)
