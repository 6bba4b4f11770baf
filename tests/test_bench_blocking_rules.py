"""bench/blocking_rules.py counts, per blocking rule, the pairs Splink would score and the true
pairs among them, on a hand-made set whose every count is known."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import duckdb

REPO = Path(__file__).resolve().parents[1]


def load_tool():
    spec = importlib.util.spec_from_file_location(
        "blocking_rules", REPO / "bench" / "blocking_rules.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_rule_is_counted_against_the_labels():
    tool = load_tool()
    con = duckdb.connect()
    # Person A: records 1-3 (3 has a typo in the first name and another email), person B: 4-5,
    # record 6 a different person born the same day as A.
    con.execute(
        """
        create table records as select * from (values
            (1, 'ann', 'smith', date '1990-01-01', 'a@x'),
            (2, 'ann', 'smith', date '1990-01-01', null),
            (3, 'anne', 'smith', date '1990-01-01', 'a@x'),
            (4, 'bob', 'jones', date '1980-05-05', 'b@x'),
            (5, 'bob', 'jonez', date '1980-05-05', 'b@x'),
            (6, 'carl', 'smith', date '1990-01-01', 'c@x')
        ) as t(i, first_name, last_name, birth_date, email)
        """
    )
    con.execute(
        "create table truth_pairs as select * from (values (1, 2), (1, 3), (2, 3), (4, 5)) "
        "as t(l, r)"
    )
    rules = [["first_name", "last_name"], ["email"], ["birth_date"]]
    report, summary = tool.blocking_report(con, rules)
    assert report.to_dict("records") == [
        {
            "rule": "first_name + last_name",
            "pairs": 1,
            "true_pairs": 1,
            "true_pairs_only_it_finds": 0,
        },
        {"rule": "email", "pairs": 2, "true_pairs": 2, "true_pairs_only_it_finds": 0},
        {"rule": "birth_date", "pairs": 7, "true_pairs": 4, "true_pairs_only_it_finds": 1},
    ]
    assert summary == {
        "distinct_pairs": 7,
        "true_pairs": 4,
        "true_pairs_found": 4,
        "blocking_recall": 1.0,
    }
    # Without the birth date: (2, 3) is missed, and the three false pairs are not made.
    report, summary = tool.blocking_report(con, rules[:2])
    assert report["true_pairs_only_it_finds"].tolist() == [1, 2]
    assert summary["distinct_pairs"] == 3 and summary["blocking_recall"] == 0.75
    # The rule's SQL is Splink's own, expressions included.
    assert "SUBSTRING" in tool.rule_sql(["birth_date", "substr(first_name, 1, 1)"]).upper()
