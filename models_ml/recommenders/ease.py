"""EASE: a closed-form linear item-item model (Steck, "Embarrassingly Shallow Autoencoders", 2019).

With X the people x items matrix (binary presence by default) and G = X'X + l2 * I, the item
weights are B = I - P diag(1 / diag(P)) with P = G^-1, i.e. B_ij = -P_ij / P_jj and a zero
diagonal; scores are X B. One dense item x item inverse: fine up to a few tens of thousands of
items. Larger catalogs keep the `max_items` items with the most people; the rest get no score
(the hybrid's other algorithms can still recommend them).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.linalg import lapack
from sklearn.utils.validation import check_is_fitted

from models_ml.columns import HAS_ANALYTICS_CONSENT, ITEM_ID, OCCURRED_AT, PERSON_ID, WEIGHT
from models_ml.recommenders._base import ScoringRecommender, positive_inputs
from models_ml.recommenders.cooccurrence import cooccurrence_matrix


def ease_weights(gram: np.ndarray, l2: float) -> np.ndarray:
    """B = I - P diag(1/diag(P)) for P = (gram + l2 I)^-1 (float32, zero diagonal).

    The inverse goes through a Cholesky factorization (gram is symmetric positive definite
    once l2 > 0), about half the work of a general inverse. LAPACK leaves it in one triangle;
    the other is filled in place, a block of rows at a time, and the columns are divided in
    place: one item x item matrix besides `gram` (at 15k items 0.9 GB), not four copies.
    """
    if l2 <= 0:
        raise ValueError("l2 must be positive")
    matrix = np.array(gram, dtype=np.float32, order="F")
    matrix[np.diag_indices_from(matrix)] += l2
    factor, info = lapack.spotrf(matrix, lower=True, overwrite_a=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"Cholesky factorization failed (info={info})")
    inverse, info = lapack.spotri(factor, lower=True, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"inverse failed (info={info})")
    _mirror_lower_triangle(inverse)
    # symmetric, so its transpose (a view, C-ordered: LAPACK's result is Fortran-ordered) is P
    weights = inverse.T
    weights /= -np.diag(weights)[None, :]
    np.fill_diagonal(weights, 0.0)
    return np.ascontiguousarray(weights, dtype=np.float32)


def _mirror_lower_triangle(matrix: np.ndarray, block: int = 1024) -> None:
    """Copy the lower triangle of a square `matrix` over its upper one, in place."""
    n = matrix.shape[0]
    for start in range(0, n, block):
        stop = min(start + block, n)
        matrix[start:stop, stop:] = matrix[stop:, start:stop].T
        square = matrix[start:stop, start:stop]
        upper = np.triu_indices(stop - start, 1)
        square[upper] = square.T[upper]


class EASERecommender(ScoringRecommender):
    """Closed-form linear item model: "people who liked these items liked that one".

    Parameters:
        l2: ridge penalty on the item weights (larger = closer to popularity); 200-1000 suits
            catalogs of thousands of items.
        binary: fit on presence (any positive affinity = 1) rather than on weights.
        max_items: largest catalog modelled (the items with the most people are kept).
        half_life_days: time decay of interaction weights; None = no decay.
        random_state: unused (deterministic); kept for a uniform interface.
        n_jobs: threads scoring blocks of people.
        col_person, col_item, col_weight, col_timestamp: input column names.
        col_in_aggregates: boolean column, False = the row is its person's history only (scored
            from, counts as seen) and not in X'X; absent = every row counts.

    Fitted attributes:
        person_index_, item_index_, affinity_, seen_, as_of_: as in ItemCooccurrenceRecommender.
        modelled_items_: positions (in item_index_) of the items the model scores.
        weights_: item x item weights B over modelled_items_ (float32, zero diagonal).
    """

    algorithm = "ease"
    reason_text = "people with your history liked it"

    def __init__(
        self,
        l2: float = 500.0,
        binary: bool = True,
        max_items: int = 20_000,
        half_life_days: float | None = None,
        random_state: int | None = None,
        n_jobs: int | None = None,
        col_person: str = PERSON_ID,
        col_item: str = ITEM_ID,
        col_weight: str | None = WEIGHT,
        col_timestamp: str | None = OCCURRED_AT,
        col_in_aggregates: str | None = HAS_ANALYTICS_CONSENT,
    ):
        self.l2 = l2
        self.binary = binary
        self.max_items = max_items
        self.half_life_days = half_life_days
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.col_person = col_person
        self.col_item = col_item
        self.col_weight = col_weight
        self.col_timestamp = col_timestamp
        self.col_in_aggregates = col_in_aggregates

    def fit(self, interactions: pd.DataFrame, y=None, as_of=None) -> EASERecommender:
        self._index_interactions(interactions, as_of)
        matrix = positive_inputs(self.aggregate_affinity_, self.binary)
        people_per_item = np.diff(matrix.tocsc().indptr)
        order = np.lexsort((np.arange(len(people_per_item)), -people_per_item))
        self.modelled_items_ = np.sort(order[: self.max_items])
        block = matrix[:, self.modelled_items_].tocsr()
        if self.binary:
            # Presence: X'X is the co-occurrence matrix, accumulated densely in chunks of
            # people (a sparse product of a nearly dense result is far slower).
            gram = cooccurrence_matrix(block, dense=True)
        else:
            gram = (block.T @ block).toarray()
        self.weights_ = ease_weights(gram, self.l2)
        if self.aggregate_affinity_ is not self.affinity_:
            matrix = positive_inputs(self.affinity_, self.binary)
        self._inputs_ = matrix[:, self.modelled_items_].tocsr()
        return self

    def _score_block(self, positions: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "weights_")
        partial = np.asarray(self._inputs_[positions] @ self.weights_, dtype=np.float32)
        if len(self.modelled_items_) == len(self.item_index_):
            return partial
        scores = np.zeros((len(positions), len(self.item_index_)), dtype=np.float32)
        scores[:, self.modelled_items_] = partial
        return scores
