"""Ingest through the real loader on real DuckDB files: manifest, quarantine, tokens, UTC."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import shutil
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from dagster_project.ingest.loader import _tokens_per_value, ensure_tables, ingest_source
from dagster_project.ingest.sources import SOURCES
from dagster_project.ingest.sql import install_macros
from tests.conftest import TEST_PII_KEY

LOADED_AT = datetime(2026, 11, 1, 3, 0)


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    raw = tmp_path / "raw"
    for source in ("events", "profiles", "catalog", "consent", "erasure", "context"):
        (raw / source).mkdir(parents=True)
    return raw


@pytest.fixture
def con(tmp_path: Path):
    connection = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    connection.execute("set TimeZone = 'UTC'")
    connection.execute(f"attach '{tmp_path / 'pii.duckdb'}' as pii")
    install_macros(connection, TEST_PII_KEY.encode())
    ensure_tables(connection)
    yield connection
    connection.close()


def rows(con, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()


def write_jsonl(path: Path, records: list) -> None:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n")


def event(event_id: str, **extra) -> dict:
    record = {
        "event_id": event_id,
        "event_type": "view_item",
        "timestamp": "2026-10-01T10:00:00+02:00",
        "user_id": "u1",
        "item_id": "i1",
    }
    record.update(extra)
    return record


def manifest(con) -> dict[str, tuple]:
    return {
        r[0]: r[1:]
        for r in rows(
            con,
            "select file, status, rows_read, rows_loaded, rows_quarantined "
            "from audit.load_manifest "
            "where is_current",
        )
    }


def test_every_file_reconciles_and_bad_rows_carry_file_line_reason(con, landing):
    write_jsonl(
        landing / "events" / "a.jsonl",
        [
            event("e1"),
            "{not json",
            event("e2", timestamp="not-a-time"),
            event("", user_id="u2"),
            event("e3", user_id=None, anonymous_id=None),
            "",
            event("e4"),
        ],
    )
    results = ingest_source(con, "events", landing, LOADED_AT)
    assert [(r.rows_read, r.rows_loaded, r.rows_quarantined) for r in results] == [(6, 2, 4)]
    assert rows(con, "select event_id from raw.events order by 1") == [("e1",), ("e4",)]
    assert rows(con, "select line, reason from audit.quarantine order by line") == [
        (2, "malformed JSON"),
        (3, "unparseable timestamp: not-a-time"),
        (4, "missing event_id"),
        (5, "missing user_id and anonymous_id"),
    ]


def test_a_line_with_duplicate_keys_is_quarantined_among_lines_that_share_their_keys(con, landing):
    # Lines with the file's common key lists skip the per-line check; this one must not.
    duplicated = json.dumps(event("e-dup"))[:-1] + ', "event_id": "e-other"}'
    write_jsonl(
        landing / "events" / "a.jsonl",
        [event(f"e{i}") for i in range(200)]
        + [duplicated, event("e-rare", session_id="s1", referrer="r")],
    )
    results = ingest_source(con, "events", landing, LOADED_AT)
    assert [(r.rows_read, r.rows_loaded, r.rows_quarantined) for r in results] == [(202, 201, 1)]
    assert rows(con, "select line, reason, raw_record from audit.quarantine") == [
        (201, "JSON object has duplicate keys", duplicated)
    ]


def test_timestamps_in_every_accepted_form_become_the_same_utc_instant(con, landing):
    instant = "2026-10-01 08:00:00"
    write_jsonl(
        landing / "events" / "forms.jsonl",
        [
            event("iso", timestamp="2026-10-01T10:00:00+02:00"),
            event("zulu", timestamp="2026-10-01T08:00:00Z"),
            event("epoch_s", timestamp="1790841600"),
            event("epoch_ms", timestamp="1790841600000"),
            event("naive_tz", timestamp="2026-10-01 04:00:00", timezone="America/New_York"),
            event("naive_utc", timestamp="2026-10-01 08:00:00"),
        ],
    )
    ingest_source(con, "events", landing, LOADED_AT)
    got = rows(con, "select distinct strftime(_occurred_at, '%Y-%m-%d %H:%M:%S') from raw.events")
    assert got == [(instant,)]
    assert rows(con, "select count(*) from raw.events") == [(6,)]


def test_local_times_convert_as_the_zone_rules_say_around_every_change_of_offset(con, landing):
    """Named-zone times take their hour's UTC offset from a table of the file's (zone, hour)
    pairs, unless the offset changes within that hour: every 7 minutes over the days the
    offsets change (skipped and repeated hours, a 30-minute change, a 45-minute zone), each
    instant is the one DuckDB's zone rules give for the value alone."""
    zones_days = {
        "Europe/Berlin": ["2026-03-29", "2026-10-25"],
        "America/New_York": ["2026-03-08", "2026-11-01"],
        "Australia/Lord_Howe": ["2026-04-05", "2026-10-04"],
        "Asia/Kathmandu": ["2026-06-01"],
    }
    reference = duckdb.connect()
    reference.execute("set TimeZone = 'UTC'")
    stamps = reference.execute(
        "select strftime(unnest(generate_series(timestamp '2026-01-01', timestamp "
        "'2026-01-02' - interval 1 minute, interval 7 minute)) + interval 13 second, '%H:%M:%S')"
    ).fetchall()
    records = [
        event(f"{zone}|{day} {clock}", timestamp=f"{day} {clock}", timezone=zone)
        for zone, days in zones_days.items()
        for day in days
        for (clock,) in stamps
    ]
    write_jsonl(landing / "events" / "zones.jsonl", records)
    ingest_source(con, "events", landing, LOADED_AT)
    got = dict(rows(con, "select event_id, _occurred_at from raw.events"))
    assert len(got) == len(records)
    reference.execute("create table given (event_id varchar, ts varchar, tz varchar)")
    reference.executemany(
        "insert into given values (?, ?, ?)",
        [(r["event_id"], r["timestamp"], r["timezone"]) for r in records],
    )
    expected = dict(
        rows(
            reference,
            "select event_id, timezone('UTC', timezone(tz, ts::timestamp)) from given",
        )
    )
    assert got == expected
    # both offsets of each zone that changes are in there
    offsets = {
        (r["timezone"], got[r["event_id"]] - datetime.fromisoformat(r["timestamp"]))
        for r in records
    }
    by_zone = {zone: sum(1 for z, _ in offsets if z == zone) for zone in zones_days}
    assert by_zone == {
        "Europe/Berlin": 2,
        "America/New_York": 2,
        "Australia/Lord_Howe": 2,
        "Asia/Kathmandu": 1,
    }


