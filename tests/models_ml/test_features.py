import math

import numpy as np
import pandas as pd

from models_ml.features import clustering_matrix

FEATURES = pd.DataFrame(
    {
        "person_id": ["p1", "p2", "p3"],
        "recency_days": [2.0, np.nan, 10.0],
        "frequency": [3, 0, 1],
        "monetary": [120.0, 0.0, -5.0],
        "n_events": [40, 0, 7],
        "share_device_mobile": [0.5, 0.0, 1.0],
        "age": [30.0, np.nan, 50.0],
        "has_personalization_consent": [True, True, True],
    }
)
AFFINITY = pd.DataFrame(
    {
        "person_id": ["p1", "p1", "p3", "p3"],
        "category": ["Electronics", "home garden", "electronics", None],
        "affinity": [0.75, 0.25, 1.0, 0.5],
    }
)


def test_clustering_matrix_exact():
    expected = pd.DataFrame(
        {
            "recency_days": [2.0, 10.0, 10.0],
            "frequency": [math.log1p(3), 0.0, math.log1p(1)],
            "monetary": [math.log1p(120), 0.0, 0.0],
            "n_events": [math.log1p(40), 0.0, math.log1p(7)],
            "share_device_mobile": [0.5, 0.0, 1.0],
            "age": [30.0, np.nan, 50.0],
            "affinity_electronics": [0.75, 0.0, 1.0],
            "affinity_home_garden": [0.25, 0.0, 0.0],
        },
        index=pd.Index(["p1", "p2", "p3"], name="person_id"),
    )
    pd.testing.assert_frame_equal(clustering_matrix(FEATURES, AFFINITY), expected)


def test_without_affinity_and_with_person_index():
    matrix = clustering_matrix(FEATURES.set_index("person_id"))
    assert list(matrix.columns) == [
        "recency_days",
        "frequency",
        "monetary",
        "n_events",
        "share_device_mobile",
        "age",
    ]
    assert matrix.index.tolist() == ["p1", "p2", "p3"]
