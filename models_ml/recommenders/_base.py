"""Machinery shared by the recommenders: indexing interactions, exclusions, top-k, output frame."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import ClassVar

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.base import BaseEstimator
from threadpoolctl import threadpool_limits

from models_ml.columns import (
    ALGORITHM,
    ITEM_ID,
    PERSON_ID,
    RANK,
    REASON,
    SCORE,
)

# Within `shared_indexing()`: the people and items of each frame indexed so far (see there).
_SHARED_INDEXES: ContextVar[dict | None] = ContextVar("shared_indexes", default=None)


@contextmanager
def shared_indexing() -> Iterator[None]:
    """Within this block, recommenders fitted on the same interactions frame (the very object,
    not changed in between) with the same `as_of` index its rows once: the rows kept, their
    times, and the factorized people and items; and models that weigh rows alike (weight
    column, half-life, consent column) share the person x item matrices made of them. Fitting
    a serving chain of three models on the 11.7M interactions of the L bench tier factorized
    11.7M ids into people and items once per model, then made the same matrices twice (about
    2.5 s). What is shared goes when the block ends."""
    token = _SHARED_INDEXES.set({})
    try:
        yield
    finally:
        _SHARED_INDEXES.reset(token)


# Dense score blocks are cut so that one block holds about this many cells (32 MB of float32
# scores plus masks of the same shape), whatever the catalog size.
BLOCK_CELLS = 8_000_000


class InteractionRecommender(BaseEstimator):
    """Base for recommenders fitted on weighted (person, item, weight, occurred_at) interactions.

    Subclasses set `algorithm` and `reason_text` and implement `fit(interactions, as_of=None)`
    and `_top_k(requested, k, excluded, item_excluded)` (integer positions in, integer cells
    out); this class turns interactions into the person x item `affinity_` and `seen_`
    matrices, builds exclusions and the output frame in the `ml.recommendations` shape.

    Consent: a row whose `col_in_aggregates` column (the person's analytics consent) is False
    or null is the person's own history only (what they are recommended from, what counts as
    seen) and counts in no statistic over people. Those statistics (popularity, co-occurrence,
    item factors, item weights) are computed from `aggregate_affinity_`, which is `affinity_`
    itself when every row counts or the column is absent.
    """

    algorithm: ClassVar[str]
    reason_text: ClassVar[str]
    col_in_aggregates: str | None = None

    @property
    def reason(self) -> str:
        return f"{self.algorithm}: {self.reason_text}"

    def _index_interactions(self, interactions: pd.DataFrame, as_of) -> None:
        """Set person_index_, item_index_, affinity_ (decayed weight sums), seen_, as_of_ and
        aggregate_affinity_ (affinity_ of the rows that may count in aggregates).

        With `as_of` given, interactions after it are ignored (fitting "as of" a past date must
        not see the future). Time decay needs occurred_at; without decay it is optional.
        """
        has_time = self.col_timestamp is not None and self.col_timestamp in interactions.columns
        if not has_time and self.half_life_days is not None:
            raise ValueError(f"time decay needs the {self.col_timestamp!r} column")
        indexed = self._indexed_rows(interactions, as_of, has_time)
        (
            df,
            occurred,
            self.as_of_,
            person_codes,
            self.person_index_,
            item_codes,
            self.item_index_,
        ) = indexed
        # The matrices depend on the rows and on how they are weighed, not on the model: within
        # `shared_indexing()` models weighing alike share them (no model changes them in place).
        key = (
            self.col_weight,
            self.half_life_days if has_time else None,
            self.col_in_aggregates if self.col_in_aggregates in df.columns else None,
        )
        matrices = _shared_matrices(interactions, indexed, key)
        if matrices is None:
            matrices = self._matrices(df, occurred, person_codes, item_codes)
            _keep_matrices(interactions, indexed, key, matrices)
        self.seen_, self.affinity_, self.aggregate_affinity_ = matrices

    def _matrices(
        self,
        df: pd.DataFrame,
        occurred: pd.Series | None,
        person_codes: np.ndarray,
        item_codes: np.ndarray,
    ) -> tuple[sparse.csr_array, sparse.csr_array, sparse.csr_array]:
        """(seen_, affinity_, aggregate_affinity_) of indexed rows (`_index_interactions`)."""
        weights = (
            df[self.col_weight].to_numpy(dtype=float, na_value=0.0)
            if self.col_weight is not None
            else np.ones(len(df))
        )
        if occurred is not None and self.half_life_days is not None:
            weights = weights * np.exp2(-age_in_days(occurred, self.as_of_) / self.half_life_days)
        shape = (len(self.person_index_), len(self.item_index_))
        # Summing weights drops cells that net to zero; a person who added then removed an
        # item has still seen it, so `seen_` is built from the interaction pattern itself.
        seen = summed_csr(np.ones(len(df), dtype=bool), person_codes, item_codes, shape)
        affinity = summed_csr(weights, person_codes, item_codes, shape)
        affinity.eliminate_zeros()
        aggregate = affinity
        if self.col_in_aggregates is not None and self.col_in_aggregates in df.columns:
            counts = df[self.col_in_aggregates].to_numpy(dtype=bool, na_value=False)
            if not counts.all():
                aggregate = summed_csr(
                    weights[counts], person_codes[counts], item_codes[counts], shape
                )
                aggregate.eliminate_zeros()
        return seen, affinity, aggregate

    def _indexed_rows(self, interactions: pd.DataFrame, as_of, has_time: bool) -> tuple:
        """(rows kept but for their person and item, their times or None, as_of_, person
        codes, person index, item codes, item index) of `interactions`: rows with a person and
        an item, up to `as_of` when they are timed. Shared within `shared_indexing()`."""
        key = (
            id(interactions),
            self.col_person,
            self.col_item,
            self.col_timestamp if has_time else None,
            None if as_of is None else pd.Timestamp(as_of),
        )
        shared = _SHARED_INDEXES.get()
        if shared is not None and key in shared and shared[key][0] is interactions:
            return shared[key][1]
        df = interactions.dropna(subset=[self.col_person, self.col_item])
        occurred, as_of_ = None, None
        if has_time:
            occurred = pd.to_datetime(df[self.col_timestamp])
            as_of_ = pd.Timestamp(as_of) if as_of is not None else occurred.max()
            keep = (occurred <= as_of_).to_numpy()
            df, occurred = df[keep], occurred[keep]
        person_codes, person_index = factorized(df[self.col_person])
        item_codes, item_index = factorized(df[self.col_item])
        indexed = (
            df.drop(columns=[self.col_person, self.col_item]),  # coded: the text is not kept
            occurred,
            as_of_,
            person_codes,
            person_index,
            item_codes,
            item_index,
        )
        if shared is not None:
            shared[key] = (interactions, indexed)  # the frame held: its id stays its own
        return indexed

    def _requested(self, person_ids) -> pd.Index:
        if person_ids is None:
            return self.person_index_
        return as_index(person_ids)

    def labels(self) -> list[tuple[str, str]]:
        """The (algorithm, reason) pairs the label codes of `_top_k` point into."""
        return [(self.algorithm, self.reason)]

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
            person_ids: people to recommend for (None = everyone fitted). Whether people unknown
                to the model get rows depends on the algorithm (popularity: yes; models of a
                person's history: no).
            remove_seen: never recommend an item the person interacted with.
            exclude_pairs: (person_id, item_id) pairs that must not be recommended.
            exclude_items: items never recommended to anyone (out of stock, ...).
        """
        requested = self._requested(person_ids)
        excluded, item_excluded = self._exclusions(
            requested, remove_seen, exclude_pairs, exclude_items
        )
        return self._frame(requested, *self._top_k(requested, k, excluded, item_excluded))

    def _top_k(
        self, requested: pd.Index, k: int, excluded: sparse.csr_array, item_excluded: np.ndarray
    ) -> Cells:  # pragma: no cover - abstract
        """Each requested person's best k allowed items as flat cells: (row in requested,
        item position, score, rank 1..n, label code into `labels()`)."""
        raise NotImplementedError

    def _exclusions(
        self,
        requested: pd.Index,
        remove_seen: bool,
        exclude_pairs: pd.DataFrame | None,
        exclude_items: Iterable | None,
    ) -> tuple[sparse.csr_array, np.ndarray]:
        """Excluded cells (csr, requested person x item) and globally excluded items (mask)."""
        pair_rows = pair_items = np.zeros(0, np.int64)
        if exclude_pairs is not None and len(exclude_pairs):
            r = requested.get_indexer(exclude_pairs[self.col_person])
            c = self.item_index_.get_indexer(exclude_pairs[self.col_item])
            ok = (r >= 0) & (c >= 0)
            pair_rows, pair_items = r[ok], c[ok]
        item_excluded = np.zeros(len(self.item_index_), dtype=bool)
        if exclude_items is not None:
            positions = self.item_index_.get_indexer(as_index(exclude_items))
            item_excluded[positions[positions >= 0]] = True
        excluded = self._excluded_cells(requested, remove_seen, pair_rows, pair_items)
        return excluded, item_excluded

    def _excluded_cells(
        self,
        requested: pd.Index,
        remove_seen: bool,
        pair_rows: np.ndarray,
        pair_items: np.ndarray,
    ) -> sparse.csr_array:
        """Requested person x item csr of the excluded cells: the given (row, item position)
        pairs, and each person's seen items with `remove_seen`."""
        rows, cols = [np.asarray(pair_rows, np.int64)], [np.asarray(pair_items, np.int64)]
        if remove_seen:
            position = self.person_index_.get_indexer(requested)
            known = np.flatnonzero(position >= 0)
            seen = self.seen_[position[known]].tocoo()
            rows.append(known[seen.row])
            cols.append(seen.col.astype(np.int64))
        rows, cols = np.concatenate(rows), np.concatenate(cols)
        excluded = sparse.csr_array(
            (np.ones(len(rows), dtype=bool), (rows, cols)),
            shape=(len(requested), len(self.item_index_)),
        )
        excluded.sum_duplicates()
        return excluded

    def _frame(
        self,
        requested: pd.Index,
        rows: np.ndarray,
        items: np.ndarray,
        scores: np.ndarray,
        ranks: np.ndarray,
        label_codes: np.ndarray,
    ) -> pd.DataFrame:
        """Output rows (cells of `_top_k`) ordered by requested person, then rank."""
        order = np.lexsort((ranks, rows))
        cells = (rows[order], items[order], scores[order], ranks[order], label_codes[order])
        return recommendation_frame(
            requested, self.item_index_, cells, self.labels(), self.col_person, self.col_item
        )


