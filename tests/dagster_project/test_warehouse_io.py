"""Frames in and out of DuckDB: batches written as one table, in one transaction."""

import duckdb
import numpy as np
import pandas as pd
import pytest

from dagster_project.warehouse_io import (
    ARROW_BATCH_ROWS,
    arrow_for_duckdb,
    read_frame,
    release_cache,
    write_frame,
    write_frames,
)


def _batch(people: list[str], reason: str) -> pd.DataFrame:
    return pd.DataFrame(
        {"person_id": people, "rank": range(1, len(people) + 1), "reason": reason}
    ).astype({"reason": "category"})


def test_batches_make_one_table_with_text_labels_whatever_each_batchs_categories(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    batches = [_batch(["a", "b"], "popular"), _batch(["c"], "rule:pinned"), _batch([], "x")]
    assert write_frames(con, "ml.recommendations", iter(batches)) == 3
    assert write_frames(con, "ml.nothing", []) == 0
    assert con.execute("select count(*) from information_schema.tables").fetchall() == [(1,)]
    table = read_frame(con, "select * from ml.recommendations order by person_id")
    assert table["person_id"].tolist() == ["a", "b", "c"]
    assert table["reason"].tolist() == ["popular", "popular", "rule:pinned"]
    types = {row[0]: row[1] for row in con.execute("describe ml.recommendations").fetchall()}
    assert types["reason"] == "VARCHAR"

    # written again: replaced, not appended
    assert write_frames(con, "ml.recommendations", [_batch(["z"], "popular")]) == 1
    assert con.execute("select count(*) from ml.recommendations").fetchall() == [(1,)]


def test_a_batch_that_fails_leaves_the_previous_table_untouched(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    write_frames(con, "ml.recommendations", [_batch(["old"], "popular")])

    def failing():
        yield _batch(["a", "b"], "popular")
        raise RuntimeError("the model broke half-way")

    with pytest.raises(RuntimeError, match="half-way"):
        write_frames(con, "ml.recommendations", failing())
    assert con.execute("select person_id from ml.recommendations").fetchall() == [("old",)]
    tables = con.execute("select table_name from information_schema.tables").fetchall()
    assert tables == [("recommendations",)], "the half-built table is dropped"
    # and the connection is usable again (no transaction left open)
    assert write_frames(con, "ml.recommendations", [_batch(["new"], "popular")]) == 1


def test_batches_keep_the_types_duckdb_gives_a_frame(tmp_path):
    """Written through Arrow: times stay TIMESTAMP (not TIMESTAMP_NS), text and categories
    VARCHAR, missing values NULL."""
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    frame = pd.DataFrame(
        {
            "person_id": pd.Series(["a", None], dtype="str"),
            "score": [0.5, float("nan")],
            "rank": pd.array([1, None], dtype="Int64"),
            "at": pd.to_datetime(["2026-11-01 10:00:00.123456", None]),
            "reason": pd.Categorical(["popular", "popular"]),
        }
    )
    assert write_frames(con, "ml.typed", [frame, frame]) == 4
    types = {row[0]: row[1] for row in con.execute("describe ml.typed").fetchall()}
    assert types == {
        "person_id": "VARCHAR",
        "score": "DOUBLE",
        "rank": "BIGINT",
        "at": "TIMESTAMP",
        "reason": "VARCHAR",
    }
    rows = con.execute("select * from ml.typed limit 2").fetchall()
    assert rows[0][0] == "a" and rows[0][3].microsecond == 123456
    assert rows[1][0] is None and rows[1][2] is None and rows[1][3] is None


def test_a_large_frame_goes_in_row_group_batches_and_keeps_its_order(tmp_path):
    """One Arrow batch is scanned by one thread: a frame goes in batches of DuckDB's row
    group, which its threads share, and the table keeps the frame's order."""
    n = 2 * ARROW_BATCH_ROWS + 7
    frame = pd.DataFrame(
        {
            "person_id": pd.Series([f"p{i:07d}" for i in range(n)][::-1], dtype="str"),
            "rank": np.arange(n),
        }
    )
    batches = arrow_for_duckdb(frame).to_batches()
    assert [len(b) for b in batches] == [ARROW_BATCH_ROWS, ARROW_BATCH_ROWS, 7]
    assert arrow_for_duckdb(frame.iloc[:0]).num_rows == 0  # no batch, but the columns

    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("set threads = 2")
    assert write_frame(con, "ml.ordered", frame) == n
    written = con.execute("select rank from ml.ordered order by rowid").fetchnumpy()["rank"]
    assert (written == np.arange(n)).all()
    assert write_frame(con, "ml.empty", frame.iloc[:0]) == 0
    types = [row[1] for row in con.execute("describe ml.empty").fetchall()]
    assert types == ["VARCHAR", "BIGINT"]


def test_the_cache_of_a_warehouse_goes_back_and_its_memory_limit_stays(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("set memory_limit = '2GB'")
    con.execute("create table t as select range as a, md5(range::varchar) as b from range(4000000)")
    con.execute("checkpoint")
    con.execute("select count(distinct b), sum(a) from t").fetchall()

    def cached() -> int:
        return con.execute("select sum(memory_usage_bytes) from duckdb_memory()").fetchall()[0][0]

    limit = con.execute("select current_setting('memory_limit')").fetchall()
    before = cached()
    assert before > 64 * 2**20
    release_cache(con, "2GB", floor="16MB")
    assert cached() <= 16 * 2**20 < before
    assert con.execute("select current_setting('memory_limit')").fetchall() == limit
    assert con.execute("select count(*) from t").fetchall() == [(4_000_000,)]
