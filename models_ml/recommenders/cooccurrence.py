"""Item co-occurrence recommender in the style of Microsoft Recommenders' SARSingleNode.

1. Affinity A (person x item): the sum of a person's interaction weights per item, each weight
   optionally decayed by 2^(-age / half_life_days), age measured back from `as_of`.
2. Co-occurrence C (item x item): how many people have a positive affinity for both items
   (C = B'B with B = [A > 0]); the diagonal holds each item's number of people. Pairs seen
   together by fewer than `min_cooccurrence` people are dropped.
3. Similarity S from C: "counts" (C itself), "jaccard" c_ij / (c_ii + c_jj - c_ij) or
   "lift" c_ij / (c_ii * c_jj).
4. Scores = A @ S, computed for blocks of people as sparse x dense products; each block's top k
   is found with a partition (`top_k_cells`). Only items with a positive score are
   recommended, so a person with little history may get fewer than k (the hybrid tops up).

Up to `MAX_DENSE_SIMILARITY_BYTES` (10,000 items) C and S are dense float32 arrays, built by
accumulating C over chunks of people so memory stays one n_items^2 array; larger catalogs keep
them sparse.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from scipy import sparse
from sklearn.utils.validation import check_is_fitted

from models_ml.columns import ITEM_ID, OCCURRED_AT, PERSON_ID, WEIGHT
from models_ml.recommenders._base import InteractionRecommender, row_blocks, top_k_cells

SIMILARITY_TYPES = ("jaccard", "lift", "counts")

# Up to this size the item x item matrices are dense float32: scoring with sparse x dense
# products is several times faster than sparse x sparse, and a dense co-occurrence matrix
# takes half the memory of a full sparse one. 10,000 items = 400 MB.
MAX_DENSE_SIMILARITY_BYTES = 400_000_000
# People per chunk when accumulating a dense co-occurrence matrix: at most this many
# (item, item) pairs, i.e. sum of squared items per person (~100 MB of temporaries).
MAX_PAIRS_PER_CHUNK = 4_000_000


def cooccurrence_matrix(
    presence: sparse.csr_array,
    min_cooccurrence: int = 1,
    dense: bool = False,
    max_pairs_per_chunk: int = MAX_PAIRS_PER_CHUNK,
) -> np.ndarray | sparse.csr_array:
    """Item x item number of people present for both items (diagonal: people per item).

    `presence` is people x items; any stored value counts as present. Dense output (float32)
    is accumulated over chunks of people; sparse output is one sparse product.
    """
    binary = sparse.csr_array(
        (np.ones(presence.nnz, dtype=np.float32), presence.indices, presence.indptr),
        shape=presence.shape,
    )
    if not dense:
        counts = (binary.T @ binary).tocsr()
        if min_cooccurrence > 1:
            counts.data[counts.data < min_cooccurrence] = 0
            counts.eliminate_zeros()
        return counts
    n_items = binary.shape[1]
    counts = np.zeros((n_items, n_items), dtype=np.float32)
    pairs = np.cumsum(np.diff(binary.indptr).astype(np.int64) ** 2)
    cuts = np.searchsorted(
        pairs,
        np.arange(max_pairs_per_chunk, pairs[-1] if len(pairs) else 0, max_pairs_per_chunk),
        side="right",
    )
    for start, stop in zip(np.r_[0, cuts], np.r_[cuts, binary.shape[0]], strict=True):
        block = binary[start:stop]
        product = (block.T @ block).tocoo()
        counts[product.row, product.col] += product.data
    if min_cooccurrence > 1:
        counts[counts < min_cooccurrence] = 0
    return counts


def similarity_matrix(
    cooccurrence: np.ndarray | sparse.csr_array, similarity_type: str, copy: bool = True
) -> np.ndarray | sparse.csr_array:
    """Jaccard, lift or raw counts (float32) from a co-occurrence matrix, dense or sparse.

    Jaccard c_ij / (c_ii + c_jj - c_ij); lift c_ij / (c_ii * c_jj); 0 where an item has no
    people. `copy=False` lets a dense float32 input be overwritten (saves n_items^2 floats).
    """
    if similarity_type not in SIMILARITY_TYPES:
        raise ValueError(f"similarity_type must be one of {SIMILARITY_TYPES}")
    diagonal = cooccurrence.diagonal().astype(np.float32)
    if sparse.issparse(cooccurrence):
        similarity = sparse.csr_array(cooccurrence, dtype=np.float32, copy=True)
        row_diagonal = np.repeat(diagonal, np.diff(similarity.indptr))
        column_diagonal = diagonal[similarity.indices]
        if similarity_type == "jaccard":
            similarity.data /= row_diagonal + column_diagonal - similarity.data
        elif similarity_type == "lift":
            similarity.data /= row_diagonal * column_diagonal
        return similarity
    similarity = np.array(cooccurrence, dtype=np.float32) if copy else cooccurrence
    if similarity_type == "counts":
        return similarity
    # Row blocks keep the temporary denominators small.
    for rows in row_blocks(len(similarity), len(similarity)):
        block = similarity[rows]
        if similarity_type == "jaccard":
            denominator = diagonal[rows, None] + diagonal[None, :] - block
        else:
            denominator = diagonal[rows, None] * diagonal[None, :]
        np.divide(block, denominator, out=block, where=denominator > 0)
    return similarity


class ItemCooccurrenceRecommender(InteractionRecommender):
    """SAR-style item-to-item recommender: "people who interacted with X also did Y".

    Parameters:
        similarity_type: "jaccard" (default), "lift" or "counts".
        half_life_days: time decay of interaction weights; None = no decay.
        min_cooccurrence: item pairs shared by fewer people get no similarity.
        random_state: unused (the algorithm is deterministic); kept for a uniform interface.
        n_jobs: threads scoring blocks of people in `recommend_k_items` (None = 1, -1 = all
            cores); each thread holds one block of dense scores (~100 MB).
        col_person, col_item, col_weight, col_timestamp: input column names (col_weight None
            = every interaction weighs 1).

    Fitted attributes:
        person_index_, item_index_: ids of the matrix rows / columns (sorted).
        affinity_: person x item decayed weight sums (csr).
        seen_: person x item, True where the person has any interaction (csr).
        item_frequencies_: people with a positive affinity per item (co-occurrence diagonal).
        similarity_: item x item similarity, float32 ndarray up to 10,000 items, else csr.
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
        n_jobs: int | None = None,
        col_person: str = PERSON_ID,
        col_item: str = ITEM_ID,
        col_weight: str | None = WEIGHT,
        col_timestamp: str | None = OCCURRED_AT,
    ):
        self.similarity_type = similarity_type
        self.half_life_days = half_life_days
        self.min_cooccurrence = min_cooccurrence
        self.random_state = random_state
        self.n_jobs = n_jobs
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
        n_items = len(self.item_index_)
        dense = n_items * n_items * 4 <= MAX_DENSE_SIMILARITY_BYTES
        cooccurrence = cooccurrence_matrix(positive, self.min_cooccurrence, dense=dense)
        self.item_frequencies_ = cooccurrence.diagonal().astype(np.int64)
        self.similarity_ = similarity_matrix(cooccurrence, self.similarity_type, copy=False)
        return self

    def score_items(self, person_ids) -> np.ndarray:
        """Dense person x item scores A @ S for known people (small requests and debugging)."""
        check_is_fitted(self, "similarity_")
        position = self.person_index_.get_indexer(self._requested(person_ids))
        if (position < 0).any():
            raise KeyError("unknown person_ids")
        scores = self.affinity_[position] @ self.similarity_
        return scores.toarray() if sparse.issparse(scores) else np.asarray(scores)

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
        similarity = self.similarity_

        def recommend_block(rows: np.ndarray) -> tuple[np.ndarray, ...]:
            scores = self.affinity_[position[rows]].astype(np.float32) @ similarity
            scores = scores.toarray() if sparse.issparse(scores) else np.asarray(scores)
            scores[:, item_excluded] = -np.inf
            excluded_rows, excluded_items = excluded[rows].nonzero()
            scores[excluded_rows, excluded_items] = -np.inf
            block_rows, items, values, ranks = top_k_cells(scores, k, min_score=0.0)
            return rows[block_rows], items, values, ranks

        # Threads: the sparse product and the top-k passes release the GIL.
        parts = Parallel(n_jobs=self.n_jobs, prefer="threads")(
            delayed(recommend_block)(known[block]) for block in row_blocks(len(known), n_items)
        )
        return self._frame(requested, *_concat(parts))


def _concat(parts: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0), empty
    return tuple(np.concatenate(column) for column in zip(*parts, strict=True))
