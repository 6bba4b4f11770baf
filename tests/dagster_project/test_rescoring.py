"""Which records a run with the stored Splink model re-scores, and which links it keeps."""

from datetime import datetime

import duckdb
import pandas as pd
import pytest

from dagster_project.identity.rescoring import (
    MAX_CHANGED_SHARE,
    merge_links,
    plan_rescoring,
    record_fingerprints,
    save_scored_records,
)

TRAINED = datetime(2026, 11, 1)


def _records(**changes: dict) -> pd.DataFrame:
    rows = {
        f"r{n}": {"first_name": f"name{n}", "last_name": "doe", "birth_date": f"1990-01-0{n}"}
        for n in range(1, 9)
    }
    for key, change in changes.items():
        if change is None:
            rows.pop(key)
        else:
            rows[key] = {**rows.get(key, {}), **change}
    frame = pd.DataFrame([{"unique_id": key, **row} for key, row in rows.items()])
    return frame.astype({"birth_date": "datetime64[s]"})


@pytest.fixture
def con():
    """A warehouse and a PII zone (in memory) after a run that scored r1..r8 and linked
    r1-r2, r3-r4, r5-r6 and r7-r8."""
    con = duckdb.connect(":memory:")
    con.execute("attach ':memory:' as warehouse")
    con.execute("attach ':memory:' as pii")
    con.execute("use warehouse")
    con.execute("create schema ml")
    links = pd.DataFrame(
        {
            "node_key_a": ["r1", "r3", "r5", "r7"],
            "node_key_b": ["r2", "r4", "r6", "r8"],
            "method": "splink",
            "match_probability": [0.99, 0.95, 0.97, 0.93],
        }
    )
    con.register("links", links)
    con.execute("create table ml.identity_links as select * from links")
    con.unregister("links")
    save_scored_records(con, record_fingerprints(_records()), TRAINED)
    yield con
    con.close()


def test_the_new_changed_and_gone_records_are_rescored_and_their_links_dropped(con):
    # r2 changed, r5 is gone, r9 is new, r7 is the same (a changed order of rows changes nothing)
    new = {"first_name": "x", "last_name": "y", "birth_date": None}
    now = _records(r2={"last_name": "dough"}, r5=None, r9=new)
    plan, why = plan_rescoring(con, record_fingerprints(now.iloc[::-1]), TRAINED)
    assert plan is not None, why
    assert plan.changed == ["r2", "r9"] and plan.removed == 1
    assert plan.kept[["node_key_a", "node_key_b"]].values.tolist() == [["r3", "r4"], ["r7", "r8"]]

    # the re-scored records' links, scored record first, each pair from both of its ends
    rescored = pd.DataFrame(
        {
            "node_key_a": ["r2", "r9", "r2"],
            "node_key_b": ["r1", "r2", "r9"],
            "method": "splink",
            "match_probability": [0.98, 0.91, 0.91],
        }
    )
    merged = merge_links(plan.kept, rescored)
    assert merged.values.tolist() == [
        ["r1", "r2", "splink", 0.98],
        ["r2", "r9", "splink", 0.91],
        ["r3", "r4", "splink", 0.95],
        ["r7", "r8", "splink", 0.93],
    ]


def test_every_pair_is_scored_for_another_model_many_changes_or_no_earlier_run(con):
    plan, why = plan_rescoring(con, record_fingerprints(_records()), datetime(2026, 11, 8))
    assert plan is None and "another model" in why
    changed = int(MAX_CHANGED_SHARE * 8) + 1
    many = _records(**{f"r{n}": {"last_name": "new"} for n in range(1, changed + 1)})
    plan, why = plan_rescoring(con, record_fingerprints(many), TRAINED)
    assert plan is None and f"{changed} of 8 records" in why
    same, _ = plan_rescoring(con, record_fingerprints(_records()), TRAINED)
    assert same is not None and same.changed == [] and len(same.kept) == 4
    con.execute("drop table ml.identity_links")
    plan, why = plan_rescoring(con, record_fingerprints(_records()), TRAINED)
    assert plan is None and "no links" in why


def test_a_run_without_a_model_leaves_nothing_to_rescore_from(con):
    save_scored_records(con, record_fingerprints(_records()), None)
    plan, why = plan_rescoring(con, record_fingerprints(_records()), TRAINED)
    assert plan is None and "another model" in why
