"""Encryption at rest: the warehouse and PII zone written with a key are unreadable without it."""

from __future__ import annotations

import duckdb
import pytest

from dagster_project.encryption import STORAGE_VERSION, EncryptionError
from dagster_project.resources import open_warehouse
from dagster_project.settings import Settings

SECRET_MARKER = "marker-7f3a9c-plaintext"


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path)


def write_marker(settings: Settings) -> None:
    con = open_warehouse(settings, with_pii_zone=True)
    con.execute(f"create table warehouse.main.t as select '{SECRET_MARKER}' as v from range(1000)")
    con.execute(f"create table pii.main.t as select '{SECRET_MARKER}' as v from range(1000)")
    con.execute("checkpoint warehouse; checkpoint pii")
    con.close()


def test_encrypted_files_hold_no_plaintext_and_need_the_key(settings, monkeypatch):
    monkeypatch.setenv("PZ_ENCRYPTION_KEY", "correct horse battery staple")
    write_marker(settings)
    for path in (settings.warehouse_path, settings.pii_zone_path):
        assert SECRET_MARKER.encode() not in path.read_bytes()
        with pytest.raises(duckdb.Error, match="without a key"):
            duckdb.connect(str(path))

    con = open_warehouse(settings, with_pii_zone=True)
    assert con.execute("select count(*) from t").fetchall() == [(1000,)]
    con.close()

    monkeypatch.setenv("PZ_ENCRYPTION_KEY", "wrong key")
    with pytest.raises(EncryptionError, match="not the key"):
        open_warehouse(settings)
    monkeypatch.delenv("PZ_ENCRYPTION_KEY")
    with pytest.raises(EncryptionError, match="is encrypted: set PZ_ENCRYPTION_KEY"):
        open_warehouse(settings)


def test_without_a_key_the_files_are_plain_duckdb(settings, monkeypatch):
    monkeypatch.delenv("PZ_ENCRYPTION_KEY", raising=False)
    write_marker(settings)
    assert SECRET_MARKER.encode() in settings.warehouse_path.read_bytes()
    assert duckdb.connect(str(settings.warehouse_path)).execute(
        "select count(*) from t"
    ).fetchall() == [(1000,)]


def storage_version(path) -> str:
    with duckdb.connect() as con:
        con.execute(f"attach '{path}' as f (read_only)")
        tags = con.execute("select tags from duckdb_databases() where database_name = 'f'")
        return tags.fetchall()[0][0]["storage_version"]


@pytest.mark.parametrize("key", [None, "correct horse battery staple"])
def test_files_are_written_in_the_storage_format_of_duckdb_1_4(settings, monkeypatch, key):
    if key:
        monkeypatch.setenv("PZ_ENCRYPTION_KEY", key)
    else:
        monkeypatch.delenv("PZ_ENCRYPTION_KEY", raising=False)
    write_marker(settings)
    if key:  # an encrypted file's header is readable without the key
        monkeypatch.setenv("PZ_ENCRYPTION_KEY", key)
        con = open_warehouse(settings, with_pii_zone=True)
        versions = [
            row[0]["storage_version"]
            for row in con.execute(
                "select tags from duckdb_databases() where database_name in ('warehouse', 'pii')"
            ).fetchall()
        ]
        con.close()
    else:
        versions = [storage_version(p) for p in (settings.warehouse_path, settings.pii_zone_path)]
    assert versions == [f"{STORAGE_VERSION}+"] * 2


def test_a_warehouse_in_the_older_format_is_converted_and_keeps_its_rows(settings, monkeypatch):
    monkeypatch.delenv("PZ_ENCRYPTION_KEY", raising=False)
    settings.warehouse_dir.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(settings.warehouse_path)) as old:  # DuckDB's default: 1.0 format
        old.execute("create table t as select range as v from range(1000)")
    assert storage_version(settings.warehouse_path) == "v1.0.0+"
    con = open_warehouse(settings)
    con.execute("insert into t values (1000)")
    con.close()
    assert storage_version(settings.warehouse_path) == f"{STORAGE_VERSION}+"
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as reopened:
        assert reopened.execute("select count(*), sum(v) from t").fetchall() == [(1001, 500500)]
