"""Content-based recommender: TF-IDF over each item's title, category and tags.

A person's profile is the affinity-weighted mean of the (L2-normalized) TF-IDF vectors of the
items they interacted with; an item's score is the cosine of its vector with the profile.
It needs only the catalog for the items side, so it recommends brand-new items that nobody has
interacted with yet, and it works from a person's very first interaction.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize
from sklearn.utils.validation import check_is_fitted

from models_ml.columns import (
    CATEGORY,
    HAS_ANALYTICS_CONSENT,
    ITEM_ID,
    OCCURRED_AT,
    PERSON_ID,
    WEIGHT,
)
from models_ml.recommenders._base import ScoringRecommender

TITLE, TAGS = "title", "tags"

# Up to this size the terms x items matrix is also kept dense (float32) for scoring: a block of
# profiles times it is a dense product, not a sparse x sparse one whose result is nearly dense
# anyway. At 18k items and 450 terms (32 MB), 50k people scored in 12 s instead of 64 s.
MAX_DENSE_VECTORS_BYTES = 400_000_000


def item_text(items: pd.DataFrame, col_item: str = ITEM_ID) -> pd.Series:
    """One document per item: title, category (twice: it is the strongest signal) and tags.

    Tags arrive separated by `|`, `,` or `;`; a multi-word category or tag stays one token.
    """

    def column(name: str) -> pd.Series:
        if name not in items.columns:
            return pd.Series("", index=items.index)
        return items[name].fillna("").astype(str)

    def as_tokens(values: pd.Series) -> pd.Series:
        return values.str.lower().str.replace(r"[\s&-]+", "_", regex=True)

    tags = column(TAGS).str.split(r"[|,;]").str.join(" ").str.strip()
    category = as_tokens(column(CATEGORY))
    text = (
        column(TITLE)
        + " cat_"
        + category
        + " cat_"
        + category
        + " "
        + tags.str.split().str.join(" ").fillna("").map(lambda t: re.sub(r"[&-]", "_", t))
    )
    return pd.Series(text.to_numpy(), index=items[col_item].to_numpy())


class ContentRecommender(ScoringRecommender):
    """TF-IDF content similarity between a person's items and the catalog.

    Parameters:
        min_df: ignore terms in fewer items than this.
        half_life_days: time decay of interaction weights; None = no decay.
        random_state: unused (deterministic); kept for a uniform interface.
        n_jobs: threads scoring blocks of people.
        col_person, col_item, col_weight, col_timestamp: input column names.
        col_in_aggregates: kept for a uniform interface: nothing here is a statistic over
            people (profiles are per person, TF-IDF is over the catalog).

    `fit(interactions, items=catalog)`: catalog columns item_id, title, category, tags (any
    may be missing). Items of the catalog without interactions are recommendable too.

    Fitted attributes:
        person_index_, item_index_, affinity_, seen_, as_of_: as in ItemCooccurrenceRecommender
            (item_index_ = interacted items, then the other catalog items).
        vectorizer_: the fitted TfidfVectorizer.
        item_vectors_: items x terms, rows L2-normalized (csr).
        _positive_: affinity_'s positive weights (float32), whence a person's profile is made.
        dense_terms_by_items_: item_vectors_ transposed as a dense float32 array, when it
            takes at most MAX_DENSE_VECTORS_BYTES; else None (scoring stays sparse).
    """

    algorithm = "content"
    reason_text = "similar to items you viewed"

    def __init__(
        self,
        min_df: int = 1,
        half_life_days: float | None = None,
        random_state: int | None = None,
        n_jobs: int | None = None,
        col_person: str = PERSON_ID,
        col_item: str = ITEM_ID,
        col_weight: str | None = WEIGHT,
        col_timestamp: str | None = OCCURRED_AT,
        col_in_aggregates: str | None = HAS_ANALYTICS_CONSENT,
    ):
        self.min_df = min_df
        self.half_life_days = half_life_days
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.col_person = col_person
        self.col_item = col_item
        self.col_weight = col_weight
        self.col_timestamp = col_timestamp
        self.col_in_aggregates = col_in_aggregates

    def fit(
        self, interactions: pd.DataFrame, y=None, as_of=None, items: pd.DataFrame | None = None
    ) -> ContentRecommender:
        self._index_interactions(interactions, as_of)
        catalog = (
            items.drop_duplicates(self.col_item)
            if items is not None
            else pd.DataFrame({self.col_item: self.item_index_})
        )
        extra = pd.Index(catalog[self.col_item]).difference(self.item_index_)
        if len(extra):
            self.item_index_ = self.item_index_.append(extra)
            shape = (len(self.person_index_), len(self.item_index_))

            def widen(matrix: sparse.csr_array) -> sparse.csr_array:
                return sparse.csr_array((matrix.data, matrix.indices, matrix.indptr), shape=shape)

            shared = self.aggregate_affinity_ is self.affinity_
            self.affinity_, self.seen_ = widen(self.affinity_), widen(self.seen_)
            self.aggregate_affinity_ = self.affinity_ if shared else widen(self.aggregate_affinity_)
        documents = item_text(catalog, self.col_item).reindex(self.item_index_).fillna("")
        self.vectorizer_ = TfidfVectorizer(
            min_df=self.min_df, token_pattern=r"(?u)\b\w[\w+]*\b", dtype=np.float32
        )
        vectors = self.vectorizer_.fit_transform(documents.to_numpy())
        self.item_vectors_ = sparse.csr_array(normalize(vectors))
        positive = self.affinity_.astype(np.float32)
        positive.data = np.maximum(positive.data, 0.0)
        positive.eliminate_zeros()
        # A person's profile (their positive affinities times the item vectors, normalized) is
        # made when a block of people is scored: a night serves a few percent of everyone, and
        # the profiles of all 1.09M people of the L tier took about 3 s to make.
        self._positive_ = positive
        n_items, n_terms = self.item_vectors_.shape
        small = n_items * n_terms * np.dtype(np.float32).itemsize <= MAX_DENSE_VECTORS_BYTES
        self.dense_terms_by_items_ = self.item_vectors_.T.toarray() if small else None
        return self

    def _score_block(self, positions: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "item_vectors_")
        profiles = sparse.csr_array(normalize(self._positive_[positions] @ self.item_vectors_))
        dense = self.dense_terms_by_items_
        if dense is None:
            return (profiles @ self.item_vectors_.T).toarray()
        if dense.shape[0] <= dense.shape[1]:
            # fewer terms than items: the block's profiles, densified, are smaller than its
            # scores, and a dense x dense product is BLAS's
            return profiles.toarray() @ dense
        return profiles @ dense
