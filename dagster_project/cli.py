"""`python -m dagster_project.cli run|prepare|summary`: what `make run` and `make test` call.

`run` generates sample data when the landing folder is empty, prepares the dbt manifest,
materializes every asset with the in-process executor (recorded in `$DAGSTER_HOME`, so the
run shows up in `make ui`), and prints a summary of the published snapshot. `run
--full-refresh` (`make full-refresh`) rebuilds the incremental event models from every raw row
instead of the files loaded since the last build (see dagster_project/incremental.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from dagster_project.settings import Settings


def manifest_is_fresh(project_dir: Path, manifest: Path) -> bool:
    """True when the manifest is newer than every dbt source file (models, macros, yml)."""
    if not manifest.exists():
        return False
    built = manifest.stat().st_mtime
    skip = {"target", "logs", "dbt_packages"}
    return all(
        p.stat().st_mtime <= built
        for p in project_dir.rglob("*")
        if p.is_file() and not skip.intersection(p.relative_to(project_dir).parts)
    )


def prepare_dbt_manifest(force: bool = False) -> None:
    """Build `dbt_project/target/manifest.json`, which the code location needs to load."""
    from dagster_project.project import dbt_project

    if not force and manifest_is_fresh(dbt_project.project_dir, dbt_project.manifest_path):
        print(f"dbt manifest up to date: {dbt_project.manifest_path}")
        return
    started = time.monotonic()
    dbt_project.preparer.prepare(dbt_project)
    print(f"dbt manifest ready: {dbt_project.manifest_path} ({time.monotonic() - started:.1f} s)")


SAMPLE_MARKER = ".generated_sample_data"  # hidden: ingest ignores it


def ensure_landing_data(settings: Settings) -> None:
    """Generate sample data into an empty landing folder, and use demo mode on sample data."""
    raw = settings.raw_dir
    if not (raw.is_dir() and any(p.is_file() for p in raw.rglob("*"))):
        from dagster_project.sample_data import generate

        print(
            f"{raw} is empty: generating sample data there (ground truth in "
            f"{settings.data_dir / 'truth'})"
        )
        counts = generate(settings.data_dir)
        (raw / SAMPLE_MARKER).write_text("written by `make run`; the pipeline ignores this file\n")
        print("sample data written: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    sample_only = (raw / SAMPLE_MARKER).exists()
    if sample_only and not os.environ.get("PZ_PII_KEY") and os.environ.get("PZ_DEMO_MODE") != "1":
        os.environ["PZ_DEMO_MODE"] = "1"
        print(
            f"demo mode: PZ_PII_KEY is not set and {raw} holds generated sample data, so PII "
            f"is tokenized with a local key kept in {settings.warehouse_dir / '.demo_pii_key'}."
            " Set PZ_PII_KEY for real data."
        )


def materialize_all(full_refresh: bool = False) -> bool:
    from dagster import DagsterInstance

    from dagster_project.definitions import defs
    from dagster_project.incremental import FULL_REFRESH_TAG

    job = defs.resolve_job_def("nightly_refresh")
    home = os.environ.get("DAGSTER_HOME")
    if home:
        Path(home).mkdir(parents=True, exist_ok=True)
    instance = DagsterInstance.get() if home else DagsterInstance.ephemeral()
    tags = {FULL_REFRESH_TAG: "true"} if full_refresh else None
    result = job.execute_in_process(instance=instance, raise_on_error=False, tags=tags)
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
    parser.add_argument(
        "--full-refresh",
        action="store_true",
        help="rebuild the incremental event models from all raw rows (run only)",
    )
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
    if not materialize_all(full_refresh=args.full_refresh):
        print(
            "the run failed: see the log above, or `make ui` for the run's details", file=sys.stderr
        )
        return 1
    print(f"run finished in {time.monotonic() - started:.0f} s\n")
    print(summary(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
