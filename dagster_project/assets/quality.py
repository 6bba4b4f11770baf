"""Data quality in the UI: the `data_audit` asset and the asset checks of every layer.

- `audit/data_audit`: per run, source and column profile of the staging views (see
  `dagster_project.quality.audit`), shown as a Markdown table.
- `files_reconcile` on each `raw/<source>`: rows read = loaded + quarantined per file, and the
  tables hold exactly those rows (blocking: dbt does not build on a load that lost rows).
- `expectations_<suite>`: the Great Expectations suites of `expectations/`, one multi-check per
  group of assets built together (raw, marts, ml_marts): GX is imported once per process
  and runs once per group; Data Docs go to `$PZ_DATA_DIR/reports/data_docs/<group>/`.
  A failed critical expectation fails its check with severity ERROR and, where the graph
  allows (`BLOCKING_GROUPS`), blocks downstream assets.
- consistency checks (devices with several users, conflicting birth dates, sessions spanning
  days): counted and flagged with severity WARN, never fatal.
"""

from datetime import UTC, datetime, timedelta

import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
    multi_asset_check,
)

from dagster_project import incremental
from dagster_project.assets._metadata import markdown_table
from dagster_project.ingest.sources import SOURCES
from dagster_project.quality.audit import (
    AUDITED_RELATIONS,
    events_per_day_sql,
    write_data_audit,
)
from dagster_project.quality.consistency import CONSISTENCY_CHECKS, find_inconsistencies
from dagster_project.quality.expectations import (
    SuiteOutcome,
    last_passed_through,
    load_suites,
    read_suite_frame,
    record_passed_windows,
    validate_suites,
    window_of,
)
from dagster_project.quality.reconciliation import reconcile_source
from dagster_project.resources import WarehouseResource
from dagster_project.settings import gx_max_rows

