"""Identity resolution: dbt's identity graph + Splink links -> one stable person_id per human."""

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from dagster import AssetExecutionContext, AssetKey, MaterializeResult, asset

from dagster_project import incremental
from dagster_project.assets._metadata import markdown_table
from dagster_project.identity.erasure import link_and_erase
from dagster_project.identity.evaluation import ensure_evaluation_table, evaluate_against_files
from dagster_project.identity.graph import (
    assignment_stats,
    cut_coded_by_guardrails,
    drop_codes,
    read_coded_graph,
    read_previous_matches,
)
from dagster_project.identity.scope import (
    Scope,
    drop_scope,
    plan_scope,
    replace_touched,
    replace_touched_assignments,
    save_state,
    settings_fingerprint,
)
from dagster_project.ingest.erasure import drop_erased_people
from dagster_project.resources import WarehouseResource
from dagster_project.tunables import load_identity_tunables
from dagster_project.warehouse_io import read_frame, register_frame, write_frame
from models_ml.identity import Resolution, resolve_coded
from models_ml.linkage import carry_over_codes, no_changes

NODES_SQL = "select * from intermediate.int_identity_nodes"
ASSIGNMENT_EDGES_SQL = (
    "select node_key_a, node_key_b, method, match_probability "
    "from intermediate.int_identity_edges union all "
    "select node_key_a, node_key_b, method, match_probability from ml.identity_links"
)
# typed even when nothing fired: a table made from an empty frame would not be
FIRING_TYPES = {
    "guardrail": "str",
    "anchor_node_key": "str",
    "user_ids": "int64",
    "records": "int64",
    "edges_cut": "int64",
    "resolved": "bool",
    "run_id": "str",
}
CHANGES_COLUMNS = "run_id varchar, changed_at timestamp, change_type varchar, person_id varchar, "
CHANGES_COLUMNS += "previous_person_id varchar, identifiers bigint"


@asset(
    key=AssetKey(["ml", "identity_links"]),
    deps=[
        AssetKey(["intermediate", "int_profiles_deduplicated"]),
        AssetKey(["intermediate", "int_identity_nodes"]),
        AssetKey(["intermediate", "int_identity_edges"]),
    ],
    group_name="identity",
    kinds={"python", "splink", "duckdb"},
    owners=["team:data-platform"],
    description=(
        "Probabilistic links between profile records (Splink, Fellegi-Sunter), read from the "
        "PII zone: record node keys, match probability and method only, no plaintext. First, "
        "erasure requests are resolved to whole people: the records ingest purged for an "
        "erasure (kept in the PII zone as evidence) are matched against everyone, every person "
        "they resolve to is erased everywhere and remembered, and the evidence is deleted."
    ),
)
def identity_links(
    context: AssetExecutionContext, warehouse: WarehouseResource
) -> MaterializeResult:
    tunables = load_identity_tunables()
    now = datetime.now(UTC).replace(tzinfo=None)
    score_all = incremental.full_refresh_requested(context.run.tags if context.run else None)
    with warehouse.connect(with_pii_zone=True) as con:
        links, info, erased = link_and_erase(con, tunables, now, score_all=score_all)
        rows = write_frame(con, "ml.identity_links", links)
    context.log.info(f"splink: {info}")
    if erased.people_erased:
        context.log.info(
            f"erasure: {erased.people_erased} person(s) erased, "
            f"{erased.identifiers_registered} identifier token(s) registered, "
            f"{erased.total_removed} row(s) removed"
        )
    return MaterializeResult(
        metadata={
            "rows": rows,
            "records": info["records"],
            "invalid_birth_dates_nulled": info["invalid_birth_dates_nulled"],
            "fields_compared": ", ".join(info["fields_compared"]),
            "seconds": info["seconds"],
            "splink_model": "trained" if info.get("model_trained") else "stored model reused",
            "scoring": info["scoring"],
            "records_rescored": info["records_rescored"],
            "match_threshold": float(tunables["probabilistic"]["match_threshold"]),
            "people_erased": erased.people_erased,
            "erasure_identifiers_registered": erased.identifiers_registered,
            "erasure_rows_removed": erased.total_removed,
        }
    )


