"""Nightly, the staging tests marked `__new_deliveries__` read only the rows loaded since the
last successful build of the event chain (`audit.incremental_baseline`); a full refresh, or a
warehouse without a baseline, tests every row."""

from __future__ import annotations

import json
import shutil
from datetime import datetime

import dbt_warehouse_fixture as wf
import duckdb

BUILT_AT = datetime(2024, 3, 3)
NOT_NULL_EVENT_ID = "not_null_stg_events__events_event_id"
STAGING_EVENT_TESTS = ["--select", "stg_events__events", "--exclude", "resource_type:unit_test"]


def _failures(work_dir, test: str) -> int:
    """Rows the last dbt call's `test` found (0 when it passed)."""
    results = json.loads((work_dir / "target" / "run_results.json").read_text())["results"]
    (found,) = [r for r in results if r["unique_id"].split(".")[2] == test]
    return int(found["failures"] or 0)


def _insert_bad_event(warehouse, name: str, loaded_at: datetime) -> None:
    """A row `not_null` fails: ingest never lets a null event_id through, so written directly."""
    event = wf.make_event(None, "page_view", "2024-03-01 10:00:00", anonymous_id=name)
    with duckdb.connect(str(warehouse)) as con:
        wf.insert_raw(con, "events", [event], file=f"events/{name}.jsonl", loaded_at=loaded_at)


def test_a_bad_row_fails_its_staging_test_only_while_it_is_new(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        wf.create_raw_tables(con)
        wf.load_config(con)
    _insert_bad_event(warehouse, "old", datetime(2024, 3, 2))
    views = wf.run_dbt(["run", "--select", "+stg_events__events"], warehouse, tmp_path)
    assert views.returncode == 0, views.stdout[-4000:]
    # no baseline: every row is tested
    first = wf.run_dbt(["build", *STAGING_EVENT_TESTS], warehouse, tmp_path)
    assert first.returncode != 0
    assert _failures(tmp_path, NOT_NULL_EVENT_ID) == 1

    with duckdb.connect(str(warehouse)) as con:
        con.execute("create schema if not exists audit")
        con.execute(
            "create table audit.incremental_baseline "
            "(kind varchar, key varchar, value varchar, built_at timestamp)"
        )
        con.execute(
            "insert into audit.incremental_baseline values ('fingerprint', 'code', 'x', ?)",
            [BUILT_AT],
        )
    nightly = wf.run_dbt(["build", *STAGING_EVENT_TESTS], warehouse, tmp_path)
    assert nightly.returncode == 0, nightly.stdout[-4000:]
    assert _failures(tmp_path, NOT_NULL_EVENT_ID) == 0

    full = wf.run_dbt(["build", "--full-refresh", *STAGING_EVENT_TESTS], warehouse, tmp_path)
    assert full.returncode != 0
    assert _failures(tmp_path, NOT_NULL_EVENT_ID) == 1

    _insert_bad_event(warehouse, "new", datetime(2024, 3, 4))
    new = wf.run_dbt(["build", *STAGING_EVENT_TESTS], warehouse, tmp_path)
    assert new.returncode != 0
    assert _failures(tmp_path, NOT_NULL_EVENT_ID) == 1  # the new row, not the old one too


UNIQUE_DEDUPLICATED = "unique_int_events_deduplicated_event_id"


def test_the_event_models_test_the_rows_of_their_latest_build(tmp_path):
    """An incremental event model's tests read the rows its latest build wrote (`__this__`):
    a duplicate among them fails; one left by an earlier build is not read again (delete+insert
    by event_id cannot leave one, so reading all 17 M rows nightly would find nothing)."""
    warehouse = tmp_path / "warehouse.duckdb"
    events = [
        wf.make_event(f"e{i}", "page_view", f"2024-03-01 10:0{i}:00", user_id="u1")
        for i in range(3)
    ]
    with duckdb.connect(str(warehouse)) as con:
        wf.create_raw_tables(con)
        wf.load_config(con)
        wf.insert_raw(con, "events", events, file="events/a.jsonl", loaded_at=BUILT_AT)
    built = wf.run_dbt(
        ["build", "--select", "+int_events_deduplicated", "--exclude", "resource_type:unit_test"],
        warehouse,
        tmp_path,
    )
    assert built.returncode == 0, built.stdout[-4000:]
    assert _failures(tmp_path, UNIQUE_DEDUPLICATED) == 0

    table = "intermediate.int_events_deduplicated"
    with duckdb.connect(str(warehouse)) as con:
        # a duplicate an earlier build wrote
        con.execute(
            f"insert into {table} select * replace "
            "(_deduplicated_at - interval 1 day as _deduplicated_at) "
            f"from {table} where event_id = 'e1'"
        )
    tests = ["test", "--select", "int_events_deduplicated", "--exclude", "resource_type:unit_test"]
    earlier = wf.run_dbt(tests, warehouse, tmp_path)
    assert earlier.returncode == 0, earlier.stdout[-4000:]
    assert _failures(tmp_path, UNIQUE_DEDUPLICATED) == 0

    with duckdb.connect(str(warehouse)) as con:
        con.execute(
            f"update {table} set _deduplicated_at = (select max(_deduplicated_at) from {table})"
        )
    latest = wf.run_dbt(tests, warehouse, tmp_path)
    assert latest.returncode != 0
    assert _failures(tmp_path, UNIQUE_DEDUPLICATED) == 1


RECOMMENDATION_UNIQUENESS = (
    "unique_combination_of_columns_recommendations_person_id__rank",
    "unique_combination_of_columns_recommendations_person_id__item_id",
)


def test_recommendation_uniqueness_reads_the_people_served_since_last_tested(
    built_warehouse, tmp_path
):
    """The uniqueness tests of marts.recommendations read the lists served since the ml_marts
    phase last passed (`tested` in audit.incremental_baseline): a repeated row in a list served
    before is not read again; once that person is served again, it fails both."""
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copyfile(built_warehouse.path, warehouse)
    with duckdb.connect(str(warehouse)) as con:
        con.execute(
            "create table ml.recommendations_served as select distinct person_id, "
            "timestamp '2024-03-01' as served_at from ml.recommendations"
        )
        con.execute("create schema if not exists audit")
        con.execute(
            "create table if not exists audit.incremental_baseline "
            "(kind varchar, key varchar, value varchar, built_at timestamp)"
        )
        con.execute(
            "insert into audit.incremental_baseline values ('tested', 'ml_marts', '', ?)",
            [datetime(2024, 3, 2)],
        )
        person = con.execute("select min(person_id) from ml.recommendations").fetchone()[0]
        con.execute(
            "insert into ml.recommendations select * from ml.recommendations "
            "where person_id = ? and rank = 1",
            [person],
        )
    tests = ["test", "--select", "recommendations", "--exclude", "resource_type:unit_test"]

    def failures() -> list[int]:
        results = json.loads((tmp_path / "target" / "run_results.json").read_text())["results"]
        return [
            int(result["failures"] or 0)
            for name in RECOMMENDATION_UNIQUENESS
            for result in results
            if result["unique_id"].split(".")[2].startswith(name)
        ]

    before = wf.run_dbt(tests, warehouse, tmp_path)
    assert before.returncode == 0, before.stdout[-4000:]
    assert failures() == [0, 0]

    with duckdb.connect(str(warehouse)) as con:
        con.execute(
            "update ml.recommendations_served set served_at = timestamp '2024-03-03' "
            "where person_id = ?",
            [person],
        )
    served = wf.run_dbt(tests, warehouse, tmp_path)
    assert served.returncode != 0
    assert failures() == [1, 1]
