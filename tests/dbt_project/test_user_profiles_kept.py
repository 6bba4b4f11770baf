"""Nightly, `int_user_profiles` (the table `user_profiles` and `int_analytics_consents_resolved`
are views of) recomputes the people whose identifiers, surviving fields, age on the as-of date,
activity or consents changed, deletes the people identity_map no longer has, keeps every other
row as it was, and equals a full rebuild."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta

import dbt_warehouse_fixture as wf
import duckdb

TABLE = "intermediate.int_user_profiles"
BUILD = [*wf.PRE_IDENTITY_RUN, "int_run_settings_resolved"]
POST_IDENTITY = ["run", "--select", "+user_profiles", "int_analytics_consents_resolved"]


def _stored(warehouse) -> dict[str, tuple]:
    """Per person: the build that wrote the row, and the row without it."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute(
            f"select _built_at, * exclude (_built_at) from {TABLE} order by person_id"
        ).fetchall()
        names = [column[0] for column in con.description]
    return {row[1]: (row[0], dict(zip(names[1:], row[1:], strict=True))) for row in rows}


def _person_of(warehouse, identifier: str) -> str:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(
            "select person_id from ml.identity_assignments where identifier = ?", [identifier]
        ).fetchone()[0]


def _night(warehouse, tmp_path, as_of: datetime, *, assign: bool = False) -> dict[str, tuple]:
    with duckdb.connect(str(warehouse)) as con:
        con.execute("update config.run_settings set as_of = ?", [as_of])
    wf.dbt_ok(BUILD, warehouse, tmp_path)
    if assign:
        with duckdb.connect(str(warehouse)) as con:
            wf.assign_identities(con)
    wf.dbt_ok(POST_IDENTITY, warehouse, tmp_path)
    return _stored(warehouse)


def _withdraw(con, user_id: str, purpose: str, at: datetime) -> None:
    """A consent file withdrawing `purpose` for `user_id`, recorded at `at`, loaded a day later."""
    wf.insert_raw(
        con,
        "consent",
        [{"user_id": user_id, "purpose": purpose, "granted": "no", "_recorded_at": at}],
        file=f"consent/{purpose}-{at:%Y%m%d}.jsonl",
        loaded_at=at + timedelta(days=1),
    )


def _assert_equals_full_refresh(warehouse, tmp_path, name: str) -> None:
    rebuilt = tmp_path / name
    rebuilt.mkdir()
    shutil.copyfile(warehouse, rebuilt / "warehouse.duckdb")
    wf.dbt_ok([*POST_IDENTITY, "--full-refresh"], rebuilt / "warehouse.duckdb", rebuilt)
    nightly = {person: row for person, (_, row) in _stored(warehouse).items()}
    full = {person: row for person, (_, row) in _stored(rebuilt / "warehouse.duckdb").items()}
    assert nightly == full
    assert not any(row["_is_removal"] for row in nightly.values())


def test_only_the_people_whose_inputs_changed_are_recomputed(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        wf.create_raw_tables(con)
        wf.load_config(con)
        wf.populate_sample(con)
    first = _night(warehouse, tmp_path, datetime(2024, 4, 30), assign=True)
    u1, u2, u3, a5 = (_person_of(warehouse, i) for i in ("u1", "u2", "u3", "a5"))
    assert {u1, u2, u3, a5} <= set(first)
    assert first[u1][1]["age"] == 33  # born 1990-05-01
    assert first[u3][1]["has_personalization_consent"] is True  # the default
    with duckdb.connect(str(warehouse), read_only=True) as con:
        published = [c[0] for c in con.execute("describe marts.user_profiles").fetchall()]
    assert "_inputs_hash" not in published and "_is_removal" not in published
    _assert_equals_full_refresh(warehouse, tmp_path, "first")

    # A night: u1's birthday passes, u2 comes back, u3 withdraws personalization (nothing
    # else of theirs changes), and the identity step merges the device a5 into u2's person.
    with duckdb.connect(str(warehouse)) as con:
        wf.insert_raw(
            con,
            "events",
            [wf.make_event("ev-20", "page_view", "2024-05-01 10:00:00", user_id="u2")],
            file="events/day2.jsonl",
            loaded_at=datetime(2024, 5, 2),
        )
        _withdraw(con, "u3", "personalization", datetime(2024, 5, 1))
        con.execute(
            "update ml.identity_assignments set person_id = ? where person_id = ?", [u2, a5]
        )
    second = _night(warehouse, tmp_path, datetime(2024, 5, 2))

    assert a5 not in second, "a person identity_map no longer has is deleted"
    assert second[u1][1]["age"] == 34
    assert second[u2][1]["n_events"] == first[u2][1]["n_events"] + 1
    assert second[u3][1]["has_personalization_consent"] is False
    assert second[u2][1]["n_anonymous_ids"] == first[u2][1]["n_anonymous_ids"] + 1
    rewritten = {person for person in second if second[person][0] != first[person][0]}
    assert rewritten == {u1, u2, u3}
    kept = set(second) - rewritten
    assert kept and all(second[p][1] == first[p][1] for p in kept)
    _assert_equals_full_refresh(warehouse, tmp_path, "second")

    # a night with nothing new rewrites nobody
    assert _night(warehouse, tmp_path, datetime(2024, 5, 2)) == second

    # an analytics withdrawal alone rewrites its person (int_analytics_consents_resolved is a
    # view of that column)
    with duckdb.connect(str(warehouse)) as con:
        _withdraw(con, "u3", "analytics", datetime(2024, 5, 2))
    fourth = _night(warehouse, tmp_path, datetime(2024, 5, 2))
    assert {person for person in fourth if fourth[person][0] != second[person][0]} == {u3}
    assert second[u3][1]["has_analytics_consent"] is True
    assert fourth[u3][1]["has_analytics_consent"] is False
    with duckdb.connect(str(warehouse), read_only=True) as con:
        resolved = con.execute(
            "select has_analytics_consent from intermediate.int_analytics_consents_resolved "
            "where person_id = ?",
            [u3],
        ).fetchone()
    assert resolved == (False,)
    _assert_equals_full_refresh(warehouse, tmp_path, "fourth")
