"""A real browser against a real `dagster-webserver`: materialize everything from the UI.

Starts `dagster-webserver` on 127.0.0.1 (a free port) over a small generated sample, with a
temporary `DAGSTER_HOME` whose `dagster.yaml` uses the default (non-queued) run coordinator,
so the webserver launches the run itself and no daemon is needed. Headless Chromium, driven
by `materialize_all.js` through playwright-core, opens the asset graph (skipping the
first-visit dialog), clicks "Materialize all" and follows the run to its end. Screenshots go
to `test-artifacts/ui/`. `tests/ui/setup_browser.sh` installs Chromium and playwright-core.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import pytest

from dagster_project.cli import prepare_dbt_manifest
from dagster_project.publish import PUBLISHED_TABLES
from dagster_project.sample_data import generate

pytestmark = pytest.mark.integration

UI_DIR = Path(__file__).resolve().parent
REPO_ROOT = UI_DIR.parents[1]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "ui"
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
DAGSTER_YAML = """\
run_coordinator:
  module: dagster.core.run_coordinator
  class: DefaultRunCoordinator
telemetry:
  enabled: false
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, server: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, f"dagster-webserver exited:\n{log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"dagster-webserver not up after {timeout} s:\n{log.read_text()[-3000:]}")


def graphql(url: str, query: str, variables: dict) -> dict:
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["data"]


@pytest.fixture(scope="module")
def browser_ready() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: tests/ui/setup_browser.sh could not install it")
    assert (UI_DIR / "node_modules" / "playwright-core").is_dir(), (
        "playwright-core is missing: run tests/ui/setup_browser.sh (CI does, in .ci/run)"
    )
    assert shutil.which("node"), "node is missing (tests/ui/setup_browser.sh needs npm/node)"


@pytest.fixture(scope="module")
def webserver(tmp_path_factory: pytest.TempPathFactory, browser_ready: None):
    prepare_dbt_manifest()
    root = tmp_path_factory.mktemp("ui")
    data_dir, home = root / "data", root / "dagster_home"
    generate(data_dir, users=60, items=30, days=7, seed=5)
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    env.update(
        PZ_DATA_DIR=str(data_dir),
        DAGSTER_HOME=str(home),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    log = root / "webserver.log"
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster-webserver"))]
        + ["-m", "dagster_project.definitions", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO_ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_until_up(url, server, log)
        yield {"url": url, "data_dir": data_dir, "log": log}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)


def test_materialize_everything_from_the_ui(webserver: dict) -> None:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    env = dict(os.environ, PZ_UI_URL=webserver["url"], PZ_SCREENSHOTS=str(ARTIFACTS))
    env["CHROMIUM"] = CHROMIUM
    driven = subprocess.run(
        ["node", str(UI_DIR / "materialize_all.js")],
        cwd=UI_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    lines = driven.stdout.strip().splitlines()
    assert lines, f"no result from the browser script:\n{driven.stderr[-3000:]}"
    result = json.loads(lines[-1])
    assert "error" not in result, result["error"]
    assert result["status"] == "SUCCESS", (result, webserver["log"].read_text()[-3000:])

    # The UI launched the whole asset graph: the server agrees, and the snapshot is there.
    query = (
        "query ($id: ID!) "
        "{ runOrError(runId: $id) { ... on Run { status assetSelection { path } } } }"
    )
    run = graphql(webserver["url"], query, {"id": result["runId"]})["runOrError"]
    assert run["status"] == "SUCCESS"
    selected = {"/".join(key["path"]) for key in run["assetSelection"] or []}
    assert {"published_snapshot", "marts/recommendations", "raw/events"} <= selected
    published = webserver["data_dir"] / "published" / "personalization.duckdb"
    con = duckdb.connect(str(published), read_only=True)
    try:
        counts = {
            t: con.execute(f"select count(*) from {t}").fetchone()[0] for t in PUBLISHED_TABLES
        }
    finally:
        con.close()
    assert counts["recommendations"] > 0 and counts["user_profiles"] > 0, counts

    names = [Path(p).name for p in result["screenshots"]]
    assert any("asset-graph" in n for n in names) and any("run-success" in n for n in names)
    assert all((ARTIFACTS / n).stat().st_size > 10_000 for n in names)