def test_unknown_timezone_is_quarantined_with_reason(con, landing):
    write_jsonl(
        landing / "events" / "tz.jsonl",
        [event("e1", timestamp="2026-10-01 10:00:00", timezone="Mars/Olympus")],
    )
    ingest_source(con, "events", landing, LOADED_AT)
    assert rows(con, "select reason from audit.quarantine") == [("unknown timezone: Mars/Olympus",)]


def test_a_zone_is_only_used_where_the_time_is_local_and_only_a_needed_one_must_be_known(
    con, landing
):
    """A value with its own offset, or an epoch, ignores the zone column (even an unknown
    zone); a local time converts by its zone, and quarantines when that zone is unknown."""
    write_jsonl(
        landing / "events" / "tz.jsonl",
        [
            event("offset", timestamp="2026-10-01T10:00:00+02:00", timezone="Mars/Olympus"),
            event("epoch", timestamp="1790000000", timezone="Mars/Olympus"),
            event("local", timestamp="2026-10-01 10:00:00", timezone="Europe/Berlin"),
            event("local_t", timestamp="2026-10-01T10:00:00.5", timezone="Asia/Kolkata"),
            event("blank_zone", timestamp="2026-10-01 10:00:00", timezone="  "),
            event("unknown", timestamp="2026-10-01 10:00:00", timezone="Mars/Olympus"),
            event("junk", timestamp="soon", timezone="Europe/Berlin"),
            event("junk_unknown", timestamp="soon", timezone="Mars/Olympus"),
        ],
    )
    ingest_source(con, "events", landing, LOADED_AT)
    assert rows(con, "select event_id, _occurred_at from raw.events order by _line") == [
        ("offset", datetime(2026, 10, 1, 8, 0)),
        ("epoch", datetime(2026, 9, 21, 14, 13, 20)),
        ("local", datetime(2026, 10, 1, 8, 0)),
        ("local_t", datetime(2026, 10, 1, 4, 30, 0, 500000)),
        ("blank_zone", datetime(2026, 10, 1, 10, 0)),
    ]
    assert rows(con, "select line, reason from audit.quarantine order by line") == [
        (6, "unknown timezone: Mars/Olympus"),
        (7, "unparseable timestamp: soon"),
        (8, "unknown timezone: Mars/Olympus"),
    ]


def test_same_content_twice_and_rerun_never_double_count(con, landing):
    write_jsonl(landing / "events" / "a.jsonl", [event("e1"), event("e2")])
    shutil.copy(landing / "events" / "a.jsonl", landing / "events" / "copy_of_a.jsonl")
    ingest_source(con, "events", landing, LOADED_AT)
    ingest_source(con, "events", landing, LOADED_AT)
    assert rows(con, "select count(*) from raw.events") == [(2,)]
    assert manifest(con)["events/copy_of_a.jsonl"][0] == "duplicate_content"
    assert rows(con, "select count(*) from audit.load_manifest") == [(2,)]


