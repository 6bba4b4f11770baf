"""The identity graph as the identity steps read it: dbt's deterministic nodes and edges, cut by
the guardrails of identity.yaml."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from dagster_project.warehouse_io import read_frame
from models_ml.identity import CodedGraph
from models_ml.linkage import apply_guardrails, guardrail_cuts

EDGE_COLUMNS = "node_key_a, node_key_b, method, match_probability"
# Every node_key with its code: its rank among the keys (DuckDB orders varchar by bytes, which
# is Python's str order), so the smallest key is the smallest code.
NODE_CODES = "_pz_identity_node_codes"
# An edge's identity: both ends, method and probability (a re-scored link is another edge).
EDGE_HASH = "hash(e.node_key_a, e.node_key_b, e.method, e.match_probability)"
_PREVIOUS_IDS = "_pz_identity_previous_ids"


def read_coded_graph(
    con: duckdb.DuckDBPyConnection,
    edges_sql: str,
    nodes_sql: str = "select * from intermediate.int_identity_nodes",
) -> CodedGraph:
    """The nodes `nodes_sql` selects (node_key, identifier_type, identifier, source_system;
    node_key unique) and the edges `edges_sql` selects (node_key_a, node_key_b, method,
    match_probability) as a `CodedGraph`, coded in DuckDB. The default nodes are
    `intermediate.int_identity_nodes`, whose node_key is unique (a dbt test).

    The codes stay in a temp table for `read_previous_matches` until `drop_codes`. An edge
    end that is no node still gets a code (a linker-only node); an edge missing an end is
    dropped.
    """
    _create_codes(con, nodes_sql)
    edges = _read_coded_edges(con, edges_sql)
    linker_only = bool(edges["code_a"].isna().any() or edges["code_b"].isna().any())
    if linker_only:
        # An edge end that is no node: every key of either, with the node's columns if any.
        all_keys = (
            f"select node_key from ({nodes_sql}) union "
            f"select node_key_a from ({edges_sql}) union select node_key_b from ({edges_sql})"
        )
        _create_codes(
            con,
            "select k.node_key, n.identifier_type, n.identifier, n.source_system "
            f"from ({all_keys}) k left join ({nodes_sql}) n on n.node_key = k.node_key",
        )
        edges = _read_coded_edges(con, edges_sql)
    nodes = read_frame(
        con,
        "select node_code, node_key, identifier_type, identifier, source_system "
        f"from {NODE_CODES} order by node_code",
    )
    keys = nodes.pop("node_key")
    if linker_only:
        nodes = nodes[nodes["identifier_type"].notna()].reset_index(drop=True)
    edges = edges.astype({"code_a": np.int64, "code_b": np.int64})
    return CodedGraph(keys=keys, nodes=nodes, edges=edges)


def _create_codes(con: duckdb.DuckDBPyConnection, nodes_sql: str) -> None:
    con.execute(
        f"create or replace temp table {NODE_CODES} as select "
        "(row_number() over (order by node_key) - 1)::bigint as node_code, node_key, "
        "identifier_type, identifier, source_system, "
        "coalesce(source_system, '') as source_system_key "
        f"from ({nodes_sql}) where node_key is not null"
    )


def _read_coded_edges(con: duckdb.DuckDBPyConnection, edges_sql: str) -> pd.DataFrame:
    """The edges with their ends' codes (null: an end without a code), methods categorical,
    and each edge's `EDGE_HASH` (`dagster_project.identity.scope` keeps them)."""
    edges = con.sql(
        "select a.node_code as code_a, b.node_code as code_b, e.method, e.match_probability, "
        f"{EDGE_HASH} as edge_hash "
        f"from ({edges_sql}) e left join {NODE_CODES} a on a.node_key = e.node_key_a "
        f"left join {NODE_CODES} b on b.node_key = e.node_key_b "
        "where e.node_key_a is not null and e.node_key_b is not null"
    ).to_arrow_table()
    method = edges.schema.get_field_index("method")
    return edges.set_column(method, "method", edges["method"].dictionary_encode()).to_pandas()


def drop_codes(con: duckdb.DuckDBPyConnection) -> None:
    """Drop the codes `read_coded_graph` keeps for `read_previous_matches`."""
    con.execute(f"drop table if exists {NODE_CODES}")


def read_previous_matches(
    con: duckdb.DuckDBPyConnection, previous_table: str
) -> tuple[pd.DataFrame, np.ndarray]:
    """Last run's person_ids against the codes of `read_coded_graph`: (one row per identifier
    of `previous_table` that is a node now: node_code, previous_code; every distinct previous
    person_id, ascending, previous_code indexing it). Identifiers match on identifier_type,
    identifier and source_system (null = '')."""
    con.execute(
        f"create or replace temp table {_PREVIOUS_IDS} as select person_id, "
        "(row_number() over (order by person_id) - 1)::bigint as previous_code "
        f"from (select distinct person_id from {previous_table} where person_id is not null)"
    )
    previous_ids = read_frame(con, f"select person_id from {_PREVIOUS_IDS} order by previous_code")[
        "person_id"
    ].to_numpy(dtype=object)
    matches = read_frame(
        con,
        "select c.node_code, i.previous_code "
        f"from {previous_table} p join {_PREVIOUS_IDS} i using (person_id) join {NODE_CODES} c "
        "on c.identifier_type is not distinct from p.identifier_type "
        "and c.identifier is not distinct from p.identifier "
        "and c.source_system_key = coalesce(p.source_system, '')",
    )
    con.execute(f"drop table {_PREVIOUS_IDS}")
    return matches, previous_ids


def cut_by_guardrails(
    nodes: pd.DataFrame, edges: pd.DataFrame, guardrails: dict
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`apply_guardrails` with the `guardrails` section of identity.yaml: (kept edges, firings)."""
    return apply_guardrails(nodes, edges, **_guardrail_settings(guardrails))


def cut_coded_by_guardrails(graph: CodedGraph, guardrails: dict) -> tuple[CodedGraph, pd.DataFrame]:
    """`cut_by_guardrails` on a `CodedGraph`: (the graph with the kept edges, firings)."""
    kept, firings = guardrail_cuts(graph, **_guardrail_settings(guardrails))
    return graph.with_edges(kept), firings


def _guardrail_settings(guardrails: dict) -> dict:
    return {
        "max_user_ids": guardrails["max_user_ids_per_person"],
        "max_records": guardrails["max_records_per_person"],
        "breakable_methods": tuple(guardrails["breakable_methods"]),
    }


def assignment_stats(con: duckdb.DuckDBPyConnection, table: str) -> dict:
    """`models_ml.identity.identity_stats` of the assignments in `table`, counted in DuckDB
    (the step keeps most rows in the warehouse and reads none of them)."""
    identifiers, people, singletons, largest, multiple = con.execute(
        f"""
        with per_person as (
            select person_id, count(*) as n,
                count(distinct identifier) filter (where identifier_type = 'user_id') as users
            from {table} where person_id is not null group by person_id
        )
        select (select count(*) from {table}), count(*), count(*) filter (where n = 1),
            coalesce(max(n), 0), count(*) filter (where users > 1)
        from per_person
        """
    ).fetchall()[0]
    by_method = con.execute(
        f"select method, count(*) from {table} where method is not null "
        "group by method order by method"
    ).fetchall()
    return {
        "identifiers": int(identifiers),
        "people": int(people),
        "singleton_people": int(singletons),
        "largest_person_identifiers": int(largest),
        "people_with_multiple_user_ids": int(multiple),
        "identifiers_by_method": {str(m): int(n) for m, n in by_method},
    }
