"""Pure-Python machine learning for the personalization warehouse.

Everything here takes pandas DataFrames / numpy arrays and returns DataFrames or fitted
estimators. Nothing here imports dagster or duckdb, reads the environment or touches files:
the Dagster assets read the warehouse, call one function from this package and write the result.

Modules:
    columns          the shared column vocabulary (the same names as in SQL)
    identity         identity graph -> `person_id` per source identifier
    features         feature marts -> the numeric matrix the segmenter clusters
    clustering       behavioral segments with k chosen by silhouette, named from their features
    recommenders     popularity, SAR-style item co-occurrence and the fallback hybrid
    evaluation       ranking metrics (precision/recall/nDCG/MAP@k) and catalog coverage
"""
