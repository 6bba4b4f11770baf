"""Primary recommender first, fallback to fill: every requested person gets up to k items."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from models_ml.columns import ITEM_ID, PERSON_ID
from models_ml.recommenders._base import (
    InteractionRecommender,
    as_index,
    concat_cells,
    lexsort_runs,
    recommendation_frame,
)


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
    categorical_ids: bool = False,
) -> pd.DataFrame:
    """Fitted recommenders in order, each topping up the people still short of k items.

    `min_history[i]`: people with fewer distinct items in their history than this skip
    recommender i (a collaborative model says little about someone with one click; content
    and popularity do better there). Rows keep their own algorithm, reason and score; ranks
    are renumbered 1..n per person without gaps, and no item appears twice for a person.

    Returns:
        `ml.recommendations`: person_id, rank, item_id, score, algorithm, reason; rows in
        `person_ids` order, then rank. With `categorical_ids`, person_id and item_id are
        categoricals (cheaper to make and to read back into positions; same values).
    """
    requested = as_index(person_ids)
    thresholds = min_history or [0] * len(recommenders)
    # Everything below works on integer positions: `requested` for people and the union of
    # the recommenders' items, so the pairs already taken exclude cheaply at every stage.
    items = recommenders[0].item_index_
    for recommender in recommenders[1:]:
        items = items.append(recommender.item_index_.difference(items))
    taken_rows, taken_items = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    if exclude_pairs is not None and len(exclude_pairs):
        r = requested.get_indexer(exclude_pairs[col_person])
        c = items.get_indexer(exclude_pairs[col_item])
        ok = (r >= 0) & (c >= 0)
        taken_rows, taken_items = [r[ok]], [c[ok]]
    banned = np.zeros(len(items), dtype=bool)
    if exclude_items is not None:
        positions = items.get_indexer(as_index(exclude_items))
        banned[positions[positions >= 0]] = True

    counts = np.zeros(len(requested), dtype=np.int64)
    parts, labels = [], []
    for stage, (recommender, threshold) in enumerate(zip(recommenders, thresholds, strict=True)):
        short = counts < k
        if threshold > 0:
            position = recommender.person_index_.get_indexer(requested)
            history = np.zeros(len(requested), dtype=np.int64)
            known = position >= 0
            history[known] = np.diff(recommender.seen_.indptr)[position[known]]
            short &= history >= threshold
        rows = np.flatnonzero(short)
        if not len(rows):
            continue
        local = np.full(len(requested), -1, dtype=np.int64)
        local[rows] = np.arange(len(rows))
        to_stage = recommender.item_index_.get_indexer(items)
        from_stage = items.get_indexer(recommender.item_index_)
        r = local[np.concatenate(taken_rows)]
        c = to_stage[np.concatenate(taken_items)]
        ok = (r >= 0) & (c >= 0)
        excluded = recommender._excluded_cells(requested[rows], remove_seen, r[ok], c[ok])
        cells = recommender._top_k(requested[rows], k, excluded, banned[from_stage])
        stage_rows, stage_items = rows[cells[0]], from_stage[cells[1]]
        parts.append((stage_rows, stage_items, cells[2], cells[3], cells[4] + len(labels), stage))
        labels += recommender.labels()
        taken_rows.append(stage_rows)
        taken_items.append(stage_items)
        counts += np.bincount(stage_rows, minlength=len(requested))
    if not parts:
        return recommenders[-1].recommend_k_items(requested[:0], k)

    rows, item_codes, scores, ranks, codes = concat_cells([part[:5] for part in parts])
    stages = np.concatenate([np.full(len(part[0]), part[5]) for part in parts])
    order = lexsort_runs(ranks, stages, rows)
    rows = rows[order]
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    ranks = np.arange(len(rows)) - np.repeat(starts, np.diff(np.r_[starts, len(rows)])) + 1
    keep = ranks <= k
    order = order[keep]
    cells = (rows[keep], item_codes[order], scores[order], ranks[keep], codes[order])
    return recommendation_frame(
        requested, items, cells, labels, col_person, col_item, categorical_ids=categorical_ids
    )
