"""`python -m dagster_project.cli run|prepare|summary`: what `make run` and `make test` call.

`run` generates sample data when the landing folder is empty, prepares the dbt manifest,
materializes every asset with the in-process executor (recorded in `$DAGSTER_HOME`, so the
run shows up in `make ui`), and prints a summary of the published snapshot.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from dagster_project.settings import Settings


def prepare_dbt_manifest() -> None:
    """Build `dbt_project/target/manifest.json`, which the code location needs to load."""
    from dagster_project.project import dbt_project

    started = time.monotonic()
    dbt_project.preparer.prepare(dbt_project)
    print(f"dbt manifest ready: {dbt_project.manifest_path} ({time.monotonic() - started:.1f} s)")


def ensure_landing_data(settings: Settings) -> bool:
    """Generate sample data into an empty landing folder; True when it did."""
    raw = settings.raw_dir
    if raw.is_dir() and any(p.is_file() for p in raw.rglob("*")):
        return False
    from dagster_project.sample_data import generate

    print(f"{raw} is empty: generating sample data there (and ground truth in "
          f"{settings.data_dir / 'truth'})")
    counts = generate(settings.data_dir)
    print("sample data written: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    if not os.environ.get("PZ_PII_KEY") and os.environ.get("PZ_DEMO_MODE") != "1":
        os.environ["PZ_DEMO_MODE"] = "1"
        print(f"demo mode: PZ_PII_KEY is not set, so the sample data is tokenized with a local "
              f"key kept in {settings.warehouse_dir / '.demo_pii_key'}. Set PZ_PII_KEY for "
              "real data.")
    return True


def materialize_all() -> bool:
    from dagster import DagsterInstance

    from dagster_project.definitions import defs

    job = defs.get_job_def("nightly_refresh")
    instance = DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else None
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    return result.success


def summary(settings: Settings) -> str:
    import duckdb

    from dagster_project.publish import PUBLISHED_TABLES

    path = settings.published_path
    con = duckdb.connect(str(path), read_only=True)
    try:
        lines = [f"Published snapshot: {path}", "", f"{'table':<20} {'rows':>10}"]
        for name in PUBLISHED_TABLES:
            rows = con.execute(f"select count(*) from {name}").fetchall()[0][0]
            lines.append(f"{name:<20} {rows:>10,}")
    finally:
        con.close()
    lines += [
        "",
        "Try:",
        f"  .venv/bin/python -c \"import duckdb; print(duckdb.connect('{path}', read_only=True)"
        ".sql('select person_id, rank, item_id, algorithm, reason from recommendations "
        "order by person_id, rank limit 10'))\"",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dagster_project.cli", description=__doc__)
    parser.add_argument("command", choices=["run", "prepare", "summary"])
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    if args.command == "prepare":
        prepare_dbt_manifest()
        return 0
    if args.command == "summary":
        print(summary(settings))
        return 0
    ensure_landing_data(settings)
    prepare_dbt_manifest()
    started = time.monotonic()
    print(f"materializing every asset (data: {settings.data_dir}) ...")
    if not materialize_all():
        print("the run failed: see the log above, or `make ui` for the run's details",
              file=sys.stderr)
        return 1
    print(f"run finished in {time.monotonic() - started:.0f} s\n")
    print(summary(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
