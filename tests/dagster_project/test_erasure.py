"""Erasure through the real ingest: the whole person goes, and a later delivery stays out."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from dagster_project.ingest.erasure import enforce_erasures
from dagster_project.ingest.loader import ensure_tables, ingest_source
from dagster_project.ingest.sources import SOURCES
from dagster_project.ingest.sql import install_macros
from tests.conftest import TEST_PII_KEY

AT = datetime(2026, 11, 1)


@pytest.fixture
def con(tmp_path: Path):
    connection = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    connection.execute(f"attach '{tmp_path / 'pii.duckdb'}' as pii")
    install_macros(connection, TEST_PII_KEY.encode())
    ensure_tables(connection)
    yield connection
    connection.close()


def jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def ev(event_id, user=None, anon=None, session="s1", ts="2026-10-01T10:00:00Z"):
    return {
        "event_id": event_id,
        "event_type": "page_view",
        "timestamp": ts,
        "user_id": user,
        "anonymous_id": anon,
        "session_id": session,
    }


def load_all(con, raw: Path) -> None:
    for source in SOURCES:
        ingest_source(con, source, raw, AT, progress=lambda _: None)
        enforce_erasures(con, list(SOURCES) if source == "erasure" else [source], AT, source)


def everything(con) -> str:
    tables = con.execute(
        "select table_catalog || '.' || table_schema || '.' || table_name "
        "from information_schema.tables where table_catalog in ('warehouse', 'pii')"
    ).fetchall()
    return " ".join(str(con.execute(f"select * from {t}").fetchall()) for (t,) in tables)


def test_erasure_by_email_removes_the_whole_person_and_sticks(con, tmp_path):
    raw = tmp_path / "raw"
    jsonl(
        raw / "events" / "day1.jsonl",
        [
            ev("e1", anon="anon-1", session="s-anon"),  # anonymous browsing ...
            ev("e2", user="user-1", anon="anon-1", session="s-anon"),  # ... then login
            ev("e3", user="user-1", session="s-9"),
            ev("e4", user="user-2", session="s-2"),  # somebody else
        ],
    )
    (raw / "profiles").mkdir(parents=True)
    (raw / "profiles" / "crm.csv").write_text(
        "record_id,source_system,user_id,email,first_name\n"
        "A-1,crm_a,user-1,Erase.Me@Example.com,Erika\n"
        "B-7,crm_b,,erase.me@example.com,Erika\n"
        "A-2,crm_a,user-2,keep@example.com,Karl\n"
    )
    jsonl(
        raw / "context" / "ctx.jsonl",
        [
            {"session_id": "s-anon", "device_type": "mobile"},
            {"session_id": "s-2", "device_type": "desktop"},
        ],
    )
    jsonl(
        raw / "consent" / "c.jsonl",
        [
            {
                "user_id": "user-1",
                "purpose": "personalization",
                "granted": "true",
                "recorded_at": "2026-09-01T00:00:00Z",
            },
        ],
    )
    (raw / "erasure").mkdir(parents=True)
    (raw / "erasure" / "requests.csv").write_text(
        "email,requested_at\nERASE.ME@example.com,2026-10-05\n"
    )

    load_all(con, raw)

    assert con.execute("select event_id from raw.events").fetchall() == [("e4",)]
    assert con.execute("select record_id from raw.profiles").fetchall() == [("A-2",)]
    assert con.execute("select session_id from raw.context").fetchall() == [("s-2",)]
    for table in ("raw.consent", "raw.erasure"):
        assert con.execute(f"select count(*) from {table}").fetchall() == [(0,)], table
    assert con.execute("select first_name from pii.main.profiles").fetchall() == [("Karl",)]
    dump = everything(con)
    for trace in ("user-1", "anon-1", "A-1", "B-7", "Erika", "erase.me", "ERASE.ME"):
        assert trace not in dump, trace

    # A later delivery of the same person's rows is purged on arrival.
    jsonl(
        raw / "events" / "day2.jsonl",
        [
            ev("e5", user="user-1", session="s-10"),
            ev("e6", anon="anon-1", session="s-11"),
            ev("e7", user="user-2", session="s-12"),
        ],
    )
    load_all(con, raw)
    assert sorted(con.execute("select event_id from raw.events").fetchall()) == [("e4",), ("e7",)]
    log = con.execute("select sum(rows_removed) from audit.erasure_log").fetchall()[0][0]
    assert log >= 9
