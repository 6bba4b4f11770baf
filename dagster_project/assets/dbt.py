"""All dbt models as Dagster assets (one asset per model; dbt tests become asset checks)."""

import os
import shutil
from collections.abc import Mapping, Sequence
from functools import cached_property
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext, AssetKey
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets
from dagster_dbt.core.dbt_cli_invocation import DbtCliInvocation
from packaging import version

from dagster_project import incremental
from dagster_project.dbt_in_process import dbt_in_this_process
from dagster_project.project import dbt_project
from dagster_project.resources import WarehouseResource

LAYER_GROUPS = {"staging": "staging", "intermediate": "intermediate", "marts": "marts"}
# Who answers for a dbt model, by layer, unless its yml sets `meta: {dagster: {owners: [...]}}`
# (or a dbt `group` with an owner email).
LAYER_OWNERS = {
    "staging": ["team:data-platform"],
    "intermediate": ["team:analytics-engineering"],
    "marts": ["team:analytics-engineering"],
}
DEFAULT_OWNERS = ["team:analytics-engineering"]


class WarehouseDbtTranslator(DagsterDbtTranslator):
    """Asset keys are `<schema>/<table>` for sources and models alike (`raw/events`,
    `ml/recommendations`, `marts/user_profiles`), so a dbt source is the very asset the
    Python step upstream of it produces. Groups and owners follow the dbt folder (layer)."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        if dbt_resource_props.get("resource_type") == "source":
            table = dbt_resource_props.get("identifier") or dbt_resource_props["name"]
            return AssetKey([dbt_resource_props["schema"], table])
        return super().get_asset_key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props.get("resource_type") == "snapshot":
            return "snapshots"
        fqn = dbt_resource_props.get("fqn", [])
        for part in fqn[1:-1]:
            if part in LAYER_GROUPS:
                return LAYER_GROUPS[part]
        return super().get_group_name(dbt_resource_props)

    def get_owners(self, dbt_resource_props: Mapping[str, Any]) -> Sequence[str] | None:
        declared = super().get_owners(dbt_resource_props)
        if declared:
            return declared
        if dbt_resource_props.get("resource_type") == "snapshot":
            return LAYER_OWNERS["marts"]
        for part in dbt_resource_props.get("fqn", [])[1:-1]:
            if part in LAYER_OWNERS:
                return LAYER_OWNERS[part]
        return DEFAULT_OWNERS


class WarehouseDbtCliResource(DbtCliResource):
    """`DbtCliResource` that runs dbt in this process (`dagster_project.dbt_in_process`), without
    its `dbt --version` call and its in-process dbt adapter.

    Commands that run nodes (`dbt build` here) go through dbt's `dbtRunner` in a thread of the
    Dagster process instead of a `dbt` subprocess: dbt's 8 s start-up is paid once per process,
    not once per phase. `PZ_DBT_SUBPROCESS=1` runs them as subprocesses again.

    dagster-dbt asks the dbt executable for its version once per process, a whole dbt start-up
    (4-7 s here, and a check for a newer release on PyPI). The executable is this
    environment's (`dagster_project.project` puts its bin directory first on PATH), so the
    installed dbt-core package says the same.

    `_cli_version` is dagster-dbt's own (private) property, pinned by uv.lock: should a later
    dagster-dbt rename it, this override goes unused and each run pays the call again.
    """

    def cli(self, args: Sequence[str], **kwargs: Any) -> DbtCliInvocation:
        with dbt_in_this_process(args):
            return super().cli(args, **kwargs)

    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(installed_version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> None:
        """No dbt adapter in this process. dagster-dbt builds one before every invocation (it
        loads the profile, the project and dbt's macros: 0.6-1.9 s a phase here) only for
        `fetch_row_counts()` and `fetch_column_metadata()`, which these assets do not call;
        without one, the invocation streams the same events. Also a private method of
        dagster-dbt, pinned by uv.lock like `_cli_version`."""
        return None


PARTIAL_PARSE_FILE = "partial_parse.msgpack"


def keep_partial_parse(invocation: DbtCliInvocation) -> bool:
    """Make the parse state this invocation ended with the one the next invocation starts from.

    dagster-dbt copies `target/partial_parse.msgpack` into each invocation's own target folder
    so dbt can parse only what changed. That file comes from `dbt parse` at prepare time, with
    the default warehouse path; dbt's parse state includes the profile, and the profile names
    the warehouse (PZ_WAREHOUSE_PATH), so every phase of every run parsed the whole project
    again (8 s a call here). Copied back after a successful invocation, the next phase of the
    run, and the next run on this warehouse, parse nothing. Replaced atomically: a concurrent
    reader sees the old file or the new one, and any of them is only a cache (dbt checks it and
    parses again when it does not match).
    """
    produced = Path(invocation.target_path) / PARTIAL_PARSE_FILE
    if not produced.exists():
        return False
    # where dagster-dbt copies it from: DBT_TARGET_PATH, else `target`, under the project
    shared = Path(dbt_project.project_dir) / os.getenv("DBT_TARGET_PATH", "target")
    shared = shared / PARTIAL_PARSE_FILE
    staged = shared.with_name(f"{PARTIAL_PARSE_FILE}.{os.getpid()}.tmp")
    shared.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(produced, staged)
    os.replace(staged, shared)
    return True


def _run_dbt(context: AssetExecutionContext, dbt: DbtCliResource, full_refresh: bool = False):
    """`dbt build` of the phase's selection, streamed as Dagster events, then its parse state
    kept for the next invocation (`keep_partial_parse`)."""
    invocation = dbt.cli(dbt_build_args(full_refresh), context=context)
    yield from invocation.stream()
    keep_partial_parse(invocation)


UNIT_TESTS_ENV = "PZ_DBT_UNIT_TESTS"


def dbt_build_args(full_refresh: bool = False) -> list[str]:
    """The dbt command every materialization runs; Dagster adds the selection of the subset.

    Without dbt's unit tests, unless `PZ_DBT_UNIT_TESTS=1`. A unit test checks a model's SQL on
    fixed rows written in its yml, so it gives the same answer every night until the SQL
    changes; dbt recommends running them in development and CI, not in production builds.
    Here `make test` runs every one of them (tests/dbt_project builds each phase with them),
    and the nightly build no longer pays for them: 12 unit tests, 5.3 s of dbt's time in a
    night at L (3.6 s in phase one, 1.7 s in phase two). Whoever edits a model's SQL on a
    deployed warehouse can set the variable to have them guard the next builds again.
    """
    args = ["build"]
    if os.environ.get(UNIT_TESTS_ENV, "") not in {"1", "true", "yes"}:
        args += ["--exclude-resource-type", "unit_test"]
    return [*args, "--full-refresh"] if full_refresh else args


INCREMENTAL_PHASE = "pre_identity"  # builds int_events_deduplicated, which decides a rebuild
TESTED_PHASE = "ml_marts"  # tests the rows served since it last passed
IDENTIFIED_EVENTS = AssetKey(["intermediate", "int_events_identified"])  # in post_identity


def _build_dbt_phase(selector: str, description: str):
    """One `@dbt_assets` per phase of `dbt_project/selectors.yml`.

    The Python identity, segment and recommendation steps write `ml.*` tables that later dbt
    models read, so dbt runs in three phases around them; each phase is one dbt invocation.
    """

    @dbt_assets(
        manifest=dbt_project.manifest_path,
        project=dbt_project,
        selector=selector,
        name=f"dbt_{selector}",
        dagster_dbt_translator=WarehouseDbtTranslator(),
    )
    def _phase(context: AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource):
        # dbt-duckdb reads the warehouse path from the environment (dbt_project/profiles.yml).
        os.environ["PZ_WAREHOUSE_PATH"] = str(warehouse.settings().warehouse_path)
        requested = incremental.full_refresh_requested(context.run.tags if context.run else None)
        if selector == incremental.POST_IDENTITY_PHASE:
            # int_events_identified is incremental; it rebuilds after int_events_deduplicated did.
            with warehouse.connect() as con:
                rebuild = requested or incremental.rebuild_pending(con)
            mode = "full refresh" if rebuild else "incremental"
            context.log.info(f"identified events: {mode}")
            yield from _run_dbt(context, dbt, rebuild)
            if rebuild and IDENTIFIED_EVENTS in context.selected_asset_keys:
                with warehouse.connect() as con:
                    incremental.clear_pending(con)
            return
        if selector == TESTED_PHASE and not context.is_subset:
            # the recommendations' uniqueness tests read the people served since this phase
            # last passed (dbt_project/macros/new_deliveries.sql); a subset may skip them
            with warehouse.connect() as con:
                started_at = incremental.tested_since(con)
            yield from _run_dbt(context, dbt, requested)
            with warehouse.connect() as con:
                incremental.record_tested(con, selector, started_at)
            return
        if selector != INCREMENTAL_PHASE:
            yield from _run_dbt(context, dbt)
            return
        # The event chain is incremental; the warehouse says whether that is still exact.
        with warehouse.connect() as con:
            decision = incremental.decide(con, requested=requested)
        mode = "full refresh" if decision.full_refresh else "incremental"
        context.log.info(f"event models: {mode} ({decision.reason})")
        yield from _run_dbt(context, dbt, decision.full_refresh)
        with warehouse.connect() as con:
            incremental.record_baseline(con, rebuilt=decision.full_refresh)

    _phase.__doc__ = description
    return _phase


dbt_pre_identity = _build_dbt_phase(
    "pre_identity", "dbt phase 1: staging, intermediate and the identity graph."
)
dbt_post_identity = _build_dbt_phase(
    "post_identity", "dbt phase 2: marts keyed by person_id (after identity resolution)."
)
dbt_ml_marts = _build_dbt_phase(
    "ml_marts", "dbt phase 3: user_segments, segment_quality and recommendations marts."
)
dbt_phases = [dbt_pre_identity, dbt_post_identity, dbt_ml_marts]
