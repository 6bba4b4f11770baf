"""Feature matrices for the ML steps, built from the feature marts.

`clustering_matrix` turns `marts.user_features` plus `marts.user_category_affinity` into the
numeric person x feature matrix `KMeansSegmenter` expects, keeping the feature names the
cluster namer understands (`share_<dimension>_<value>`, `affinity_<category>`, `monetary`,
`frequency`, `recency_days`, `n_*`, ...; see `models_ml.clustering`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models_ml.columns import AFFINITY, CATEGORY, HAS_PERSONALIZATION_CONSENT, PERSON_ID

AFFINITY_PREFIX = "affinity_"
# Counts and money are heavy-tailed: without log1p a handful of heavy buyers become clusters.
LOG_SCALED = ("frequency", "monetary")
LOG_SCALED_PREFIX = "n_"
# Columns of user_features that describe eligibility, not behavior.
NOT_FEATURES = (HAS_PERSONALIZATION_CONSENT,)


def clustering_matrix(
    features: pd.DataFrame,
    affinity: pd.DataFrame | None = None,
    *,
    col_person: str = PERSON_ID,
    col_category: str = CATEGORY,
    col_affinity: str = AFFINITY,
) -> pd.DataFrame:
    """Numeric clustering input indexed by person_id.

    - numeric and boolean columns of `features` (booleans as 0/1), except `NOT_FEATURES`;
    - `frequency`, `monetary` and `n_*` counts as log1p of their non-negative value;
    - `recency_days` missing (no events) as the largest recency seen: never active is at
      least as lapsed as anyone;
    - one `affinity_<category>` column per category of `affinity` (person_id, category,
      affinity), 0 where a person has none; categories slugged to lowercase `a-z0-9_`.
    Other missing values stay NaN (the segmenter imputes medians).
    """
    if col_person in features.columns:
        features = features.set_index(col_person)
    numeric = features.select_dtypes(include=["number", "bool"]).drop(
        columns=[c for c in NOT_FEATURES if c in features.columns]
    )
    matrix = numeric.astype(float)
    for column in matrix.columns:
        if column in LOG_SCALED or column.startswith(LOG_SCALED_PREFIX):
            matrix[column] = np.log1p(matrix[column].clip(lower=0))
    if "recency_days" in matrix.columns:
        matrix["recency_days"] = matrix["recency_days"].fillna(matrix["recency_days"].max())

    if affinity is not None:
        affinity = affinity.dropna(subset=[col_category])
    if affinity is not None and len(affinity):
        matrix = matrix.join(
            _affinity_columns(affinity, matrix.index, col_person, col_category, col_affinity)
        )
    matrix.index.name = col_person
    matrix.columns.name = None
    return matrix


def _affinity_columns(
    affinity: pd.DataFrame, people: pd.Index, col_person: str, col_category: str, col_affinity: str
) -> pd.DataFrame:
    """`affinity_<slug>` columns (sorted) over `people`: the affinities of a person's categories
    with that slug summed, 0 where none. Grouped by integer codes (millions of rows): the
    strings are hashed once, and each distinct category slugged once."""
    category = affinity[col_category].astype("category")
    slugs = (
        category.cat.categories.astype(str)
        .str.lower()
        .str.replace(r"[^a-z0-9]+", "_", regex=True)
        .str.strip("_")
    )
    columns = pd.Index(sorted(set(AFFINITY_PREFIX + slugs)))
    column = columns.get_indexer(AFFINITY_PREFIX + slugs)[category.cat.codes.to_numpy()]
    row = people.get_indexer(affinity[col_person])
    known = row >= 0  # people without features get no row
    sums = affinity.loc[known, col_affinity].groupby([row[known], column[known]]).sum()
    wide = np.zeros((len(people), len(columns)))
    wide[sums.index.get_level_values(0), sums.index.get_level_values(1)] = sums.to_numpy()
    return pd.DataFrame(wide, index=people, columns=columns)
