"""audit.model_selection against a real DuckDB file: when a step may reuse its last selection,
and the move of the recommender's rows from the table it kept before."""

from datetime import datetime, timedelta

import duckdb
import pytest

from dagster_project import model_selection

AS_OF = datetime(2024, 5, 8, 12)
SETTINGS = {"k_min": 2, "k_max": 8, "reselect_every_days": 7}


@pytest.fixture
def con(tmp_path):
    connection = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    yield connection
    connection.close()


def test_a_selection_is_reused_only_until_it_is_due(con):
    assert model_selection.reusable_selection(con, "clustering", SETTINGS, AS_OF) == (
        None,
        "no earlier model selection",
    )
    model_selection.record_selection(con, "clustering", SETTINGS, AS_OF, "5")
    later = AS_OF + timedelta(days=6, hours=23)
    last, why = model_selection.reusable_selection(con, "clustering", SETTINGS, later)
    assert (last.as_of, last.chosen) == (AS_OF, "5")
    assert why == "reused (selection of 2024-05-08, reselect_every_days: 7)"
    # the reuse key itself is not a setting the selection depends on
    assert model_selection.reusable_selection(
        con, "clustering", {**SETTINGS, "reselect_every_days": 3}, AS_OF
    )[0]
    for settings, as_of, forced, reason in [
        (SETTINGS, AS_OF, True, "full refresh requested"),
        ({**SETTINGS, "reselect_every_days": 0}, AS_OF, False, "every run"),
        ({**SETTINGS, "k_max": 9}, AS_OF, False, "clustering settings changed"),
        (SETTINGS, AS_OF + timedelta(days=7), False, "7 or more days of data old"),
        (SETTINGS, AS_OF - timedelta(hours=1), False, "after this run's as_of"),
    ]:
        last, why = model_selection.reusable_selection(
            con, "clustering", settings, as_of, forced=forced
        )
        assert last is None and reason in why
    # every step has its own selections
    assert model_selection.reusable_selection(con, "propensity", SETTINGS, AS_OF)[0] is None


def test_the_recommender_selections_move_and_stay_readable_under_their_old_name(con):
    settings = {"eval_k": 10, "top_k": 20, "reselect_every_days": 7}
    serving = ("top_k", "reselect_every_days")
    sha = model_selection.settings_sha256(settings, ignore=serving)
    con.execute("create schema audit")
    con.execute(
        "create table audit.recommender_selection (selected_at timestamp, as_of timestamp, "
        "chosen varchar, settings_sha256 varchar)"
    )
    con.execute(
        "insert into audit.recommender_selection values (?, ?, 'ease', ?)",
        [AS_OF + timedelta(hours=1), AS_OF, sha],
    )
    # read where it is, before anything moved it
    last, _ = model_selection.reusable_selection(
        con, "recommendations", settings, AS_OF, ignore=serving
    )
    assert last.chosen == "ease"

    model_selection.record_selection(con, "propensity", {"horizon_days": 7}, AS_OF, "ease_too")
    rows = con.sql("select step, chosen from audit.model_selection order by step").fetchall()
    assert rows == [("propensity", "ease_too"), ("recommendations", "ease")]
    kind = con.sql(
        "select table_type from information_schema.tables "
        "where table_schema = 'audit' and table_name = 'recommender_selection'"
    ).fetchall()
    assert kind == [("VIEW",)]
    model_selection.record_selection(con, "recommendations", settings, AS_OF, "als", ignore=serving)
    old_name = con.sql("select chosen, settings_sha256 from audit.recommender_selection").fetchall()
    assert old_name == [("ease", sha), ("als", sha)]
    last, _ = model_selection.reusable_selection(
        con, "recommendations", settings, AS_OF, ignore=serving
    )
    assert last.chosen == "als"
