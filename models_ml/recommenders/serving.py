"""One nightly recommendation run: choose the best algorithm on a holdout, serve it, apply rules.

1. Every candidate algorithm is fitted on all but each person's latest item and scored on it
   (`evaluate_recommenders`): the `recommendation_evaluation` rows. Only interactions that may
   count in aggregates (analytics consent, column `has_analytics_consent`) take part.
2. The best (nDCG) is refitted on everything and serves people with at least `min_history`
   items; content-based similarity, then popularity, top everyone up to k (fallback chain).
   The popularity stage is per segment when segment popularity beat overall popularity in
   step 1 (it falls back to overall for people without a segment).
3. Rules (models_ml.rules) decide the final list: exclusions, pins, context rules, boosts.
   Steps 2 and 3 run `serve_batch_people` people at a time (`serve`), so memory does not grow
   with the number of people served.

Every model sees each person's own history (to recommend from it), but only the interactions
that may count in aggregates shape item-level statistics (see InteractionRecommender).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from models_ml.columns import ALGORITHM, HAS_ANALYTICS_CONSENT, ITEM_ID, PERSON_ID
from models_ml.recommenders._base import InteractionRecommender, as_index, shared_indexing
from models_ml.recommenders.als import ALSRecommender
from models_ml.recommenders.content import ContentRecommender
from models_ml.recommenders.cooccurrence import ItemCooccurrenceRecommender
from models_ml.recommenders.ease import EASERecommender
from models_ml.recommenders.hybrid import recommend_chain
from models_ml.recommenders.popularity import PopularityRecommender
from models_ml.recommenders.segment_popularity import SegmentPopularityRecommender
from models_ml.recommenders.selection import (
    chosen_algorithm,
    evaluate_recommenders,
    sample_people_rows,
)
from models_ml.rules import RecommendationRules, apply_rules

# Algorithms that need no history of the person: they serve everyone in the fallback chain.
FALLBACKS = ("content", "segment_popularity", "popularity")
# People served per batch (the `serve_batch_people` tunable): about 0.5 GB of candidates and
# rule bookkeeping each at top_k 20.
DEFAULT_BATCH_PEOPLE = 100_000


def score_threads(settings: dict[str, Any]) -> int:
    """Threads scoring blocks of people (`score_threads`; null or absent: one per core), as
    joblib's n_jobs: -1 is every core."""
    threads = settings.get("score_threads")
    if threads is None:
        return -1
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"score_threads must be a positive integer or null, got {threads!r}")
    return threads


def build_candidates(settings: dict[str, Any]) -> dict[str, InteractionRecommender]:
    """Algorithm name -> unfitted estimator, from the `recommendations` tunables."""
    half_life = settings.get("half_life_days")
    threads = score_threads(settings)
    available = {
        "popularity": lambda: PopularityRecommender(half_life_days=half_life),
        "segment_popularity": lambda: SegmentPopularityRecommender(
            min_segment_people=int(settings.get("min_segment_people", 10)),
            half_life_days=half_life,
        ),
        "item_cooccurrence": lambda: ItemCooccurrenceRecommender(
            half_life_days=half_life, n_jobs=threads
        ),
        "als": lambda: ALSRecommender(
            factors=int(settings.get("als_factors", 32)),
            iterations=int(settings.get("als_iterations", 15)),
            half_life_days=half_life,
            random_state=int(settings.get("random_state", 42)),
            n_jobs=threads,
        ),
        "ease": lambda: EASERecommender(
            l2=float(settings.get("ease_l2", 200.0)),
            max_items=int(settings.get("ease_max_items", 15_000)),
            half_life_days=half_life,
            n_jobs=threads,
        ),
        "content": lambda: ContentRecommender(half_life_days=half_life, n_jobs=threads),
    }
    names = settings.get("candidates") or list(available)
    unknown = sorted(set(names) - set(available))
    if unknown:
        raise ValueError(f"unknown recommendation candidates {unknown}; known: {list(available)}")
    return {name: available[name]() for name in names}


@dataclass
class RecommendationRun:
    recommendations: pd.DataFrame
    evaluation: pd.DataFrame
    chosen: str


