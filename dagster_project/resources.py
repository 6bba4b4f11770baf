"""Dagster resources: the DuckDB warehouse (with its PII zone) and the dbt CLI."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import duckdb
from dagster import ConfigurableResource

from dagster_project.encryption import attach, encryption_key, load_crypto
from dagster_project.ingest.sql import install_macros, quote_literal
from dagster_project.settings import Settings, duckdb_memory_limit


def open_warehouse(
    settings: Settings, *, with_pii_zone: bool = False, read_only: bool = False
) -> duckdb.DuckDBPyConnection:
    """Open the working warehouse (catalog `warehouse`) in UTC; optionally the PII zone (`pii`).

    Both files are encrypted at rest when `PZ_ENCRYPTION_KEY` is set (see encryption.py).
    """
    key = encryption_key()
    pii_key = settings.pii_key() if with_pii_zone else None  # fail before opening anything
    settings.warehouse_dir.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(":memory:")
    try:
        con.execute("set TimeZone = 'UTC'")
        con.execute(f"set memory_limit = {quote_literal(duckdb_memory_limit())}")
        con.execute(f"set temp_directory = {quote_literal(str(settings.spill_dir))}")
        if key:
            load_crypto(con)
        attach(con, settings.warehouse_path, "warehouse", key, read_only=read_only)
        con.execute("use warehouse")
        if pii_key is not None:
            attach(con, settings.pii_zone_path, "pii", key, read_only=read_only)
            install_macros(con, pii_key)
    except BaseException:
        con.close()
        raise
    return con


class WarehouseResource(ConfigurableResource):
    """The pipeline's DuckDB files under `data_dir` (default: `$PZ_DATA_DIR`, else `data`).

    Only the pipeline opens the working warehouse and the PII zone; SQL readers use the
    published snapshot, so they never hold a lock the nightly run needs.
    """

    data_dir: str = ""
    as_of: str = ""  # ISO-8601 UTC; empty = newest event in the data

    def settings(self) -> Settings:
        return Settings.from_env(data_dir=self.data_dir, as_of=self.as_of)

    @contextmanager
    def connect(self, *, with_pii_zone: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        con = open_warehouse(self.settings(), with_pii_zone=with_pii_zone)
        try:
            yield con
        finally:
            con.close()
