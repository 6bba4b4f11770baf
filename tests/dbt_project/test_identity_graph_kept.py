"""The identity graph (`int_identity_nodes`, `int_identity_edges`) is kept between builds, its
rows by origin: a build adds the nodes and edges of the events deduplicated since, and those of
the profile records rebuilt since (records gone and identifiers no one names any more leave),
and equals a full rebuild."""

from __future__ import annotations

import shutil
from datetime import datetime

import dbt_warehouse_fixture as wf
import duckdb

BUILD = wf.PRE_IDENTITY_RUN
GRAPH = ("intermediate.int_identity_nodes", "intermediate.int_identity_edges")
BOOKKEEPING = (
    "_inputs_fingerprint, _events_watermark, _profiles_state, _profiles_watermark, _built_at"
)


def graph(warehouse) -> dict[str, tuple[list[tuple], dict[str, int]]]:
    """Per table, its rows without the build's bookkeeping (their origin kept), and per origin
    how many builds wrote its rows."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {
            table: (
                con.execute(
                    f"select * exclude ({BOOKKEEPING}) from {table} order by all"
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


def assert_equals_a_full_rebuild(built: dict, warehouse, work_dir) -> None:
    """`built` (a `graph`) holds the rows a `--full-refresh` of a copy of `warehouse` writes."""
    work_dir.mkdir()
    shutil.copyfile(warehouse, work_dir / "warehouse.duckdb")
    wf.dbt_ok([*BUILD, "--full-refresh"], work_dir / "warehouse.duckdb", work_dir)
    full = graph(work_dir / "warehouse.duckdb")
    assert {table: rows for table, (rows, _) in built.items()} == {
        table: rows for table, (rows, _) in full.items()
    }


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
    assert_equals_a_full_rebuild(second, warehouse, tmp_path / "full")

    # a changed profile record (its user id): its links written again, its nodes (the record,
    # its email token) and the events' rows kept
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
    assert newest_by_origin(warehouse) == {
        "intermediate.int_identity_nodes": [("events", False), ("profiles", False)],
        "intermediate.int_identity_edges": [("events", False), ("profiles", True)],
    }, "only the changed record's links rewritten"
    assert_equals_a_full_rebuild(third, warehouse, tmp_path / "full_again")
    assert ("record_id|crm_a|r1", "user_id||u1", "profile_user_id", 1.0, "profiles") not in (
        third["intermediate.int_identity_edges"][0]
    )
    assert ("record_id|crm_a|r1", "user_id||u3", "profile_user_id", 1.0, "profiles") in (
        third["intermediate.int_identity_edges"][0]
    )


def newest_by_origin(warehouse) -> dict[str, list[tuple[str, bool]]]:
    """Per table and origin, whether every row is the newest build's."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {
            table: con.execute(
                f"select _origin, bool_and(_built_at = (select max(_built_at) from {table})) "
                f"from {table} group by 1 order by 1"
            ).fetchall()
            for table in GRAPH
        }


def builds_by_key(warehouse, table: str, key: str) -> dict[str, datetime]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return dict(
            con.execute(
                f"select {key}, max(_built_at) from {table} where _origin = 'profiles' group by 1"
            ).fetchall()
        )


def record(record_id: str, source_system: str, user_id: str, email: str, day: int) -> dict:
    return {
        "record_id": record_id,
        "source_system": source_system,
        "user_id": user_id,
        "email_token": wf.token(email),
        "_updated_at": datetime(2024, 1, day),
    }


def consent(user_id: str, granted: str, day: int) -> dict:
    return {
        "user_id": user_id,
        "purpose": "personalization",
        "granted": granted,
        "_recorded_at": datetime(2024, 1, day),
    }