# Flat recommendation cells: row (position of the person in the request), item position,
# score, rank, label code.
Cells = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def recommendation_frame(
    person_ids: pd.Index,
    item_ids: pd.Index,
    cells: Cells,
    labels: list[tuple[str, str]],
    col_person: str = PERSON_ID,
    col_item: str = ITEM_ID,
    *,
    categorical_ids: bool = False,
) -> pd.DataFrame:
    """The `ml.recommendations` frame of `cells`, in their order; a row's algorithm and reason
    are `labels[label code]`. `algorithm` and `reason` are categoricals: one string per row
    would cost more memory than all other columns together at millions of rows.
    `categorical_ids`: person and item ids are categoricals too (over `person_ids` and
    `item_ids`), for a consumer that turns them back into positions (the rules)."""
    rows, items, scores, ranks, codes = cells
    if categorical_ids:
        people = pd.Categorical.from_codes(rows, categories=person_ids)
        item_values = pd.Categorical.from_codes(items, categories=item_ids)
    else:
        people, item_values = person_ids.take(rows), item_ids.take(items)
    return pd.DataFrame(
        {
            col_person: people,
            RANK: ranks.astype(np.int64),
            col_item: item_values,
            SCORE: scores.astype(float),
            ALGORITHM: labelled(codes, [algorithm for algorithm, _ in labels]),
            REASON: labelled(codes, [reason for _, reason in labels]),
        }
    )


