"""Encryption at rest: the warehouse and PII zone written with a key are unreadable without it."""

from __future__ import annotations

import duckdb
import pytest

from dagster_project.encryption import EncryptionError
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
