"""`int_profiles_deduplicated` and `int_consent_current` are kept per key: a build recomputes
only the records (subjects) whose rows were delivered, removed or erased, and every key when
the staging view's SQL changes; the other keys keep the rows of the build that wrote them. After
each build the rows equal a full rebuild's."""

from __future__ import annotations

import shutil
from datetime import datetime

import dbt_warehouse_fixture as wf
import duckdb

PROFILES = "intermediate.int_profiles_deduplicated"
CONSENTS = "intermediate.int_consent_current"
BUILD = ["run", "--select", "+int_profiles_deduplicated", "+int_consent_current"]


KEYS = {PROFILES: "record_id", CONSENTS: "subject_id"}


def _rows(warehouse, table: str) -> tuple[list[tuple], dict]:
    """(the rows without the build columns, the build that wrote each key)."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute(
            f"select * exclude (_inputs_fingerprint, _built_at) from {table} order by all"
        ).fetchall()
        builds = dict(
            con.execute(f"select distinct {KEYS[table]}, _built_at from {table}").fetchall()
        )
    return rows, builds


def _both(warehouse) -> dict[str, tuple[list[tuple], list]]:
    return {table: _rows(warehouse, table) for table in (PROFILES, CONSENTS)}


def _full_rebuild(warehouse, tmp_path, name: str, extra: list[str] = ()) -> dict:
    rebuilt = tmp_path / name
    rebuilt.mkdir()
    shutil.copyfile(warehouse, rebuilt / "warehouse.duckdb")
    wf.dbt_ok([*BUILD, *extra, "--full-refresh"], rebuilt / "warehouse.duckdb", rebuilt)
    return {table: rows for table, (rows, _) in _both(rebuilt / "warehouse.duckdb").items()}


def _consent(user_id: str, granted: str, day: int) -> dict:
    return {
        "user_id": user_id,
        "purpose": "personalization",
        "granted": granted,
        "_recorded_at": datetime(2024, 1, day),
    }


def test_unchanged_inputs_keep_the_rows_and_a_change_rebuilds_them(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        wf.create_raw_tables(con)
        wf.load_config(con)
        wf.insert_raw(
            con,
            "profiles",
            [
                {"record_id": "r1", "source_system": "crm", "user_id": "u1", "city": "Lyon"},
                {"record_id": "r2", "source_system": "shop", "user_id": "u2", "age": "41"},
                {"record_id": "r3", "source_system": "crm", "user_id": "u3"},
            ],
        )
        wf.insert_raw(con, "consent", [_consent("u1", "true", 1), _consent("u2", "true", 1)])
    wf.dbt_ok(BUILD, warehouse, tmp_path)
    first = _both(warehouse)
    assert [row[:2] for row in first[PROFILES][0]] == [("r1", "crm"), ("r2", "shop"), ("r3", "crm")]
    assert len(first[CONSENTS][0]) == 2
    assert all(len(set(builds.values())) == 1 for _, builds in first.values())

    # a night with no new profile or consent: the rows of the first build stay
    with duckdb.connect(str(warehouse)) as con:
        wf.insert_raw(con, "events", [wf.make_event("e1", "page_view", "2024-03-01 10:00:00")])
    wf.dbt_ok(BUILD, warehouse, tmp_path)
    assert _both(warehouse) == first

    # a new version of r1, r3 removed (as the erasure sweep removes raw rows), a new record
    # r4, u2 withdraws, a new subject u4: only those keys are recomputed
    with duckdb.connect(str(warehouse)) as con:
        wf.insert_raw(
            con,
            "profiles",
            [
                {"record_id": "r1", "source_system": "crm", "user_id": "u1", "city": "Paris"},
                {"record_id": "r4", "source_system": None, "user_id": "u4"},
            ],
            file="profiles/part-2.jsonl",
            loaded_at=datetime(2024, 3, 3),
        )
        con.execute("delete from raw.profiles where record_id = 'r3'")
        wf.insert_raw(
            con,
            "consent",
            [_consent("u2", "false", 2), _consent("u4", "true", 2)],
            file="consent/part-2.jsonl",
            loaded_at=datetime(2024, 3, 3),
        )
    wf.dbt_ok(BUILD, warehouse, tmp_path)
    second = _both(warehouse)
    (first_build,) = set(first[PROFILES][1].values())
    profile_builds = second[PROFILES][1]
    assert sorted(profile_builds) == ["r1", "r2", "r4"]
    assert profile_builds["r2"] == first_build  # kept
    assert profile_builds["r1"] == profile_builds["r4"] != first_build  # recomputed
    assert "Paris" in second[PROFILES][0][0]
    consent_builds = second[CONSENTS][1]
    assert consent_builds["u1"] == first_build
    assert consent_builds["u2"] == consent_builds["u4"] != first_build
    assert ("user_id", "u2", "personalization", False) in [r[:4] for r in second[CONSENTS][0]]
    assert {t: rows for t, (rows, _) in second.items()} == _full_rebuild(
        warehouse, tmp_path, "rebuilt"
    )

    # u1 asks to be erased (dbt's safety net, raw rows still there): their record and their
    # consents go, the other keys stay
    with duckdb.connect(str(warehouse)) as con:
        wf.insert_raw(con, "erasure", [{"user_id": "u1", "_requested_at": datetime(2024, 3, 4)}])
    wf.dbt_ok(BUILD, warehouse, tmp_path)
    erased = _both(warehouse)
    assert sorted(erased[PROFILES][1]) == ["r2", "r4"]
    assert sorted(erased[CONSENTS][1]) == ["u2", "u4"]
    assert erased[PROFILES][1]["r2"] == first_build
    assert erased[CONSENTS][1]["u2"] == consent_builds["u2"]
    assert {t: rows for t, (rows, _) in erased.items()} == _full_rebuild(
        warehouse, tmp_path, "rebuilt_erased"
    )
    with duckdb.connect(str(warehouse)) as con:
        con.execute("delete from raw.erasure")
    wf.dbt_ok(BUILD, warehouse, tmp_path)
    second = _both(warehouse)
    assert sorted(second[PROFILES][1]) == ["r1", "r2", "r4"]

    # another valid age range renders another profiles view (r2's age 41 becomes invalid): the
    # profiles are rebuilt, the consents kept
    narrower = ["--vars", "{max_valid_age: 40}"]
    wf.dbt_ok([*BUILD, *narrower], warehouse, tmp_path)
    third = _both(warehouse)
    assert third[CONSENTS] == second[CONSENTS]
    assert third[PROFILES][0] != second[PROFILES][0]
    assert set(third[PROFILES][1].values()).isdisjoint(second[PROFILES][1].values())
    assert {t: rows for t, (rows, _) in third.items()} == _full_rebuild(
        warehouse, tmp_path, "rebuilt_narrower", narrower
    )
    wf.dbt_ok([*BUILD, *narrower], warehouse, tmp_path)
    assert _both(warehouse) == third
