"""Encryption at rest for the working warehouse and the PII zone (DuckDB's AES encryption).

With `PZ_ENCRYPTION_KEY` set, both files are created and opened with DuckDB's
`ATTACH ... (ENCRYPTION_KEY ...)`. DuckDB only writes encrypted files securely with its httpfs
extension loaded (OpenSSL crypto; without it, it refuses or needs the "unsafe" mbedtls mode,
which this project never uses). httpfs comes from the PyPI package `duckdb-ext-httpfs`, so no
extension download is needed. The same loading runs inside dbt through the dbt-duckdb plugin
`Plugin` below (`dbt_project/profiles.yml`, target `encrypted`).
"""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

import duckdb

from dagster_project.ingest.sql import quote_literal

KEY_VARIABLE = "PZ_ENCRYPTION_KEY"

# The storage format every DuckDB file of the pipeline is written in (warehouse, PII zone,
# published snapshot; an older file is converted when it is next opened for writing). DuckDB
# 1.4 writes new files in its 1.0 format unless told otherwise; 1.4's format compresses strings
# with one combined dictionary+FSST pass. At 1M people, a copy of the 17M enriched events
# (36 columns): 30 -> 25 s to write, 1,342 -> 1,049 MB, 3.3 -> 2.2 s to read back. An encrypted
# file is written in this format anyway. Readers need DuckDB 1.4 or newer.
STORAGE_VERSION = "v1.4.0"


class EncryptionError(RuntimeError):
    """The warehouse cannot be opened with the key given (or without one)."""


def encryption_key() -> str | None:
    return os.environ.get(KEY_VARIABLE) or None


def extension_directory() -> Path:
    """Where `duckdb-ext-httpfs` put its extension build (site-packages/duckdb_ext/extensions)."""
    return Path(sysconfig.get_paths()["purelib"]) / "duckdb_ext" / "extensions"


def load_crypto(con: duckdb.DuckDBPyConnection) -> None:
    """Load httpfs from the bundled build, so encrypted files use real (OpenSSL) crypto."""
    directory = extension_directory()
    if not directory.is_dir():
        raise EncryptionError(
            f"{KEY_VARIABLE} is set but the httpfs extension build is missing ({directory}); "
            "reinstall the environment from uv.lock (package duckdb-ext-httpfs)."
        )
    con.execute(f"set extension_directory = {quote_literal(str(directory))}")
    con.execute("set autoinstall_known_extensions = false")
    con.execute("load httpfs")


def attach(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    alias: str,
    key: str | None,
    *,
    read_only: bool = False,
) -> None:
    """ATTACH `path` as `alias`, encrypted when `key` is given; clear errors for wrong keys.

    A writable file is written in `STORAGE_VERSION`'s format."""
    options = []
    if key:
        options.append(f"encryption_key {quote_literal(key)}")
    if read_only:
        options.append("read_only")
    else:
        options.append(f"storage_version {quote_literal(STORAGE_VERSION)}")
    clause = f" ({', '.join(options)})" if options else ""
    try:
        con.execute(f"attach {quote_literal(str(path))} as {alias}{clause}")
    except duckdb.Error as error:
        text = str(error)
        if "without a key" in text:
            raise EncryptionError(
                f"{path} is encrypted: set {KEY_VARIABLE} to the key it was written with."
            ) from error
        if "Wrong encryption key" in text:
            raise EncryptionError(
                f"{path}: {KEY_VARIABLE} is not the key this file was written with."
            ) from error
        if key and ("not an encrypted" in text.lower() or "unencrypted" in text.lower()):
            raise EncryptionError(
                f"{path} is not encrypted but {KEY_VARIABLE} is set: encrypt it first with "
                "`python -m dagster_project.cli encrypt` or unset the key."
            ) from error
        raise


try:  # dbt-duckdb plugin: loads httpfs before dbt attaches the encrypted warehouse
    from dbt.adapters.duckdb.plugins import BasePlugin

    class Plugin(BasePlugin):
        def configure_connection(self, conn) -> None:
            load_crypto(conn)

except ImportError:  # dbt is not installed where this module is used without it
    pass
