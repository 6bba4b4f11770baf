"""Item co-occurrence recommender in the style of Microsoft Recommenders' SARSingleNode.

1. Affinity A (person x item): the sum of a person's interaction weights per item, each weight
   optionally decayed by 2^(-age / half_life_days), age measured back from `as_of`.
2. Co-occurrence C (item x item): how many people have a positive affinity for both items
   (C = B'B with B = [A > 0]); the diagonal holds each item's number of people. Pairs seen
   together by fewer than `min_cooccurrence` people are dropped.
3. Similarity S from C: "counts" (C itself), "jaccard" c_ij / (c_ii + c_jj - c_ij) or
   "lift" c_ij / (c_ii * c_jj).
4. Scores = A @ S, computed for blocks of people as sparse x dense products; each block's top k
   is taken with argpartition. Only items with a positive score are recommended, so a person
   with little history may get fewer than k (the hybrid tops them up).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.utils.validation import check_is_fitted

from models_ml.columns import ITEM_ID, OCCURRED_AT, PERSON_ID, WEIGHT
from models_ml.recommenders._base import InteractionRecommender, row_blocks, top_k_per_row

SIMILARITY_TYPES = ("jaccard", "lift", "counts")

# Up to this size the similarity matrix is used dense (float32) when scoring: sparse x dense
# products are several times faster than sparse x sparse. 10,000 items = 400 MB.
MAX_DENSE_SIMILARITY_BYTES = 400_000_000


def cooccurrence_matrix(presence: sparse.csr_array, min_cooccurrence: int = 1) -> sparse.csr_array:
    """Item x item count of people present for both items (people x items 0/1 matrix in)."""
    binary = sparse.csr_array(
        (np.ones(presence.nnz, dtype=np.float32), presence.indices, presence.indptr),
        shape=presence.shape,
    )
    counts = (binary.T @ binary).tocsr()
    if min_cooccurrence > 1:
        counts.data[counts.data < min_cooccurrence] = 0
        counts.eliminate_zeros()
    return counts


def similarity_matrix(cooccurrence: sparse.csr_array, similarity_type: str) -> sparse.csr_array:
    """Jaccard, lift or raw counts from a co-occurrence matrix (same sparsity pattern)."""
    if similarity_type not in SIMILARITY_TYPES:
        raise ValueError(f"similarity_type must be one of {SIMILARITY_TYPES}")
    coo = cooccurrence.tocoo()
    counts = coo.data.astype(np.float64)
    diagonal = cooccurrence.diagonal().astype(np.float64)
    if similarity_type == "jaccard":
        values = counts / (diagonal[coo.row] + diagonal[coo.col] - counts)
    elif similarity_type == "lift":
        values = counts / (diagonal[coo.row] * diagonal[coo.col])
    else:
        values = counts
    return sparse.csr_array(
        (values.astype(np.float32), (coo.row, coo.col)), shape=cooccurrence.shape
    )


class ItemCooccurrenceRecommender(InteractionRecommender):
    """SAR-style item-to-item recommender: "people who interacted with X also did Y".

    Parameters:
        similarity_type: "jaccard" (default), "lift" or "counts".
        half_life_days: time decay of interaction weights; None = no decay.
        min_cooccurrence: item pairs shared by fewer people get no similarity.
        random_state: unused (the algorithm is deterministic); kept for a uniform interface.
        col_person, col_item, col_weight, col_timestamp: input column names (col_weight None
            = every interaction weighs 1).

    Fitted attributes:
        person_index_, item_index_: ids of the matrix rows / columns (sorted).
        affinity_: person x item decayed weight sums (csr).
        seen_: person x item, True where the person has any interaction (csr).
        cooccurrence_, similarity_: item x item (csr).
        as_of_: reference time of the decay (newest interaction unless given).
    """

    algorithm = "item_cooccurrence"
    reason_text = "because you interacted with similar items"

    def __init__(
        self,
        similarity_type: str = "jaccard",
        half_life_days: float | None = None,
        min_cooccurrence: int = 1,
        random_state: int | None = None,
        col_person: str = PERSON_ID,
        col_item: str = ITEM_ID,
        col_weight: str | None = WEIGHT,
        col_timestamp: str | None = OCCURRED_AT,
    ):
        self.similarity_type = similarity_type
        self.half_life_days = half_life_days
        self.min_cooccurrence = min_cooccurrence
        self.random_state = random_state
        self.col_person = col_person
        self.col_item = col_item
        self.col_weight = col_weight
        self.col_timestamp = col_timestamp

    def fit(self, interactions: pd.DataFrame, y=None, as_of=None) -> ItemCooccurrenceRecommender:
        if self.similarity_type not in SIMILARITY_TYPES:
            raise ValueError(f"similarity_type must be one of {SIMILARITY_TYPES}")
        self._index_interactions(interactions, as_of)
        positive = self.affinity_.copy()
        positive.data = (positive.data > 0).astype(np.float32)
        positive.eliminate_zeros()
        self.cooccurrence_ = cooccurrence_matrix(positive, self.min_cooccurrence)
        self.similarity_ = similarity_matrix(self.cooccurrence_, self.similarity_type)
        return self

    def score_items(self, person_ids) -> np.ndarray:
        """Dense person x item scores A @ S for known people (small requests and debugging)."""
        check_is_fitted(self, "similarity_")
        position = self.person_index_.get_indexer(self._requested(person_ids))
        if (position < 0).any():
            raise KeyError("unknown person_ids")
        return (self.affinity_[position] @ self.similarity_).toarray()

    def recommend_k_items(
        self,
        person_ids=None,
        k: int = 10,
        remove_seen: bool = True,
        exclude_pairs: pd.DataFrame | None = None,
        exclude_items: Iterable | None = None,
    ) -> pd.DataFrame:
        """Top-k items per person: person_id, rank, item_id, score, algorithm, reason.

        Args:
            person_ids: people to recommend for (None = everyone fitted). People unknown to the
                model get no rows.
            remove_seen: never recommend an item the person interacted with.
            exclude_pairs: (person_id, item_id) pairs that must not be recommended.
            exclude_items: items never recommended to anyone (out of stock, ...).
        """
        check_is_fitted(self, "similarity_")
        requested = self._requested(person_ids)
        excluded, item_excluded = self._exclusions(
            requested, remove_seen, exclude_pairs, exclude_items
        )
        position = self.person_index_.get_indexer(requested)
        known = np.flatnonzero(position >= 0)
        n_items = len(self.item_index_)
        dense = n_items * n_items * 4 <= MAX_DENSE_SIMILARITY_BYTES
        similarity = self.similarity_.toarray() if dense else self.similarity_

        out_rows, out_items, out_scores, out_ranks = [], [], [], []
        for block in row_blocks(len(known), n_items):
            rows = known[block]
            scores = self.affinity_[position[rows]].astype(np.float32) @ similarity
            scores = np.asarray(scores.toarray() if sparse.issparse(scores) else scores)
            scores[:, item_excluded] = -np.inf
            excluded_rows, excluded_items = excluded[rows].nonzero()
            scores[excluded_rows, excluded_items] = -np.inf
            items, values = top_k_per_row(scores, k)
            keep = values > 0
            out_rows.append(np.broadcast_to(rows[:, None], items.shape)[keep])
            out_items.append(items[keep])
            out_scores.append(values[keep])
            out_ranks.append(np.broadcast_to(np.arange(1, items.shape[1] + 1), items.shape)[keep])
        return self._frame(requested, *_concat(out_rows, out_items, out_scores, out_ranks))


def _concat(*lists: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    return tuple(
        np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64) for parts in lists
    )
