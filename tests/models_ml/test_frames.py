import numpy as np
import pandas as pd
import pytest

from models_ml.frames import isin


@pytest.mark.parametrize("dtype", ["str", object])
@pytest.mark.parametrize(
    "values",
    [
        ["b", "d", "zz"],
        np.array(["b", "d"], dtype=object),
        pd.Series(["d", "b", "b"], dtype="str"),
        pd.Index(["b"]),
        {"b", "d"},
        [],
    ],
    ids=["list", "array", "arrow-series", "index", "set", "empty"],
)
def test_isin_agrees_with_pandas_on_text(dtype, values):
    column = pd.Series(["a", "b", None, "d", "b", "e"], dtype=dtype)
    expected = column.isin(list(values)).to_numpy() & column.notna().to_numpy()
    got = isin(column, list(values) if isinstance(values, set) else values)
    assert got.dtype == bool
    assert got.tolist() == expected.tolist()


def test_isin_on_numbers_and_a_missing_value_in_the_values():
    column = pd.Series([1, 2, 3, 4], dtype="int64")
    assert isin(column, [2, 4, None]).tolist() == [False, True, False, True]
    text = pd.Series(["x", None], dtype="str")
    assert isin(text, ["x", None]).tolist() == [True, False]
