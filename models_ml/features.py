"""Feature matrices for the ML steps, built from the feature marts.

`clustering_matrix` turns `marts.user_features` plus `marts.user_category_affinity` into the
numeric person x feature matrix `KMeansSegmenter` expects, keeping the feature names the
cluster namer understands (`share_<dimension>_<value>`, `affinity_<category>`, `monetary`,
`frequency`, `recency_days`, `n_*`, ...; see `models_ml.clustering`).
"""

from __future__ import annotations

import re

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


def affinity_columns(categories: pd.Index) -> pd.Index:
    """The `affinity_<slug>` column of each category: lowercase, runs of other characters than
    `a-z0-9` as one `_`, stripped of `_` at the ends."""
    slugs = (
        pd.Index(categories)
        .astype(str)
        .str.lower()
        .str.replace(r"[^a-z0-9]+", "_", regex=True)
        .str.strip("_")
    )
    return AFFINITY_PREFIX + slugs


def _affinity_columns(
    affinity: pd.DataFrame, people: pd.Index, col_person: str, col_category: str, col_affinity: str
) -> pd.DataFrame:
    """`affinity_<slug>` columns (sorted) over `people`: the affinities of a person's categories
    with that slug summed, 0 where none. Grouped by integer codes (millions of rows): the
    strings are hashed once, and each distinct category slugged once."""
    category = affinity[col_category].astype("category")
    slugs = affinity_columns(category.cat.categories)
    columns = pd.Index(sorted(set(slugs)))
    column = columns.get_indexer(slugs)[category.cat.codes.to_numpy()]
    row = people.get_indexer(affinity[col_person])
    known = row >= 0  # people without features get no row
    sums = affinity.loc[known, col_affinity].groupby([row[known], column[known]]).sum()
    wide = np.zeros((len(people), len(columns)))
    wide[sums.index.get_level_values(0), sums.index.get_level_values(1)] = sums.to_numpy()
    return pd.DataFrame(wide, index=people, columns=columns)


# DuckDB types that read as numbers (booleans as 0/1).
_SQL_NUMERIC = re.compile(
    r"(BOOLEAN|TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|U(TINY|SMALL|BIG|HUGE)?INT(EGER)?"
    r"|FLOAT|REAL|DOUBLE|DECIMAL(\(.*\))?)",
    re.IGNORECASE,
)


def clustering_matrix_sql(
    feature_columns: list[tuple[str, str]],
    categories: list[str],
    *,
    people_sql: str,
    affinity_sql: str,
    col_person: str = PERSON_ID,
    col_category: str = CATEGORY,
    col_affinity: str = AFFINITY,
) -> str:
    """`clustering_matrix` as one DuckDB query, ordered by `col_person`: the same columns and
    values (up to float rounding), computed where the rows are instead of in pandas.

    Args:
        feature_columns: (name, DuckDB type) of the columns of `people_sql`'s rows, in order;
            the numeric and boolean ones (except `col_person` and `NOT_FEATURES`) are features.
        categories: the distinct non-null categories of `affinity_sql`'s rows.
        people_sql: the people (one row each, with the feature columns).
        affinity_sql: the people's (col_person, col_category, col_affinity) rows. A person not
            in `people_sql` is dropped by the final left join (filtering the affinities by the
            people first would read the people twice, and DuckDB would materialize them).
    """
    expressions = []
    for name, sql_type in feature_columns:
        if name == col_person or name in NOT_FEATURES or not _SQL_NUMERIC.fullmatch(sql_type):
            continue
        value = f"{_quoted(name)}::double"
        if name in LOG_SCALED or name.startswith(LOG_SCALED_PREFIX):
            # not greatest(): DuckDB's ignores a null, pandas' clip keeps it
            value = f"case when {value} < 0 then 0.0 else ln(1 + {value}) end"
        if name == "recency_days":
            value = f"coalesce({value}, max({value}) over ())"
        expressions.append(f"{value} as {_quoted(name)}")
    slugs = pd.Series(list(affinity_columns(pd.Index(categories))), index=categories, dtype=object)
    columns = sorted(set(slugs))
    pivot = "".join(
        f", sum(a.{col_affinity}::double) filter (where a.{col_category} in "
        f"({', '.join(_literal(c) for c in slugs.index[slugs == column])})) as {_quoted(column)}"
        for column in columns
    )
    filled = "".join(f", coalesce(affinity.{_quoted(c)}, 0.0) as {_quoted(c)}" for c in columns)
    return f"""
        with people as (
            select p.{col_person}{"".join(", " + e for e in expressions)}
            from ({people_sql}) as p
        ),
        affinity as (
            select a.{col_person}{pivot}
            from ({affinity_sql}) as a
            group by a.{col_person}
        )
        select people.*{filled}
        from people
        left join affinity using ({col_person})
        order by {col_person}
    """


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"
