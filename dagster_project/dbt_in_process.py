"""dbt run inside the Dagster process, streamed through dagster-dbt as a dbt subprocess is.

A dbt subprocess pays dbt's start-up on every call: importing `dbt.cli.main` takes 5.4 s on
these machines and setting up before the first query 2.6 s more, about 8 s for each of the
three dbt phases of every run (a phase of 39 models and tests on the sample data took 11.1 s
as `dbt build`, 2.9 s through `dbtRunner` in a process that had imported dbt before). dbt's
own programmatic entry point, `dbtRunner`, runs the same command in this process: the import
is paid once per process, and what it emits is the same structured events.

`DbtInProcess` stands where dagster-dbt puts the `subprocess.Popen` of the dbt CLI: it runs
`dbtRunner().invoke()` in a thread and serves each event of level info and above as the JSON
line `dbt --log-format json` would print, so dagster-dbt's own `DbtCliInvocation` (event
translation to materializations and asset checks, errors, artifacts) is used unchanged.
`dbt_in_this_process()` makes dagster-dbt use it for the invocations started inside it.

What differs from a subprocess:
- dagster-dbt passes the target, log, profiles and project folders as environment variables of
  the subprocess; here they are flags of the command, and relative paths are taken from the
  folder the subprocess would have started in. Other variables are this process's own.
- dbt's console logger is off (`--log-level none`): dagster-dbt re-prints each event, as it
  does for a subprocess; dbt's debug log is written to the target folder as before.
- The DuckDB database dbt opened is closed when dbt returns (`close_dbt_database`), so the next
  step can open the warehouse file.
- Interrupting the run (terminating it in the UI) stops dbt at its next event: the query running
  then finishes first, where a subprocess would have been sent SIGINT.
- Only commands that run nodes go in process (`IN_PROCESS_COMMANDS`); any other, and every
  command when `PZ_DBT_SUBPROCESS=1`, runs as a subprocess as before.
"""

from __future__ import annotations

import os
import queue
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import orjson

SUBPROCESS_ENV = "PZ_DBT_SUBPROCESS"
IN_PROCESS_COMMANDS = frozenset({"build", "run", "test", "seed", "snapshot", "compile"})
# the subprocess's environment variables dagster-dbt sets, as the dbt flags that mean the same
PATH_FLAGS = {
    "DBT_TARGET_PATH": "--target-path",
    "DBT_LOG_PATH": "--log-path",
    "DBT_PROFILES_DIR": "--profiles-dir",
    "DBT_PROJECT_DIR": "--project-dir",
}
VALUE_FLAGS = {"DBT_INDIRECT_SELECTION": "--indirect-selection"}
STREAMED_LEVELS = frozenset({"info", "warn", "error"})  # what dbt's console shows by default

# one dbt invocation at a time in a process: dbt keeps its flags, adapters and event manager
# in module globals
_invocation_lock = threading.Lock()


class DbtInterrupted(Exception):
    """Raised inside dbt, at its next event, after the run asked it to stop."""


