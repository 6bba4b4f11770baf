"""Blocking rules against labelled records: the pairs each rule makes for Splink to score, the
true pairs among them, and the true pairs no other rule finds.

    PZ_DATA_DIR=... PZ_PII_KEY=... .venv/bin/python bench/blocking_rules.py [--rules FILE.yaml]

Reads the warehouse of a pipeline run: the profile records exactly as `ml.identity_links` gives
them to Splink (plaintext from the PII zone, in memory only), and the labels file of
identity.yaml `evaluation` (the sample generator writes one). `--rules` compares another list
of rules (a YAML list of lists, like `blocking_rules`) with the configured one. Nothing is
scored: DuckDB only counts pairs, so a million records take a minute or two. Splink's
prediction time and memory grow with the distinct pairs; a rule whose true pairs all come from
other rules only adds cost (the links it would add can still join people through other links:
the pipeline's `ml.identity_evaluation` has the final scores).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import duckdb
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dagster_project.identity.splink_linker import read_profile_records  # noqa: E402
from dagster_project.resources import WarehouseResource, open_warehouse  # noqa: E402
from dagster_project.tunables import load_identity_tunables  # noqa: E402


def rule_sql(rule: list[str]) -> str:
    """The join condition Splink builds for a rule (`block_on`), over `l` and `r`."""
    from splink import block_on

    return block_on(*rule).get_blocking_rule("duckdb").blocking_rule_sql


def blocking_report(
    con: duckdb.DuckDBPyConnection, rules: list[list[str]]
) -> tuple[pd.DataFrame, dict]:
    """Per rule: pairs, true pairs, true pairs no other rule of `rules` finds; and over all
    rules: distinct pairs, true pairs, true pairs found.

    `con` holds `records` (`i` bigint, unique per record, and the fields the rules read) and
    `truth_pairs` (`l` < `r`, the `i` of two records of the same labelled person).
    """
    rows = []
    for k, rule in enumerate(rules):
        con.execute(
            f"create or replace temp table _pz_pairs_{k} as "
            f"select l.i as l, r.i as r from records as l join records as r "
            f"on ({rule_sql(rule)}) and l.i < r.i"
        )
        pairs, true = con.execute(
            f"select count(*), count(t.l) from _pz_pairs_{k} as p "
            "left join truth_pairs as t on t.l = p.l and t.r = p.r"
        ).fetchall()[0]
        rows.append({"rule": " + ".join(rule), "pairs": pairs, "true_pairs": true})
    every = " union ".join(f"select l, r from _pz_pairs_{k}" for k in range(len(rules)))
    for k in range(len(rules)):
        others = " union ".join(
            f"select l, r from _pz_pairs_{j}" for j in range(len(rules)) if j != k
        )
        only = f"select l, r from _pz_pairs_{k}"
        if others:
            only += f" except select l, r from ({others})"
        rows[k]["true_pairs_only_it_finds"] = con.execute(
            f"select count(*) from ({only}) semi join truth_pairs using (l, r)"
        ).fetchall()[0][0]
    distinct, found = con.execute(
        f"select count(*), count(t.l) from ({every}) as p "
        "left join truth_pairs as t on t.l = p.l and t.r = p.r"
    ).fetchall()[0]
    true_pairs = con.execute("select count(*) from truth_pairs").fetchall()[0][0]
    for k in range(len(rules)):
        con.execute(f"drop table _pz_pairs_{k}")
    summary = {
        "distinct_pairs": distinct,
        "true_pairs": true_pairs,
        "true_pairs_found": found,
        "blocking_recall": found / true_pairs if true_pairs else float("nan"),
    }
    return pd.DataFrame(rows), summary


def load_records_and_truth(con: duckdb.DuckDBPyConnection) -> int:
    """`records` and `truth_pairs` (see `blocking_report`) from the warehouse of $PZ_DATA_DIR
    and its labels file; returns the number of labelled records."""
    settings = WarehouseResource().settings()
    evaluation = load_identity_tunables()["evaluation"]
    labels_path = settings.data_dir / evaluation["labels_path"]
    if not labels_path.exists():
        raise SystemExit(f"no labels file at {labels_path} (identity.yaml evaluation)")
    with open_warehouse(settings, with_pii_zone=True, read_only=True) as warehouse:
        records = read_profile_records(warehouse).drop(columns="is_birth_date_nulled")
    con.register("_pz_records", records)
    con.execute(
        "create table records as select row_number() over (order by unique_id) as i, * "
        "from _pz_records"
    )
    con.unregister("_pz_records")
    del records
    labels = pd.read_csv(labels_path, dtype=str)
    source = evaluation.get("source_system_column")
    key = labels[evaluation["record_id_column"]]
    system = labels[source].fillna("") if source in labels.columns else ""
    truth = pd.DataFrame(
        {
            "unique_id": "record_id|" + system + "|" + key,
            "cluster": labels[evaluation["cluster_column"]],
        }
    )
    con.register("_pz_truth", truth)
    con.execute(
        "create table labelled as select r.i, t.cluster from records as r "
        "join _pz_truth as t using (unique_id)"
    )
    con.unregister("_pz_truth")
    con.execute(
        "create table truth_pairs as select a.i as l, b.i as r from labelled as a "
        "join labelled as b on a.cluster = b.cluster and a.i < b.i"
    )
    return con.execute("select count(*) from labelled").fetchall()[0][0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rules", type=Path, help="a YAML list of rules to compare")
    args = parser.parse_args(argv)
    con = duckdb.connect()
    con.execute("set temp_directory = ''")  # plaintext never spills to a file
    labelled = load_records_and_truth(con)
    records = con.execute("select count(*) from records").fetchall()[0][0]
    print(f"{records:,} profile records, {labelled:,} of them labelled")
    rule_sets = {"identity.yaml": load_identity_tunables()["probabilistic"]["blocking_rules"]}
    if args.rules:
        rule_sets[str(args.rules)] = yaml.safe_load(args.rules.read_text())
    for name, rules in rule_sets.items():
        report, summary = blocking_report(con, rules)
        print(f"\n{name}\n")
        print(report.to_markdown(index=False, intfmt=","))
        print(
            f"\ndistinct pairs {summary['distinct_pairs']:,}; true pairs found "
            f"{summary['true_pairs_found']:,} of {summary['true_pairs']:,} "
            f"(blocking recall {summary['blocking_recall']:.5f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