def test_changed_file_under_same_name_replaces_its_rows(con, landing):
    path = landing / "events" / "daily.jsonl"
    write_jsonl(path, [event("e1"), event("e2"), "{bad"])
    ingest_source(con, "events", landing, LOADED_AT)
    write_jsonl(path, [event("e1"), event("e3")])
    ingest_source(con, "events", landing, LOADED_AT)
    assert rows(con, "select event_id from raw.events order by 1") == [("e1",), ("e3",)]
    assert rows(con, "select count(*) from audit.quarantine") == [(0,)]
    assert manifest(con)["events/daily.jsonl"] == ("replaced", 2, 2, 0)


def test_csv_with_extra_hostile_column_wrong_field_count_and_gzip(con, landing):
    evil = 'x"; drop table raw.events; --'
    header = f'event_id,event_type,timestamp,user_id,"{evil.replace(chr(34), chr(34) * 2)}"'
    body = "\n".join(
        [
            header,
            "e1,purchase,2026-10-01T10:00:00Z,u1,boom",
            "e2,purchase,2026-10-01T10:00:00Z,u1,x,y",
        ]
    )
    with gzip.open(landing / "events" / "web.csv.gz", "wt") as handle:
        handle.write(body + "\n")
    ingest_source(con, "events", landing, LOADED_AT)
    assert rows(con, "select event_id, extra from raw.events") == [
        ("e1", json.dumps({evil: "boom"}, separators=(",", ":")))
    ]
    reason = rows(con, "select line, reason from audit.quarantine")
    assert reason[0][0] == 3 and "TOO MANY COLUMNS" in reason[0][1]


def test_a_rejected_csv_line_and_a_bad_row_numbered_alike_each_keep_their_record(con, landing):
    # The reader's rejected line is numbered as a file line (header included), a data row by
    # its data row: the line after the rejected one is data row 3 and file line 4, so both bad
    # rows carry line 3. Each must reach the quarantine once, with its own raw record.
    body = "\n".join(
        [
            "event_id,event_type,timestamp,user_id",
            "e1,purchase,2026-10-01T10:00:00Z,u1",
            "e2,purchase,2026-10-01T10:00:00Z,u1,too-many",
            ",purchase,2026-10-01T10:00:00Z,u1",
            "e4,purchase,2026-10-01T10:00:00Z,u1",
        ]
    )
    (landing / "events" / "store.csv").write_text(body + "\n")
    results = ingest_source(con, "events", landing, LOADED_AT)
    assert [(r.rows_read, r.rows_loaded, r.rows_quarantined) for r in results] == [(4, 2, 2)]
    assert rows(con, "select line, reason, raw_record from audit.quarantine order by reason") == [
        (
            3,
            "TOO MANY COLUMNS: Expected Number of Columns: 4 Found: 5",
            "e2,purchase,2026-10-01T10:00:00Z,u1,too-many",
        ),
        (
            3,
            "missing event_id",
            '{"event_id":null,"event_type":"purchase","timestamp":"2026-10-01T10:00:00Z",'
            '"user_id":"u1"}',
        ),
    ]


