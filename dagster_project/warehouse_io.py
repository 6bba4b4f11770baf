"""Moving frames between DuckDB and Python assets (through Arrow, never row by row)."""

from __future__ import annotations

import duckdb
import pandas as pd


def read_frame(
    con: duckdb.DuckDBPyConnection, sql: str, params: dict | None = None
) -> pd.DataFrame:
    return con.sql(sql, params=params or {}).to_arrow_table().to_pandas()


def write_frame(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> int:
    """Replace `schema.table` with `frame` (one transaction); return the row count."""
    schema = table.split(".")[0]
    con.execute(f"create schema if not exists {schema}")
    con.register("_pz_frame_in", frame)
    try:
        con.execute(f"create or replace table {table} as select * from _pz_frame_in")
    finally:
        con.unregister("_pz_frame_in")
    return len(frame)
