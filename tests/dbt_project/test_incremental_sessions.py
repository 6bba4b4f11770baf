"""Nightly, `int_sessions` re-aggregates the sessions of the events `int_events_identified`
rewrote, deletes the sessions left without events, keeps the others' rows, and then equals a
full rebuild."""

from __future__ import annotations

import shutil
from datetime import datetime

import dbt_warehouse_fixture as wf
import duckdb

TABLE = "intermediate.int_sessions"
BUILD = wf.PRE_IDENTITY_RUN
POST_IDENTITY = ["run", "--select", "identity_map", "int_events_identified", "int_sessions"]


def test_a_late_event_merges_two_sessions_and_the_others_are_kept(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    # device a1: two derived sessions 40 minutes apart; u2: one session, never touched again
    first_night = [
        wf.make_event("e1", "page_view", "2024-03-01 10:00:00", anonymous_id="a1"),
        wf.make_event("e2", "page_view", "2024-03-01 10:10:00", anonymous_id="a1"),
        wf.make_event("e3", "page_view", "2024-03-01 10:50:00", anonymous_id="a1"),
        wf.make_event("e4", "page_view", "2024-03-01 12:00:00", user_id="u2"),
    ]
    with duckdb.connect(str(warehouse)) as con:
        wf.create_raw_tables(con)
        wf.load_config(con)
        wf.insert_raw(
            con, "events", first_night, file="events/a.jsonl", loaded_at=datetime(2024, 3, 2)
        )
    wf.dbt_ok(BUILD, warehouse, tmp_path)
    with duckdb.connect(str(warehouse)) as con:
        wf.assign_identities(con)
    wf.dbt_ok(POST_IDENTITY, warehouse, tmp_path)
    first = wf.rows_by_key(warehouse, TABLE)
    assert sorted(s["n_events"] for s in first.values()) == [1, 1, 2]

    # a late event at 10:30 closes a1's gap: one session of 4 events instead of two
    late = [wf.make_event("e5", "page_view", "2024-03-01 10:30:00", anonymous_id="a1")]
    with duckdb.connect(str(warehouse)) as con:
        wf.insert_raw(con, "events", late, file="events/b.jsonl", loaded_at=datetime(2024, 3, 3))
    wf.dbt_ok(BUILD, warehouse, tmp_path)
    wf.dbt_ok(POST_IDENTITY, warehouse, tmp_path)
    second = wf.rows_by_key(warehouse, TABLE)
    assert sorted(s["n_events"] for s in second.values()) == [1, 4]
    (untouched,) = [s for s in second.values() if s["user_id"] == "u2"]
    assert untouched == first[untouched["session_id"]], "kept as it was"

    rebuilt = tmp_path / "rebuilt"
    rebuilt.mkdir()
    shutil.copyfile(warehouse, rebuilt / "warehouse.duckdb")
    wf.dbt_ok([*POST_IDENTITY, "--full-refresh"], rebuilt / "warehouse.duckdb", rebuilt)
    full = wf.rows_by_key(rebuilt / "warehouse.duckdb", TABLE)
    drop = "_identified_at"
    assert {k: {c: v for c, v in s.items() if c != drop} for k, s in second.items()} == {
        k: {c: v for c, v in s.items() if c != drop} for k, s in full.items()
    }
