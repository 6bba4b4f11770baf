"""`make bench`: the whole pipeline on generated size tiers, with time per stage and memory.

For each tier (S: 10k people, M: 100k, L: 1M behind --large) it generates sample data, runs
every asset in process, and reports wall time per stage (ingest, dbt, identity, segments,
recommendations, publish, other), events per second, peak RSS, the ingest stage against the
bare DuckDB floor (`create table as select * from read_...` of the same raw files), and an
incremental nightly run with one more day of data landed on top. Results go to
bench/results.json and bench/results.md, and are printed; the JSON also has the seconds of
every step and of every dbt model of both runs, and the Markdown the slowest dbt models of the
largest tier.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from pathlib import Path

import duckdb

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from dagster_project.encryption import STORAGE_VERSION  # noqa: E402

TIERS = {  # users, items, days: about 16-20 events per person over the window
    "S": (10_000, 2_000, 25),
    "M": (100_000, 10_000, 25),
    "L": (1_000_000, 20_000, 25),
}
STAGES = [
    ("ingest", ("raw__", "pipeline_config")),
    ("dbt", ("dbt_",)),
    ("identity", ("ml__identity", "identity")),
    ("segments", ("cluster_segments", "propensity", "segment", "trigger")),
    ("recommendations", ("ml__recommendations", "recommendations", "experiments")),
    ("publish", ("published_snapshot",)),
]


def stage_of(step_key: str) -> str:
    for stage, prefixes in STAGES:
        if step_key.startswith(prefixes):
            return stage
    return "other"


def peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def tree_rss_mb(root: int) -> float:
    """RSS of `root` and all its descendants together, from /proc (Linux): the Dagster process
    and any subprocess it waits on (dbt's, with `PZ_DBT_SUBPROCESS=1`) hold memory at once."""
    parents: dict[int, int] = {}
    pages: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
        pages[int(entry.name)] = int(fields[21])
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    return sum(pages.get(pid, 0) for pid in tree) * os.sysconf("SC_PAGE_SIZE") / 2**20


class TreeRssSampler(threading.Thread):
    """The peak of `tree_rss_mb` for this process, sampled every `interval` seconds."""

    def __init__(self, interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.peak_mb = 0.0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.peak_mb = max(self.peak_mb, tree_rss_mb(os.getpid()))

    def stop(self) -> float:
        self._stop_event.set()
        self.join()
        return self.peak_mb


def run_job(data_dir: Path) -> dict:
    """Run every asset in process on `data_dir`; return seconds per stage and in total."""
    from dagster import DagsterEventType, DagsterInstance

    os.environ["PZ_DATA_DIR"] = str(data_dir)
    from dagster_project.definitions import defs

    started = time.perf_counter()
    instance = DagsterInstance.ephemeral()
    result = defs.resolve_job_def("nightly_refresh").execute_in_process(
        instance=instance,
        raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
    )
    total = time.perf_counter() - started
    if not result.success:
        raise SystemExit(f"pipeline failed on {data_dir}")
    starts: dict[str, float] = {}
    per_stage: dict[str, float] = defaultdict(float)
    per_step: dict[str, float] = {}
    per_model: dict[str, float] = {}
    for entry in instance.all_logs(result.run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event.step_materialization_data.materialization
            seconds = dbt_model_seconds(materialization.metadata)
            if seconds is not None:
                per_model[".".join(materialization.asset_key.path)] = seconds
        elif event.event_type == DagsterEventType.STEP_START:
            starts[event.step_key] = entry.timestamp
        elif event.event_type == DagsterEventType.STEP_SUCCESS and event.step_key in starts:
            seconds = entry.timestamp - starts[event.step_key]
            per_stage[stage_of(event.step_key)] += seconds
            per_step[event.step_key] = round(seconds, 2)
    stages = {stage: round(per_stage.get(stage, 0.0), 2) for stage, _ in STAGES}
    stages["other"] = round(per_stage.get("other", 0.0), 2)
    # every step, slowest first: where a stage's (or "other"'s) time goes
    steps = dict(sorted(per_step.items(), key=lambda item: -item[1]))
    models = dict(sorted(per_model.items(), key=lambda item: -item[1]))
    return {
        "total_s": round(total, 2),
        "stages_s": stages,
        "steps_s": steps,
        "dbt_models_s": models,
    }


def dbt_model_seconds(metadata: dict) -> float | None:
    """The seconds dbt took to build one model (or seed, snapshot), from the metadata of its
    materialization (dagster-dbt's `Execution Duration`, from dbt's run results); None for a
    materialization that is not dbt's. A dbt step builds dozens of models: this says which
    of them its time went to."""
    value = metadata.get("Execution Duration")
    if value is None:
        return None
    return round(float(getattr(value, "value", value)), 2)


def duckdb_floor(raw_dir: Path) -> float:
    """Seconds for DuckDB alone to load the same raw files into tables (the floor): a bare
    `create table as select * from read_...` per file, lenient so the deliberately bad rows in
    the sample data do not stop it (no validation, no quarantine, no tokenization), into a
    database file beside the tier's data, as the pipeline writes its warehouse to disk."""
    database = raw_dir.parent / "floor.duckdb"
    database.unlink(missing_ok=True)
    con = duckdb.connect()
    # in the storage format the warehouse is written in
    con.execute(f"attach '{database}' as floor (storage_version '{STORAGE_VERSION}')")
    con.execute("use floor")
    files = sorted(p for p in raw_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
    started = time.perf_counter()
    for index, path in enumerate(files):
        name = path.name.lower()
        if ".parquet" in name:
            reader = f"read_parquet('{path}')"
        elif ".csv" in name:
            reader = (
                f"read_csv('{path}', all_varchar = true, ignore_errors = true, "
                "strict_mode = false, null_padding = true)"
            )
        else:
            reader = f"read_json('{path}', format = 'newline_delimited', ignore_errors = true)"
        con.execute(f"create table t{index} as select * from {reader}")
    con.execute("checkpoint")
    elapsed = time.perf_counter() - started
    con.close()
    database.unlink(missing_ok=True)
    return elapsed


def count_events(data_dir: Path) -> int:
    path = data_dir / "published" / "personalization.duckdb"
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute("select count(*) from events").fetchall()[0][0]
    finally:
        con.close()


def in_child(function, *args):
    """`function(*args)` in a fresh process (spawned): its memory ends with it."""
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        return pool.submit(function, *args).result()


def generate_with_floor(
    data_dir: Path, users: int, items: int, days: int, end: date
) -> tuple[float, float]:
    """Generate a tier's sample data; return the seconds that took and the ingest floor's."""
    from dagster_project.sample_data import generate

    started = time.perf_counter()
    generate(data_dir, users=users, items=items, days=days, seed=42, end_date=end.isoformat())
    return time.perf_counter() - started, duckdb_floor(data_dir / "raw")


def bench_tier(name: str, work: Path) -> dict:
    from dagster_project.sample_data.next_day import land_next_day

    users, items, days = TIERS[name]
    end = date(2026, 10, 31)
    data_dir = work / name
    shutil.rmtree(data_dir, ignore_errors=True)
    print(f"[{name}] generating {users:,} people, {items:,} items, {days} days ...", flush=True)
    # Generating the data and landing its next day are not the pipeline's work: each runs in a
    # process of its own, so nothing they allocate counts in a figure of the run.
    generate_s, floor_s = in_child(generate_with_floor, data_dir, users, items, days, end)
    sampler = TreeRssSampler() if Path("/proc/self/stat").exists() else None
    if sampler:
        sampler.start()
    print(f"[{name}] full run ...", flush=True)
    full = run_job(data_dir)
    events = count_events(data_dir)
    print(
        f"[{name}] full run: {events:,} events in {full['total_s']} s, stages {full['stages_s']}, "
        f"peak RSS so far {peak_rss_mb():,.0f} MB (largest process)",
        flush=True,
    )
    # a day brings back about one person in `days` (the tier spreads everyone over `days` days)
    in_child(land_next_day, data_dir, max(users // days, 50), items, end)
    print(f"[{name}] incremental run with one new day ...", flush=True)
    incremental = run_job(data_dir)
    result = {
        "tier": name,
        "people": users,
        "events": events,
        "generate_s": round(generate_s, 2),
        "full": full,
        "events_per_s": round(events / full["total_s"]),
        "ingest_floor_s": round(floor_s, 2),
        "ingest_vs_floor": round(full["stages_s"]["ingest"] / floor_s, 2) if floor_s else None,
        "incremental": incremental,
        "incremental_share": round(incremental["total_s"] / full["total_s"], 3),
        "peak_rss_mb": round(peak_rss_mb()),
        # all processes of the run at once (the pipeline and any subprocess of it), sampled
        "peak_rss_total_mb": round(sampler.stop()) if sampler else None,
    }
    print(json.dumps(result, indent=2), flush=True)
    return result


def markdown(results: list[dict]) -> str:
    stages = [s for s, _ in STAGES] + ["other"]
    head = (
        "| tier | events | total s | "
        + " | ".join(f"{s} s" for s in stages)
        + " | events/s | ingest / floor | incremental s (share) | peak RSS MB (all processes) |"
    )
    rows = [head, "|" + "---|" * (len(stages) + 7)]
    for r in results:
        rows.append(
            f"| {r['tier']} | {r['events']:,} | {r['full']['total_s']} | "
            + " | ".join(str(r["full"]["stages_s"][s]) for s in stages)
            + f" | {r['events_per_s']:,} | {r['ingest_vs_floor']} | "
            f"{r['incremental']['total_s']} ({r['incremental_share']:.0%}) | {r['peak_rss_mb']:,} "
            f"({r.get('peak_rss_total_mb') or 0:,}) |"
        )
    ratio = ""
    by_tier = {r["tier"]: r for r in results}
    if "M" in by_tier and "L" in by_tier:
        ratio = (
            f"\n\nL time / M time = "
            f"{by_tier['L']['full']['total_s'] / by_tier['M']['full']['total_s']:.1f}"
        )
    models = slowest_dbt_models(results[-1]) if results else ""
    return "\n".join(rows) + ratio + "\n" + models


def slowest_dbt_models(result: dict, top: int = 10) -> str:
    """The dbt models among the `top` slowest of a tier's full run or of its incremental run,
    with their seconds in both (`-`: the run did not build it), slowest in the full run first."""
    full = result["full"].get("dbt_models_s") or {}
    incremental = result["incremental"].get("dbt_models_s") or {}
    if not full and not incremental:
        return ""
    chosen = set(list(full)[:top]) | set(list(incremental)[:top])
    ordered = sorted(chosen, key=lambda m: (-full.get(m, 0.0), -incremental.get(m, 0.0), m))
    rows = [
        f"\nSlowest dbt models of tier {result['tier']}, seconds:\n",
        "| model | full run | incremental run |",
        "|---|---|---|",
    ]
    for model in ordered:
        rows.append(f"| {model} | {full.get(model, '-')} | {incremental.get(model, '-')} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiers", default="S,M", help="comma-separated tiers (S, M, L)")
    parser.add_argument("--large", action="store_true", help="also run the L tier (1M people)")
    parser.add_argument("--work-dir", default=str(REPO / "bench" / "data"))
    parser.add_argument("--out", default=str(REPO / "bench"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("PZ_PII_KEY", "benchmark-key-not-secret")
    tiers = [t.strip().upper() for t in args.tiers.split(",") if t.strip()]
    if args.large and "L" not in tiers:
        tiers.append("L")
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    if args.worker:
        result = bench_tier(args.worker, work)
        Path(args.worker_out).write_text(json.dumps(result))
        return 0
    # The code location loads dbt's manifest: build it now (as `make bench` does), not after a
    # tier's data has been generated.
    from dagster_project.cli import prepare_dbt_manifest

    prepare_dbt_manifest()
    # One process per tier, so each tier's peak RSS is its own (getrusage keeps the maximum).
    results = []
    for tier in tiers:
        result_file = work / f"{tier}.result.json"
        result_file.unlink(missing_ok=True)
        command = [sys.executable, __file__, "--worker", tier, "--worker-out", str(result_file)]
        command += ["--work-dir", str(work)]
        completed = subprocess.run(command, check=False)
        if completed.returncode != 0 or not result_file.exists():
            raise SystemExit(f"tier {tier} failed (exit {completed.returncode})")
        results.append(json.loads(result_file.read_text()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    (out / "results.md").write_text(table)
    print("\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
