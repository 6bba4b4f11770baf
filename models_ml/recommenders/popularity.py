"""Most popular items: the baseline, and the fallback for people without history.

An item's score is the sum of its interaction weights over everyone whose data may count in
aggregates (analytics consent), each weight optionally decayed by 2^(-age / half_life_days) so
that "popular right now" beats "popular last year". Items with a total of zero or less are never
recommended. Ties go to the smaller item_id.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.utils.validation import check_is_fitted

from models_ml.columns import HAS_ANALYTICS_CONSENT, ITEM_ID, OCCURRED_AT, PERSON_ID, WEIGHT
from models_ml.recommenders._base import BLOCK_CELLS, Cells, InteractionRecommender


class PopularityRecommender(InteractionRecommender):
    """Recommend the items with the highest total (decayed) interaction weight.

    Parameters:
        half_life_days: time decay of interaction weights; None = no decay.
        random_state: unused (deterministic); kept for a uniform interface.
        col_person, col_item, col_weight, col_timestamp: input column names.
        col_in_aggregates: boolean column, False = the row is its person's history only and
            counts in no item total (see InteractionRecommender); absent = every row counts.

    Fitted attributes:
        person_index_, item_index_, affinity_, seen_, as_of_: as in ItemCooccurrenceRecommender.
        aggregate_affinity_: affinity_ of the rows that count in item totals.
        item_scores_: total decayed weight per item (aligned with item_index_).
        ranking_: item positions with a positive score, best first.
    """

    algorithm = "popularity"
    reason_text = "popular right now"

    def __init__(
        self,
        half_life_days: float | None = None,
        random_state: int | None = None,
        col_person: str = PERSON_ID,
        col_item: str = ITEM_ID,
        col_weight: str | None = WEIGHT,
        col_timestamp: str | None = OCCURRED_AT,
        col_in_aggregates: str | None = HAS_ANALYTICS_CONSENT,
    ):
        self.half_life_days = half_life_days
        self.random_state = random_state
        self.col_person = col_person
        self.col_item = col_item
        self.col_weight = col_weight
        self.col_timestamp = col_timestamp
        self.col_in_aggregates = col_in_aggregates

    def fit(self, interactions: pd.DataFrame, y=None, as_of=None) -> PopularityRecommender:
        self._index_interactions(interactions, as_of)
        self.item_scores_ = np.asarray(self.aggregate_affinity_.sum(axis=0), dtype=float).ravel()
        self.ranking_ = popularity_ranking(self.item_scores_)
        return self

    def _top_k(
        self, requested: pd.Index, k: int, excluded: sparse.csr_array, item_excluded: np.ndarray
    ) -> Cells:
        """Every requested person gets cells, including people the model has never seen."""
        check_is_fitted(self, "ranking_")
        ranking = self.ranking_[~item_excluded[self.ranking_]]
        rows, positions, ranks = first_k_allowed(ranking, excluded, k)
        items = ranking[positions]
        return rows, items, self.item_scores_[items], ranks, np.zeros(len(rows), np.int8)


def popularity_ranking(scores: np.ndarray) -> np.ndarray:
    """Positions of the positive `scores`, best first, ties to the lower position."""
    order = np.lexsort((np.arange(len(scores)), -scores))
    return order[scores[order] > 0]


def first_k_allowed(
    ranking: np.ndarray, excluded: sparse.csr_array, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every row of `excluded`, the first k entries of one shared `ranking` it allows.

    Looks at the top 2k + 8 candidates first and widens the window (x4) only for the rows that
    excluded too many of them, so work stays ~rows x k however long the ranking is.

    Returns (row, position in ranking, rank 1..k) arrays.
    """
    empty = np.zeros(0, dtype=np.int64)
    out_rows, out_positions, out_ranks = [empty], [empty], [empty]
    todo = np.arange(excluded.shape[0]) if k > 0 and len(ranking) else empty
    window = min(len(ranking), 2 * k + 8)
    while len(todo):
        last_window = window == len(ranking)
        candidates = ranking[:window]
        block_size = max(1, BLOCK_CELLS // window)
        still_short = []
        for start in range(0, len(todo), block_size):
            rows = todo[start : start + block_size]
            allowed = ~excluded[rows][:, candidates].toarray()
            rank = np.cumsum(allowed, axis=1)
            done = (rank[:, -1] >= k) | last_window
            r, c = np.nonzero(allowed & (rank <= k) & done[:, None])
            out_rows.append(rows[r])
            out_positions.append(c)
            out_ranks.append(rank[r, c])
            still_short.append(rows[~done])
        todo = np.concatenate(still_short)
        window = min(len(ranking), window * 4)
    return np.concatenate(out_rows), np.concatenate(out_positions), np.concatenate(out_ranks)