@pytest.mark.parametrize("rejected", [3, 70])
def test_csv_rows_keep_their_numbers_around_many_rejected_lines(con, landing, rejected):
    # A few rejected lines number the rows by an expression, many by a numbered copy: each
    # row's number is its data row (file line - 1), counting the rejected lines before it.
    lines, expected_loaded, expected_bad = [], [], []
    for row in range(1, 301):
        if row % (300 // rejected) == 0 and len(expected_bad) < rejected:
            lines.append(f"r{row},purchase,2026-10-01T10:00:00Z,u1,extra-field")
            expected_bad.append(row + 1)  # a rejected line keeps its file line
        else:
            lines.append(f"e{row},purchase,2026-10-01T10:00:00Z,u1")
            expected_loaded.append((row, f"e{row}"))
    (landing / "events" / "many.csv").write_text(
        "event_id,event_type,timestamp,user_id\n" + "\n".join(lines) + "\n"
    )
    results = ingest_source(con, "events", landing, LOADED_AT)
    assert [(r.rows_read, r.rows_quarantined) for r in results] == [(300, rejected)]
    assert rows(con, "select _line, event_id from raw.events order by _line") == expected_loaded
    assert rows(con, "select line from audit.quarantine order by line") == [
        (line,) for line in expected_bad
    ]


def test_a_csv_with_a_rowid_column_is_numbered_by_its_rows_and_keeps_the_column(con, landing):
    (landing / "events" / "rowid.csv").write_text(
        "event_id,event_type,timestamp,user_id,ROWID\n"
        "e1,purchase,2026-10-01T10:00:00Z,u1,9\n"
        ",purchase,2026-10-01T10:00:00Z,u1,8\n"
        "e3,purchase,2026-10-01T10:00:00Z,u1,7\n"
    )
    ingest_source(con, "events", landing, LOADED_AT)
    assert rows(con, "select _line, event_id, extra from raw.events order by _line") == [
        (1, "e1", '{"ROWID":"9"}'),
        (3, "e3", '{"ROWID":"7"}'),
    ]
    assert rows(con, "select line, reason from audit.quarantine") == [(2, "missing event_id")]


def test_file_missing_required_column_is_quarantined_row_by_row(con, landing):
    (landing / "events" / "no_ts.csv").write_text(
        "event_id,event_type,user_id\ne1,view,u1\ne2,view,u1\n"
    )
    (landing / "events" / "good.csv").write_text(
        "event_id,event_type,timestamp,user_id\ne9,view,2026-10-01T10:00:00Z,u1\n"
    )
    ingest_source(con, "events", landing, LOADED_AT)
    status = manifest(con)
    assert status["events/no_ts.csv"] == ("quarantined", 2, 0, 2)
    assert status["events/good.csv"] == ("loaded", 1, 1, 0)
    reasons = rows(con, "select distinct reason from audit.quarantine")
    assert reasons == [("file lacks required column(s): timestamp",)]


def test_unreadable_files_are_quarantined_whole(con, landing):
    good = gzip.compress(b'{"event_id":"e1"}\n' * 1000)
    (landing / "events" / "truncated.jsonl.gz").write_bytes(good[: len(good) // 2])
    (landing / "events" / "notes.docx").write_bytes(b"PK\x03\x04")
    (landing / "events" / "empty.jsonl").write_bytes(b"")
    ingest_source(con, "events", landing, LOADED_AT)
    status = manifest(con)
    assert status["events/truncated.jsonl.gz"][0] == "quarantined"
    assert status["events/notes.docx"][0] == "quarantined"
    assert status["events/empty.jsonl"] == ("loaded", 0, 0, 0)
    got = dict(rows(con, "select file, reason from audit.quarantine where line is null"))
    assert got["events/notes.docx"] == "unsupported file type .docx"
    assert got["events/truncated.jsonl.gz"].startswith("unreadable jsonl file")


def test_pii_is_tokenized_and_plaintext_stays_in_the_pii_zone(con, landing):
    (landing / "profiles" / "crm.csv").write_text(
        "record_id,email,phone,first_name,city\n"
        "r1, Ann.Lee@Example.com ,+1 (555) 123-4567,Ann,Oslo\n"
        ",nobody@example.com,,,\n"
    )
    ingest_source(con, "profiles", landing, LOADED_AT)
    expected = hmac.new(TEST_PII_KEY.encode(), b"ann.lee@example.com", hashlib.sha256).hexdigest()
    assert rows(con, "select record_id, email_token, city from raw.profiles") == [
        ("r1", expected, "Oslo")
    ]
    phone = hmac.new(TEST_PII_KEY.encode(), b"5551234567", hashlib.sha256).hexdigest()
    assert rows(con, "select phone_token from raw.profiles") == [(phone,)]
    # The warehouse never holds the plaintext, not even in quarantine.
    dump = str(rows(con, "select * from raw.profiles")) + str(
        rows(con, "select * from audit.quarantine")
    )
    assert "Ann.Lee" not in dump and "nobody@example.com" not in dump
    assert rows(con, "select email, first_name from pii.main.profiles") == [
        ("Ann.Lee@Example.com", "Ann")
    ]
    assert rows(con, "select line, raw_record is null from audit.quarantine") == [(2, True)]
    assert rows(con, "select count(*) from pii.main.quarantine") == [(1,)]


def test_repeated_pii_values_are_tokenized_once_per_value_with_the_same_tokens(con, landing):
    """A column with few distinct values (the first names here) is tokenized per value and
    joined back; one with a value per row (emails) row by row: every row's token is the HMAC
    of its own normalized value either way, blanks and nulls have none, rows keep their order."""
    names = ["Ann", " ann ", "Bob", "", "Ann", None, "Bob", "Cy"] * 25
    lines = ["record_id,email,first_name"] + [
        f"r{i},user{i}@example.com,{'' if name is None else name}" for i, name in enumerate(names)
    ]
    (landing / "profiles" / "crm.csv").write_text("\n".join(lines) + "\n")

    con.execute(
        "create temp table _pz_checked as select record_id, email, null::varchar as phone, "
        "first_name, null::varchar as last_name, null::varchar as address, '' as _reason "
        "from read_csv(?, all_varchar = true)",
        [str(landing / "profiles" / "crm.csv")],
    )
    assert _tokens_per_value(con, SOURCES["profiles"]) == ["first_name"]
    con.execute("drop table _pz_checked")

    ingest_source(con, "profiles", landing, LOADED_AT)

    def token(value: str) -> str:
        return hmac.new(TEST_PII_KEY.encode(), value.encode(), hashlib.sha256).hexdigest()

    expected = [
        (
            f"r{i}",
            token(f"user{i}@example.com"),
            token(" ".join(name.split()).lower()) if name and name.strip() else None,
        )
        for i, name in enumerate(names)
    ]
    loaded = rows(con, "select record_id, email_token, first_name_token from raw.profiles")
    assert loaded == expected  # in file order


def test_parquet_with_typed_columns_and_nested_properties(con, landing):
    con.execute(
        f"""
        copy (select 'p1' as event_id, 'purchase' as event_type,
                     1790841600000::bigint as timestamp, 'u1' as user_id,
                     {{'coupon': 'X1'}} as properties, 19.5::double as value)
        to '{landing / "events" / "app.parquet"}' (format parquet)
        """
    )
    ingest_source(con, "events", landing, LOADED_AT)
    assert rows(con, "select event_id, value, properties, _occurred_at from raw.events") == [
        ("p1", "19.5", '{"coupon":"X1"}', datetime(2026, 10, 1, 8, 0))
    ]


@pytest.mark.parametrize("own_column", ["", ", 7 as file_row_number"])
def test_a_parquet_row_is_numbered_by_its_place_in_the_file(con, landing, own_column):
    # Numbered by the reader's file_row_number, or by row_number() when the file has a
    # column of that name (kept in `extra`).
    con.execute(
        f"""
        copy (select case when i = 3 then null else 'p' || i end as event_id,
                     'purchase' as event_type, '2026-10-01T10:00:00Z' as timestamp,
                     'u1' as user_id{own_column}
              from range(1, 6) as t(i) order by i)
        to '{landing / "events" / "app.parquet"}' (format parquet)
        """
    )
    ingest_source(con, "events", landing, LOADED_AT)
    assert rows(con, "select line, reason from audit.quarantine") == [(3, "missing event_id")]
    assert rows(con, "select _line, event_id from raw.events order by _line") == [
        (1, "p1"),
        (2, "p2"),
        (4, "p4"),
        (5, "p5"),
    ]
    extra = rows(con, "select distinct extra from raw.events")
    assert extra == ([('{"file_row_number":"7"}',)] if own_column else [(None,)])


def test_an_untouched_file_is_not_hashed_again_and_a_touched_one_is(con, tmp_path, monkeypatch):
    """Nightly runs skip files by size and modification time; a file touched without change
    is hashed once (still unchanged), a file rewritten with its old time kept is caught by
    PZ_REHASH=1."""
    import os

    import dagster_project.ingest.loader as loader

    raw = tmp_path / "raw"
    path = raw / "events" / "day.jsonl"
    path.parent.mkdir(parents=True)
    first = json.dumps(
        {"event_id": "e1", "event_type": "page_view", "timestamp": "2026-10-01T10:00:00Z"}
        | {"user_id": "u1", "session_id": "s1"}
    )
    path.write_text(first)
    hashed: list[str] = []
    real_sha = loader.sha256_of
    monkeypatch.setattr(loader, "sha256_of", lambda p: hashed.append(p.name) or real_sha(p))

    def load() -> str:
        return loader.ingest_source(con, "events", raw, LOADED_AT, progress=lambda _: None)[
            0
        ].status

    assert load() == "loaded" and hashed == ["day.jsonl"]
    assert load() == "unchanged" and hashed == ["day.jsonl"]  # not read, not hashed
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert load() == "unchanged" and len(hashed) == 2  # touched: hashed, same content
    assert load() == "unchanged" and len(hashed) == 2  # and its new time remembered
    # Same size, old time kept, other content: only a rehash sees it.
    stat = path.stat()
    path.write_text(first.replace("e1", "e2"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert load() == "unchanged"
    monkeypatch.setenv(loader.REHASH_VARIABLE, "1")
    assert load() == "replaced"
    assert con.execute("select event_id from raw.events").fetchall() == [("e2",)]
