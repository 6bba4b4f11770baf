"""One nightly recommendation run: choose the best algorithm on a holdout, serve it, apply rules.

1. Every candidate algorithm is fitted on all but each person's latest item and scored on it
   (`evaluate_recommenders`): the `recommendation_evaluation` rows. Only interactions that may
   count in aggregates (analytics consent, column `has_analytics_consent`) take part.
2. The best (nDCG) is refitted on everything and serves people with at least `min_history`
   items; content-based similarity, then popularity, top everyone up to k (fallback chain).
   The popularity stage is per segment when segment popularity beat overall popularity in
   step 1 (it falls back to overall for people without a segment).
3. Rules (models_ml.rules) decide the final list: exclusions, pins, context rules, boosts.

Every model sees each person's own history (to recommend from it), but only the interactions
that may count in aggregates shape item-level statistics (see InteractionRecommender).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from models_ml.columns import ALGORITHM, HAS_ANALYTICS_CONSENT
from models_ml.recommenders._base import InteractionRecommender
from models_ml.recommenders.als import ALSRecommender
from models_ml.recommenders.content import ContentRecommender
from models_ml.recommenders.cooccurrence import ItemCooccurrenceRecommender
from models_ml.recommenders.ease import EASERecommender
from models_ml.recommenders.hybrid import recommend_chain
from models_ml.recommenders.popularity import PopularityRecommender
from models_ml.recommenders.segment_popularity import SegmentPopularityRecommender
from models_ml.recommenders.selection import chosen_algorithm, evaluate_recommenders
from models_ml.rules import RecommendationRules, apply_rules

# Algorithms that need no history of the person: they serve everyone in the fallback chain.
FALLBACKS = ("content", "segment_popularity", "popularity")


def build_candidates(settings: dict[str, Any]) -> dict[str, InteractionRecommender]:
    """Algorithm name -> unfitted estimator, from the `recommendations` tunables."""
    half_life = settings.get("half_life_days")
    available = {
        "popularity": lambda: PopularityRecommender(half_life_days=half_life),
        "segment_popularity": lambda: SegmentPopularityRecommender(
            min_segment_people=int(settings.get("min_segment_people", 10)),
            half_life_days=half_life,
        ),
        "item_cooccurrence": lambda: ItemCooccurrenceRecommender(half_life_days=half_life),
        "als": lambda: ALSRecommender(
            factors=int(settings.get("als_factors", 32)),
            iterations=int(settings.get("als_iterations", 15)),
            half_life_days=half_life,
            random_state=int(settings.get("random_state", 42)),
        ),
        "ease": lambda: EASERecommender(
            l2=float(settings.get("ease_l2", 200.0)),
            max_items=int(settings.get("ease_max_items", 15_000)),
            half_life_days=half_life,
        ),
        "content": lambda: ContentRecommender(half_life_days=half_life),
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
    person) for segment popularity.
    """
    k = int(settings["top_k"])

    def fit_kwargs(name: str) -> dict[str, Any]:
        return {"content": {"items": items}, "segment_popularity": {"segments": segments}}.get(
            name, {}
        )

    evaluation = evaluate_recommenders(
        build_candidates(settings),
        aggregatable(interactions),
        items,
        k=int(settings.get("eval_k", 10)),
        min_history=int(settings.get("min_history", 2)) + 1,
        fit_kwargs=fit_kwargs,
        as_of=as_of,
        max_people=int(settings["eval_max_people"]) if settings.get("eval_max_people") else None,
    )
    chosen = chosen_algorithm(evaluation, default="popularity")
    chain_names = list(dict.fromkeys([chosen, "content", popularity_fallback(evaluation)]))
    every = build_candidates({**settings, "candidates": chain_names})
    chain = [every[name].fit(interactions, as_of=as_of, **fit_kwargs(name)) for name in chain_names]
    min_history = [
        0 if name in FALLBACKS else int(settings.get("min_history", 2)) for name in chain_names
    ]
    depth = k + rules.extra_depth
    candidates_frame = recommend_chain(
        chain,
        people,
        depth,
        min_history=min_history,
        exclude_pairs=exclude_pairs,
        exclude_items=exclude_items,
    )
    final = apply_rules(
        candidates_frame,
        rules,
        k,
        people=people,
        items=items,
        contexts=contexts,
        curated_items=curated_items,
        exclude_pairs=exclude_pairs,
        exclude_items=exclude_items,
    )
    return RecommendationRun(final, evaluation, chosen)


def aggregatable(interactions: pd.DataFrame) -> pd.DataFrame:
    """The interactions that may count in aggregates (all when there is no consent column)."""
    if HAS_ANALYTICS_CONSENT not in interactions.columns:
        return interactions
    counts = interactions[HAS_ANALYTICS_CONSENT].to_numpy(dtype=bool, na_value=False)
    return interactions[counts]
