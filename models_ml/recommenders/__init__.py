"""Recommenders: one class per algorithm, `fit(interactions)` then `recommend_k_items(...)`.

Every `recommend_k_items` returns the `ml.recommendations` shape: person_id, rank, item_id,
score, algorithm, reason (the last two categorical). `recommend_with_fallback` combines a
primary and a fallback.
"""

from models_ml.recommenders.cooccurrence import ItemCooccurrenceRecommender
from models_ml.recommenders.hybrid import recommend_with_fallback
from models_ml.recommenders.popularity import PopularityRecommender

__all__ = ["ItemCooccurrenceRecommender", "PopularityRecommender", "recommend_with_fallback"]
