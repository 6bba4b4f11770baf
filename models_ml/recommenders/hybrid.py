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
    requested = as_index(person_ids)
    primary.fit(interactions, as_of=as_of)
    fallback.fit(interactions, as_of=as_of)
    exclusions = {"remove_seen": remove_seen, "exclude_items": exclude_items}

    first = primary.recommend_k_items(requested, k, exclude_pairs=exclude_pairs, **exclusions)
    primary_counts = first.groupby(col_person, sort=False).size()
    short = requested[primary_counts.reindex(requested, fill_value=0).to_numpy() < k]
    already = pd.concat(
        [
            exclude_pairs[[col_person, col_item]] if exclude_pairs is not None else None,
            first[[col_person, col_item]],
        ]
    )
    second = fallback.recommend_k_items(short, k, exclude_pairs=already, **exclusions)

    combined = concat_recommendations([first, second])
    combined = combined.drop_duplicates([col_person, col_item], keep="first")
    source = np.repeat([0, 1], [len(first), len(second)])[combined.index]
    order = np.lexsort(
        (combined[RANK].to_numpy(), source, requested.get_indexer(combined[col_person]))
    )
    combined = combined.iloc[order]
    combined[RANK] = combined.groupby(col_person, sort=False).cumcount().to_numpy() + 1
    return combined[combined[RANK] <= k].reset_index(drop=True)
