"""Nightly, `int_events_identified` re-identifies the events the event chain rewrote and the
events whose person changed, and keeps the rest as they are."""

from __future__ import annotations

from datetime import datetime

import dbt_warehouse_fixture as wf
import duckdb

LOADED_AT = datetime(2024, 3, 2)
TABLE = "intermediate.int_events_identified"
PAIRS = "intermediate.int_events_identified_pairs"
PRE_IDENTITY = wf.PRE_IDENTITY_RUN
POST_IDENTITY = ["run", "--select", "identity_map", "int_events_identified"]


def _people(warehouse) -> dict[str, tuple[str, datetime]]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute(f"select event_id, person_id, _identified_at from {TABLE}").fetchall()
    return {event_id: (person, identified_at) for event_id, person, identified_at in rows}


def _assert_pairs_match_the_events(warehouse) -> None:
    """The pairs' people kept beside the events (macros/event_pairs.sql) are the events'."""
    pairs = f"select user_id, anonymous_id, person_id from {PAIRS}"
    stored = f"select distinct user_id, anonymous_id, person_id from {TABLE}"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute(f"select count(*) from {PAIRS}").fetchone()[0] > 0
        for a, b in ((pairs, stored), (stored, pairs)):
            assert con.execute(f"select * from ({a}) except all ({b})").fetchall() == []


def test_events_whose_person_changed_are_identified_again(tmp_path):
    """A merge moves a user's and an anonymous device's events, which the event chain did not
    rewrite, to the surviving person; the other events keep their stored rows."""
    warehouse = tmp_path / "warehouse.duckdb"
    events = [
        wf.make_event("e1", "page_view", "2024-03-01 10:00:00", user_id="u1"),
        wf.make_event("e2", "page_view", "2024-03-01 11:00:00", user_id="u2"),
        wf.make_event("e3", "page_view", "2024-03-01 12:00:00", anonymous_id="a3"),
        wf.make_event("e4", "page_view", "2024-03-01 13:00:00", user_id="u4"),
    ]
    with duckdb.connect(str(warehouse)) as con:
        wf.create_raw_tables(con)
        wf.load_config(con)
        wf.insert_raw(con, "events", events, file="events/a.jsonl", loaded_at=LOADED_AT)
    wf.dbt_ok(PRE_IDENTITY, warehouse, tmp_path)
    with duckdb.connect(str(warehouse)) as con:
        wf.assign_identities(con)
    wf.dbt_ok(POST_IDENTITY, warehouse, tmp_path)
    first = _people(warehouse)
    assert len({person for person, _ in first.values()}) == 4

    # the identity step merges u2 and the device a3 into u1's person
    survivor = first["e1"][0]
    with duckdb.connect(str(warehouse)) as con:
        con.execute(
            "update ml.identity_assignments set person_id = ? where identifier in ('u2', 'a3')",
            [survivor],
        )
    wf.dbt_ok(POST_IDENTITY, warehouse, tmp_path)
    second = _people(warehouse)

    assert {event: person for event, (person, _) in second.items()} == {
        "e1": survivor,
        "e2": survivor,
        "e3": survivor,
        "e4": first["e4"][0],
    }
    rewritten = {event for event in second if second[event][1] != first[event][1]}
    assert rewritten == {"e2", "e3"}
    _assert_pairs_match_the_events(warehouse)

    # u2 goes back to its first person: found through the pairs the last build kept
    with duckdb.connect(str(warehouse)) as con:
        con.execute(
            "update ml.identity_assignments set person_id = ? where identifier = 'u2'",
            [first["e2"][0]],
        )
    wf.dbt_ok(POST_IDENTITY, warehouse, tmp_path)
    third = _people(warehouse)
    assert third["e2"][0] == first["e2"][0]
    assert {event for event in third if third[event][1] != second[event][1]} == {"e2"}
    _assert_pairs_match_the_events(warehouse)

    wf.dbt_ok([*POST_IDENTITY, "--full-refresh"], warehouse, tmp_path)
    assert {e: p for e, (p, _) in _people(warehouse).items()} == {
        e: p for e, (p, _) in third.items()
    }
    _assert_pairs_match_the_events(warehouse)
