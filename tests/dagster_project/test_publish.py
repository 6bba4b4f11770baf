"""The published snapshot: a night's snapshot starts from the last one and replaces only the
events rewritten since, the lists of the people served since and, in every other table, the
rows that changed, and is then the same as one written afresh; when that cannot be trusted (an
erasure, an event gone, most rows changed), the table is copied."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from dagster_project.encryption import STORAGE_VERSION
from dagster_project.publish import publish_snapshot

TABLES = {"events": "marts.events", "items": "marts.items"}


@pytest.fixture
def con(tmp_path: Path):
    connection = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    connection.execute("create schema intermediate; create schema marts; create schema audit")
    connection.execute(
        "create table intermediate.int_events_identified as "
        "select 'e' || range as event_id, range % 5 as person_id, range::double as value, "
        "timestamp '2026-01-01' as _identified_at from range(1000)"
    )
    connection.execute(
        "create view marts.events as select event_id, person_id, value "
        "from intermediate.int_events_identified"
    )
    connection.execute("create table marts.items as select range as item_id from range(3)")
    connection.execute(
        "create table audit.erasure_registry "
        "(subject_token varchar, identifier_type varchar, registered_at timestamp)"
    )
    yield connection
    connection.close()


def published(target: Path) -> tuple[list, list, datetime]:
    with duckdb.connect(str(target), read_only=True) as snapshot:
        events = snapshot.execute("select * from events order by event_id").fetchall()
        items = snapshot.execute("select * from items order by item_id").fetchall()
        through = snapshot.execute("select events_identified_through from publish_info")
        return events, items, through.fetchall()[0][0]


def current(con) -> list:
    return con.execute("select * from marts.events order by event_id").fetchall()


def publish(con, target: Path, at: str) -> str:
    said: list[str] = []
    publish_snapshot(con, target, datetime.fromisoformat(at), "run", TABLES, log=said.append)
    return said[0]


def test_a_night_replaces_only_the_rewritten_events_and_equals_a_fresh_snapshot(con, tmp_path):
    target = tmp_path / "published" / "personalization.duckdb"
    assert publish(con, target, "2026-01-01 01:00") == "published events: no earlier snapshot"
    # a night: one event re-identified, one new, an item more
    con.execute(
        "update intermediate.int_events_identified set person_id = 99, "
        "_identified_at = timestamp '2026-01-02' where event_id = 'e7'"
    )
    con.execute(
        "insert into intermediate.int_events_identified "
        "values ('new', 1, 1.0, timestamp '2026-01-02')"
    )
    con.execute("insert into marts.items values (3)")
    said = publish(con, target, "2026-01-02 01:00")
    assert said.startswith("published events: events rewritten after 2026-01-01")
    events, items, through = published(target)
    assert events == current(con) and len(events) == 1001
    assert ("e7", 99, 7.0) in events and items == [(0,), (1,), (2,), (3,)]
    assert through == datetime(2026, 1, 2)
    fresh = tmp_path / "fresh.duckdb"
    publish(con, fresh, "2026-01-02 01:00")
    assert published(fresh) == published(target)
    # written in the pipeline's storage format, the night's copy of the last one too
    for snapshot in (target, fresh):
        with duckdb.connect(str(snapshot), read_only=True) as reader:
            tags = reader.execute("select tags from duckdb_databases() where not internal")
            assert tags.fetchall() == [({"storage_version": f"{STORAGE_VERSION}+"},)]


def test_an_event_gone_or_an_erasure_copies_every_event(con, tmp_path):
    target = tmp_path / "personalization.duckdb"
    publish(con, target, "2026-01-01 01:00")
    # an event left without a rewrite (what a full rebuild looks like to the rows left)
    con.execute("delete from intermediate.int_events_identified where event_id = 'e3'")
    assert publish(con, target, "2026-01-02 01:00").endswith("one left: all copied")
    assert published(target)[0] == current(con)
    con.execute("insert into audit.erasure_registry values ('t', 'user_id', '2026-01-02 12:00')")
    con.execute("update intermediate.int_events_identified set value = null where event_id = 'e4'")
    said = publish(con, target, "2026-01-03 01:00")
    assert said == "published events: an erasure since the earlier snapshot"
    assert published(target)[0] == current(con)
    # the next night trusts the snapshot again
    assert publish(con, target, "2026-01-04 01:00").startswith("published events: events rewri")


def test_a_night_replaces_the_recommendations_of_the_people_served_only(con, tmp_path):
    """Between model selections the snapshot keeps the lists of people not served again: the
    people served after the last snapshot get tonight's rows, those no longer served lose
    theirs, and the result equals a snapshot written afresh. When most people were served,
    everything is copied."""
    tables = {**TABLES, "recommendations": "marts.recommendations"}
    con.execute("create schema ml")
    con.execute(
        "create table ml.recommendations as select 'p' || (range // 3) as person_id, "
        "range % 3 + 1 as rank, 'i' || range as item_id from range(30)"
    )
    con.execute("create view marts.recommendations as select * from ml.recommendations")
    con.execute(
        "create table ml.recommendations_served as select 'p' || range as person_id, "
        "timestamp '2026-01-01 00:30' as served_at from range(10)"
    )

    def night(at: str) -> list[str]:
        said: list[str] = []
        publish_snapshot(con, target, datetime.fromisoformat(at), "run", tables, log=said.append)
        return said

    def snapshot_rows(path: Path) -> list:
        with duckdb.connect(str(path), read_only=True) as snapshot:
            return snapshot.execute("select * from recommendations order by all").fetchall()

    def warehouse_rows() -> list:
        return con.execute("select * from ml.recommendations order by all").fetchall()

    target = tmp_path / "personalization.duckdb"
    assert night("2026-01-01 01:00")[1] == "published recommendations: all copied"
    # p1 served again (a new list), p2 no longer served (consent withdrawn)
    con.execute("delete from ml.recommendations where person_id in ('p1', 'p2')")
    con.execute("insert into ml.recommendations values ('p1', 1, 'new')")
    con.execute("delete from ml.recommendations_served where person_id = 'p2'")
    con.execute(
        "update ml.recommendations_served set served_at = timestamp '2026-01-02 00:30' "
        "where person_id = 'p1'"
    )
    said = night("2026-01-02 01:00")
    assert said[1] == "published recommendations: the people served after 2026-01-01 00:30:00"
    assert snapshot_rows(target) == warehouse_rows()
    assert ("p1", 1, "new") in snapshot_rows(target) and len(snapshot_rows(target)) == 25
    fresh = tmp_path / "fresh.duckdb"
    publish_snapshot(con, fresh, datetime.fromisoformat("2026-01-02 01:00"), "run", tables)
    assert snapshot_rows(fresh) == snapshot_rows(target)
    # a model selection's night serves everyone: all copied
    con.execute("update ml.recommendations set item_id = item_id || 'x'")
    con.execute("update ml.recommendations_served set served_at = timestamp '2026-01-03 00:30'")
    assert night("2026-01-03 01:00")[1].endswith("most people were served: all copied")
    assert snapshot_rows(target) == warehouse_rows()


def test_other_tables_replace_only_their_changed_rows(con, tmp_path):
    """Every other table of a copied snapshot keeps its unchanged rows: the rows that differ
    (by a hash of every column) are deleted and inserted. A table most of whose rows changed,
    whose columns changed, or with identical rows (where a set difference is not exact) is
    copied; each way gives what a fresh snapshot holds."""
    con.execute(
        "create table marts.user_profiles as select 'p' || range as person_id, "
        "range % 7 as age, case when range % 3 = 0 then null else 'x' end as city "
        "from range(200)"
    )
    con.execute("create table marts.flags as select range % 2 as flag from range(10)")
    tables = {**TABLES, "user_profiles": "marts.user_profiles", "flags": "marts.flags"}
    target = tmp_path / "personalization.duckdb"

    def night(at: str) -> dict[str, str]:
        said: list[str] = []
        publish_snapshot(con, target, datetime.fromisoformat(at), "run", tables, log=said.append)
        return {line.split(":")[0].removeprefix("published "): line for line in said[2:]}

    def rows(path: Path, name: str) -> list:
        with duckdb.connect(str(path), read_only=True) as snapshot:
            return snapshot.execute(f"select * from {name} order by all").fetchall()

    def same_as_fresh(at: str) -> None:
        fresh = tmp_path / f"fresh-{at[:10]}.duckdb"
        publish_snapshot(con, fresh, datetime.fromisoformat(at), "run", tables)
        for name in tables:
            assert rows(target, name) == rows(fresh, name), name
            assert (
                rows(target, name)
                == con.execute(f"select * from {tables[name]} order by all").fetchall()
            )

    assert "200 rows, copied" in night("2026-01-01 01:00")["user_profiles"]
    # a night: one profile changed (a null filled), one gone, one new
    con.execute("update marts.user_profiles set city = 'y' where person_id = 'p3'")
    con.execute("delete from marts.user_profiles where person_id = 'p4'")
    con.execute("insert into marts.user_profiles values ('new', 1, null)")
    said = night("2026-01-02 01:00")
    assert "200 rows, 4 changed rows replaced" in said["user_profiles"]
    assert "3 rows, 0 changed rows replaced" in said["items"]
    assert "10 rows, copied (rows repeat)" in said["flags"]
    same_as_fresh("2026-01-02 01:00")
    # most rows changed: copied
    con.execute("update marts.user_profiles set age = age + 1 where person_id <> 'p1'")
    assert "copied (most rows changed)" in night("2026-01-03 01:00")["user_profiles"]
    same_as_fresh("2026-01-03 01:00")
    # a column more: copied, with it
    con.execute("alter table marts.user_profiles add column tier varchar default 'gold'")
    assert "200 rows, copied," in night("2026-01-04 01:00")["user_profiles"]
    same_as_fresh("2026-01-04 01:00")
    # the night after trusts the table again
    con.execute("update marts.user_profiles set tier = 'silver' where person_id = 'p9'")
    assert "2 changed rows replaced" in night("2026-01-05 01:00")["user_profiles"]
    same_as_fresh("2026-01-05 01:00")


def test_sessions_and_history_replace_the_rows_written_since_the_last_snapshot(con, tmp_path):
    """The sessions, the profiles and the profile history change only by rows written again (a
    newer mark) and leave with their key: a night replaces the rows written since the
    snapshot's mark and drops the keys gone, and equals a fresh snapshot; most rows written:
    copied."""
    con.execute("create schema snapshots")
    con.execute(
        "create table intermediate.int_user_profiles as select 'p' || range as person_id, "
        "range as age, timestamp '2026-01-01' as _built_at from range(40)"
    )
    con.execute(
        "create view marts.user_profiles as select person_id, age "
        "from intermediate.int_user_profiles"
    )
    con.execute(
        "create table intermediate.int_sessions as select 's' || range as session_id, "
        "range % 5 as person_id, timestamp '2026-01-01' as _identified_at from range(100)"
    )
    con.execute(
        "create view marts.sessions as select session_id, person_id from intermediate.int_sessions"
    )
    con.execute(
        "create table snapshots.user_profiles_history as select 'v' || range as dbt_scd_id, "
        "'p' || range as person_id, 'x' as city, timestamp '2026-01-01' as valid_from, "
        "null::timestamp as valid_to from range(50)"
    )
    tables = {
        **TABLES,
        "sessions": "marts.sessions",
        "user_profiles": "marts.user_profiles",
        "user_profiles_history": "snapshots.user_profiles_history",
    }
    target = tmp_path / "personalization.duckdb"

    def night(at: str) -> dict[str, str]:
        said: list[str] = []
        publish_snapshot(con, target, datetime.fromisoformat(at), "run", tables, log=said.append)
        return {line.split(":")[0].removeprefix("published "): line for line in said[2:]}

    def rows(path: Path, name: str) -> list:
        with duckdb.connect(str(path), read_only=True) as snapshot:
            return snapshot.execute(f"select * from {name} order by all").fetchall()

    def same_as_fresh(at: str) -> None:
        fresh = tmp_path / f"fresh-{at[:10]}.duckdb"
        publish_snapshot(con, fresh, datetime.fromisoformat(at), "run", tables)
        for name in tables:
            assert rows(target, name) == rows(fresh, name), name
            assert (
                rows(target, name)
                == con.execute(f"select * from {tables[name]} order by all").fetchall()
            )

    assert "100 rows, copied" in night("2026-01-01 01:00")["sessions"]
    # a night: a session re-identified, one gone, one new; a version closed and its next opened
    con.execute(
        "update intermediate.int_sessions set person_id = 9, _identified_at = '2026-01-02' "
        "where session_id = 's7'"
    )
    con.execute("delete from intermediate.int_sessions where session_id = 's8'")
    con.execute("insert into intermediate.int_sessions values ('new', 1, '2026-01-02')")
    con.execute(
        "update snapshots.user_profiles_history set valid_to = '2026-01-02' where dbt_scd_id = 'v3'"
    )
    con.execute(
        "insert into snapshots.user_profiles_history values ('v3b', 'p3', 'y', '2026-01-02', null)"
    )
    # a profile recomputed, a person gone, a new one
    con.execute(
        "update intermediate.int_user_profiles set age = 99, _built_at = '2026-01-02' "
        "where person_id = 'p5'"
    )
    con.execute("delete from intermediate.int_user_profiles where person_id = 'p6'")
    con.execute("insert into intermediate.int_user_profiles values ('p-new', 1, '2026-01-02')")
    said = night("2026-01-02 01:00")
    assert "100 rows, the rows written after 2026-01-01 00:00:00 replaced" in said["sessions"]
    assert "40 rows, the rows written after 2026-01-01 00:00:00 replaced" in said["user_profiles"]
    assert (
        "51 rows, the rows written after 2026-01-01 00:00:00 replaced"
        in said["user_profiles_history"]
    )
    same_as_fresh("2026-01-02 01:00")
    # nothing written: nothing replaced, and the mark stays
    said = night("2026-01-03 01:00")
    assert "the rows written after 2026-01-02 00:00:00 replaced" in said["sessions"]
    same_as_fresh("2026-01-03 01:00")
    # a full rebuild writes every row again: copied
    con.execute("update intermediate.int_sessions set _identified_at = '2026-01-04'")
    assert "copied (most rows written" in night("2026-01-04 01:00")["sessions"]
    same_as_fresh("2026-01-04 01:00")