def labelled(codes: np.ndarray, labels: list[str]) -> pd.Categorical:
    """`labels[codes]` as a categorical (labels may repeat)."""
    label_codes, categories = pd.factorize(pd.Index(labels))
    return pd.Categorical.from_codes(label_codes.astype(np.int8)[codes], categories=categories)


def concat_cells(parts: list[Cells]) -> Cells:
    """Cells of several blocks as one."""
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0), empty, np.zeros(0, dtype=np.int8)
    return tuple(np.concatenate(column) for column in zip(*parts, strict=True))


def lexsort_runs(value: np.ndarray, tier: np.ndarray, group: np.ndarray) -> np.ndarray:
    """`np.lexsort((value, tier, group))` (ties in input order), by one stable sort of an int64
    key: (group, tier, the value's rank among the distinct values).

    The rows of a recommendation batch arrive as a few runs already sorted by person (each
    stage's or rule's cells), which a stable sort (timsort) merges in a few passes, where
    lexsort sorts each of the three keys in full: at 2 million rows, 0.1 s against 0.9 s.
    """
    codes, values = pd.factorize(value, use_na_sentinel=False)
    value_rank = np.empty(len(values), dtype=np.int64)
    value_rank[np.argsort(values, kind="stable")] = np.arange(len(values))
    n_tiers = int(tier.max()) + 1 if len(tier) else 1
    key = (group.astype(np.int64) * n_tiers + tier) * max(len(values), 1) + value_rank[codes]
    return np.argsort(key, kind="stable")