def test_the_profiles_rows_are_kept_per_record(tmp_path):
    """A night writes the rows of the records rebuilt since the graph's last build; a record
    gone (removed, erased) loses its rows; a user, email or phone node that no record or
    consent names any more leaves; a night without profile changes writes no profile row."""
    nodes_table, edges_table = GRAPH
    warehouse = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        wf.create_raw_tables(con)
        wf.load_config(con)
        wf.insert_raw(
            con, "events", [wf.make_event("e1", "page_view", "2024-03-01 10:00:00", user_id="u1")]
        )
        wf.insert_raw(
            con,
            "profiles",
            [
                record("r1", "crm", "u1", "a@x.org", 1),
                record("r2", "shop", "u2", "b@x.org", 1),
                record("r3", "crm", "u3", "a@x.org", 1),
            ],
        )
        wf.insert_raw(con, "consent", [consent("u7", "true", 1)])
    wf.dbt_ok(BUILD, warehouse, tmp_path)
    (first_build,) = set(builds_by_key(warehouse, nodes_table, "node_key").values())

    # r1 names u5 now, r3 is removed (u3 leaves with it, a@x.org stays: r1 names it), a new
    # record r4, a new consent subject u8
    with duckdb.connect(str(warehouse)) as con:
        wf.insert_raw(
            con,
            "profiles",
            [record("r1", "crm", "u5", "a@x.org", 2), record("r4", "shop", "u4", "d@x.org", 2)],
            file="profiles/part-2.jsonl",
            loaded_at=datetime(2024, 3, 3),
        )
        con.execute("delete from raw.profiles where record_id = 'r3'")
        wf.insert_raw(
            con,
            "consent",
            [consent("u8", "true", 2)],
            file="consent/part-2.jsonl",
            loaded_at=datetime(2024, 3, 3),
        )
    wf.dbt_ok(BUILD, warehouse, tmp_path)
    second = graph(warehouse)
    nodes = builds_by_key(warehouse, nodes_table, "node_key")
    assert "record_id|crm|r3" not in nodes and "user_id||u3" not in nodes
    assert nodes["record_id|shop|r2"] == nodes["user_id||u2"] == first_build  # kept
    assert nodes["record_id|crm|r1"] == first_build  # the record's node is the same
    assert nodes["user_id||u5"] == nodes["record_id|shop|r4"] == nodes["user_id||u8"]
    assert nodes["user_id||u5"] > first_build
    assert nodes["user_id||u7"] == first_build
    edges = builds_by_key(warehouse, edges_table, "node_key_a")
    assert sorted(edges) == ["record_id|crm|r1", "record_id|shop|r2", "record_id|shop|r4"]
    assert edges["record_id|shop|r2"] == first_build
    assert edges["record_id|crm|r1"] == edges["record_id|shop|r4"] > first_build
    assert_equals_a_full_rebuild(second, warehouse, tmp_path / "full")

    # u2 asks to be erased (dbt's safety net: the identity step's sweep is not run here): r2
    # and its user id and email token leave
    with duckdb.connect(str(warehouse)) as con:
        wf.insert_raw(con, "erasure", [{"user_id": "u2", "_requested_at": datetime(2024, 3, 4)}])
    wf.dbt_ok(BUILD, warehouse, tmp_path)
    erased = graph(warehouse)
    nodes = builds_by_key(warehouse, nodes_table, "node_key")
    assert not {"record_id|shop|r2", "user_id||u2", f"email_token||{wf.token('b@x.org')}"} & set(
        nodes
    )
    assert "record_id|shop|r2" not in builds_by_key(warehouse, edges_table, "node_key_a")
    assert_equals_a_full_rebuild(erased, warehouse, tmp_path / "full_erased")

    # a night of events only: no profile row written
    with duckdb.connect(str(warehouse)) as con:
        wf.insert_raw(
            con,
            "events",
            [wf.make_event("e2", "page_view", "2024-03-05 10:00:00", user_id="u9")],
            file="events/b.jsonl",
            loaded_at=datetime(2024, 3, 5),
        )
    wf.dbt_ok(BUILD, warehouse, tmp_path)
    assert (
        graph(warehouse)["intermediate.int_identity_edges"][0]
        == (erased["intermediate.int_identity_edges"][0])
    )
    assert newest_by_origin(warehouse)["intermediate.int_identity_nodes"] == [
        ("events", False),
        ("profiles", False),
    ]
