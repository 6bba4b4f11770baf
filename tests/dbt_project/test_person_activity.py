"""Nightly, `int_person_activity` recomputes the people whose events changed (new events, a
merge that moved events, the as-of time moving), deletes the people left without events, keeps
the other rows as they were, and then equals a full rebuild. `int_interactions_weighted`
recomputes the same people after it, `user_category_affinity` after that (everyone when an
item's category changed), and both equal a full rebuild too."""

from __future__ import annotations

import shutil
from datetime import datetime

import dbt_warehouse_fixture as wf
import duckdb

TABLE = "intermediate.int_person_activity"
BUILD = [*wf.PRE_IDENTITY_RUN, "int_run_settings_resolved"]
POST_IDENTITY = [
    "run",
    "--select",
    "identity_map",
    "int_events_identified",
    "int_person_activity",
    "events",
    "stg_config__interaction_weights",
    "int_interactions_weighted",
    "stg_catalog__items",
    "items",
    "user_category_affinity",
]
AFFINITY = "marts.user_category_affinity"
BOOKKEEPING = ("_identified_at", "_as_of", "_built_at")
INTERACTIONS = "intermediate.int_interactions_weighted"


def _interactions(warehouse) -> list[tuple]:
    """Every row of int_interactions_weighted but its build stamp, in order."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(
            f"select * exclude (_built_at) from {INTERACTIONS} order by all"
        ).fetchall()


def _affinities(warehouse) -> list[tuple]:
    """Every row of user_category_affinity but its bookkeeping, in order."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(
            f"select * exclude (_built_at, _items_hash) from {AFFINITY} order by all"
        ).fetchall()


