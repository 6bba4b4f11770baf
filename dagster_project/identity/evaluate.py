"""`python -m dagster_project.identity.evaluate --labels FILE.csv`: score the identity resolution.

Reads `ml.identity_assignments` of the working warehouse (`$PZ_DATA_DIR`), scores it against a
CSV with one row per profile record and its true cluster (pairwise precision, recall, F1),
prints the scores and appends them to `ml.identity_evaluation` (unless `--no-store`).
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid

import pandas as pd

from dagster_project.identity.evaluation import score_records, store_evaluation
from dagster_project.resources import open_warehouse
from dagster_project.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", required=True, help="CSV: one row per record")
    parser.add_argument("--record-id-column", default="record_id")
    parser.add_argument("--cluster-column", default="cluster")
    parser.add_argument("--source-system-column", default=None)
    parser.add_argument("--no-store", action="store_true", help="print only")
    args = parser.parse_args(argv)
    labels = pd.read_csv(args.labels, dtype=str, keep_default_na=False)
    con = open_warehouse(Settings.from_env())
    try:
        scores = score_records(
            con,
            labels,
            record_id_column=args.record_id_column,
            cluster_column=args.cluster_column,
            source_system_column=args.source_system_column,
        )
        if not args.no_store:
            store_evaluation(con, scores, dataset=args.labels, run_id=f"cli-{uuid.uuid4().hex[:8]}")
    finally:
        con.close()
    print(json.dumps({"labels": args.labels, **scores}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