@asset(
    key=AssetKey(["ml", "identity_assignments"]),
    deps=[
        AssetKey(["intermediate", "int_identity_nodes"]),
        AssetKey(["intermediate", "int_identity_edges"]),
        AssetKey(["ml", "identity_links"]),
    ],
    group_name="identity",
    kinds={"python", "scipy", "duckdb"},
    owners=["team:data-platform"],
    description=(
        "One row per source identifier (record_id, user_id, anonymous_id) with its stable "
        "person_id: connected components of the deterministic and Splink links, cut by the "
        "guardrails, with last run's person_ids carried over (merges/splits recorded). Only "
        "the components with a node or edge new, changed or gone since the last run are "
        "resolved again (ml.identity_graph_*); a full refresh resolves all. Also "
        "writes ml.identity_guardrail_firings, ml.identity_changes and ml.identity_evaluation "
        "(pairwise scores against the labels file of identity.yaml, when present)."
    ),
)
def identity_assignments(
    context: AssetExecutionContext, warehouse: WarehouseResource
) -> MaterializeResult:
    tunables = load_identity_tunables()
    requested = incremental.full_refresh_requested(context.run.tags if context.run else None)
    with warehouse.connect(with_pii_zone=True) as con:
        outcome = resolve_assignments(con, tunables, context.run.run_id, requested=requested)
        context.log.info(f"identity graph: {outcome.scope.reason}")
        # Defensive: identity_links erased the requested people before linking anyone.
        erased = drop_erased_people(con, datetime.now(UTC).replace(tzinfo=None))
        if erased.total_removed or erased.identifiers_registered:
            context.log.info(f"erasure after identity: {erased.total_removed} row(s) removed")
        _append_changes(con, outcome.changes, context.run.run_id)
        stats = assignment_stats(con, "ml.identity_assignments")
        firings = read_frame(con, "select * from ml.identity_guardrail_firings")
        # Scored in this step so the table is complete before the marts (and publish) run.
        ensure_evaluation_table(con)
        scores = evaluate_against_files(
            con, warehouse.settings().data_dir, tunables["evaluation"], run_id=context.run.run_id
        )
    context.log.info(f"identity evaluation: {scores or 'no labels file'}")
    changes = outcome.changes
    by_method = stats.pop("identifiers_by_method")
    fired = firings.groupby("guardrail").size().to_dict() if len(firings) else {}
    return MaterializeResult(
        metadata={
            "rows": stats["identifiers"],
            **stats,
            "resolved": outcome.scope.reason,
            "resolved_in_full": outcome.scope.full,
            "edges_in": outcome.edges_in,
            "edges_cut_by_guardrails": int(firings["edges_cut"].sum()) if len(firings) else 0,
            "guardrail_firings": int(len(firings)),
            "guardrail_firings_unresolved": int((~firings["resolved"].astype(bool)).sum())
            if len(firings)
            else 0,
            **{f"fired_{name}": int(count) for name, count in fired.items()},
            "merges_since_last_run": int((changes["change_type"] == "merge").sum()),
            "splits_since_last_run": int((changes["change_type"] == "split").sum()),
            **{f"evaluation_{k}": v for k, v in (scores or {}).items() if v is not None},
            "guardrail_firings_preview": markdown_table(
                firings.sort_values("anchor_node_key").head(20)
            ),
            "identifiers_by_method": markdown_table(
                pd.DataFrame(sorted(by_method.items()), columns=["method", "identifiers"])
            ),
        }
    )


@dataclass(frozen=True)
class AssignmentOutcome:
    scope: Scope
    edges_in: int  # edges of the part resolved
    changes: pd.DataFrame  # merges and splits since the last run


def resolve_assignments(
    con, tunables: dict, run_id: str, *, requested: bool = False
) -> AssignmentOutcome:
    """Resolve the touched part of the identity graph (all of it on a first run, a full
    refresh or changed guardrails; `dagster_project/identity/scope.py`) into
    `ml.identity_assignments` and `ml.identity_guardrail_firings`, keeping every other row.
    The assignments, the firings and the graph state are written in one transaction."""
    settings = settings_fingerprint(tunables["guardrails"])
    scope = plan_scope(con, NODES_SQL, ASSIGNMENT_EDGES_SQL, settings, requested=requested)
    if scope.nothing_touched:
        drop_scope(con)
        return AssignmentOutcome(scope, 0, no_changes())
    graph = read_coded_graph(con, scope.edges_sql, scope.nodes_sql)
    edges_in = len(graph.edges)
    kept, firings = cut_coded_by_guardrails(graph, tunables["guardrails"])
    assignments, changes = _carried_over(con, resolve_coded(kept))
    del kept
    firings = firings.assign(run_id=run_id).astype(FIRING_TYPES)
    con.execute("begin transaction")
    try:
        if scope.full:
            write_frame(con, "ml.identity_assignments", assignments)
            write_frame(con, "ml.identity_guardrail_firings", firings)
        else:
            replace_touched_assignments(con, assignments)
            replace_touched(con, "ml.identity_guardrail_firings", firings, "anchor_node_key")
        save_state(con, scope, graph, settings)
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    finally:
        drop_codes(con)
        drop_scope(con)
    return AssignmentOutcome(scope, edges_in, changes)


def _carried_over(con, resolution: Resolution) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The assignments with last run's person_ids carried over, and the changes
    (`carry_over_person_ids` with the identifiers matched in DuckDB)."""
    exists = con.execute(
        "select count(*) from information_schema.tables "
        "where table_schema = 'ml' and table_name = 'identity_assignments'"
    ).fetchall()[0][0]
    if not exists or not len(resolution.node_code):
        return resolution.assignments(), no_changes()
    matches, previous_ids = read_previous_matches(con, "ml.identity_assignments")
    # Only identifiers of an assigned type have a person. A code's row by direct index (codes
    # are below the graph's node count): a binary search of 2.7M unsorted codes took 1.2 s.
    codes = matches["node_code"].to_numpy(np.int64)
    node_code = resolution.node_code
    row_of = np.zeros(int(max(node_code.max(), codes.max(initial=0))) + 1, dtype=np.int64)
    row_of[node_code] = np.arange(len(node_code))
    row = row_of[codes]
    assigned = node_code[row] == codes
    final_ids, changes = carry_over_codes(
        np.asarray(resolution.person_ids, dtype=object),
        resolution.person_code[row[assigned]],
        matches["previous_code"].to_numpy(np.int64)[assigned],
        previous_ids,
    )
    return resolution.assignments(final_ids), changes


def _append_changes(con, changes: pd.DataFrame, run_id: str) -> None:
    con.execute("create schema if not exists ml")
    con.execute(f"create table if not exists ml.identity_changes ({CHANGES_COLUMNS})")
    register_frame(con, "_pz_changes", changes)
    try:
        con.execute(
            "insert into ml.identity_changes select $run, now()::timestamp, change_type, "
            "person_id, previous_person_id, identifiers from _pz_changes",
            {"run": run_id},
        )
    finally:
        con.unregister("_pz_changes")


identity_assets = [identity_links, identity_assignments]
