"""Item co-occurrence recommender in the style of Microsoft Recommenders' SARSingleNode.

1. Affinity A (person x item): the sum of a person's interaction weights per item, each weight
   optionally decayed by 2^(-age / half_life_days), age measured back from `as_of`.
2. Co-occurrence C (item x item): how many people have a positive affinity for both items
   (C = B'B with B = [A > 0]); the diagonal holds each item's number of people. Only people
   whose data may count in aggregates (analytics consent) count; everyone is scored. Pairs seen
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

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.utils.validation import check_is_fitted

from models_ml.columns import HAS_ANALYTICS_CONSENT, ITEM_ID, OCCURRED_AT, PERSON_ID, WEIGHT
from models_ml.recommenders._base import ScoringRecommender, row_blocks

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


class ItemCooccurrenceRecommender(ScoringRecommender):
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
        col_in_aggregates: boolean column, False = the row is its person's history only (scored
            from, counts as seen) and counts in no co-occurrence; absent = every row counts.

    Fitted attributes:
        person_index_, item_index_: ids of the matrix rows / columns (sorted).
        affinity_: person x item decayed weight sums (csr).
        seen_: person x item, True where the person has any interaction (csr).
        aggregate_affinity_: affinity_ of the rows that count in co-occurrences.
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
        col_in_aggregates: str | None = HAS_ANALYTICS_CONSENT,
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
        self.col_in_aggregates = col_in_aggregates

    def fit(self, interactions: pd.DataFrame, y=None, as_of=None) -> ItemCooccurrenceRecommender:
        if self.similarity_type not in SIMILARITY_TYPES:
            raise ValueError(f"similarity_type must be one of {SIMILARITY_TYPES}")
        self._index_interactions(interactions, as_of)
        positive = self.aggregate_affinity_.copy()
        positive.data = (positive.data > 0).astype(np.float32)
        positive.eliminate_zeros()
        n_items = len(self.item_index_)
        dense = n_items * n_items * 4 <= MAX_DENSE_SIMILARITY_BYTES
        cooccurrence = cooccurrence_matrix(positive, self.min_cooccurrence, dense=dense)
        self.item_frequencies_ = cooccurrence.diagonal().astype(np.int64)
        self.similarity_ = similarity_matrix(cooccurrence, self.similarity_type, copy=False)
        return self

    def _score_block(self, positions: np.ndarray) -> np.ndarray:
        """A @ S for these rows of person_index_ (float32, dense)."""
        check_is_fitted(self, "similarity_")
        scores = self.affinity_[positions].astype(np.float32) @ self.similarity_
        return scores.toarray() if sparse.issparse(scores) else np.asarray(scores)
