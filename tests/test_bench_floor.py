"""The benchmark's DuckDB floor reads the landing files and leaves them as they were.

Regression: the floor's database path shared a name with the loop over the files, so the
cleanup deleted the last landing file (profiles/crm_b_contacts.jsonl) before the pipeline
ran, and the tier loaded half its CRM records.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_run", REPO / "bench" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_floor_loads_every_file_and_deletes_none(tmp_path: Path):
    raw = tmp_path / "raw"
    (raw / "events").mkdir(parents=True)
    (raw / "profiles").mkdir()
    (raw / "events" / "a.csv").write_text("event_id,user_id\ne1,u1\ne2,u2\n")
    (raw / "profiles" / "b.jsonl").write_text('{"record_id": "r1"}\n{"record_id": "r2"}\n')
    before = {p: p.read_bytes() for p in raw.rglob("*") if p.is_file()}

    seconds = load_bench().duckdb_floor(raw)

    assert seconds > 0
    assert {p: p.read_bytes() for p in raw.rglob("*") if p.is_file()} == before
    assert not (tmp_path / "floor.duckdb").exists()


def test_peak_memory_counts_the_subprocesses_too(tmp_path: Path):
    """The pipeline and a subprocess of it hold memory at once: the bench reports their sum."""
    import os
    import subprocess
    import sys
    import time

    bench = load_bench()
    if not Path("/proc/self/stat").exists():
        import pytest

        pytest.skip("the process-tree sampler reads /proc (Linux only)")
    alone = bench.tree_rss_mb(os.getpid())
    ready = tmp_path / "ready"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import pathlib, sys, time\n"
            "block = bytearray(400 * 2**20)\n"
            "pathlib.Path(sys.argv[1]).touch()\n"
            "time.sleep(30)",
            str(ready),
        ]
    )
    try:
        while not ready.exists():
            time.sleep(0.05)
        assert bench.tree_rss_mb(os.getpid()) - alone > 390
    finally:
        child.kill()
        child.wait()