class _Lines:
    """The `stdout` of a `DbtInProcess`: JSON lines (bytes) until dbt returns."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.closed = False

    def put(self, line: bytes | None) -> None:
        self._queue.put(line)

    def __iter__(self) -> Iterator[bytes]:
        while not self.closed:
            try:  # waits in short slices, so an interrupt of the run is raised here promptly
                line = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                self.closed = True
                return
            yield line

    def __enter__(self) -> _Lines:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def dbt_args(args: Sequence[str], env: Mapping[str, str], cwd: str | os.PathLike) -> list[str]:
    """The dbtRunner arguments for the subprocess `args` (the executable first) started in `cwd`
    with environment `env`."""
    flags: list[str] = []
    for name, flag in PATH_FLAGS.items():
        if env.get(name):
            flags += [flag, os.fspath(Path(cwd, env[name]))]  # an absolute one stays as it is
    for name, flag in VALUE_FLAGS.items():
        if env.get(name):
            flags += [flag, env[name]]
    if str(env.get("DBT_SEND_ANONYMOUS_USAGE_STATS", "")).lower() == "false":
        flags.append("--no-send-anonymous-usage-stats")
    return [*args[1:], *flags, "--log-level", "none"]


def close_dbt_database() -> bool:
    """Close the DuckDB database dbt-duckdb opened in this process; True if one was open.

    dbt-duckdb keeps its database (and with it the warehouse file's lock) open for the life of
    the process when the profile's path is `:memory:`, as ours is (the warehouse file is
    attached to it): a dbt subprocess let go of it when it exited. Its connection manager
    holds the environment that owns the database in `_ENV` (private, pinned by uv.lock) and
    forgets it in `close_all_connections()`; closing the environment closes its connection,
    the cursors dbt handed out and the database, and the next invocation opens a new one.
    """
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:
        return False
    environment = getattr(DuckDBConnectionManager, "_ENV", None)
    if environment is not None:
        environment.close()
    DuckDBConnectionManager.close_all_connections()
    return environment is not None


def _error_line(message: str) -> bytes:
    """A dbt-shaped error event, for a failure dbt itself did not log."""
    return orjson.dumps(
        {"info": {"name": "MainEncounteredError", "level": "error", "msg": message}, "data": {}}
    )


class DbtInProcess:
    """What dagster-dbt uses of a `subprocess.Popen` of the dbt CLI, run by `dbtRunner` in a
    thread of this process. Exit codes are dbt's: 0 success, 1 a node failed, 2 dbt failed."""

    def __init__(
        self,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike | None = None,
        **_popen_kwargs: object,
    ) -> None:
        self.args = list(args)
        self.returncode: int | None = None
        self.stdout = _Lines()
        self._runner_args = dbt_args(args, env or os.environ, cwd or os.getcwd())
        self._interrupted = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dbt", daemon=True)
        self._thread.start()

    def _on_event(self, msg) -> None:
        if self._interrupted.is_set():
            raise DbtInterrupted("the run was interrupted")
        if msg.info.level in STREAMED_LEVELS:
            from dbt_common.events.functions import msg_to_dict

            self.stdout.put(orjson.dumps(msg_to_dict(msg), default=str))

    def _run(self) -> None:
        code = 2
        try:
            with _invocation_lock:
                try:
                    from dbt.cli.main import dbtRunner

                    result = dbtRunner(callbacks=[self._on_event]).invoke(self._runner_args)
                finally:
                    close_dbt_database()
            if result.success:
                code = 0
            elif result.exception is None:
                code = 1
            else:
                self.stdout.put(_error_line(f"dbt failed: {result.exception}"))
        except BaseException as error:  # noqa: BLE001 - the exit code and log carry it
            self.stdout.put(_error_line(f"dbt could not run in process: {error!r}"))
        finally:
            self.returncode = code
            self.stdout.put(None)

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, _signal: int) -> None:
        """Stop dbt at its next event (an interrupt of the Dagster run)."""
        self._interrupted.set()

    def terminate(self) -> None:
        self._interrupted.set()

    kill = terminate


def in_process_enabled(args: Sequence[str]) -> bool:
    if os.environ.get(SUBPROCESS_ENV, "") in {"1", "true", "yes"}:
        return False
    command = next((arg for arg in args if not arg.startswith("-")), None)
    return command in IN_PROCESS_COMMANDS


@contextmanager
def dbt_in_this_process(args: Sequence[str]) -> Iterator[bool]:
    """Within it, dagster-dbt starts dbt `args` (a command, without the executable) with
    `DbtInProcess` instead of a subprocess, when `in_process_enabled(args)`; yields whether it
    does.

    dagster-dbt starts the dbt CLI with `subprocess.Popen` in
    `dagster_dbt.core.dbt_cli_invocation`, its only use of the module there; the stand-in
    replaces that module's `subprocess` name for this block. Like the overrides of
    `WarehouseDbtCliResource`, this leans on dagster-dbt's internals as pinned by uv.lock.
    """
    from dagster_dbt.core import dbt_cli_invocation

    if not in_process_enabled(args):
        yield False
        return
    original = dbt_cli_invocation.subprocess
    dbt_cli_invocation.subprocess = SimpleNamespace(  # type: ignore[assignment]
        Popen=DbtInProcess, PIPE=subprocess.PIPE, STDOUT=subprocess.STDOUT
    )
    try:
        yield True
    finally:
        dbt_cli_invocation.subprocess = original
