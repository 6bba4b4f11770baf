"""Recommenders: one class per algorithm, `fit(interactions)` then `recommend_k_items(...)`.

Every `recommend_k_items` returns the `ml.recommendations` shape: person_id, rank, item_id,
score, algorithm, reason (the last two categorical). `recommend_with_fallback` combines a
primary and a fallback; `recommend_chain` any number of fitted recommenders in order.
"""

from models_ml.recommenders.als import ALSRecommender
from models_ml.recommenders.content import ContentRecommender
from models_ml.recommenders.cooccurrence import ItemCooccurrenceRecommender
from models_ml.recommenders.ease import EASERecommender
from models_ml.recommenders.hybrid import recommend_chain, recommend_with_fallback
from models_ml.recommenders.popularity import PopularityRecommender
from models_ml.recommenders.segment_popularity import SegmentPopularityRecommender

__all__ = [
    "ALSRecommender",
    "ContentRecommender",
    "EASERecommender",
    "ItemCooccurrenceRecommender",
    "PopularityRecommender",
    "SegmentPopularityRecommender",
    "recommend_chain",
    "recommend_with_fallback",
]