def popularity_fallback(evaluation: pd.DataFrame, metric: str = "ndcg_at_k") -> str:
    """`segment_popularity` if it was evaluated and beat overall `popularity`, else the latter."""
    scores = evaluation.set_index(ALGORITHM)[metric]
    if "segment_popularity" in scores and scores["segment_popularity"] > scores.get(
        "popularity", float("-inf")
    ):
        return "segment_popularity"
    return "popularity"


def recommend_for_people(
    interactions: pd.DataFrame,
    items: pd.DataFrame,
    people,
    settings: dict[str, Any],
    rules: RecommendationRules,
    *,
    segments: pd.DataFrame | None = None,
    contexts: dict[str, Any] | None = None,
    curated_items=(),
    exclude_pairs: pd.DataFrame | None = None,
    exclude_items=(),
    as_of=None,
) -> RecommendationRun:
    """The whole run (see the module docstring); `settings` = the `recommendations` tunables.

    `interactions`: person_id, item_id, weight, occurred_at and optionally has_analytics_consent
    (absent = every row counts in aggregates). `segments`: person_id, segment_id (one segment per
    person) for segment popularity. The recommendations come back as one frame; the nightly
    asset streams `serve`'s batches to the warehouse instead.
    """
    serving = fit_serving_chain(interactions, items, settings, segments=segments, as_of=as_of)
    batches = serve(
        serving,
        people,
        rules,
        items=items,
        contexts=contexts,
        curated_items=curated_items,
        exclude_pairs=exclude_pairs,
        exclude_items=exclude_items,
    )
    final = pd.concat(list(batches), ignore_index=True)
    return RecommendationRun(final, serving.evaluation, serving.chosen)


@dataclass
class ServingChain:
    """Tonight's evaluation and the fitted chain that serves: the chosen algorithm, content,
    then (segment) popularity, each with the history a person needs to be served by it."""

    evaluation: pd.DataFrame
    chosen: str
    chain: list[InteractionRecommender]
    min_history: list[int]
    k: int
    batch_people: int


def fit_serving_chain(
    interactions: pd.DataFrame,
    items: pd.DataFrame,
    settings: dict[str, Any],
    *,
    segments: pd.DataFrame | None = None,
    as_of=None,
    evaluation: pd.DataFrame | None = None,
) -> ServingChain:
    """Steps 1-2 of the module docstring: evaluate every candidate, fit the serving chain.

    Each evaluated model is dropped as soon as it is scored, so at most one selection model
    and then the serving chain are held at a time. With `evaluation` (an earlier run's rows,
    `is_chosen` marking its winner), step 1 is skipped: its choices serve, refitted on
    tonight's interactions.
    """

    def fit_kwargs(name: str) -> dict[str, Any]:
        return {"content": {"items": items}, "segment_popularity": {"segments": segments}}.get(
            name, {}
        )

    if evaluation is None:
        sample_people = (
            int(settings["eval_sample_people"]) if settings.get("eval_sample_people") else None
        )
        if sample_people is not None:  # before plain_ids: only the sample's ids are converted
            selected = sample_people_rows(
                interactions, sample_people, among=aggregatable_rows(interactions)
            )
        else:
            selected = aggregatable(interactions)
        evaluation = evaluate_recommenders(
            build_candidates(settings),
            plain_ids(selected),
            items,
            k=int(settings.get("eval_k", 10)),
            min_history=int(settings.get("min_history", 2)) + 1,
            fit_kwargs=fit_kwargs,
            as_of=as_of,
            max_people=int(settings["eval_max_people"])
            if settings.get("eval_max_people")
            else None,
        )
        del selected
    chosen = chosen_algorithm(evaluation, default="popularity")
    chain_names = list(dict.fromkeys([chosen, "content", popularity_fallback(evaluation)]))
    every = build_candidates({**settings, "candidates": chain_names})
    with shared_indexing():
        chain = [
            every[name].fit(interactions, as_of=as_of, **fit_kwargs(name)) for name in chain_names
        ]
    min_history = [
        0 if name in FALLBACKS else int(settings.get("min_history", 2)) for name in chain_names
    ]
    batch_people = int(settings.get("serve_batch_people") or DEFAULT_BATCH_PEOPLE)
    if batch_people < 1:
        raise ValueError(f"serve_batch_people must be positive, got {batch_people}")
    return ServingChain(
        evaluation, chosen, chain, min_history, int(settings["top_k"]), batch_people
    )


