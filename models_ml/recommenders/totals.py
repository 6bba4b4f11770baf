"""Item totals over everyone's interactions, computed where the interactions are stored.

Popularity and segment popularity rank items by the (decayed) interaction weight summed over
the people whose data may count in aggregates; content-based recommends from a person's own
history. Between model selections, a night serving a few percent of the people with such a
chain needs everyone's interactions only for those sums. `InteractionTotals` holds them,
computed by the warehouse (`dagster_project.assets.recommendations.read_totals`), so the chain
is fitted on the served people's rows alone (`fit_serving_chain(..., totals=...)`): at L,
reading 11.7M rows into pandas becomes a few aggregate queries and the rows of about 4 % of
the people.

The sums equal the ones the models make from every row (`PopularityRecommender.item_scores_`,
`SegmentPopularityRecommender.segment_item_scores_`), up to the order of a floating-point
sum; `from_interactions` makes them from rows in pandas, for tests and small data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from models_ml.columns import (
    HAS_ANALYTICS_CONSENT,
    ITEM_ID,
    OCCURRED_AT,
    PERSON_ID,
    SCORE,
    SEGMENT_ID,
    WEIGHT,
)
from models_ml.recommenders._base import age_in_days

# The algorithms a chain fitted on totals may hold: what they need of other people's rows is
# in the totals.
FITTED_ON_TOTALS = frozenset({"popularity", "segment_popularity", "content"})


@dataclass(frozen=True)
class InteractionTotals:
    """Sums over everyone's interactions up to `as_of`, decayed as the models decay them.

    Attributes:
        as_of: the time the weights are decayed to (rows after it are not counted).
        half_life_days: the decay the sums were made with (None: none).
        item_index: every item of the rows a full fit would read (sorted), the models' items.
        item_scores: per item of `item_index`, the weight summed over the rows that count in
            aggregates.
        segment_scores: segment_id, item_id, score: the same sums per segment (a person's
            first segment in the `segments` frame the models are given), nonzero ones only.
        segment_sizes: per segment_id, its members with a nonzero (person, item) sum among
            the rows that count in aggregates.
    """

    as_of: pd.Timestamp
    half_life_days: float | None
    item_index: pd.Index
    item_scores: np.ndarray
    segment_scores: pd.DataFrame
    segment_sizes: pd.Series

    def __post_init__(self) -> None:
        if len(self.item_scores) != len(self.item_index):
            raise ValueError("item_scores must hold one score per item of item_index")
        if not self.item_index.is_monotonic_increasing or not self.item_index.is_unique:
            raise ValueError("item_index must be sorted and unique")

    def check_fit(self, as_of, half_life_days: float | None) -> None:
        """Raise unless a model fitted `as_of` with `half_life_days` may use these sums."""
        if as_of is None or pd.Timestamp(as_of) != self.as_of:
            raise ValueError(f"totals made as of {self.as_of} cannot fit a model as of {as_of}")
        if half_life_days != self.half_life_days:
            raise ValueError(
                f"totals decayed with half_life_days={self.half_life_days} cannot fit a model "
                f"with half_life_days={half_life_days}"
            )

    def segment_item_scores(self, segments: pd.Index, items: pd.Index) -> np.ndarray:
        """Dense segments x items array of the sums (0 where there are none)."""
        scores = np.zeros((len(segments), len(items)), dtype=float)
        row = segments.get_indexer(self.segment_scores[SEGMENT_ID])
        column = items.get_indexer(self.segment_scores[ITEM_ID])
        known = (row >= 0) & (column >= 0)
        scores[row[known], column[known]] = self.segment_scores[SCORE].to_numpy()[known]
        return scores

    @classmethod
    def from_interactions(
        cls,
        interactions: pd.DataFrame,
        segments: pd.DataFrame | None,
        *,
        as_of,
        half_life_days: float | None,
    ) -> InteractionTotals:
        """The totals of `interactions` (the columns the models read) in pandas."""
        rows = interactions.dropna(subset=[PERSON_ID, ITEM_ID])
        occurred = pd.to_datetime(rows[OCCURRED_AT])
        as_of = pd.Timestamp(as_of) if as_of is not None else occurred.max()
        rows = rows[(occurred <= as_of).to_numpy()]
        weight = rows[WEIGHT].to_numpy(dtype=float, na_value=0.0)
        if half_life_days is not None:
            weight = weight * np.exp2(-age_in_days(rows[OCCURRED_AT], as_of) / half_life_days)
        counted = (
            rows[HAS_ANALYTICS_CONSENT].to_numpy(dtype=bool, na_value=False)
            if HAS_ANALYTICS_CONSENT in rows.columns
            else np.ones(len(rows), dtype=bool)
        )
        cells = (
            pd.DataFrame(
                {
                    PERSON_ID: rows[PERSON_ID].to_numpy(object)[counted],
                    ITEM_ID: rows[ITEM_ID].to_numpy(object)[counted],
                    SCORE: weight[counted],
                }
            )
            .groupby([PERSON_ID, ITEM_ID], as_index=False)[SCORE]
            .sum()
        )
        item_index = pd.Index(np.sort(rows[ITEM_ID].astype(object).unique()))
        item_scores = (
            cells.groupby(ITEM_ID)[SCORE].sum().reindex(item_index, fill_value=0.0).to_numpy()
        )
        if segments is None or not len(segments):
            members = pd.DataFrame({PERSON_ID: [], SEGMENT_ID: []})
        else:
            members = segments[[PERSON_ID, SEGMENT_ID]].dropna().drop_duplicates(PERSON_ID)
        in_segment = cells.merge(members, on=PERSON_ID)
        segment_scores = in_segment.groupby([SEGMENT_ID, ITEM_ID], as_index=False)[SCORE].sum()
        sizes = in_segment[in_segment[SCORE] != 0].groupby(SEGMENT_ID)[PERSON_ID].nunique()
        return cls(
            as_of=as_of,
            half_life_days=half_life_days,
            item_index=item_index,
            item_scores=item_scores,
            segment_scores=segment_scores[segment_scores[SCORE] != 0].reset_index(drop=True),
            segment_sizes=sizes,
        )
