"""Frame helpers that keep pandas' slow paths out of the hot loops."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def isin(column: pd.Series, values) -> np.ndarray:
    """`column.isin(values)` as a boolean array (a missing value is never in), by Arrow's hash
    lookup.

    pandas 3's `isin` on Arrow-backed text (what `read_frame` gives) turns each of `values`
    into an Arrow scalar in Python first: 1.36 s to look 2M ids up in 300k, against 0.07 s
    here; at L, the offline evaluation spent 4.3 s in it."""
    if not isinstance(values, (pd.Series, pd.Index, pd.api.extensions.ExtensionArray)):
        values = np.asarray(values, dtype=object)
    array = pa.array(column, from_pandas=True)
    value_set = pa.array(values, from_pandas=True)
    if not len(value_set) or value_set.null_count == len(value_set):
        return np.zeros(len(array), dtype=bool)
    if value_set.type != array.type:
        value_set = value_set.cast(array.type)  # e.g. text and large text
    found = pc.is_in(array, value_set=value_set, skip_nulls=True)
    return found.fill_null(False).to_numpy(zero_copy_only=False)
