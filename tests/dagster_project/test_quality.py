"""Quality helpers on small real DuckDB databases: reconciliation, audit SQL, consistency,
and the suite files themselves."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from dagster_project.ingest.loader import ensure_tables, ingest_source
from dagster_project.ingest.sources import SOURCES
from dagster_project.ingest.sql import install_macros
from dagster_project.quality.audit import AuditOutcome, column_profile_sql, write_data_audit
from dagster_project.quality.consistency import CONSISTENCY_CHECKS, find_inconsistencies
from dagster_project.quality.expectations import (
    SUITES_DIR,
    _duplicate_rows,
    load_suites,
    referenced_columns,
    suite_rows,
)
from dagster_project.quality.reconciliation import reconcile_source
from tests.conftest import TEST_PII_KEY


@pytest.fixture
def con(tmp_path: Path):
    connection = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    connection.execute("set TimeZone = 'UTC'")
    connection.execute(f"attach '{tmp_path / 'pii.duckdb'}' as pii")
    install_macros(connection, TEST_PII_KEY.encode())
    ensure_tables(connection)
    yield connection
    connection.close()


def test_reconciliation_passes_after_ingest_and_catches_a_lost_row(con, tmp_path):
    raw = tmp_path / "raw"
    (raw / "events").mkdir(parents=True)
    (raw / "events" / "a.csv").write_text(
        "event_id,event_type,timestamp,user_id\n"
        "e1,view,2026-10-01T10:00:00Z,u1\ne2,view,never,u1\ne3,view,1790841600,u2\n"
    )
    ingest_source(con, "events", raw, datetime(2026, 11, 1))
    counts = reconcile_source(con, "events")
    assert (counts["files"], counts["rows_read"], counts["rows_loaded"]) == (1, 3, 2)
    assert counts["unreconciled"].empty
    con.execute("delete from raw.events where event_id = 'e3'")  # a row silently lost
    bad = reconcile_source(con, "events")["unreconciled"]
    assert bad[["file", "rows_loaded", "rows_in_raw"]].values.tolist() == [["events/a.csv", 2, 1]]
    # Once erasures exist, fewer rows than loaded is their doing and is reported, not failed;
    # more rows than loaded (a double load) still fails.
    con.execute("create table audit.erasure_registry as select 'token' as subject_token")
    erased = reconcile_source(con, "events")
    assert erased["unreconciled"].empty and erased["rows_erased"] == 1
    con.execute("insert into raw.events select * from raw.events")  # 2 rows: as loaded
    con.execute("insert into raw.events select * from raw.events limit 1")  # 3 rows
    assert len(reconcile_source(con, "events")["unreconciled"]) == 1


def test_column_profile_counts_nulled_values_and_numbers(con):
    con.execute(
        """
        create schema staging;
        create table staging.stg as select * from (values
            (1.0::double, false, 'a', timestamp '2026-10-01 10:00'),
            (3.0, false, 'a', timestamp '2026-10-01 12:00'),
            (null, true, null, timestamp '2026-10-02 10:00')
        ) as t(price, is_price_invalid, category, occurred_at)
        """
    )
    described = [(r[0], r[1]) for r in con.execute("describe staging.stg").fetchall()]
    sql = column_profile_sql("staging.stg", described, "occurred_at")
    got = {r[0]: r[1:] for r in con.execute(f"select * from ({sql})").fetchall()}
    assert set(got) == {"price", "category", "occurred_at", "*"}
    price = got["price"]  # data_type, rows, non_null, distinct, min, max, mean, var, invalid
    assert price[1:9] == (3, 2, 2, "1.0", "3.0", 2.0, 2.0, 1)
    assert got["category"][6:10] == (None, None, None, None)
    assert got["*"][10:] == (datetime(2026, 10, 2, 10, 0), 1.5)


def test_consistency_checks_find_shared_devices_and_conflicting_birth_dates(con):
    con.execute(
        """
        create schema staging; create schema marts;
        create table staging.stg_events__events as select * from (values
            ('d1', 'u1'), ('d1', 'u2'), ('d2', 'u3'), ('d2', 'u3'), (null, 'u4')
        ) as t(anonymous_id, user_id);
        create table staging.stg_profiles__profiles as select * from (values
            ('u1', 'crm', date '1980-01-01'), ('u1', 'shop', date '1981-01-01'),
            ('u2', 'crm', date '1990-01-01'), ('u2', 'shop', date '1990-01-01')
        ) as t(user_id, source_system, birth_date);
        create table marts.sessions as select * from (values
            ('s1', timestamp '2026-10-01 23:50', timestamp '2026-10-02 00:10'),
            ('s2', timestamp '2026-10-01 10:00', timestamp '2026-10-01 10:30')
        ) as t(session_id, started_at, ended_at);
        """
    )
    found = {c.name: find_inconsistencies(con, c) for c in CONSISTENCY_CHECKS}
    assert found["device_with_several_users"] == (1, [("d1", "2 users: u1, u2")])
    assert found["user_with_conflicting_birth_dates"] == (
        1,
        [("u1", "crm=1980-01-01, shop=1981-01-01")],
    )
    assert found["session_spanning_days"][0] == 1


def test_every_raw_source_has_a_suite_and_suites_are_valid_gx_json():
    raw = load_suites("raw")
    assert {s["meta"]["relation"] for s in raw} == {f"raw.{s}" for s in SOURCES}
    marts = load_suites("marts") + load_suites("ml_marts")
    assert {"marts.events", "marts.items", "marts.user_profiles", "marts.recommendations"} <= {
        s["meta"]["relation"] for s in marts
    }
    for path in SUITES_DIR.glob("*.json"):
        suite = json.loads(path.read_text())
        assert suite["name"] == path.stem
        assert all(e["type"].startswith("expect_") for e in suite["expectations"])
        assert referenced_columns(suite)


def test_a_big_table_is_validated_on_a_sample_but_its_keys_over_every_row(tmp_path):
    """Over PZ_GX_MAX_ROWS a suite sees a sample; a duplicate key the sample would likely miss
    (one pair in 50,000 rows, sample of 1,000) still fails the uniqueness expectation."""
    from dagster_project.quality.expectations import read_suite_frame, validate_suites

    connection = duckdb.connect(str(tmp_path / "big.duckdb"))
    connection.execute("create schema marts")
    connection.execute(
        "create table marts.things as select range as thing_id, range % 7 as score "
        "from range(50000) union all select 123 as thing_id, 1 as score"
    )
    suite = {
        "name": "marts_things",
        "meta": {"group": "test", "relation": "marts.things", "asset_key": ["marts", "things"]},
        "expectations": [
            {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "thing_id"}},
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "score"}},
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": "score", "min_value": 0, "max_value": 6},
            },
        ],
    }
    sampled = read_suite_frame(connection, suite, max_rows=1_000)
    again = read_suite_frame(connection, suite, max_rows=1_000)
    whole = read_suite_frame(connection, suite)
    connection.close()
    assert sampled.sampled and len(sampled.frame) == 1_000 and sampled.total_rows == 50_001
    assert not whole.sampled and len(whole.frame) == 50_001
    # the same rows on every read, spread over the whole table (not its first rows)
    pd.testing.assert_frame_equal(sampled.frame, again.frame)
    assert sampled.frame["thing_id"].nunique() == 1_000
    assert sampled.frame["thing_id"].min() < 2_500 and sampled.frame["thing_id"].max() > 47_500

    (outcome,) = validate_suites([suite], {"marts_things": sampled}, {}, tmp_path / "docs")
    by_type = {o.expectation: o for o in outcome.outcomes}
    unique = by_type["expect_column_values_to_be_unique"]
    assert not unique.success and unique.unexpected_count == 2  # both rows of the pair
    assert "50001 rows" in unique.observed
    assert by_type["expect_column_values_to_not_be_null"].success
    assert by_type["expect_column_values_to_be_between"].success
    assert (outcome.rows, outcome.total_rows) == (1_000, 50_001)


def test_a_raw_suite_validates_the_rows_loaded_since_the_last_build(tmp_path):
    """Rows loaded before the last build passed when they arrived: a bad old row is not read,
    a bad new one fails; with no new rows the newest load is validated; keys are unique over
    every row (a new row repeating an old key fails)."""
    from datetime import datetime

    from dagster_project.quality.expectations import (
        RECHECK_MAX_ROWS,
        read_suite_frame,
        validate_suites,
    )

    connection = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    connection.execute("create schema raw")
    connection.execute(
        "create table raw.things (thing_id bigint, score bigint, _loaded_at timestamp)"
    )
    connection.execute(
        "insert into raw.things values (1, null, '2024-03-01'), (2, 3, '2024-03-01'), "
        "(3, 4, '2024-03-05'), (2, 5, '2024-03-05')"
    )
    suite = {
        "name": "raw_things",
        "meta": {"group": "raw", "relation": "raw.things", "asset_key": ["raw", "things"]},
        "expectations": [
            {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "thing_id"}},
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "score"}},
        ],
    }
    built = datetime(2024, 3, 2)
    window = read_suite_frame(connection, suite, max_rows=1_000, since=built)
    assert sorted(window.frame["thing_id"]) == [2, 3] and window.total_rows == 4
    assert window.window == f"loaded since {built}"
    (outcome,) = validate_suites([suite], {"raw_things": window}, {}, tmp_path / "docs")
    by_type = {o.expectation: o for o in outcome.outcomes}
    assert by_type["expect_column_values_to_not_be_null"].success  # the old null is not read
    assert by_type["expect_column_values_to_be_unique"].unexpected_count == 2  # old and new 2

    rerun = read_suite_frame(connection, suite, since=datetime(2024, 3, 6))
    assert sorted(rerun.frame["thing_id"]) == [2, 3] and "newest load" in rerun.window
    # nothing new: a sample of the newest load, at most RECHECK_MAX_ROWS rows of it
    connection.execute(
        "insert into raw.things select 10 + range, 1, '2024-03-07' from range($n)",
        {"n": RECHECK_MAX_ROWS + 500},
    )
    rerun = read_suite_frame(connection, suite, max_rows=1_000_000, since=datetime(2024, 3, 8))
    assert len(rerun.frame) == RECHECK_MAX_ROWS and "newest load" in rerun.window
    assert rerun.frame["thing_id"].min() >= 10
    fresh = read_suite_frame(connection, suite, max_rows=1_000_000, since=datetime(2024, 3, 6))
    assert len(fresh.frame) == RECHECK_MAX_ROWS + 500  # new rows: all of them, up to max_rows
    everything = read_suite_frame(connection, suite)
    connection.close()
    assert len(everything.frame) == 4 + RECHECK_MAX_ROWS + 500 and everything.window is None


def _validate_from_mark(connection, suite: dict, docs: Path, run_id: str, at: datetime):
    """Validate a `meta.window` suite from its last mark, and move the mark if it passed."""
    from dagster_project.quality.expectations import (
        last_passed_through,
        read_suite_frame,
        record_passed_windows,
        validate_suites,
    )

    frame = read_suite_frame(connection, suite, since=last_passed_through(connection, suite))
    (outcome,) = validate_suites([suite], {suite["name"]: frame}, {}, docs)
    record_passed_windows(connection, [suite], {suite["name"]: frame}, [outcome], run_id, at)
    return frame, outcome


def test_a_windowed_suite_validates_the_rows_rewritten_since_it_last_passed(tmp_path):
    """A suite with `meta.window` reads its projection's table: first every row, then only
    the rows rewritten after the mark of its last pass; a failure keeps the mark (the bad rows
    are read again until they pass); keys stay unique over every row of its own relation."""
    from dagster_project.quality.expectations import (
        last_passed_through,
        read_suite_frame,
    )

    connection = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    connection.execute("create schema intermediate; create schema marts")
    connection.execute(
        "create table intermediate.things (thing_id bigint, score bigint, _rewritten_at timestamp)"
    )
    connection.execute(
        "create view marts.things as select thing_id, score from intermediate.things"
    )
    connection.execute(
        "insert into intermediate.things select range, 1, '2024-03-01' from range(100)"
    )
    suite = {
        "name": "marts_things",
        "meta": {
            "group": "marts",
            "relation": "marts.things",
            "asset_key": ["marts", "things"],
            "window": {"relation": "intermediate.things", "column": "_rewritten_at"},
        },
        "expectations": [
            {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "thing_id"}},
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "score"}},
        ],
    }

    def validate(run_id: str, at: datetime):
        return _validate_from_mark(connection, suite, tmp_path / "docs", run_id, at)

    assert last_passed_through(connection, suite) is None  # never validated: every row
    first, outcome = validate("r1", datetime(2024, 3, 1, 1))
    assert len(first.frame) == 100 and first.window is None and outcome.success
    assert last_passed_through(connection, suite) == datetime(2024, 3, 1)

    # a night rewrites two rows, one of them now bad, and adds one repeating an old key
    connection.execute(
        "update intermediate.things set score = case when thing_id = 3 then null else 2 end, "
        "_rewritten_at = '2024-03-02' where thing_id in (3, 4)"
    )
    connection.execute("insert into intermediate.things values (5, 1, '2024-03-02')")
    second, outcome = validate("r2", datetime(2024, 3, 2, 1))
    assert sorted(second.frame["thing_id"]) == [3, 4, 5] and second.total_rows == 101
    assert second.window == "_rewritten_at after 2024-03-01 00:00:00"
    by_type = {o.expectation: o for o in outcome.outcomes}
    assert not by_type["expect_column_values_to_not_be_null"].success
    assert by_type["expect_column_values_to_be_unique"].unexpected_count == 2  # over all rows
    assert last_passed_through(connection, suite) == datetime(2024, 3, 1)  # failed: kept

    # fixed the next night: the rows of both nights are read, and the suite passes
    connection.execute(
        "delete from intermediate.things where thing_id = 5 and score = 1 "
        "and _rewritten_at = '2024-03-02'"
    )
    connection.execute(
        "update intermediate.things set score = 7, _rewritten_at = '2024-03-03' where thing_id = 3"
    )
    third, outcome = validate("r3", datetime(2024, 3, 3, 1))
    assert sorted(third.frame["thing_id"]) == [3, 4] and outcome.success
    assert last_passed_through(connection, suite) == datetime(2024, 3, 3)

    # nothing rewritten since: a sample of the newest rewrite is validated again
    again = read_suite_frame(connection, suite, since=last_passed_through(connection, suite))
    assert list(again.frame["thing_id"]) == [3] and "none newer" in again.window
    # a column the projected table lacks: the suite's own relation, every row
    connection.execute(
        "create or replace view marts.things as "
        "select thing_id, score, thing_id * 2 as double_id from intermediate.things"
    )
    suite["expectations"].append(
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "double_id"}}
    )
    whole = read_suite_frame(connection, suite, since=datetime(2024, 3, 3))
    connection.close()
    assert len(whole.frame) == 100 and whole.window is None and whole.through is None


def test_a_large_value_set_is_checked_with_the_outcome_of_the_plain_expectation(
    tmp_path, monkeypatch
):
    """A value set over LARGE_VALUE_SET values is checked through a derived column: the same
    success and unexpected count as GX's own check, under the original column, for a suite
    that passes and one that fails (`mostly`); nulls are ignored in both; the frame is kept."""
    from dagster_project.quality import expectations
    from dagster_project.quality.expectations import SuiteFrame, validate_suites

    ids = [f"i{n}" for n in range(expectations.LARGE_VALUE_SET + 500)]
    values = ids[:1900] + ["bad1"] * 30 + ["bad2"] * 20 + [None] * 50
    frame = pd.DataFrame({"item_id": values})

    def suite(mostly: float) -> dict:
        return {
            "name": f"things_{int(mostly * 100)}",
            "meta": {"group": "test", "relation": "t", "asset_key": ["t"]},
            "expectations": [
                {
                    "type": "expect_column_values_to_be_in_set",
                    "kwargs": {
                        "column": "item_id",
                        "value_set": {"$PARAMETER": "item_ids"},
                        "mostly": mostly,
                    },
                },
                {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "item_id"}},
            ],
        }

    suites = [suite(0.95), suite(0.99)]

    def outcomes(docs: str):
        frames = {s["name"]: SuiteFrame(frame, len(frame)) for s in suites}
        results = validate_suites(suites, frames, {"item_ids": ids}, tmp_path / docs)
        return [
            [(o.expectation, o.column, o.success, o.unexpected_count) for o in r.outcomes]
            for r in results
        ]

    validated, column = expectations._derived_in_set_column(
        frame.copy(), suites[0]["expectations"][0], {"item_ids": ids}
    )
    assert column == "item_id__in__item_ids"
    assert validated["kwargs"]["value_set"] == [expectations.IN_SET]
    derived = outcomes("derived")
    monkeypatch.setattr(expectations, "LARGE_VALUE_SET", 10**9)
    plain = outcomes("plain")
    assert derived == plain
    in_set = [rows[0] for rows in derived]
    # 50 of the 1,950 non-null values are not ids: 2.6 %
    assert in_set == [
        ("expect_column_values_to_be_in_set", "item_id", True, 50),
        ("expect_column_values_to_be_in_set", "item_id", False, 50),
    ]
    assert list(frame.columns) == ["item_id"]


def test_duplicate_keys_are_counted_as_gx_counts_them_with_and_without_duplicates():
    con = duckdb.connect()
    con.execute(
        "create table t as select * from (values (1, 'a'), (1, 'b'), (2, null), (null, 'c'), "
        "(null, null), (null, null)) as v(k1, k2)"
    )
    assert _duplicate_rows(con, "t", ["k1", "k2"]) == 0  # all-null keys are ignored
    con.execute("insert into t values (2, null), (1, 'a'), (1, 'a')")
    # (1, 'a') three times, (2, null) twice: every row of a shared key
    assert _duplicate_rows(con, "t", ["k1", "k2"]) == 5
    assert _duplicate_rows(con, "t", ["k2"]) == 3  # 'a' three times; nulls ignored


def _audit(con, run: str, at: datetime, relations: dict, forced: bool):
    """The audit of `relations` for `run`: its outcome, and its rows by column (but the run)."""
    outcome = write_data_audit(con, run, at, relations, forced=forced)
    cursor = con.execute(
        "select * exclude (run_id, audited_at) from audit.data_audit where run_id = $run",
        {"run": run},
    )
    names = [d[0] for d in cursor.description]
    rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    return outcome, {row.pop("column_name"): row for row in rows}


def test_the_audit_reuses_a_source_profile_until_its_inputs_change(con):
    """A source whose raw rows (by their load keys), staging SQL and config are as at its last
    audit gets that profile again (this run's freshness); a new or deleted raw row, a reloaded
    file, another view or config row re-profiles it, and the reused profile equals a fresh one.
    A full refresh profiles it again."""
    con.execute(
        """
        create schema if not exists staging;
        create schema if not exists config;
        create table config.categorical_map as select 'x' as raw_key, 'y' as value;
        create or replace table raw.catalog as select * from (values
            ('i1', 2.0, 'a.csv', 1, timestamp '2026-10-01 10:00'),
            ('i2', 4.0, 'b.csv', 1, timestamp '2026-10-02 10:00')
        ) as t(item_id, price, _file, _line, _loaded_at);
        create view staging.stg_catalog as select item_id, price, _loaded_at from raw.catalog;
        """
    )
    relations = {"catalog": ("staging.stg_catalog", "_loaded_at")}

    def audit(run: str, day: int, forced: bool = False) -> tuple[AuditOutcome, dict]:
        return _audit(con, run, datetime(2026, 10, day), relations, forced)

    first, first_rows = audit("r1", 3)
    assert first.reused == () and first.rows == 3  # item_id, price and the source's `*` row
    second, second_rows = audit("r2", 4)
    assert second.reused == ("catalog",)
    assert second_rows["*"]["freshness_hours"] == first_rows["*"]["freshness_hours"] + 24
    for rows in (first_rows, second_rows):
        rows["*"].pop("freshness_hours")
    assert second_rows == first_rows

    forced, forced_rows = audit("r2-forced", 4, forced=True)
    forced_rows["*"].pop("freshness_hours")
    assert forced.reused == () and forced_rows == second_rows

    changes = [
        "insert into raw.catalog values ('i3', 8.0, 'c.csv', 1, timestamp '2026-10-03 10:00')",
        "delete from raw.catalog where item_id = 'i1'",
        # b.csv loaded again, same content: a new load
        "update raw.catalog set _loaded_at = timestamp '2026-10-04 10:00' where _file = 'b.csv'",
        "create or replace view staging.stg_catalog as "
        "select item_id, price * 2 as price, _loaded_at from raw.catalog",
        "insert into config.categorical_map values ('z', 'w')",
    ]
    for day, change in enumerate(changes, start=5):
        con.execute(change)
        outcome, rows = audit(f"r{day}", day)
        assert outcome.reused == (), change
        again, again_rows = audit(f"r{day}-again", day)
        assert again.reused == ("catalog",), change
        assert again_rows == rows, change
    assert rows["price"]["max_value"] == "16.0"


def test_a_source_that_only_gained_rows_merges_them_into_its_last_profile(con):
    """A night profiles only the rows loaded since the last audit and merges them into its
    profile, which then equals a profile of every row: counts, distinct values across loads
    (a value seen in both counts once), min / max as values ('10.0' after '9.0'), means and
    variances. A deleted raw row profiles the source whole again."""
    con.execute(
        """
        create schema if not exists staging;
        create or replace table raw.catalog as select * from (values
            ('i1', 9.0::double, 2, 'a', false, timestamp '2026-10-01 10:00', 'a.csv', 1),
            ('i2', 3.5, null, null, false, timestamp '2026-10-01 11:00', 'a.csv', 2),
            ('i3', null, 7, 'b', true, timestamp '2026-10-02 09:00', 'a.csv', 3)
        ) as t(item_id, price, quantity, category, is_price_invalid, seen_at, _file, _line);
        alter table raw.catalog add column _loaded_at timestamp
            default timestamp '2026-10-03 00:00';
        create view staging.stg_catalog as
            select item_id, price, quantity, category, is_price_invalid, seen_at, _loaded_at
            from raw.catalog;
        """
    )
    relations = {"catalog": ("staging.stg_catalog", "seen_at")}
    runs = iter(range(1, 31))

    def audit(run: str, forced: bool = False) -> tuple[AuditOutcome, dict]:
        at = datetime(2026, 10, 9, next(runs))  # the runs in order
        return _audit(con, run, at, relations, forced)

    def assert_equal_to_a_whole_profile(run: str) -> dict:
        merged, merged_rows = audit(run)
        assert merged.merged == ("catalog",) and merged.reused == ()
        whole, whole_rows = audit(f"{run}-whole", forced=True)
        assert whole.merged == ()
        assert merged_rows.keys() == whole_rows.keys()
        for column, row in whole_rows.items():
            for name, value in row.items():
                if name == "freshness_hours":
                    continue  # each run's own
                if isinstance(value, float):
                    assert merged_rows[column][name] == pytest.approx(value), (column, name)
                else:
                    assert merged_rows[column][name] == value, (column, name)
        return merged_rows

    first, _ = audit("r1")
    assert first.merged == () and first.reused == ()
    con.execute(
        """
        insert into raw.catalog values
            ('i4', 10.0, 2, 'a', false, timestamp '2026-10-04 08:00', 'b.csv', 1,
             timestamp '2026-10-05 00:00'),
            ('i1', 12.25, 1, 'c', false, timestamp '2026-10-04 09:00', 'b.csv', 2,
             timestamp '2026-10-05 00:00')
        """
    )
    rows = assert_equal_to_a_whole_profile("r2")
    assert rows["item_id"]["distinct_values"] == 4 and rows["item_id"]["rows"] == 5
    assert (rows["price"]["min_value"], rows["price"]["max_value"]) == ("3.5", "12.25")
    assert rows["price"]["nulled_invalid"] == 1
    assert rows["*"]["records_per_day"] == pytest.approx(5 / 3)
    assert rows["*"]["newest_record_at"] == datetime(2026, 10, 4, 9, 0)

    again, _ = audit("r3")  # nothing loaded since: the profile is reused
    assert again.reused == ("catalog",)

    con.execute(
        "insert into raw.catalog values ('i5', 1.0, 3, 'a', false, "
        "timestamp '2026-10-06 08:00', 'c.csv', 1, timestamp '2026-10-07 00:00')"
    )
    rows = assert_equal_to_a_whole_profile("r4")  # merged into the reused profile
    assert rows["quantity"]["mean"] == pytest.approx(15 / 5)

    con.execute("delete from raw.catalog where item_id = 'i2'")  # an erasure
    erased, erased_rows = audit("r5")
    assert erased.merged == () and erased.reused == ()
    assert erased_rows["item_id"]["distinct_values"] == 4
    assert erased_rows["price"]["min_value"] == "1.0"


def test_a_keyed_window_validates_the_lists_of_the_people_marked_since_it_last_passed(tmp_path):
    """A suite whose `meta.window` has a `key` reads the rows of its own relation whose key
    was marked (served) after its last pass; uniqueness counts every row of those keys, which
    is the whole table's count: only a key marked since can repeat."""
    from dagster_project.quality.expectations import (
        _duplicate_rows,
        last_passed_through,
        read_suite_frame,
    )

    connection = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    connection.execute("create schema ml; create schema marts")
    connection.execute(
        "create table marts.lists as select 'p' || (range // 3) as person_id, "
        "range % 3 + 1 as rank, 'i' || range as item_id from range(30)"
    )
    connection.execute(
        "create table ml.served as select distinct person_id, "
        "timestamp '2024-03-01' as served_at from marts.lists"
    )
    suite = {
        "name": "marts_lists",
        "meta": {
            "group": "ml_marts",
            "relation": "marts.lists",
            "asset_key": ["marts", "lists"],
            "window": {"relation": "ml.served", "column": "served_at", "key": "person_id"},
        },
        "expectations": [
            {
                "type": "expect_compound_columns_to_be_unique",
                "kwargs": {"column_list": ["person_id", "rank"]},
            },
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "item_id"}},
        ],
    }

    def validate(run_id: str, at: datetime):
        return _validate_from_mark(connection, suite, tmp_path / "docs", run_id, at)

    first, outcome = validate("r1", datetime(2024, 3, 1, 1))
    assert len(first.frame) == 30 and first.window is None and outcome.success
    assert last_passed_through(connection, suite) == datetime(2024, 3, 1)

    # a night serves p1 again, with a repeated rank and a missing item; p2's rows stay
    connection.execute("delete from marts.lists where person_id = 'p1'")
    connection.execute(
        "insert into marts.lists values ('p1', 1, 'x'), ('p1', 1, 'y'), ('p1', 2, null)"
    )
    connection.execute("update ml.served set served_at = '2024-03-02' where person_id = 'p1'")
    second, outcome = validate("r2", datetime(2024, 3, 2, 1))
    assert set(second.frame["person_id"]) == {"p1"} and len(second.frame) == 3
    assert second.window == "person_ids with served_at after 2024-03-01 00:00:00"
    by_type = {o.expectation: o for o in outcome.outcomes}
    unique = by_type["expect_compound_columns_to_be_unique"]
    assert (
        unique.unexpected_count
        == 2
        == _duplicate_rows(connection, "marts.lists", ["person_id", "rank"])
    )
    assert not by_type["expect_column_values_to_not_be_null"].success
    assert last_passed_through(connection, suite) == datetime(2024, 3, 1)  # failed: kept

    # p1 served again, fixed, and p3 served: both nights' people are read, and it passes
    connection.execute("delete from marts.lists where person_id = 'p1'")
    connection.execute(
        "insert into marts.lists values ('p1', 1, 'x'), ('p1', 2, 'y'), ('p1', 3, 'z')"
    )
    connection.execute(
        "update ml.served set served_at = '2024-03-03' where person_id in ('p1', 'p3')"
    )
    third, outcome = validate("r3", datetime(2024, 3, 3, 1))
    assert set(third.frame["person_id"]) == {"p1", "p3"} and outcome.success
    assert last_passed_through(connection, suite) == datetime(2024, 3, 3)

    # nobody served since: the lists of the people served last are read again
    again = read_suite_frame(connection, suite, since=last_passed_through(connection, suite))
    assert set(again.frame["person_id"]) == {"p1", "p3"} and "none newer" in again.window


@pytest.mark.parametrize(
    "sql",
    [
        # text, with a null; integers with and without nulls; a date with a null; timestamps,
        # with and without a zone; doubles; booleans; a text and an integer that are all null
        "select case when i % 3 = 0 then null else 'v' || i end as text, i::bigint as n, "
        "case when i % 2 = 0 then i::integer end as nullable_int, "
        "case when i % 4 = 0 then null else date '2024-01-01' + i::integer end as day, "
        "timestamp '2024-01-01' + to_seconds(i) as at, "
        "timestamptz '2024-01-01 00:00:00+00' + to_seconds(i) as at_utc, "
        "i / 7 as ratio, i % 2 = 0 as flag, null::varchar as no_text, null::smallint as no_int "
        "from range(50) as r(i)",
        "select 'x'::varchar as text, 1::integer as n, date '2024-01-01' as day "
        "from range(3) where false",  # no rows
    ],
)
def test_suite_rows_are_typed_as_duckdbs_df(sql):
    con = duckdb.connect()
    pd.testing.assert_frame_equal(suite_rows(con, sql), con.execute(sql).df())
