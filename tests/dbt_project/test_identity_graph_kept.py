"""The identity graph (`int_identity_nodes`, `int_identity_edges`) is kept between builds, its
rows by origin: a build adds the nodes and edges of the events deduplicated since, and equals
a full rebuild; a changed profile writes the profiles' rows again and keeps the events'."""

from __future__ import annotations

import shutil
from datetime import datetime

import dbt_warehouse_fixture as wf
import duckdb

BUILD = wf.PRE_IDENTITY_RUN
GRAPH = ("intermediate.int_identity_nodes", "intermediate.int_identity_edges")


def graph(warehouse) -> dict[str, tuple[list[tuple], dict[str, int]]]:
    """Per table, its rows without the build's bookkeeping (their origin kept), and per origin
    how many builds wrote its rows."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {
            table: (
                con.execute(
                    f"select * exclude (_inputs_fingerprint, _events_watermark, _built_at) "
                    f"from {table} order by all"
                ).fetchall(),
                dict(
                    con.execute(
                        f"select _origin, count(distinct _built_at) from {table} group by 1"
                    ).fetchall()
                ),
            )
            for table in GRAPH
        }


def profile(user_id: str, updated_at: datetime) -> dict:
    """Profile record r1 of crm_a, naming `user_id`."""
    return {
        "record_id": "r1",
        "source_system": "crm_a",
        "user_id": user_id,
        "email_token": wf.ALICE,
        "_updated_at": updated_at,
    }


def rebuilt(warehouse, work_dir) -> dict[str, tuple[list[tuple], dict[str, int]]]:
    work_dir.mkdir()
    shutil.copyfile(warehouse, work_dir / "warehouse.duckdb")
    wf.dbt_ok([*BUILD, "--full-refresh"], work_dir / "warehouse.duckdb", work_dir)
    return graph(work_dir / "warehouse.duckdb")


def test_a_night_adds_its_events_nodes_and_edges_and_a_changed_profile_rewrites_its_own(
    tmp_path,
):
    warehouse = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        wf.create_raw_tables(con)
        wf.load_config(con)
        wf.insert_raw(
            con,
            "events",
            [
                wf.make_event("e1", "page_view", "2024-03-01 10:00:00", user_id="u1"),
                wf.make_event("e2", "page_view", "2024-03-01 10:05:00", anonymous_id="a1"),
            ],
            file="events/a.jsonl",
            loaded_at=datetime(2024, 3, 2),
        )
        wf.insert_raw(
            con,
            "profiles",
            [profile("u1", datetime(2024, 1, 1))],
            file="profiles/a.jsonl",
            loaded_at=datetime(2024, 3, 2),
        )
    wf.dbt_ok(BUILD, warehouse, tmp_path)
    first = graph(warehouse)
    assert [builds for _, builds in first.values()] == [
        {"events": 1, "profiles": 1},
        {"profiles": 1},
    ]
    # u1 is named by an event and a profile: one node, the events'
    assert ("user_id||u1", "user_id", "u1", None, False, "events") in (
        first["intermediate.int_identity_nodes"][0]
    )

    # a night: a new user logs in on device a1, and an event of u1 is delivered again
    with duckdb.connect(str(warehouse)) as con:
        wf.insert_raw(
            con,
            "events",
            [
                wf.make_event(
                    "e3", "login", "2024-03-02 09:00:00", user_id="u3", anonymous_id="a1"
                ),
                wf.make_event("e1", "page_view", "2024-03-01 10:00:00", user_id="u1"),
            ],
            file="events/b.jsonl",
            loaded_at=datetime(2024, 3, 3),
        )
    wf.dbt_ok(BUILD, warehouse, tmp_path)
    second = graph(warehouse)
    nodes, node_builds = second["intermediate.int_identity_nodes"]
    edges, edge_builds = second["intermediate.int_identity_edges"]
    # the first build's rows kept, the night's events' added
    assert node_builds == {"events": 2, "profiles": 1}
    assert edge_builds == {"events": 1, "profiles": 1}
    assert set(nodes) > set(first["intermediate.int_identity_nodes"][0])
    assert {row[0] for row in nodes} >= {"user_id||u3", "anonymous_id||a1", "record_id|crm_a|r1"}
    assert ("anonymous_id||a1", "user_id||u3", "login_stitch", 1.0, "events") in edges
    full = rebuilt(warehouse, tmp_path / "full")
    assert {table: rows for table, (rows, _) in second.items()} == {
        table: rows for table, (rows, _) in full.items()
    }

    # a changed profile record (its user id): the profiles' rows written again, the events' kept
    with duckdb.connect(str(warehouse)) as con:
        wf.insert_raw(
            con,
            "profiles",
            [profile("u3", datetime(2024, 3, 3))],
            file="profiles/b.jsonl",
            loaded_at=datetime(2024, 3, 4),
        )
    wf.dbt_ok(BUILD, warehouse, tmp_path)
    third = graph(warehouse)
    assert [builds for _, builds in third.values()] == [
        {"events": 2, "profiles": 1},
        {"events": 1, "profiles": 1},
    ]
    with duckdb.connect(str(warehouse), read_only=True) as con:
        newest = con.execute(
            "select _origin, bool_and(_built_at = (select max(_built_at) from "
            "intermediate.int_identity_nodes)) from intermediate.int_identity_nodes group by 1 "
            "order by 1"
        ).fetchall()
    assert newest == [("events", False), ("profiles", True)], "only the profiles' rows rewritten"
    full = rebuilt(warehouse, tmp_path / "full_again")
    assert {table: rows for table, (rows, _) in third.items()} == {
        table: rows for table, (rows, _) in full.items()
    }
    assert ("record_id|crm_a|r1", "user_id||u1", "profile_user_id", 1.0, "profiles") not in (
        third["intermediate.int_identity_edges"][0]
    )
