"""Model selection: every candidate fitted on a holdout split, scored, the best one chosen."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.base import clone

from models_ml.columns import ALGORITHM, PERSON_ID
from models_ml.evaluation import item_popularity, latest_holdout, novelty, ranking_metrics
from models_ml.frames import isin
from models_ml.recommenders._base import InteractionRecommender, shared_indexing

EVALUATION_COLUMNS = (
    ALGORITHM,
    "k",
    "n_users",
    "precision_at_k",
    "recall_at_k",
    "ndcg_at_k",
    "map_at_k",
    "catalog_coverage",
    "novelty",
    "fit_seconds",
    "is_chosen",
)


def evaluate_recommenders(
    candidates: dict[str, InteractionRecommender],
    interactions: pd.DataFrame,
    catalog,
    k: int = 10,
    *,
    n_latest: int = 1,
    min_history: int = 3,
    selection_metric: str = "ndcg_at_k",
    fit_kwargs: Callable[[str], dict] | None = None,
    as_of=None,
    max_people: int | None = None,
    sample_people: int | None = None,
    seed: int = 42,
) -> pd.DataFrame:
    """One row per candidate (EVALUATION_COLUMNS): a clone of each is fitted on everything but
    each person's latest `n_latest` items and scored on them; `is_chosen` marks the best by
    `selection_metric` (ties to the earlier candidate). The candidates index `train` once
    (`shared_indexing`): the first one's `fit_seconds` includes it.

    With `max_people`, at most that many holdout people (a seeded sample) are scored: every
    candidate still learns from all of `train`, but ranking a million people six times only
    to choose one model costs more than the choice is worth (50k people put nDCG@10 within
    about +-0.003).

    With `sample_people`, the whole selection (split, every fit, the scores) uses only the
    interactions of that many people (a seeded sample): fitting six models on a million
    people's history to choose one cost minutes at the L bench tier, and the chosen one is
    fitted again on everyone to serve. Fewer people weaken the collaborative models a
    little more than popularity, so a sample too small favours the simpler candidates."""
    if sample_people is not None:
        interactions = sample_people_rows(interactions, sample_people, seed)
    train, test = latest_holdout(interactions, n_latest, min_history)
    del interactions  # the split holds every row: a third copy would only add to the peak
    people = test[PERSON_ID].unique()
    if max_people is not None and len(people) > max_people:
        people = np.sort(np.random.default_rng(seed).choice(people, max_people, replace=False))
        test = test[test[PERSON_ID].isin(people)]
    popularity = item_popularity(train)
    rows = []
    with shared_indexing():  # every candidate indexes `train` the same way
        for name, candidate in candidates.items():
            model = clone(candidate)
            started = time.perf_counter()
            model.fit(train, as_of=as_of, **(fit_kwargs(name) if fit_kwargs else {}))
            fit_seconds = time.perf_counter() - started
            recs = model.recommend_k_items(people, k=k, remove_seen=True)
            metrics = ranking_metrics(test, recs, k=k, catalog=catalog)
            metrics["novelty"] = novelty(recs, popularity=popularity)
            rows.append({ALGORITHM: name, **metrics, "fit_seconds": fit_seconds})
            del model, recs  # one candidate's model at a time
    table = pd.DataFrame(rows, columns=list(EVALUATION_COLUMNS))
    table["is_chosen"] = False
    if len(table) and len(people):
        table.loc[table[selection_metric].idxmax(), "is_chosen"] = True
    table["n_users"] = table["n_users"].fillna(0).astype("int64")
    table["k"] = k
    return table


def sample_people_rows(
    interactions: pd.DataFrame,
    n_people: int,
    seed: int = 42,
    *,
    among: np.ndarray | None = None,
) -> pd.DataFrame:
    """The rows of a seeded sample of `n_people` people (every row when there are no more).

    The people are drawn from the distinct ids in order of appearance, so categorical ids
    (what the nightly step reads) draw the same people as their values: sampling them before
    turning them into values converts the sample's rows only (at L, 2.7M of 11.5M).

    `among` (a boolean mask of the rows) samples `interactions[among]` without copying it
    first: the same rows, taken in one step (at L, filtering the 11.7M rows to those that may
    count in aggregates cost 2.8 s before the sample took 2.7M of them)."""
    ids = interactions[PERSON_ID]
    keep_rows = np.ones(len(ids), dtype=bool) if among is None else np.asarray(among, dtype=bool)
    if isinstance(ids.dtype, pd.CategoricalDtype):
        codes = ids.cat.codes.to_numpy()
        everyone = pd.unique(codes[keep_rows & (codes >= 0)])
        if len(everyone) <= n_people:
            return interactions if among is None else interactions[keep_rows]
        keep = np.zeros(len(ids.cat.categories), dtype=bool)
        keep[np.random.default_rng(seed).choice(everyone, n_people, replace=False)] = True
        return interactions[keep_rows & (codes >= 0) & keep[codes]]
    everyone = ids[keep_rows].unique()
    if len(everyone) <= n_people:
        return interactions if among is None else interactions[keep_rows]
    sampled = np.random.default_rng(seed).choice(everyone, n_people, replace=False)
    return interactions[keep_rows & isin(ids, sampled)]


def chosen_algorithm(evaluation: pd.DataFrame, default: str) -> str:
    chosen = evaluation.loc[evaluation["is_chosen"], ALGORITHM]
    return str(chosen.iloc[0]) if len(chosen) else default


__all__ = [
    "EVALUATION_COLUMNS",
    "chosen_algorithm",
    "evaluate_recommenders",
    "sample_people_rows",
]