def serve(
    serving: ServingChain,
    people,
    rules: RecommendationRules,
    *,
    items: pd.DataFrame | None = None,
    contexts: dict[str, Any] | None = None,
    curated_items=(),
    exclude_pairs: pd.DataFrame | None = None,
    exclude_items=(),
) -> Iterator[pd.DataFrame]:
    """Step 3 for `people`, `serving.batch_people` at a time: each yielded frame holds the
    final top-k (`ml.recommendations` rows) of one batch, in `people` order then rank.

    A person's list depends only on their own history, their exclusions and contexts, so the
    batches are the same rows as one pass over everyone (a test holds this), while the
    candidates and their rule bookkeeping (a few hundred bytes per row) are held for one batch
    only: at a million people, one pass peaked 8 GB above the fitted models.
    At least one frame is yielded (empty when there are no people), so its columns are known.
    """
    requested = as_index(people)
    depth = serving.k + rules.extra_depth
    pair_position = None
    if exclude_pairs is not None and len(exclude_pairs):
        pair_position = requested.get_indexer(exclude_pairs[PERSON_ID])
    # Each context's members as sorted positions in `requested`, looked up once: the rules of
    # a batch get only its own members (at L, 6 thousand of the 71 thousand in a checkout).
    members = {}
    for name, person_ids in (contexts or {}).items():
        position = requested.get_indexer(as_index(person_ids))
        members[name] = np.unique(position[position >= 0])
    for start in range(0, max(len(requested), 1), serving.batch_people):
        batch = requested[start : start + serving.batch_people]
        pairs = None
        if pair_position is not None:
            in_batch = (pair_position >= start) & (pair_position < start + len(batch))
            pairs = exclude_pairs[in_batch]
        bounds = [start, start + len(batch)]
        batch_contexts = {
            name: requested[position[slice(*np.searchsorted(position, bounds))]]
            for name, position in members.items()
        }
        candidates = recommend_chain(
            serving.chain,
            batch,
            depth,
            min_history=serving.min_history,
            exclude_pairs=pairs,
            exclude_items=exclude_items,
            categorical_ids=True,
        )
        yield apply_rules(
            candidates,
            rules,
            serving.k,
            people=batch,
            items=items,
            contexts=batch_contexts,
            curated_items=curated_items,
            exclude_pairs=pairs,
            exclude_items=exclude_items,
        )


def plain_ids(interactions: pd.DataFrame) -> pd.DataFrame:
    """`interactions` with categorical person and item ids (as the nightly step reads them)
    turned into their values: the holdout evaluation joins and compares ids as values."""
    categorical = [
        column
        for column in (PERSON_ID, ITEM_ID)
        if column in interactions.columns
        and isinstance(interactions[column].dtype, pd.CategoricalDtype)
    ]
    if not categorical:
        return interactions
    return interactions.assign(
        **{
            column: interactions[column].astype(interactions[column].cat.categories.dtype)
            for column in categorical
        }
    )


def aggregatable(interactions: pd.DataFrame) -> pd.DataFrame:
    """The interactions that may count in aggregates (all when there is no consent column)."""
    if HAS_ANALYTICS_CONSENT not in interactions.columns:
        return interactions
    return interactions[aggregatable_rows(interactions)]


def aggregatable_rows(interactions: pd.DataFrame) -> np.ndarray:
    """Which rows may count in aggregates, as a boolean mask (every row without the column)."""
    if HAS_ANALYTICS_CONSENT not in interactions.columns:
        return np.ones(len(interactions), dtype=bool)
    return interactions[HAS_ANALYTICS_CONSENT].to_numpy(dtype=bool, na_value=False)
