"""Which part of the identity graph a run resolves again, and the graph state that tells it.

A person is part of one connected component of the identity graph, and everything that decides
the persons of a component looks at that component alone: the guardrails cut edges per
component, the anchor is the component's smallest key, the walk that gives each identifier
its method stays inside it, and last run's person_ids carry over to the identifiers that held
them. So a component none of whose nodes or edges changed since the last run resolves to
exactly the persons it resolved to then, and keeps its rows of `ml.identity_assignments`.

The identity step keeps the graph it resolved beside the assignments:

- `ml.identity_graph_nodes`: node_key, has_row (false: a linker-only node, an edge end with no
  node row), node_hash (of its identifier columns), component (a label of its component before
  the guardrails cut it: a hash of the component's smallest node_key);
- `ml.identity_graph_edges`: edge_hash (of both ends, method and match probability), component
  (no identifier: an erasure's sweep leaves it, and the node count below tells);
- `ml.identity_graph_components`: component, nodes (how many nodes the state holds of it);
- `ml.identity_graph_settings`: what else decides a resolution (the guardrails, this module's
  version).

A run compares the graph it reads with that state. The *changed* keys are the nodes that are
new, changed or gone and both ends of every edge added; the *touched* components are theirs,
those of the edges removed, and every component whose node count no longer matches (an erasure
sweeps the rows naming an erased identifier from every table, the node state included). The run
resolves the current nodes of the touched components and the changed keys, with their edges,
and keeps the rest.

Why that equals resolving everything: a component with no changed node and no added or removed
edge at any of its nodes is still a component, with the same nodes and edges. Every other node
is touched, so the touched nodes are whole components of the current graph too: an edge from a
touched node to an untouched one would be unchanged (then both ends had one component, which
is touched) or added (then both ends are changed keys).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from dagster_project.identity.graph import EDGE_HASH, NODE_CODES
from dagster_project.warehouse_io import append_frame, register_frame, table_exists
from models_ml.identity import CodedGraph, component_labels

NODES_STATE = "ml.identity_graph_nodes"
EDGES_STATE = "ml.identity_graph_edges"
COMPONENTS_STATE = "ml.identity_graph_components"
SETTINGS_STATE = "ml.identity_graph_settings"
STATE_TABLES = (NODES_STATE, EDGES_STATE, COMPONENTS_STATE, SETTINGS_STATE)
# Bump when a change to the resolution would move anyone's person: the next run resolves all.
RESOLUTION_VERSION = 1
# Resolving every node is cheaper than diffing and patching when most of them are touched.
MAX_TOUCHED_SHARE = 0.5

_TOUCHED = "_pz_identity_touched"  # node_key of every node resolved again
_TOUCHED_COMPONENTS = "_pz_identity_touched_components"
_LABELS = "_pz_identity_labels"
_EDGES = "_pz_identity_coded_edges"
_NODE_HASH = "hash(identifier_type, identifier, source_system)"
_ASSIGNMENT_KEY = "identifier_type || '|' || coalesce(source_system, '') || '|' || identifier"


@dataclass(frozen=True)
class Scope:
    """What this run resolves: everything (`full`), or the nodes and edges `nodes_sql` and
    `edges_sql` select (the touched components')."""

    full: bool
    reason: str
    nodes_sql: str
    edges_sql: str
    touched_nodes: int = 0
    touched_components: int = 0

    @property
    def nothing_touched(self) -> bool:
        return not self.full and self.touched_nodes == 0


def settings_fingerprint(guardrails: dict) -> str:
    return json.dumps({"version": RESOLUTION_VERSION, "guardrails": guardrails}, sort_keys=True)


def plan_scope(
    con: duckdb.DuckDBPyConnection,
    nodes_sql: str,
    edges_sql: str,
    settings: str,
    *,
    requested: bool = False,
) -> Scope:
    """The part of the graph (`nodes_sql`, `edges_sql`: node_key, identifier_type, identifier,
    source_system; node_key_a, node_key_b, method, match_probability) this run resolves."""
    reason = _full_reason(con, settings, requested)
    if reason:
        return Scope(True, reason, nodes_sql, edges_sql)
    # one pass over the edges: those added (with their ends) and those gone (their component)
    con.execute(
        f"""
        create or replace temp table _pz_identity_edge_diff as
        select c.node_key_a, c.node_key_b, s.component
        from (
            select {EDGE_HASH} as edge_hash, e.node_key_a, e.node_key_b from ({edges_sql}) as e
            where e.node_key_a is not null and e.node_key_b is not null
        ) as c
        full join {EDGES_STATE} as s on c.edge_hash = s.edge_hash
        where c.edge_hash is null or s.edge_hash is null
        """
    )
    con.execute(
        f"""
        create or replace temp table _pz_identity_changed as
        with current_nodes as (
            select node_key, {_NODE_HASH} as node_hash from ({nodes_sql})
            where node_key is not null
        )
        -- new or changed nodes
        select node_key from current_nodes as c
        anti join (select node_key, node_hash from {NODES_STATE} where has_row) as s
            on s.node_key = c.node_key and s.node_hash = c.node_hash
        union
        -- nodes gone
        select node_key from {NODES_STATE} as s
        anti join current_nodes as c on c.node_key = s.node_key
        where s.has_row
        union
        -- both ends of the edges added
        select node_key_a from _pz_identity_edge_diff where node_key_a is not null
        union
        select node_key_b from _pz_identity_edge_diff where node_key_b is not null
        """
    )
    con.execute(
        f"""
        create or replace temp table {_TOUCHED_COMPONENTS} as
        select distinct component from {NODES_STATE}
        where node_key in (select node_key from _pz_identity_changed)
        union
        -- the components of the edges gone
        select component from _pz_identity_edge_diff where component is not null
        union
        -- a component some of whose nodes were deleted (by an erasure's sweep)
        select coalesce(held.component, stored.component)
        from (select component, count(*) as nodes from {NODES_STATE} group by component) as held
        full join {COMPONENTS_STATE} as stored on held.component = stored.component
        where held.nodes is distinct from stored.nodes
        """
    )
    con.execute(
        f"""
        create or replace temp table {_TOUCHED} as
        select node_key from {NODES_STATE}
        where component in (select component from {_TOUCHED_COMPONENTS})
        union
        select node_key from _pz_identity_changed
        """
    )
    con.execute("drop table _pz_identity_changed")
    con.execute("drop table _pz_identity_edge_diff")
    touched, components, held = con.execute(
        f"select (select count(*) from {_TOUCHED}), (select count(*) from {_TOUCHED_COMPONENTS}), "
        f"(select count(*) from {NODES_STATE})"
    ).fetchall()[0]
    touched_keys = f"(select node_key from {_TOUCHED})"
    if held and touched > MAX_TOUCHED_SHARE * held:
        return Scope(
            True, f"{touched:,} of {held:,} nodes touched: resolving all", nodes_sql, edges_sql
        )
    return Scope(
        full=False,
        reason=f"{touched:,} of {held:,} nodes in {components:,} touched components",
        nodes_sql=f"select * from ({nodes_sql}) where node_key in {touched_keys}",
        # both ends of an edge of a touched node are touched (see the module docstring)
        edges_sql=f"select * from ({edges_sql}) where node_key_a in {touched_keys}",
        touched_nodes=int(touched),
        touched_components=int(components),
    )


def _full_reason(con: duckdb.DuckDBPyConnection, settings: str, requested: bool) -> str | None:
    if requested:
        return "full refresh requested"
    needed = ("ml.identity_assignments", "ml.identity_guardrail_firings", *STATE_TABLES)
    missing = [t for t in needed if not table_exists(con, t)]
    if missing:
        return f"no graph state yet ({', '.join(missing)})"
    stored = con.execute(f"select any_value(settings) from {SETTINGS_STATE}").fetchall()[0][0]
    if stored != settings:
        return "the guardrails or the resolution changed"
    return None


def save_state(
    con: duckdb.DuckDBPyConnection, scope: Scope, graph: CodedGraph, settings: str
) -> None:
    """Record the graph this run resolved (`graph`, read by `read_coded_graph` from the scope's
    SQL, its codes still in DuckDB), before `drop_codes`."""
    component = component_labels(graph)
    labels = pd.DataFrame({"node_code": np.arange(graph.n, dtype=np.int64), "component": component})
    coded_edges = pd.DataFrame(
        {
            "edge_hash": graph.edges["edge_hash"].to_numpy(),
            "component": component[graph.edges["code_a"].to_numpy(np.int64)],
        }
    )
    register_frame(con, _LABELS, labels)
    register_frame(con, _EDGES, coded_edges)
    try:
        nodes = (
            f"select node_key, identifier_type is not null as has_row, {_NODE_HASH} as node_hash, "
            f"component from {NODE_CODES} join {_LABELS} using (node_code)"
        )
        edges = f"select edge_hash, component from {_EDGES}"
        components = f"select component, count(*) as nodes from {_LABELS} group by component"
        con.execute("create schema if not exists ml")
        if scope.full:
            con.execute(f"create or replace table {NODES_STATE} as {nodes}")
            con.execute(f"create or replace table {EDGES_STATE} as {edges}")
            con.execute(f"create or replace table {COMPONENTS_STATE} as {components}")
        else:
            touched = f"(select node_key from {_TOUCHED})"
            con.execute(f"delete from {NODES_STATE} where node_key in {touched}")
            con.execute(f"insert into {NODES_STATE} {nodes}")
            con.execute(
                f"delete from {EDGES_STATE} "
                f"where component in (select component from {_TOUCHED_COMPONENTS})"
            )
            con.execute(f"insert into {EDGES_STATE} {edges}")
            con.execute(
                f"delete from {COMPONENTS_STATE} "
                f"where component in (select component from {_TOUCHED_COMPONENTS})"
            )
            con.execute(f"insert into {COMPONENTS_STATE} {components}")
        con.execute(
            f"create or replace table {SETTINGS_STATE} as "
            "select $settings as settings, now()::timestamp as resolved_at",
            {"settings": settings},
        )
    finally:
        con.unregister(_LABELS)
        con.unregister(_EDGES)


def replace_touched(
    con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame, key_sql: str
) -> int:
    """Replace the rows of `table` whose `key_sql` is a touched node with `frame`'s (the same
    columns); return how many rows went in."""
    con.execute(f"delete from {table} where {key_sql} in (select node_key from {_TOUCHED})")
    return append_frame(con, table, frame)


def replace_touched_assignments(con: duckdb.DuckDBPyConnection, assignments: pd.DataFrame) -> int:
    return replace_touched(con, "ml.identity_assignments", assignments, _ASSIGNMENT_KEY)


def drop_scope(con: duckdb.DuckDBPyConnection) -> None:
    for table in (_TOUCHED, _TOUCHED_COMPONENTS):
        con.execute(f"drop table if exists {table}")
