"""Command line: `python -m dagster_project.sample_data --out DIR [--users N ...]`.

Writes DIR/raw/<source>/ and DIR/truth/ (see `generator.py`) and prints a short summary, so a
developer or a benchmark can produce data of any size without writing Python.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from dagster_project.sample_data.generator import generate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dagster_project.sample_data",
        description="Generate messy sample landing files plus their ground truth.",
    )
    parser.add_argument("--out", type=Path, required=True, help="writes OUT/raw and OUT/truth")
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--items", type=int, default=120)
    parser.add_argument("--days", type=int, default=21)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--end-date", default="2026-10-31", help="last day, YYYY-MM-DD")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    counts = generate(
        args.out,
        users=args.users,
        items=args.items,
        days=args.days,
        seed=args.seed,
        end_date=args.end_date,
    )
    seconds = time.perf_counter() - started
    manifest = json.loads((args.out / "truth" / "manifest.json").read_text())
    events = manifest["sources"]["events"]
    print(f"sample data in {args.out} ({seconds:.1f} s)")
    for source, rows in counts.items():
        files = len(manifest["sources"][source]["files"])
        print(f"  raw/{source:<9} {rows:>12,} rows in {files} file{'' if files == 1 else 's'}")
    print(
        f"  events: {events['distinct_event_ids']:,} distinct, "
        f"{events['duplicate_deliveries']:,} re-delivered, "
        f"{len(events['broken_rows'])} broken rows, {events['sessions']:,} sessions"
    )
    print(f"  truth in {args.out / 'truth'} (tests only; the pipeline never reads it)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
