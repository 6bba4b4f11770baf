"""One nightly recommendation run: choose the best algorithm on a holdout, serve it, apply rules.

1. Every candidate algorithm is fitted on all but each person's latest item and scored on it
   (`evaluate_recommenders`): the `recommendation_evaluation` rows.
2. The best (nDCG) is refitted on everything and serves people with at least `min_history`
   items; content-based similarity, then popularity, top everyone up to k (fallback chain).
3. Rules (models_ml.rules) decide the final list: exclusions, pins, context rules, boosts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from models_ml.recommenders._base import InteractionRecommender
from models_ml.recommenders.als import ALSRecommender
from models_ml.recommenders.content import ContentRecommender
from models_ml.recommenders.cooccurrence import ItemCooccurrenceRecommender
from models_ml.recommenders.ease import EASERecommender
from models_ml.recommenders.hybrid import recommend_chain
from models_ml.recommenders.popularity import PopularityRecommender
from models_ml.recommenders.selection import chosen_algorithm, evaluate_recommenders
from models_ml.rules import RecommendationRules, apply_rules


def build_candidates(settings: dict[str, Any]) -> dict[str, InteractionRecommender]:
    """Algorithm name -> unfitted estimator, from the `recommendations` tunables."""
    half_life = settings.get("half_life_days")
    available = {
        "popularity": lambda: PopularityRecommender(half_life_days=half_life),
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


def recommend_for_people(
    interactions: pd.DataFrame,
    items: pd.DataFrame,
    people,
    settings: dict[str, Any],
    rules: RecommendationRules,
    *,
    contexts: dict[str, Any] | None = None,
    curated_items=(),
    exclude_pairs: pd.DataFrame | None = None,
    exclude_items=(),
    as_of=None,
) -> RecommendationRun:
    """The whole run (see the module docstring); `settings` = the `recommendations` tunables."""
    k = int(settings["top_k"])
    candidates = build_candidates(settings)
    evaluation = evaluate_recommenders(
        candidates,
        interactions,
        items,
        k=int(settings.get("eval_k", 10)),
        min_history=int(settings.get("min_history", 2)) + 1,
        fit_kwargs=lambda name: {"items": items} if name == "content" else {},
        as_of=as_of,
    )
    chosen = chosen_algorithm(evaluation, default="popularity")
    chain_names = list(dict.fromkeys([chosen, "content", "popularity"]))
    every = build_candidates({**settings, "candidates": chain_names})
    chain = []
    for name in chain_names:
        kwargs = {"items": items} if name == "content" else {}
        chain.append(every[name].fit(interactions, as_of=as_of, **kwargs))
    min_history = [
        int(settings.get("min_history", 2)) if name not in ("content", "popularity") else 0
        for name in chain_names
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
