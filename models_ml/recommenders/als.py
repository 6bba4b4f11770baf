"""Matrix factorization for implicit feedback: `implicit`'s alternating least squares (ALS).

Hu, Koren and Volinsky (2008): preference p_ui = [r_ui > 0] with confidence 1 + alpha * r_ui,
factored as user x item = U V'. `implicit` multiplies by alpha itself; the input here is the
person x item matrix of (decayed, weighted) affinities, or presence with `binary=True`.

BLAS threads are limited while fitting: `implicit` parallelizes over people itself, and
OpenBLAS threads on top of that slow it down (and `implicit` warns about it).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from models_ml.columns import HAS_ANALYTICS_CONSENT, ITEM_ID, OCCURRED_AT, PERSON_ID, WEIGHT
from models_ml.recommenders._base import ScoringRecommender, positive_inputs


class ALSRecommender(ScoringRecommender):
    """Implicit-feedback matrix factorization (ALS, from the `implicit` package).

    Parameters:
        factors: latent dimensions.
        regularization: L2 penalty on the factors.
        alpha: confidence scale (confidence = 1 + alpha * affinity).
        iterations: ALS sweeps.
        binary: fit on presence rather than on weights.
        half_life_days: time decay of interaction weights; None = no decay.
        num_threads: threads `implicit` uses (BLAS is held to one meanwhile).
        random_state: seed of the factor initialization.
        n_jobs: threads scoring blocks of people.
        col_person, col_item, col_weight, col_timestamp: input column names.
        col_in_aggregates: boolean column, False = the row is its person's history only: item
            factors are fitted without it, the person's factors are then solved from their
            history against them; absent = every row counts.

    Fitted attributes:
        person_index_, item_index_, affinity_, seen_, as_of_: as in ItemCooccurrenceRecommender.
        user_factors_, item_factors_: float32 arrays (people x factors, items x factors); an
            item no counted person has a positive affinity for has zero factors (no score).
    """

    algorithm = "als"
    reason_text = "matches your taste profile"

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        alpha: float = 10.0,
        iterations: int = 15,
        binary: bool = True,
        half_life_days: float | None = None,
        num_threads: int = 2,
        random_state: int | None = 42,
        n_jobs: int | None = None,
        col_person: str = PERSON_ID,
        col_item: str = ITEM_ID,
        col_weight: str | None = WEIGHT,
        col_timestamp: str | None = OCCURRED_AT,
        col_in_aggregates: str | None = HAS_ANALYTICS_CONSENT,
    ):
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.binary = binary
        self.half_life_days = half_life_days
        self.num_threads = num_threads
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.col_person = col_person
        self.col_item = col_item
        self.col_weight = col_weight
        self.col_timestamp = col_timestamp
        self.col_in_aggregates = col_in_aggregates

    def fit(self, interactions: pd.DataFrame, y=None, as_of=None) -> ALSRecommender:
        from implicit.cpu.als import AlternatingLeastSquares

        self._index_interactions(interactions, as_of)
        matrix = positive_inputs(self.aggregate_affinity_, self.binary)
        n_people = matrix.shape[0]
        # People who count in no aggregate stay out of the fit (an empty row still moves the
        # factors a little) and get their factors from their own history afterwards.
        everyone = self.aggregate_affinity_ is self.affinity_
        fitted = np.arange(n_people) if everyone else np.flatnonzero(np.diff(matrix.indptr))
        others = np.setdiff1d(np.arange(n_people), fitted)
        # implicit checks the BLAS thread count when the model is built, so build it inside.
        with threadpool_limits(limits=1, user_api="blas"):
            model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha,
                iterations=self.iterations,
                random_state=self.random_state,
                num_threads=self.num_threads,
                calculate_training_loss=False,
            )
            model.fit(sparse_csr(matrix if everyone else matrix[fitted]), show_progress=False)
            user_factors = np.asarray(model.user_factors, dtype=np.float32)
            if not everyone:
                user_factors = np.zeros((n_people, self.factors), dtype=np.float32)
                user_factors[fitted] = model.user_factors
            if len(others):
                history = positive_inputs(self.affinity_, self.binary)[others]
                user_factors[others] = model.recalculate_user(others, sparse_csr(history))
        self.user_factors_ = user_factors
        self.item_factors_ = np.asarray(model.item_factors, dtype=np.float32)
        self.item_factors_[np.bincount(matrix.indices, minlength=matrix.shape[1]) == 0] = 0.0
        return self

    def _score_block(self, positions: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "item_factors_")
        return self.user_factors_[positions] @ self.item_factors_.T


def sparse_csr(matrix):
    """`implicit` wants a scipy csr_matrix (not the newer csr_array)."""
    from scipy.sparse import csr_matrix

    return csr_matrix(matrix)
