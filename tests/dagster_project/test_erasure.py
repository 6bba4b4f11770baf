"""Erasure through the real ingest and identity steps: the whole person goes, and stays out.

- Ingest alone: a request purges what it names and what the raw data ties to it, and keeps the
  purged profile records (only) as PII-zone evidence for identity resolution.
- `erase_people`: a person resolved to hold an erased identifier is erased from raw tables, the
  PII zone and every derived table, and remembered by token.
- The whole chain on generated data: a record linked to the requested one only by Splink (same
  name, birth date and address; no shared email, phone or user id) is erased with it, and the
  same raw files loaded again (unchanged, then re-exported) never bring anyone back.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from dagster_project.ingest.erasure import (
    _checked_against_registry,
    drop_erased_people,
    enforce_erasures,
    ensure_erasure_tables,
    erase_people,
)
from dagster_project.ingest.loader import ensure_tables, ingest_source
from dagster_project.ingest.sources import SOURCES
from dagster_project.ingest.sql import install_macros
from tests.conftest import TEST_PII_KEY
from tests.dagster_project.pipeline_runs import run_until_profiles

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


def everything(con, catalogs=("warehouse", "pii"), skip=()) -> str:
    tables = con.execute(
        "select table_catalog || '.' || table_schema || '.' || table_name "
        "from information_schema.tables where table_catalog in "
        f"({', '.join(repr(c) for c in catalogs)})"
    ).fetchall()
    return " ".join(
        str(con.execute(f"select * from {t}").fetchall()) for (t,) in tables if t not in skip
    )


EVIDENCE = "pii.main.erasure_evidence"


def test_erasure_by_email_removes_the_whole_person_and_sticks(con, tmp_path):
    raw = tmp_path / "raw"
    jsonl(
        raw / "events" / "day1.jsonl",
        [
            ev("e1", anon="anon-1", session="s-anon"),  # anonymous browsing ...
            ev("e2", user="user-1", anon="anon-1", session="s-anon"),  # ... then login
            ev("e3", user="user-1", session="s-9"),
            ev("e4", user="user-2", session="s-2"),  # somebody else
            ev(None, user="user-1", session="s-9"),  # quarantined: no event_id
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
    # The quarantined row keeps its place (files reconcile) but not its content.
    assert con.execute("select line, raw_record from audit.quarantine").fetchall() == [(5, None)]
    # The purged records wait in the PII zone, for identity resolution to find the rest of
    # the person by them; nothing else holds a trace.
    assert sorted(
        con.execute(f"select record_id, user_id, first_name from {EVIDENCE}").fetchall()
    ) == [("A-1", "user-1", "Erika"), ("B-7", None, "Erika")]
    dump = everything(con, skip={EVIDENCE})
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
    details = " ".join(r[0] for r in con.execute("select detail from audit.erasure_log").fetchall())
    for trace in ("user-1", "anon-1", "A-1", "erase.me"):
        assert trace not in details, trace


def test_a_junk_email_on_an_erased_record_erases_nobody_else(con, tmp_path):
    raw = tmp_path / "raw"
    (raw / "profiles").mkdir(parents=True)
    (raw / "profiles" / "crm.csv").write_text(
        "record_id,source_system,user_id,email\n"
        "A-1,crm_a,user-1,test@example.com\n"
        "A-2,crm_a,user-2,test@example.com\n"
    )
    (raw / "erasure").mkdir(parents=True)
    (raw / "erasure" / "requests.csv").write_text("user_id,requested_at\nuser-1,2026-10-05\n")
    load_all(con, raw)
    assert con.execute("select record_id from raw.profiles").fetchall() == [("A-2",)]


def test_enforcement_checks_only_new_files_until_the_registry_grows(con, tmp_path):
    """Nightly runs reload nothing for most sources and one new file for events: enforcement
    checks only the new files' rows (no new file: skipped, no scan at all), unless the
    registry gained a token since that source last enforced; then every row is checked."""
    raw = tmp_path / "raw"
    jsonl(
        raw / "events" / "day1.jsonl",
        [ev("e1", user="user-1"), ev("e2", user="user-2", session="s2")],
    )
    (raw / "erasure").mkdir(parents=True)
    (raw / "erasure" / "requests.csv").write_text("user_id,requested_at\nuser-1,2026-10-05\n")
    load_all(con, raw)
    assert con.execute("select event_id from raw.events").fetchall() == [("e2",)]

    def enforce(day: int, new_files: list[str]):
        return enforce_erasures(
            con, ["events"], datetime(2026, 11, day), "events", new_files=new_files
        )

    def add_event(event_id: str, user: str, file: str) -> None:
        con.execute(
            "insert into raw.events (event_id, user_id, session_id, _file) values ($1, $2, $1, $3)",
            [event_id, user, file],
        )

    # The erasure source's step registered the request and purged every source with it, so
    # the next enforcement for events has nothing to check (it did, once, every night).
    assert enforce(2, []).skipped
    assert enforce(3, []).skipped
    # A new file is checked (the erased user's event in it goes) ...
    add_event("e3", "user-1", "events/day2.jsonl")
    outcome = enforce(4, ["events/day2.jsonl"])
    assert not outcome.skipped and outcome.rows_removed["raw.events"] == 1
    # ... and only the new file: a row elsewhere is taken as checked before (here planted).
    add_event("e4", "user-1", "events/day1.jsonl")
    assert enforce(5, ["events/day3.jsonl"]).rows_removed["raw.events"] == 0
    # Once the registry grows (as when the identity step erases a person), every row is.
    con.execute(
        "insert into audit.erasure_registry values "
        "(pz_hmac('user_id:user-3'), 'user_id', '2026-11-06'::timestamp)"
    )
    add_event("e5", "user-3", "events/day1.jsonl")
    outcome = enforce(7, [])
    assert not outcome.skipped and outcome.rows_removed["raw.events"] == 2  # e4 and e5
    assert con.execute("select event_id from raw.events").fetchall() == [("e2",)]
    assert enforce(8, []).skipped
    # Unknown new files (None) mean: check everything.
    assert not enforce_erasures(con, ["events"], datetime(2026, 11, 9), "events").skipped


def test_a_new_request_is_matched_in_plaintext_only_where_every_older_token_was_checked(
    con, tmp_path
):
    """A request's identifiers are known in plaintext while it is registered: a source whose
    rows were all checked against every older token is purged of them by value, without
    hashing its values. A source that loaded rows, or whose registry gained a token (the
    identity step's), since its last check is checked against every token, by hashing."""
    raw = tmp_path / "raw"
    jsonl(
        raw / "events" / "day1.jsonl",
        [ev("e1", user="user-1"), ev("e2", user="user-2", session="s2")],
    )
    jsonl(
        raw / "context" / "ctx.jsonl",
        [{"session_id": "s1", "device_type": "mobile"}, {"session_id": "s9", "device_type": "tv"}],
    )
    for source in ("events", "context"):
        ingest_source(con, source, raw, AT, progress=lambda _: None)
        enforce_erasures(con, [source], AT, source)
    # what the identity step does: a token without its plaintext, after the events' last check
    con.execute(
        "insert into audit.erasure_registry values "
        "(pz_hmac('user_id:user-2'), 'user_id', '2026-11-02'::timestamp)"
    )
    # context rows loaded after the context's last check, of an event erased before it
    con.execute(
        "insert into audit.erasure_registry values "
        "(pz_hmac('session_id:s9'), 'session_id', '2026-10-31'::timestamp)"
    )
    con.execute(
        "insert into raw.context (session_id, _file, _loaded_at) "
        "values ('s9', 'context/late.jsonl', '2026-11-02'::timestamp)"
    )
    (raw / "erasure").mkdir(parents=True)
    (raw / "erasure" / "requests.csv").write_text("user_id,requested_at\nuser-1,2026-11-02\n")
    at = datetime(2026, 11, 3)
    ingest_source(con, "erasure", raw, at, progress=lambda _: None)
    outcome = enforce_erasures(
        con, list(SOURCES), at, "erasure", new_files=["erasure/requests.csv"]
    )
    assert outcome.identifiers_registered == 3  # user-1, its event and session
    # user-1's event by value, user-2's by its token; the late context row (s9) by its token,
    # and s1 (user-1's session) by value
    assert con.execute("select count(*) from raw.events").fetchall() == [(0,)]
    assert con.execute("select count(*) from raw.context").fetchall() == [(0,)]
    # Both sources are now checked against every token: the next request goes by value.
    assert _checked_against_registry(con, "events") and _checked_against_registry(con, "context")
    con.execute(
        "insert into audit.erasure_registry values "
        "(pz_hmac('user_id:user-7'), 'user_id', '2026-11-04'::timestamp)"
    )
    assert not _checked_against_registry(con, "events")


def test_erase_people_removes_a_resolved_person_from_every_table(con, tmp_path):
    raw = tmp_path / "raw"
    jsonl(
        raw / "events" / "day1.jsonl",
        [ev("e1", user="user-9", anon="anon-9", session="s-9"), ev("e2", user="user-2")],
    )
    (raw / "profiles").mkdir(parents=True)
    (raw / "profiles" / "crm.csv").write_text(
        "record_id,source_system,user_id,email,phone,first_name\n"
        "C-9,crm_c,user-9,nine@example.org,0611223344,Nina\n"
        "A-2,crm_a,user-2,keep@example.com,,Karl\n"
    )
    jsonl(
        raw / "consent" / "c.jsonl",
        [
            {
                "email": "nine@example.org",
                "purpose": "marketing",
                "granted": "true",
                "recorded_at": "2026-09-01T00:00:00Z",
            }
        ],
    )
    load_all(con, raw)
    email, phone = con.execute(
        "select email_token, phone_token from raw.profiles where record_id = 'C-9'"
    ).fetchall()[0]
    # Derived tables as dbt and the ML steps leave them, and a registered identifier of the
    # person (say, a record purged at ingest): identity resolution puts both in one person.
    con.execute(
        """
        create schema intermediate; create schema snapshots; create schema ml;
        create table intermediate.int_identity_edges as
            select 'record_id|crm_c|C-9' as node_key_a, 'user_id||user-9' as node_key_b;
        create table snapshots.user_profiles_history as
            select 'p_nine' as person_id, 'user-9' as user_id, 1 as version
            union all select 'p_karl', 'user-2', 1;
        create table ml.user_segments as
            select 'p_nine' as person_id, 'vip' as segment_id
            union all select 'p_karl', 'vip';
        """
    )
    con.execute(
        "insert into audit.erasure_registry values (pz_hmac('record_id:crm_x:X-1'), 'x', $at)",
        {"at": AT},
    )
    resolved = pd.DataFrame(
        {
            "identifier_type": [
                "record_id",
                "record_id",
                "user_id",
                "anonymous_id",
                "email_token",
                "phone_token",
                "record_id",
                "user_id",
            ],
            "identifier": ["X-1", "C-9", "user-9", "anon-9", email, phone, "A-2", "user-2"],
            "source_system": ["crm_x", "crm_c", None, None, None, None, "crm_a", None],
            "person_id": ["p_nine"] * 6 + ["p_karl"] * 2,
        }
    )
    outcome = erase_people(con, resolved, AT, trigger="test")

    assert outcome.person_ids == {"p_nine"}
    assert outcome.identifiers_registered >= 7  # record, user, device, email, phone, event, ...
    assert con.execute("select event_id from raw.events").fetchall() == [("e2",)]
    assert con.execute("select record_id from raw.profiles").fetchall() == [("A-2",)]
    assert con.execute("select count(*) from raw.consent").fetchall() == [(0,)]
    assert con.execute("select first_name from pii.main.profiles").fetchall() == [("Karl",)]
    for table in ("snapshots.user_profiles_history", "ml.user_segments"):
        assert con.execute(f"select person_id from {table}").fetchall() == [("p_karl",)], table
    assert con.execute("select count(*) from intermediate.int_identity_edges").fetchall() == [(0,)]
    dump = everything(con)
    for trace in ("user-9", "anon-9", "C-9", "Nina", "nine@", "p_nine", email, phone):
        assert trace not in dump, trace


# ---------------------------------------------------------------------------------------------
# The whole chain on generated data, with a record linked only by Splink
# ---------------------------------------------------------------------------------------------

PROFILE_COLUMNS = (
    "record_id,source_system,user_id,email,phone,first_name,last_name,birth_date,gender,"
    "address,city,postcode,country,updated_at\n"
)
# ERA-1 (crm_a) is the record of the person whose email is requested. ERA-2 (crm_b, delivered
# with the request) is the same woman with another email and phone and no user id: only Splink
# (name, birth date, address) links it to ERA-1. ERA-3 shares ERA-2's phone. KEEP-1 is a
# namesake born another year, elsewhere.
CRM_A = (
    "ERA-1,crm_a,U-ERASED,ysolde.brannigan@example.net,+49 30 1234567,Ysolde,Brannigan-Okafor,"
    "1984-03-09,F,12 Lindenweg,Quedlinburg,06484,DE,2025-05-01T10:00:00Z\n"
    "KEEP-1,crm_a,,k.okafor@mail.example,,Karla,Brannigan-Okafor,1961-11-30,F,"
    "3 Hafenstrasse,Kiel,24103,DE,2025-07-01T10:00:00Z\n"
)
CRM_B = (
    "ERA-2,crm_b,,y.okafor84@mail.example,+49 170 7654321,Ysolde,Brannigan-Okafor,"
    "1984-03-09,F,12 Lindenweg,Quedlinburg,06484,DE,2025-06-01T10:00:00Z\n"
    "ERA-3,crm_b,,,+49 170 7654321,Y.,Brannigan-Okafor,,,,,,DE,2025-07-01T10:00:00Z\n"
)
DAY = "2026-10-30"  # inside the generated window
TRACES = (
    "U-ERASED",
    "ERA-1",
    "ERA-2",
    "ERA-3",
    "anon-erased",
    "ev-erased",
    "sess-erased",
    "Ysolde",
    "ysolde.brannigan",
    "y.okafor84",
    "170 7654321",
    "Lindenweg",
)


def _open(data_dir: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(f"attach '{data_dir / 'warehouse/warehouse.duckdb'}' as warehouse (read_only)")
    con.execute(f"attach '{data_dir / 'warehouse/pii.duckdb'}' as pii (read_only)")
    con.execute("use warehouse")
    install_macros(con, TEST_PII_KEY.encode())
    return con


def _person_of(con, identifier: str) -> set[str]:
    return {
        r[0]
        for r in con.execute(
            "select person_id from marts.identity_map where identifier = $i", {"i": identifier}
        ).fetchall()
    }


def _assert_erased(data_dir: Path, person_id: str) -> None:
    con = _open(data_dir)
    try:
        tokens = con.execute(
            "select pz_token('email', 'y.okafor84@mail.example'), "
            "pz_token('phone', '+49 170 7654321')"
        ).fetchall()[0]
        dump = everything(con)
        for trace in (*TRACES, person_id, *tokens):
            assert trace not in dump, trace
        # ... while the namesake and everyone else are still there
        assert _person_of(con, "KEEP-1")
        assert con.execute("select count(*) from marts.identity_map").fetchall()[0][0] > 50
        # the Splink-only record is remembered by token, not by value
        registered = {
            r[0] for r in con.execute("select subject_token from audit.erasure_registry").fetchall()
        }
        expected = con.execute(
            "select pz_hmac('record_id:crm_b:ERA-2'), pz_hmac('record_id:crm_b:ERA-3'), "
            "pz_hmac('email_token:' || pz_token('email', 'y.okafor84@mail.example'))"
        ).fetchall()[0]
        assert set(expected) <= registered
    finally:
        con.close()


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Generated data with ERA-1 and its user's events, run once: the person exists, with
    history and ML rows. Then the request arrives, with a CRM file holding ERA-2 and ERA-3 and
    a consent by ERA-2's email (so the previous run's identity map knows nothing of them)."""
    from dagster_project.cli import prepare_dbt_manifest
    from dagster_project.sample_data import generate

    prepare_dbt_manifest()
    data_dir = tmp_path_factory.mktemp("erasure_chain")
    generate(data_dir, users=60, items=30, days=3, seed=5)
    raw = data_dir / "raw"
    for request in (raw / "erasure").glob("*"):
        request.unlink()  # the generator's own requests: this test plants its own
    (raw / "profiles" / "crm_a_planted.csv").write_text(PROFILE_COLUMNS + CRM_A)
    jsonl(
        raw / "events" / "planted.jsonl",
        [
            ev("ev-erased-1", anon="anon-erased", session="sess-erased", ts=f"{DAY}T10:00:00Z"),
            ev("ev-erased-2", "U-ERASED", "anon-erased", "sess-erased", f"{DAY}T10:05:00Z"),
        ],
    )
    run_until_profiles(data_dir)
    con = _open(data_dir)
    try:
        person = _person_of(con, "ERA-1")
        before = {
            "user": _person_of(con, "U-ERASED"),
            "device": _person_of(con, "anon-erased"),
            "history": con.execute(
                "select count(*) from snapshots.user_profiles_history where person_id = $p",
                {"p": next(iter(person), None)},
            ).fetchall()[0][0],
        }
    finally:
        con.close()
    (raw / "profiles" / "crm_b_planted.csv").write_text(PROFILE_COLUMNS + CRM_B)
    jsonl(
        raw / "consent" / "planted.jsonl",
        [
            {
                "email": "y.okafor84@mail.example",
                "purpose": "marketing",
                "granted": "true",
                "recorded_at": "2026-09-01T00:00:00Z",
            }
        ],
    )
    (raw / "erasure" / "request.csv").write_text(
        "email,requested_at\nYsolde.Brannigan@example.net,2026-10-31T09:00:00Z\n"
    )
    return data_dir, person, before


def _log(data_dir: Path, trigger: str) -> list[str]:
    con = _open(data_dir)
    try:
        return [
            r[0]
            for r in con.execute(
                "select detail from audit.erasure_log where trigger_source = $t "
                "order by processed_at",
                {"t": trigger},
            ).fetchall()
        ]
    finally:
        con.close()


def test_a_splink_only_linked_record_is_erased_with_the_person(planted):
    data_dir, person, before = planted
    assert len(person) == 1
    assert before["user"] == before["device"] == person
    assert before["history"] >= 1

    run_until_profiles(data_dir)  # the request arrives, with ERA-2 and ERA-3
    _assert_erased(data_dir, next(iter(person)))
    # Ingest purged ERA-1 (it carries the email); identity resolution found ERA-2 by Splink,
    # ERA-3 by ERA-2's phone, and the consent by ERA-2's email.
    assert "raw.profiles=1" in _log(data_dir, "raw/erasure")[-1]
    evidence_log = _log(data_dir, "identity/evidence")[-1]
    assert "people=" in evidence_log
    assert "raw.profiles=2" in evidence_log and "raw.consent=1" in evidence_log
    con = _open(data_dir)
    try:
        assert con.execute(f"select count(*) from {EVIDENCE}").fetchall() == [(0,)]
    finally:
        con.close()


def test_the_same_raw_files_loaded_again_bring_nobody_back(planted):
    data_dir, person, _ = planted
    run_until_profiles(data_dir)  # the same files, unchanged: nothing is loaded again
    _assert_erased(data_dir, next(iter(person)))

    # Both CRMs export their file again (one more customer each) and the tracker re-sends its
    # events: every row is loaded again, the erased person's included, and purged on arrival.
    raw = data_dir / "raw"
    (raw / "profiles" / "crm_a_planted.csv").write_text(
        PROFILE_COLUMNS + CRM_A + "NEW-1,crm_a,,new@mail.example,,Nora,Neu,1999-01-01,F,"
        "1 Neuweg,Bonn,53111,DE,2025-08-01T10:00:00Z\n"
    )
    (raw / "profiles" / "crm_b_planted.csv").write_text(
        PROFILE_COLUMNS + CRM_B + "NEW-2,crm_b,,,,Olaf,Alt,1970-01-01,M,"
        "2 Altweg,Bonn,53111,DE,2025-08-01T10:00:00Z\n"
    )
    events_file = raw / "events" / "planted.jsonl"
    new_event = ev("ev-new", user="U-NEW", session="sess-new", ts=f"{DAY}T11:00:00Z")
    events_file.write_text(events_file.read_text() + json.dumps(new_event) + "\n")
    run_until_profiles(data_dir)
    _assert_erased(data_dir, next(iter(person)))
    con = _open(data_dir)
    try:
        for identifier in ("NEW-1", "NEW-2", "U-NEW"):
            assert _person_of(con, identifier), identifier
    finally:
        con.close()


def test_the_identity_check_hashes_only_the_identifiers_it_has_not_checked(con):
    """drop_erased_people keeps which identifiers passed against which registry: a night
    hashes only the new ones; a registered one among them, or a changed registry, checks (and
    erases) every identifier of the people concerned."""
    con.execute(
        "create schema ml; create table ml.identity_assignments (identifier_type varchar, "
        "identifier varchar, source_system varchar, person_id varchar, method varchar, "
        "match_probability double)"
    )

    def assign(*rows):
        for row in rows:
            con.execute("insert into ml.identity_assignments values (?, ?, ?, ?, null, null)", row)

    def people() -> set[str]:
        rows = con.execute("select distinct person_id from ml.identity_assignments").fetchall()
        return {row[0] for row in rows}

    checked = ["user_id:user-a", "anonymous_id:anon-a", "user_id:user-b", "record_id:crm:R-1"]
    ensure_erasure_tables(con)
    # registered before anyone holds it (an out-of-order run may assign it later)
    (late,) = con.execute("select pz_hmac('anonymous_id:anon-late')").fetchall()[0]
    con.execute(
        "insert into audit.erasure_registry values ($t, 'anonymous_id', $at)", {"t": late, "at": AT}
    )
    assign(
        ("user_id", "user-a", None, "p_a"),
        ("anonymous_id", "anon-a", None, "p_a"),
        ("user_id", "user-b", None, "p_b"),
        ("record_id", "R-1", "crm", "p_b"),
    )
    assert drop_erased_people(con, AT).people_erased == 0
    assert people() == {"p_a", "p_b"}

    # Next night: hashing an identifier checked above fails the query.
    listed = ", ".join(f"'{value}'" for value in checked)
    con.execute(
        f"create or replace temp macro pz_hmac(m) as case when m in ({listed}) "
        f"then error('hashed again: ' || m) when m = 'anonymous_id:anon-late' then '{late}' "
        "else 'unregistered:' || m end"
    )
    assign(("anonymous_id", "anon-a2", None, "p_a"))
    assert drop_erased_people(con, AT).people_erased == 0
    assert people() == {"p_a", "p_b"}

    install_macros(con, TEST_PII_KEY.encode())
    # a new identifier that is registered: its person goes, with the identifiers checked before
    assign(("anonymous_id", "anon-late", None, "p_b"))
    assert drop_erased_people(con, AT).person_ids == {"p_b"}
    assert people() == {"p_a"}
    assert con.execute("select count(*) from ml.identity_assignments").fetchall() == [(3,)]

    # the registry changed (user-a's request): identifiers checked before are checked again
    con.execute(
        "insert into audit.erasure_registry values (pz_hmac('user_id:user-a'), 'user_id', $at)",
        {"at": AT},
    )
    assert drop_erased_people(con, AT).person_ids == {"p_a"}
    assert people() == set()
    hashes = "select count(*) from audit.erasure_checked_identifiers where h = hash('user_id', ?)"
    assert con.execute(hashes, ["user-a"]).fetchall() == [(0,)]

    # any erasure that registers a token forgets every checked identifier (hashes of people)
    assign(("user_id", "user-c", None, "p_c"), ("anonymous_id", "anon-c", None, "p_c"))
    assert drop_erased_people(con, AT).people_erased == 0
    assert con.execute(hashes, ["user-c"]).fetchall() == [(1,)]
    con.execute(
        "insert into audit.erasure_registry values (pz_hmac('user_id:user-c'), 'user_id', $at)",
        {"at": AT},
    )
    assert erase_people(con, "ml.identity_assignments", AT, trigger="test").people_erased == 1
    tables = "select count(*) from duckdb_tables() where table_name like 'erasure_checked%'"
    assert con.execute(tables).fetchall() == [(0,)]