def _interaction_stamps(warehouse) -> dict[str, set]:
    """Per person, the build stamps of their interaction rows."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute(f"select distinct person_id, _built_at from {INTERACTIONS}").fetchall()
    stamps: dict[str, set] = {}
    for person, stamp in rows:
        stamps.setdefault(person, set()).add(stamp)
    return stamps


def _person_of(warehouse, identifier: str) -> str:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(
            "select person_id from ml.identity_assignments where identifier = ?", [identifier]
        ).fetchone()[0]


def _without_bookkeeping(rows: dict[str, dict]) -> dict[str, dict]:
    return {
        person: {column: value for column, value in row.items() if column not in BOOKKEEPING}
        for person, row in rows.items()
    }


def _assert_equals_full_refresh(warehouse, tmp_path, name: str) -> None:
    rebuilt = tmp_path / name
    rebuilt.mkdir()
    shutil.copyfile(warehouse, rebuilt / "warehouse.duckdb")
    wf.dbt_ok([*POST_IDENTITY, "--full-refresh"], rebuilt / "warehouse.duckdb", rebuilt)
    assert _without_bookkeeping(wf.rows_by_key(warehouse, TABLE)) == _without_bookkeeping(
        wf.rows_by_key(rebuilt / "warehouse.duckdb", TABLE)
    )
    assert _interactions(warehouse) == _interactions(rebuilt / "warehouse.duckdb")
    assert _affinities(warehouse) == _affinities(rebuilt / "warehouse.duckdb")


def _first_night(warehouse, tmp_path) -> dict[str, dict]:
    events = [
        wf.make_event("e1", "page_view", "2024-03-01 10:00:00", user_id="u1"),
        wf.make_event("e1b", "purchase", "2024-03-01 10:05:00", user_id="u1", item_id="i1"),
        wf.make_event("e2", "add_to_cart", "2024-03-01 11:00:00", user_id="u2", item_id="i2"),
        wf.make_event("e3", "view_product", "2024-03-01 12:00:00", anonymous_id="a3", item_id="i3"),
        wf.make_event("e4", "view_product", "2024-03-01 13:00:00", user_id="u4", item_id="i4"),
        wf.make_event("e4b", "view_product", "2024-03-01 13:01:00", user_id="u4", item_id="i4"),
        wf.make_event("e6", "page_view", "2024-03-01 09:00:00", user_id="u6"),
        wf.make_event("e7", "view_product", "2024-03-01 08:00:00", user_id="u7", item_id="i1"),
    ]
    with duckdb.connect(str(warehouse)) as con:
        wf.create_raw_tables(con)
        wf.load_config(con)
        wf.insert_raw(con, "events", events, file="events/a.jsonl", loaded_at=datetime(2024, 3, 2))
        items = [
            {"item_id": item, "title": item, "category": category}
            for item, category in (("i1", "Books"), ("i2", "Toys"), ("i3", "Books"), ("i4", "Home"))
        ]
        wf.insert_raw(con, "catalog", items, file="catalog/a.csv", loaded_at=datetime(2024, 3, 2))
    wf.dbt_ok(BUILD, warehouse, tmp_path)
    with duckdb.connect(str(warehouse)) as con:
        wf.assign_identities(con)
    wf.dbt_ok(POST_IDENTITY, warehouse, tmp_path)
    return wf.rows_by_key(warehouse, TABLE)


def test_new_events_and_a_merge_recompute_their_people_only(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    first = _first_night(warehouse, tmp_path)
    assert len(first) == 6
    u1, u2, a3, u4, u6, u7 = (
        _person_of(warehouse, i) for i in ("u1", "u2", "a3", "u4", "u6", "u7")
    )
    first_stamps = _interaction_stamps(warehouse)
    assert set(first_stamps) == {u1, u2, a3, u4, u7}
    assert first[u4]["max_same_product_views_in_session"] == 2
    assert first[u2]["n_abandoned_carts"] == 1

    # a new day for u4 (the as-of time moves with it); the identity step merges u2 and the
    # device a3 into u1's person, whose events the event chain does not rewrite
    late = [wf.make_event("e5", "page_view", "2024-03-02 09:00:00", user_id="u4")]
    with duckdb.connect(str(warehouse)) as con:
        wf.insert_raw(con, "events", late, file="events/b.jsonl", loaded_at=datetime(2024, 3, 3))
    wf.dbt_ok(BUILD, warehouse, tmp_path)
    with duckdb.connect(str(warehouse)) as con:
        con.execute(
            "update ml.identity_assignments set person_id = ? where identifier in ('u2', 'a3')",
            [u1],
        )
    wf.dbt_ok(POST_IDENTITY, warehouse, tmp_path)
    second = wf.rows_by_key(warehouse, TABLE)

    # u2's and a3's people have no rewritten event: their changed identifiers bring them in
    assert set(second) == {u1, u4, u6, u7}, "the merged-away people are deleted"
    second_stamps = _interaction_stamps(warehouse)
    assert set(second_stamps) == {u1, u4, u7}, "the merged-away people's interactions too"
    assert second_stamps[u7] == first_stamps[u7], "an untouched person keeps the stored rows"
    assert second_stamps[u1] != first_stamps[u1]
    affinity = {(row[0], row[1]): row for row in _affinities(warehouse)}
    assert {person for person, _ in affinity} == {u1, u4, u7}
    assert affinity[(u7, "books")][2:4] == (1, 1.0)
    assert second[u1]["n_events_all"] == 4
    assert first[u1]["n_abandoned_carts"] == 0
    assert second[u1]["n_abandoned_carts"] == 1, "u2's abandoned cart is now u1's"
    assert second[u4]["n_events"] == 3
    assert second[u6] == first[u6], "an untouched person keeps the stored row"
    _assert_equals_full_refresh(warehouse, tmp_path, "rebuilt")

    # an item changes category: everyone's affinities are recomputed
    with duckdb.connect(str(warehouse)) as con:
        con.execute("update raw.catalog set category = 'Toys' where item_id = 'i1'")
    wf.dbt_ok(BUILD, warehouse, tmp_path)
    wf.dbt_ok(POST_IDENTITY, warehouse, tmp_path)
    assert ((u7, "toys")) in {(row[0], row[1]) for row in _affinities(warehouse)}
    _assert_equals_full_refresh(warehouse, tmp_path, "recategorized")


def test_an_earlier_as_of_recomputes_everyone_and_a_later_one_catches_up(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    first = _first_night(warehouse, tmp_path)
    u4 = _person_of(warehouse, "u4")
    assert first[u4]["n_events"] == 2

    def night_as_of(as_of: datetime | None) -> dict[str, dict]:
        with duckdb.connect(str(warehouse)) as con:
            con.execute("update config.run_settings set as_of = ?", [as_of])
        wf.dbt_ok(BUILD, warehouse, tmp_path)
        wf.dbt_ok(POST_IDENTITY, warehouse, tmp_path)
        return wf.rows_by_key(warehouse, TABLE)

    earlier = night_as_of(datetime(2024, 3, 1, 12, 30))
    assert earlier[u4]["n_events"] == 0 and earlier[u4]["n_events_all"] == 2
    assert earlier[u4]["n_sessions"] == 0 and earlier[u4]["last_event_at"] is None
    _assert_equals_full_refresh(warehouse, tmp_path, "earlier")

    later = night_as_of(None)
    assert later[u4]["n_events"] == 2
    assert _without_bookkeeping(later) == _without_bookkeeping(first)
    _assert_equals_full_refresh(warehouse, tmp_path, "later")
