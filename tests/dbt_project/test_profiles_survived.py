"""Nightly, `int_profiles_survived` recomputes the people whose profile records changed (a new
version, a removed record, a record moved to another person), and everyone when a survivorship
rule changes; it keeps the other rows as they were and then equals a full rebuild."""

from __future__ import annotations

import shutil
from datetime import datetime

import dbt_warehouse_fixture as wf
import duckdb

TABLE = "intermediate.int_profiles_survived"
BUILD = [*wf.PRE_IDENTITY_RUN, "+int_profiles_deduplicated", "+stg_config__survivorship_rules"]
POST_IDENTITY = ["run", "--select", "identity_map", "int_profiles_survived"]


def _person_of(warehouse, identifier: str) -> str:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(
            "select person_id from ml.identity_assignments where identifier = ?", [identifier]
        ).fetchone()[0]


def _assert_equals_full_refresh(warehouse, tmp_path, name: str) -> None:
    rebuilt = tmp_path / name
    rebuilt.mkdir()
    shutil.copyfile(warehouse, rebuilt / "warehouse.duckdb")
    wf.dbt_ok([*POST_IDENTITY, "--full-refresh"], rebuilt / "warehouse.duckdb", rebuilt)
    assert wf.rows_by_key(warehouse, TABLE) == wf.rows_by_key(rebuilt / "warehouse.duckdb", TABLE)


def _profile(record_id: str, user_id: str, city: str, updated: int) -> dict:
    return {
        "record_id": record_id,
        "source_system": "crm",
        "user_id": user_id,
        "email_token": wf.token(f"{user_id}@example.org"),
        "city": city,
        "_updated_at": datetime(2024, 1, updated),
    }


def test_changed_records_and_rules_recompute_their_people_only(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        wf.create_raw_tables(con)
        wf.load_config(con)
        wf.insert_raw(
            con,
            "profiles",
            [
                _profile("r1", "u1", "Lyon", 1),
                _profile("r1b", "u1", "Nice", 2),
                _profile("r2", "u2", "Metz", 1),
                _profile("r3", "u3", "Brest", 1),
            ],
        )
    wf.dbt_ok(BUILD, warehouse, tmp_path)
    with duckdb.connect(str(warehouse)) as con:
        wf.assign_identities(con)
    wf.dbt_ok(POST_IDENTITY, warehouse, tmp_path)
    first = wf.rows_by_key(warehouse, TABLE)
    u1, u2, u3 = (_person_of(warehouse, i) for i in ("u1", "u2", "u3"))
    assert first[u1]["city"] == "Nice" and first[u1]["n_source_records"] == 2
    assert first[u1]["email_tokens"] == [wf.token("u1@example.org")]

    # a newer version of r1 (the most recent record now) and r3 removed (as the erasure sweep
    # removes raw rows; identity still names it until its next run): u2 is untouched
    with duckdb.connect(str(warehouse)) as con:
        wf.insert_raw(
            con,
            "profiles",
            [_profile("r1", "u1", "Paris", 3)],
            file="profiles/part-2.jsonl",
            loaded_at=datetime(2024, 3, 3),
        )
        con.execute("delete from raw.profiles where record_id = 'r3'")
    wf.dbt_ok(BUILD, warehouse, tmp_path)
    wf.dbt_ok(POST_IDENTITY, warehouse, tmp_path)
    second = wf.rows_by_key(warehouse, TABLE)
    assert set(second) == {u1, u2}, "a person left without records is deleted"
    assert second[u1]["city"] == "Paris"
    assert second[u1]["_inputs_hash"] != first[u1]["_inputs_hash"]
    assert second[u2] == first[u2], "an untouched person keeps the stored row"
    _assert_equals_full_refresh(warehouse, tmp_path, "rebuilt")

    # a rule changes what every person's records give: everyone is recomputed
    with duckdb.connect(str(warehouse)) as con:
        con.execute("delete from config.survivorship_rules where field = 'city'")
        con.execute(
            "insert into config.survivorship_rules (field, rule) values ('city', 'most_frequent')"
        )
    wf.dbt_ok(POST_IDENTITY, warehouse, tmp_path)
    third = wf.rows_by_key(warehouse, TABLE)
    assert all(third[p]["_inputs_hash"] != second[p]["_inputs_hash"] for p in (u1, u2))
    _assert_equals_full_refresh(warehouse, tmp_path, "rebuilt_rule")
