"""The identity graph as the identity steps read it: dbt's deterministic nodes and edges, cut by
the guardrails of identity.yaml."""

from __future__ import annotations

import duckdb
import pandas as pd

from dagster_project.warehouse_io import read_frame
from models_ml.linkage import apply_guardrails

EDGE_COLUMNS = "node_key_a, node_key_b, method, match_probability"


def read_identity_graph(con: duckdb.DuckDBPyConnection) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(nodes, deterministic edges) of `intermediate.int_identity_nodes` / `_edges`."""
    nodes = read_frame(con, "select * from intermediate.int_identity_nodes")
    edges = read_frame(con, f"select {EDGE_COLUMNS} from intermediate.int_identity_edges")
    return nodes, edges


def cut_by_guardrails(
    nodes: pd.DataFrame, edges: pd.DataFrame, guardrails: dict
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`apply_guardrails` with the `guardrails` section of identity.yaml: (kept edges, firings)."""
    return apply_guardrails(
        nodes,
        edges,
        max_user_ids=guardrails["max_user_ids_per_person"],
        max_records=guardrails["max_records_per_person"],
        breakable_methods=tuple(guardrails["breakable_methods"]),
    )