FUTURE_TOLERANCE = timedelta(hours=24)  # clock skew allowed before a timestamp is "future"
# Groups whose critical failures block downstream assets. The dbt phase that builds the
# `marts` group also builds their downstream marts in the same step, so a check that ran after
# that step cannot block them (Dagster rejects the cycle): there a failure is ERROR, not a gate.
BLOCKING_GROUPS = {"raw", "ml_marts"}
# Groups over append-only raw tables: a run validates the rows loaded since the last successful
# build of the event chain (they passed when they arrived; a full refresh validates all). A
# suite of another group with `meta.window` validates the rows rewritten since it last passed.
LOAD_WINDOW_GROUPS = {"raw"}
AUDIT_COLUMNS = [
    "source",
    "column_name",
    "rows",
    "completeness",
    "distinct_values",
    "min_value",
    "max_value",
    "mean",
    "variance",
    "nulled_invalid",
    "unrecognized",
    "freshness_hours",
    "records_per_day",
    "rows_quarantined",
]


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@asset(
    key=AssetKey(["audit", "data_audit"]),
    # After the identity step too: its erasure check may delete raw rows of erased people, and
    # a profile taken before that would have to be taken whole again the next night.
    deps=[AssetKey(["raw", s]) for s in SOURCES]
    + [AssetKey(rel.split(".")) for rel, _ in AUDITED_RELATIONS.values()]
    + [AssetKey(["ml", "identity_assignments"])],
    group_name="quality",
    kinds={"duckdb"},
    owners=["team:data-platform"],
    description=(
        "`audit.data_audit`: per run, source and column: rows, completeness, distinct values, "
        "min/max/mean/variance, values nulled as invalid or unrecognized by staging; per source "
        "(`*` row) freshness, records per day and rows quarantined at ingest. A source whose "
        "raw rows (by their load keys), staging SQL and config did not change keeps its last "
        "profile; one that only gained rows profiles those and merges them into it; a full "
        "refresh profiles every source."
    ),
)
def data_audit(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
    with warehouse.connect() as con:
        forced = incremental.full_refresh_requested(context.run.tags)
        outcome = write_data_audit(con, context.run.run_id, _now(), forced=forced)
        audit = con.execute(
            "select * from audit.data_audit where run_id = $run order by source, column_name",
            {"run": context.run.run_id},
        ).df()
        per_day = con.execute(events_per_day_sql()).df()
    reused = ", ".join(outcome.reused) or "none"
    merged = ", ".join(outcome.merged) or "none"
    timed = ", ".join(f"{source} {s} s" for source, s in outcome.seconds.items())
    context.log.info(
        f"data audit: {outcome.rows} rows; unchanged since the last audit: {reused}; "
        f"new rows merged into the last profile: {merged}; seconds per source: {timed}"
    )
    shown = audit[AUDIT_COLUMNS].round(3)
    return MaterializeResult(
        metadata={
            "rows": outcome.rows,
            "sources_unchanged": reused,
            "sources_merged": merged,
            "values_nulled_invalid": int(audit["nulled_invalid"].fillna(0).sum()),
            "values_unrecognized": int(audit["unrecognized"].fillna(0).sum()),
            "sources": markdown_table(shown[shown["column_name"] == "*"], max_rows=20),
            "columns": markdown_table(shown, max_rows=200),
            "events_per_day": markdown_table(per_day, max_rows=14),
        }
    )


def _build_reconciliation_check(source: str):
    @asset_check(
        asset=AssetKey(["raw", source]),
        name="files_reconcile",
        blocking=True,
        description=(
            "Every current file: rows read = rows loaded + rows quarantined, and raw / "
            "quarantine tables hold exactly that many rows for it."
        ),
    )
    def _check(context: AssetCheckExecutionContext, warehouse: WarehouseResource):
        with warehouse.connect() as con:
            counts = reconcile_source(con, source)
        bad = counts.pop("unreconciled")
        return AssetCheckResult(
            passed=bad.empty,
            severity=AssetCheckSeverity.ERROR,
            metadata={
                **counts,
                "unreconciled_files": len(bad),
                "details": markdown_table(bad, max_rows=20),
            },
        )

    _check.__name__ = f"raw_{source}_files_reconcile"
    return _check


def _build_consistency_check(check):
    @asset_check(
        asset=AssetKey(list(check.asset)),
        name=check.name,
        blocking=False,
        description=check.description + " Counted and flagged, never fatal.",
    )
    def _check(context: AssetCheckExecutionContext, warehouse: WarehouseResource):
        with warehouse.connect() as con:
            count, examples = find_inconsistencies(con, check)
        return AssetCheckResult(
            passed=count == 0,
            severity=AssetCheckSeverity.WARN,
            metadata={
                "inconsistent": count,
                "examples": markdown_table(pd.DataFrame(examples, columns=["key", "detail"])),
            },
        )

    _check.__name__ = f"consistency_{check.name}"
    return _check


def expectation_parameters(con, now: datetime) -> dict:
    """The run-time values the suites refer to as `{"$PARAMETER": ...}`."""

    def values(sql: str) -> list[str]:
        return [r[0] for r in con.execute(sql).fetchall()]

    relations = {
        r[0]
        for r in con.execute(
            "select table_schema || '.' || table_name from information_schema.tables"
        ).fetchall()
    }
    return {
        "now_plus_tolerance": pd.Timestamp(now + FUTURE_TOLERANCE),
        "raw_catalog_item_ids": values(
            "select distinct item_id from raw.catalog where item_id is not null"
        ),
        "catalog_item_ids": values("select item_id from marts.items")
        if "marts.items" in relations
        else [],
        "canonical_event_types": values("select distinct event_type from config.event_type_map")
        if "config.event_type_map" in relations
        else [],
    }


def _write_expectation_results(con, outcomes: list[SuiteOutcome], run_id: str, at) -> None:
    frames = [o.frame().assign(suite=o.suite, relation=o.relation) for o in outcomes]
    results = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if results.empty:
        return
    results = results.assign(run_id=run_id, validated_at=at)
    con.execute(
        """
        create table if not exists audit.expectation_results (
            run_id varchar, validated_at timestamp, suite varchar, relation varchar,
            expectation varchar, column_name varchar, success boolean, critical boolean,
            unexpected_count bigint, observed varchar
        )
        """
    )
    con.execute(
        "delete from audit.expectation_results where run_id = $run and suite in "
        "(select distinct suite from results)",
        {"run": run_id},
    )
    con.execute(
        """
        insert into audit.expectation_results
        select run_id, validated_at, suite, relation, expectation, "column", success, critical,
               unexpected_count, observed
        from results
        """
    )


def _suite_check_result(outcome: SuiteOutcome, check_name: str, docs_index) -> AssetCheckResult:
    failed = outcome.frame()
    failed = failed[~failed["success"]] if not failed.empty else failed
    return AssetCheckResult(
        asset_key=AssetKey(outcome.asset_key),
        check_name=check_name,
        passed=outcome.success,
        severity=AssetCheckSeverity.ERROR if outcome.critical_failures else AssetCheckSeverity.WARN,
        metadata={
            "suite": outcome.suite,
            "rows_validated": outcome.rows,
            "rows_in_table": outcome.total_rows,
            "expectations": len(outcome.outcomes),
            "failed": len(failed),
            "critical_failed": len(outcome.critical_failures),
            "failures": markdown_table(failed),
            "data_docs": MetadataValue.path(str(docs_index)),
        },
    )


def _build_expectation_checks(group: str):
    suites = load_suites(group)
    specs = [
        AssetCheckSpec(
            name=f"expectations_{suite['name']}",
            asset=AssetKey(suite["meta"]["asset_key"]),
            blocking=group in BLOCKING_GROUPS
            and any((e.get("meta") or {}).get("critical") for e in suite["expectations"]),
            description=f"Great Expectations suite `expectations/{suite['name']}.json` on "
            f"`{suite['meta']['relation']}`. {suite['meta'].get('description', '')}",
        )
        for suite in suites
    ]

    # can_subset: a run that materializes only some of the group's assets validates those.
    @multi_asset_check(specs=specs, name=f"{group}_expectations", can_subset=True)
    def _checks(context: AssetCheckExecutionContext, warehouse: WarehouseResource):
        settings = warehouse.settings()
        now = _now()
        selected = {key.name for key in context.selected_asset_check_keys}
        chosen = [suite for suite in suites if f"expectations_{suite['name']}" in selected]
        full = incremental.full_refresh_requested(context.run.tags if context.run else None)
        with warehouse.connect() as con:
            max_rows = gx_max_rows()
            loaded_since = None
            if group in LOAD_WINDOW_GROUPS and not full:
                loaded_since = incremental.last_build_time(con)

            def since(suite: dict):
                if window_of(suite) is None:
                    return loaded_since
                return None if full else last_passed_through(con, suite)

            frames = {
                suite["name"]: read_suite_frame(con, suite, max_rows, since(suite))
                for suite in chosen
            }
            for name, frame in frames.items():
                if frame.sampled:
                    context.log.info(
                        f"{name}: validating {len(frame.frame):,} of {frame.total_rows:,} rows "
                        f"({frame.window or 'a sample'}; at most PZ_GX_MAX_ROWS); uniqueness "
                        "over all rows"
                    )
            parameters = expectation_parameters(con, now)
        docs = settings.reports_dir / "data_docs" / group
        outcomes = validate_suites(chosen, frames, parameters, docs)
        with warehouse.connect() as con:
            _write_expectation_results(con, outcomes, context.run.run_id, now)
            record_passed_windows(con, chosen, frames, outcomes, context.run.run_id, now)
        context.log.info(f"Data Docs: {docs / 'index.html'}")
        for outcome in outcomes:
            yield _suite_check_result(outcome, f"expectations_{outcome.suite}", docs / "index.html")

    return _checks


quality_checks = [
    *[_build_reconciliation_check(source) for source in SOURCES],
    *[_build_consistency_check(check) for check in CONSISTENCY_CHECKS],
    _build_expectation_checks("raw"),
    _build_expectation_checks("marts"),
    _build_expectation_checks("ml_marts"),
]
