"""Machinery shared by the recommenders: indexing interactions, exclusions, top-k, output frame."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.base import BaseEstimator

from models_ml.columns import (
    ALGORITHM,
    RANK,
    REASON,
    SCORE,
)

# Dense score blocks are cut so that one block holds about this many cells (float32 scores plus
# int64 argpartition indices: ~100 MB), whatever the catalog size.
BLOCK_CELLS = 8_000_000


class InteractionRecommender(BaseEstimator):
    """Base for recommenders fitted on weighted (person, item, weight, occurred_at) interactions.

    Subclasses set `algorithm` and `reason_text` and implement `_recommend_block`-style scoring;
    this class turns interactions into the person x item `affinity_` and `seen_` matrices and
    builds the output frame in the `ml.recommendations` shape.
    """

    algorithm: ClassVar[str]
    reason_text: ClassVar[str]

    @property
    def reason(self) -> str:
        return f"{self.algorithm}: {self.reason_text}"

    def _index_interactions(self, interactions: pd.DataFrame, as_of) -> None:
        """Set person_index_, item_index_, affinity_ (decayed weight sums), seen_, as_of_.

        With `as_of` given, interactions after it are ignored (fitting "as of" a past date must
        not see the future). Time decay needs occurred_at; without decay it is optional.
        """
        df = interactions.dropna(subset=[self.col_person, self.col_item])
        weights = (
            df[self.col_weight].to_numpy(dtype=float, na_value=0.0)
            if self.col_weight is not None
            else np.ones(len(df))
        )
        self.as_of_ = None
        has_time = self.col_timestamp is not None and self.col_timestamp in df.columns
        if has_time and len(df):
            occurred = pd.to_datetime(df[self.col_timestamp])
            self.as_of_ = pd.Timestamp(as_of) if as_of is not None else occurred.max()
            keep = (occurred <= self.as_of_).to_numpy()
            df, weights, occurred = df[keep], weights[keep], occurred[keep]
            if self.half_life_days is not None:
                age_days = ((self.as_of_ - occurred) / pd.Timedelta(days=1)).to_numpy(dtype=float)
                weights = weights * np.exp2(-age_days / self.half_life_days)
        elif self.half_life_days is not None:
            raise ValueError(f"time decay needs the {self.col_timestamp!r} column")

        person_codes, self.person_index_ = pd.factorize(df[self.col_person], sort=True)
        item_codes, self.item_index_ = pd.factorize(df[self.col_item], sort=True)
        self.person_index_ = pd.Index(self.person_index_)
        self.item_index_ = pd.Index(self.item_index_)
        shape = (len(self.person_index_), len(self.item_index_))
        affinity = sparse.coo_array((weights, (person_codes, item_codes)), shape=shape).tocsr()
        affinity.sum_duplicates()
        # Pattern before zeros are dropped: a person who added then removed an item has seen it.
        self.seen_ = sparse.csr_array(
            (np.ones(affinity.nnz, dtype=bool), affinity.indices, affinity.indptr), shape=shape
        )
        affinity.eliminate_zeros()
        self.affinity_ = affinity

    def _requested(self, person_ids) -> pd.Index:
        if person_ids is None:
            return self.person_index_
        return as_index(person_ids)

    def _exclusions(
        self,
        requested: pd.Index,
        remove_seen: bool,
        exclude_pairs: pd.DataFrame | None,
        exclude_items: Iterable | None,
    ) -> tuple[sparse.csr_array, np.ndarray]:
        """Per requested person excluded items (csr, requested x items) and globally excluded items."""
        n_items = len(self.item_index_)
        rows, cols = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
        if remove_seen:
            position = self.person_index_.get_indexer(requested)
            known = np.flatnonzero(position >= 0)
            seen = self.seen_[position[known]].tocoo()
            rows.append(known[seen.row])
            cols.append(seen.col.astype(np.int64))
        if exclude_pairs is not None and len(exclude_pairs):
            r = requested.get_indexer(exclude_pairs[self.col_person])
            c = self.item_index_.get_indexer(exclude_pairs[self.col_item])
            ok = (r >= 0) & (c >= 0)
            rows.append(r[ok])
            cols.append(c[ok])
        rows, cols = np.concatenate(rows), np.concatenate(cols)
        excluded = sparse.csr_array(
            (np.ones(len(rows), dtype=bool), (rows, cols)), shape=(len(requested), n_items)
        )
        excluded.sum_duplicates()
        item_excluded = np.zeros(n_items, dtype=bool)
        if exclude_items is not None:
            positions = self.item_index_.get_indexer(as_index(exclude_items))
            item_excluded[positions[positions >= 0]] = True
        return excluded, item_excluded

    def _frame(
        self,
        requested: pd.Index,
        rows: np.ndarray,
        items: np.ndarray,
        scores: np.ndarray,
        ranks: np.ndarray,
    ) -> pd.DataFrame:
        """Output rows ordered by requested person, then rank."""
        order = np.lexsort((ranks, rows))
        return pd.DataFrame(
            {
                self.col_person: requested.take(rows[order]),
                RANK: ranks[order].astype(np.int64),
                self.col_item: self.item_index_.take(items[order]),
                SCORE: scores[order].astype(float),
                ALGORITHM: self.algorithm,
                REASON: self.reason,
            }
        )


def top_k_per_row(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Columns and values of the k largest entries of each row, best first.

    Ties are broken by the lower column index, also at the cut-off (so the result does not
    depend on argpartition's internals). Returns arrays of shape (n_rows, min(k, n_cols)).
    """
    n_rows, n_cols = scores.shape
    k = min(k, n_cols)
    if k <= 0 or n_rows == 0:
        return np.zeros((n_rows, 0), np.int64), np.zeros((n_rows, 0), scores.dtype)
    if k < n_cols:
        columns = np.argpartition(scores, n_cols - k, axis=1)[:, n_cols - k :]
    else:
        columns = np.broadcast_to(np.arange(n_cols), (n_rows, n_cols)).copy()
    values = np.take_along_axis(scores, columns, axis=1)

    if k < n_cols:
        cutoff = values.min(axis=1)
        tied_total = (scores == cutoff[:, None]).sum(axis=1)
        tied_taken = (values == cutoff[:, None]).sum(axis=1)
        tied = np.flatnonzero((tied_total > tied_taken) & np.isfinite(cutoff))
        if len(tied):
            block = scores[tied]
            above = block > cutoff[tied, None]
            at = block == cutoff[tied, None]
            room = k - above.sum(axis=1)
            chosen = above | (at & (np.cumsum(at, axis=1) <= room[:, None]))
            columns[tied] = np.nonzero(chosen)[1].reshape(len(tied), k)
            values[tied] = np.take_along_axis(block, columns[tied], axis=1)

    order = np.lexsort((columns, -values), axis=1)
    return np.take_along_axis(columns, order, axis=1), np.take_along_axis(values, order, axis=1)


def row_blocks(n_rows: int, n_cols: int, cells: int = BLOCK_CELLS) -> Iterable[slice]:
    """Consecutive row slices holding about `cells` cells each."""
    size = max(1, cells // max(n_cols, 1))
    for start in range(0, n_rows, size):
        yield slice(start, min(start + size, n_rows))


def as_index(values) -> pd.Index:
    """Distinct values of any list-like (list, set, array, Series, Index), first occurrence first."""
    if isinstance(values, (set, frozenset)) or not hasattr(values, "__len__"):
        values = list(values)
    return pd.Index(pd.Series(values).drop_duplicates().to_numpy())
