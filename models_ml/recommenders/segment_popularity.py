"""Popularity per segment: what the people of a person's (cluster) segment interact with most.

A segment's item score is the sum of the (decayed) interaction weights of its members whose data
may count in aggregates. A segment with fewer such members than `min_segment_people` says little
and uses overall popularity instead. A person's list is their segment's items by segment score,
then the remaining items by overall score; people without a segment get overall popularity.
Rows from overall popularity are labelled `popularity` and keep its scale, so every row's
reason is true. Every requested person gets rows, as with PopularityRecommender.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.utils.validation import check_is_fitted

from models_ml.columns import (
    HAS_ANALYTICS_CONSENT,
    ITEM_ID,
    OCCURRED_AT,
    PERSON_ID,
    SEGMENT_ID,
    WEIGHT,
)
from models_ml.recommenders._base import Cells, concat_cells
from models_ml.recommenders.popularity import (
    PopularityRecommender,
    first_k_allowed,
    popularity_ranking,
)

OVERALL_LABEL = (
    PopularityRecommender.algorithm,
    f"{PopularityRecommender.algorithm}: {PopularityRecommender.reason_text}",
)


class SegmentPopularityRecommender(PopularityRecommender):
    """Recommend the items with the highest total weight among the person's segment.

    Parameters:
        min_segment_people: segments with fewer members counting in aggregates use overall
            popularity.
        half_life_days: time decay of interaction weights; None = no decay.
        random_state: unused (deterministic); kept for a uniform interface.
        col_person, col_item, col_weight, col_timestamp, col_in_aggregates: as in
            PopularityRecommender.
        col_segment: segment column of the `segments` frame given to `fit`.

    `fit(interactions, segments=frame)`: `segments` has one segment per person (col_person,
    col_segment; a person's first row counts). Members need no interactions to be recommended.

    Fitted attributes:
        as in PopularityRecommender (item_scores_ and ranking_ are the overall ones), and
        segment_index_: segment ids; segment_people_ / person_segments_: each segmented person
            and the position of their segment in segment_index_;
        segment_item_scores_: segments x items weight sums (dense);
        segment_sizes_: members per segment who count in aggregates;
        segment_rankings_: per segment, item positions best first (segment items, then the
            overall ranking); segment_heads_: how many of them come from the segment.
    """

    algorithm = "segment_popularity"
    reason_text = "popular with people like you"

    def __init__(
        self,
        min_segment_people: int = 10,
        half_life_days: float | None = None,
        random_state: int | None = None,
        col_person: str = PERSON_ID,
        col_item: str = ITEM_ID,
        col_weight: str | None = WEIGHT,
        col_timestamp: str | None = OCCURRED_AT,
        col_in_aggregates: str | None = HAS_ANALYTICS_CONSENT,
        col_segment: str = SEGMENT_ID,
    ):
        self.min_segment_people = min_segment_people
        self.half_life_days = half_life_days
        self.random_state = random_state
        self.col_person = col_person
        self.col_item = col_item
        self.col_weight = col_weight
        self.col_timestamp = col_timestamp
        self.col_in_aggregates = col_in_aggregates
        self.col_segment = col_segment

    def fit(
        self,
        interactions: pd.DataFrame,
        y=None,
        as_of=None,
        segments: pd.DataFrame | None = None,
    ) -> SegmentPopularityRecommender:
        super().fit(interactions, as_of=as_of)
        columns = [self.col_person, self.col_segment]
        if segments is None:
            segments = pd.DataFrame(columns=columns)
        members = segments[columns].dropna().drop_duplicates(self.col_person)
        self.segment_people_ = pd.Index(members[self.col_person].to_numpy())
        codes, segment_ids = pd.factorize(members[self.col_segment], sort=True)
        self.segment_index_ = pd.Index(segment_ids)
        self.person_segments_ = codes.astype(np.int64)

        n_segments, n_people = len(self.segment_index_), len(self.person_index_)
        segment_of = self._segment_of(self.person_index_)
        member = np.flatnonzero(segment_of >= 0)
        membership = sparse.csr_array(
            (np.ones(len(member)), (segment_of[member], member)), shape=(n_segments, n_people)
        )
        aggregate = self.aggregate_affinity_
        self.segment_item_scores_ = np.asarray((membership @ aggregate).toarray(), dtype=float)
        counted = member[np.diff(aggregate.indptr)[member] > 0]
        self.segment_sizes_ = np.bincount(segment_of[counted], minlength=n_segments)

        # One pass per segment (tens of them), each a few vector operations over the items.
        self.segment_rankings_, heads = [], []
        for scores, size in zip(self.segment_item_scores_, self.segment_sizes_, strict=True):
            head = popularity_ranking(scores) if size >= self.min_segment_people else []
            tail = self.ranking_[~np.isin(self.ranking_, head)]
            self.segment_rankings_.append(np.concatenate([head, tail]).astype(np.int64))
            heads.append(len(head))
        self.segment_heads_ = np.asarray(heads, dtype=np.int64)
        return self

    def _segment_of(self, person_ids: pd.Index) -> np.ndarray:
        """Position of each person's segment in segment_index_, -1 for none."""
        position = self.segment_people_.get_indexer(person_ids)
        return np.append(self.person_segments_, -1)[position]

    def labels(self) -> list[tuple[str, str]]:
        return [(self.algorithm, self.reason), OVERALL_LABEL]

    def _top_k(
        self, requested: pd.Index, k: int, excluded: sparse.csr_array, item_excluded: np.ndarray
    ) -> Cells:
        """Every requested person gets cells: their segment's items (label 0), then overall
        popularity's (label 1)."""
        check_is_fitted(self, "segment_rankings_")
        segment = self._segment_of(requested)
        order = np.argsort(segment, kind="stable")
        groups = np.split(order, np.flatnonzero(np.diff(segment[order])) + 1)
        parts = []
        for rows in (g for g in groups if len(g)):
            s = segment[rows[0]]
            ranking = self.ranking_ if s < 0 else self.segment_rankings_[s]
            head = 0 if s < 0 else self.segment_heads_[s]
            allowed = ~item_excluded[ranking]
            in_head = (np.arange(len(ranking)) < head)[allowed]
            ranking = ranking[allowed]
            r, p, ranks = first_k_allowed(ranking, excluded[rows], k)
            items, from_segment = ranking[p], in_head[p]
            scores = self.item_scores_[items].copy()
            if s >= 0:
                scores[from_segment] = self.segment_item_scores_[s, items[from_segment]]
            parts.append((rows[r], items, scores, ranks, (~from_segment).astype(np.int8)))
        return concat_cells(parts)
