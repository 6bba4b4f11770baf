"""Segments: k-means clusters over user_features (people with personalization consent)."""

from datetime import UTC, datetime

import pandas as pd
from dagster import AssetExecutionContext, AssetKey, AssetSpec, MaterializeResult, multi_asset

from dagster_project.assets._metadata import markdown_table
from dagster_project.resources import WarehouseResource
from dagster_project.tunables import load_tunables
from dagster_project.warehouse_io import read_frame, write_frame
from models_ml.clustering import KMeansSegmenter, cluster_segments
from models_ml.features import clustering_matrix

FEATURES_SQL = "select * from marts.user_features where has_personalization_consent"
AFFINITY_SQL = """
    select a.person_id, a.category, a.affinity
    from marts.user_category_affinity as a
    inner join marts.user_features as f using (person_id)
    where f.has_personalization_consent
"""


@multi_asset(
    specs=[
        AssetSpec(
            AssetKey(["ml", "user_segments"]),
            deps=[
                AssetKey(["marts", "user_features"]),
                AssetKey(["marts", "user_category_affinity"]),
            ],
            description="Cluster segment per consenting person (segment_type = cluster).",
            group_name="segments",
            kinds={"python", "scikit-learn"},
            owners=["team:data-science"],
        ),
        AssetSpec(
            AssetKey(["ml", "segment_quality"]),
            deps=[AssetKey(["marts", "user_features"])],
            description="Per run and k tried: silhouette, Davies-Bouldin, chosen k.",
            group_name="segments",
            kinds={"python", "scikit-learn"},
            owners=["team:data-science"],
        ),
    ],
    name="cluster_segments",
)
def cluster_segments_asset(context: AssetExecutionContext, warehouse: WarehouseResource):
    settings = load_tunables().clustering
    with warehouse.connect() as con:
        features = read_frame(con, FEATURES_SQL)
        affinity = read_frame(con, AFFINITY_SQL)
        matrix = clustering_matrix(features, affinity)
        context.log.info(f"clustering {matrix.shape[0]} people on {matrix.shape[1]} features")
        segmenter = KMeansSegmenter(
            k_min=settings["k_min"], k_max=settings["k_max"], random_state=settings["random_state"]
        ).fit(matrix)
        segments = cluster_segments(matrix, segmenter)
        quality = segmenter.quality_.copy()
        quality.insert(0, "run_at", pd.Timestamp(datetime.now(UTC).replace(tzinfo=None)))
        write_frame(con, "ml.user_segments", segments)
        write_frame(con, "ml.segment_quality", quality)
    context.log.info(f"chosen k={segmenter.k_}: {segmenter.cluster_names_}")
    yield MaterializeResult(
        asset_key=AssetKey(["ml", "user_segments"]),
        metadata={
            "rows": len(segments),
            "k": int(segmenter.k_),
            "clusters": markdown_table(segmenter.cluster_profiles_),
        },
    )
    chosen = quality[quality["is_chosen"]]
    yield MaterializeResult(
        asset_key=AssetKey(["ml", "segment_quality"]),
        metadata={
            "k": int(segmenter.k_),
            "silhouette": float(chosen["silhouette"].iloc[0]) if len(chosen) else float("nan"),
            "quality_by_k": markdown_table(quality),
        },
    )