def positive_inputs(affinity: sparse.csr_array, binary: bool) -> sparse.csr_array:
    """The positive affinities (or their presence with `binary`) as float32, zeros dropped:
    what the matrix models learn from (a net negative affinity is no preference)."""
    matrix = affinity.astype(np.float32)
    matrix.data = np.maximum(matrix.data, 0.0)
    if binary:
        matrix.data = (matrix.data > 0).astype(np.float32)
    matrix.eliminate_zeros()
    return matrix


def single_threaded_blas():
    """Context in which BLAS (the dense products of scoring) runs on one thread.

    Parallelism comes from the scoring threads (`n_jobs`); BLAS threads on top of them, or
    even alone beside the single-threaded top-k passes, spin while they wait. Measured on 2
    busy cores, a block's ALS product took 6 ms of CPU on one BLAS thread against 19 ms on
    two, and two scoring threads with two BLAS threads each doubled the total CPU time.
    """
    return threadpool_limits(limits=1, user_api="blas")


def top_k_cells(
    scores: np.ndarray, k: int, min_score: float = -np.inf
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The k largest entries above `min_score` of each row, as flat (row, column, value, rank).

    Rows come out in order, each best first with rank 1, 2, ...; ties go to the lower column,
    also at the cut-off. A row with fewer than k entries above `min_score` returns fewer.

    Only a few passes over `scores` are needed: the k-th largest of the maxima of interleaved
    column groups is a lower bound of a row's k-th largest value, so only the cells at or
    above it (typically k to 2k per row) are sorted.
    """
    n_rows, n_cols = scores.shape
    if k <= 0 or n_rows == 0 or n_cols == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, scores.dtype), empty
    # "> min_score" as ">= the next float up", so one comparison also applies the bound.
    dtype = scores.dtype.type
    threshold = np.full((n_rows, 1), np.nextafter(dtype(min_score), dtype(np.inf)))
    n_groups = max(4 * k, 64)
    if n_cols >= 2 * n_groups:
        width = n_cols // n_groups
        group_max = scores[:, : n_groups * width].reshape(n_rows, width, n_groups).max(axis=1)
        bound = np.partition(group_max, n_groups - k, axis=1)[:, n_groups - k, None]
        threshold = np.maximum(threshold, bound)
    # 1-D flatnonzero is an order of magnitude faster than 2-D nonzero on a sparse mask.
    rows, columns = np.divmod(np.flatnonzero(scores >= threshold), n_cols)
    counts = np.bincount(rows, minlength=n_rows)

    top_columns = np.zeros((n_rows, k), dtype=np.int64)
    top_values = np.full((n_rows, k), -np.inf, dtype=scores.dtype)
    # Rows with many candidates (many ties at the bound) are sorted in full, the rest packed.
    wide = counts > 2 * n_groups
    wide_rows, narrow_rows = np.flatnonzero(wide), np.flatnonzero(~wide)
    if len(wide_rows):
        block = scores[wide_rows]
        block = np.where(block >= threshold[wide_rows], block, dtype(-np.inf))
        columns_k, values_k = _top_k_per_row(block, k)
        top_columns[wide_rows, : columns_k.shape[1]] = columns_k
        top_values[wide_rows, : values_k.shape[1]] = values_k
    if len(narrow_rows):
        narrow = ~wide[rows]
        columns_k, values_k = _top_k_packed(scores, rows[narrow], columns[narrow], narrow_rows, k)
        top_columns[narrow_rows, : columns_k.shape[1]] = columns_k
        top_values[narrow_rows, : values_k.shape[1]] = values_k
    keep = top_values > min_score
    out_rows = np.broadcast_to(np.arange(n_rows)[:, None], keep.shape)[keep]
    ranks = np.broadcast_to(np.arange(1, k + 1), keep.shape)[keep]
    return out_rows, top_columns[keep], top_values[keep], ranks


def _top_k_packed(
    scores: np.ndarray, rows: np.ndarray, columns: np.ndarray, subset: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top k of `subset` rows among candidate cells (rows, columns in row-major order),
    packed left into a narrow matrix first so ties at equal value keep column order."""
    local = np.searchsorted(subset, rows)
    counts = np.bincount(local, minlength=len(subset))
    slot = np.arange(len(rows)) - (np.cumsum(counts) - counts)[local]
    packed = np.full((len(subset), max(int(counts.max()), 1)), -np.inf, dtype=scores.dtype)
    packed[local, slot] = scores[rows, columns]
    packed_columns = np.zeros(packed.shape, dtype=np.int64)
    packed_columns[local, slot] = columns
    best_slot, best_values = _top_k_per_row(packed, k)
    return np.take_along_axis(packed_columns, best_slot, axis=1), best_values


def _top_k_per_row(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Columns and values of the k largest entries of each row, best first, ties to the lower
    column (also at the cut-off). Arrays of shape (n_rows, min(k, n_cols))."""
    n_rows, n_cols = scores.shape
    k = min(k, n_cols)
    # A values-only partition finds each row's k-th largest value (about twice as fast as
    # argpartition); the cells at or above it are then picked with masks.
    cutoff = np.partition(scores, n_cols - k, axis=1)[:, n_cols - k, None]
    chosen = scores > cutoff
    at_cutoff = scores == cutoff
    room = k - chosen.sum(axis=1)
    tied = np.flatnonzero(at_cutoff.sum(axis=1) > room)
    at_cutoff[tied] &= np.cumsum(at_cutoff[tied], axis=1) <= room[tied, None]
    chosen |= at_cutoff
    columns = (np.flatnonzero(chosen) % n_cols).reshape(n_rows, k)
    values = np.take_along_axis(scores, columns, axis=1)
    order = np.lexsort((columns, -values), axis=1)
    return np.take_along_axis(columns, order, axis=1), np.take_along_axis(values, order, axis=1)


def row_blocks(n_rows: int, n_cols: int, cells: int = BLOCK_CELLS) -> Iterable[slice]:
    """Consecutive row slices holding about `cells` cells each."""
    size = max(1, cells // max(n_cols, 1))
    for start in range(0, n_rows, size):
        yield slice(start, min(start + size, n_rows))


def _shared_matrices(interactions: pd.DataFrame, indexed: tuple, key: tuple) -> tuple | None:
    """The matrices of `indexed` (rows of `interactions`) weighed as `key`, when kept."""
    shared = _SHARED_INDEXES.get()
    if shared is None:
        return None
    kept = shared.get(("matrices", id(interactions), id(indexed), key))
    if kept is None or kept[0] is not interactions or kept[1] is not indexed:
        return None
    return kept[2]


def _keep_matrices(interactions: pd.DataFrame, indexed: tuple, key: tuple, matrices) -> None:
    shared = _SHARED_INDEXES.get()
    if shared is not None:  # the frames held: their ids stay their own
        shared[("matrices", id(interactions), id(indexed), key)] = (interactions, indexed, matrices)


def age_in_days(occurred: pd.Series, as_of: pd.Timestamp) -> np.ndarray:
    """Days from each time in `occurred` to `as_of`, as floats: the integer microseconds
    subtracted in numpy (pandas' timedelta arithmetic took about 1.5 s for 11.7M rows)."""
    unit = np.timedelta64(1, "us")
    times = occurred.to_numpy(dtype="datetime64[us]")
    return (np.datetime64(as_of.to_datetime64(), "us") - times) / unit / 86_400e6


def summed_csr(
    data: np.ndarray, rows: np.ndarray, columns: np.ndarray, shape: tuple[int, int]
) -> sparse.csr_array:
    """The csr matrix of (data, (rows, columns)) with duplicate cells summed, as
    `coo_array(...).tocsr()` makes it (the same sums, in the same order). Cells sorted by row
    and column already (the nightly interactions are read so) skip the conversion: the row
    pointers are the counts per row (coo to csr took about 3 s of a fit at L)."""
    row_steps = np.diff(rows)
    sorted_cells = len(rows) > 0 and bool(
        np.all((row_steps > 0) | ((row_steps == 0) & (np.diff(columns) >= 0)))
    )
    if not sorted_cells:
        return sparse.coo_array((data, (rows, columns)), shape=shape).tocsr()
    index_dtype = np.int32 if max(len(rows), *shape) < np.iinfo(np.int32).max else np.int64
    indptr = np.zeros(shape[0] + 1, dtype=index_dtype)
    np.cumsum(np.bincount(rows, minlength=shape[0]), out=indptr[1:])
    # The matrix gets copies: `sum_duplicates` compacts its data and indices in place, and the
    # caller's arrays are read again (the aggregate matrix is made from the same weights).
    indices = columns.astype(index_dtype, copy=True)
    matrix = sparse.csr_array((np.array(data, copy=True), indices, indptr), shape=shape, copy=False)
    matrix.has_sorted_indices = True
    matrix.sum_duplicates()
    return matrix


def factorized(values: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """`pd.factorize(values, sort=True)` of ids without nulls: codes, and the distinct values
    in order as a plain Index.

    Ids read as a categorical over sorted categories (the nightly step reads the interactions
    so, `dagster_project/assets/recommendations.py`) are coded already: only the categories no
    row uses are dropped, from the integer codes. Factorizing the 11.7M string ids of the L
    tier's interactions took about 4 s; the text is read once per distinct id instead.
    """
    if isinstance(values.dtype, pd.CategoricalDtype):
        categories = values.cat.categories  # unique, as a categorical's are
        if categories.is_monotonic_increasing:
            codes = values.cat.codes.to_numpy()
            if len(codes) and codes.min() < 0:
                raise ValueError("factorized() takes ids without nulls")
            used = np.bincount(codes, minlength=len(categories)) > 0
            if used.all():
                return codes, categories
            new_code = (np.cumsum(used) - 1).astype(codes.dtype)
            return new_code[codes], pd.Index(categories[used])
        values = values.astype(categories.dtype)
    codes, uniques = pd.factorize(values, sort=True)
    return codes, pd.Index(uniques)


def as_index(values) -> pd.Index:
    """Distinct values of a list-like (list, set, array, Series, Index), first seen first."""
    if isinstance(values, (set, frozenset)) or not hasattr(values, "__len__"):
        values = list(values)
    return pd.Index(pd.Series(values).drop_duplicates().to_numpy())


class ScoringRecommender(InteractionRecommender):
    """Base for recommenders whose scores for a block of known people are one dense array.

    Subclasses implement `_score_block(positions)` (rows of `person_index_` -> float32 array of
    shape (len(positions), n_items)); this class applies exclusions and keeps each person's top
    k items with a positive score, block by block so memory stays bounded at any scale. People
    unknown to the model get no rows. `n_jobs` threads score blocks in parallel.
    """

    n_jobs: int | None = None

    def _score_block(self, positions: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def score_items(self, person_ids) -> np.ndarray:
        """Dense person x item scores for known people (small requests and debugging)."""
        position = self.person_index_.get_indexer(self._requested(person_ids))
        if (position < 0).any():
            raise KeyError("unknown person_ids")
        return self._score_block(position)

    def _top_k(
        self, requested: pd.Index, k: int, excluded: sparse.csr_array, item_excluded: np.ndarray
    ) -> Cells:
        """People unknown to the model get no cells; only positive scores are recommended."""
        from joblib import Parallel, delayed

        position = self.person_index_.get_indexer(requested)
        known = np.flatnonzero(position >= 0)

        def recommend_block(rows: np.ndarray) -> Cells:
            scores = np.asarray(self._score_block(position[rows]), dtype=np.float32)
            scores[:, item_excluded] = -np.inf
            excluded_rows, excluded_items = excluded[rows].nonzero()
            scores[excluded_rows, excluded_items] = -np.inf
            block_rows, items, values, ranks = top_k_cells(scores, k, min_score=0.0)
            return rows[block_rows], items, values, ranks, np.zeros(len(items), np.int8)

        # Threads: the products and the top-k passes release the GIL.
        with single_threaded_blas():
            parts = Parallel(n_jobs=self.n_jobs, prefer="threads")(
                delayed(recommend_block)(known[block])
                for block in row_blocks(len(known), len(self.item_index_))
            )
        return concat_cells(parts)
