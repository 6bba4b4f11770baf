"""The identity step on integer node codes (the graph coded in DuckDB) gives exactly what the
frame functions give: the same kept edges, firings, person_ids, carried ids and changes.

Keys mix case, punctuation and non-ASCII characters, so DuckDB's varchar order has to be
Python's str order for the anchors (smallest node_key) to agree.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from dagster_project.assets.identity import _carried_over
from dagster_project.identity.graph import (
    cut_by_guardrails,
    cut_coded_by_guardrails,
    read_coded_graph,
)
from models_ml.identity import resolve_coded, resolve_identities
from models_ml.linkage import carry_over_person_ids

GUARDRAILS = {
    "max_user_ids_per_person": 1,
    "max_records_per_person": 4,
    "breakable_methods": ["splink", "login_stitch", "email"],
}
EDGES_SQL = (
    "select node_key_a, node_key_b, method, match_probability from intermediate.int_identity_edges"
)
TEXTS = ["a", "B", "b", "_x", "-x", "x-", "Z9", "é", "e", "ß", "a|b", "0", "~"]


def _graph(seed: int, linker_only: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    rows = set()
    for _ in range(160):
        text = "".join(rng.choice(TEXTS, 2))
        kind = rng.choice(["record_id", "user_id", "anonymous_id", "email_token"])
        source = rng.choice(["crm", "CRM", "shop", "é"]) if kind == "record_id" else None
        rows.add((kind, text, source))
    nodes = pd.DataFrame(
        [(f"{t}|{s or ''}|{i}", t, i, s, False) for t, i, s in sorted(rows, key=str)],
        columns=["node_key", "identifier_type", "identifier", "source_system", "is_junk"],
    )
    keys = nodes["node_key"].to_numpy()
    if linker_only:
        keys = np.append(keys, ["phone_token||0", "phone_token||é", "anonymous_id||zz"])
    ends = rng.choice(keys, (200, 2))
    edges = pd.DataFrame(
        {
            "node_key_a": ends[:, 0],
            "node_key_b": ends[:, 1],
            "method": rng.choice(["profile_user_id", "email", "splink", "login_stitch"], 200),
            "match_probability": rng.choice([0.9, 0.95, 0.99, 1.0], 200),
        }
    )
    return nodes, edges


def _previous(assignments: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Last run: the same identifiers with some persons moved, renamed, or dropped."""
    rng = np.random.default_rng(seed)
    people = assignments["person_id"].to_numpy(dtype=object).copy()
    moved = rng.random(len(people)) < 0.2
    people[moved] = people[rng.choice(len(people), int(moved.sum()))]
    people[rng.random(len(people)) < 0.05] = "p_renamed"
    return assignments.assign(person_id=people)[rng.random(len(people)) > 0.1]


@pytest.mark.parametrize("linker_only", [False, True])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_coded_graph_resolves_exactly_like_the_frames(seed, linker_only):
    nodes, edges = _graph(seed, linker_only)
    kept_edges, expected_firings = cut_by_guardrails(nodes, edges, GUARDRAILS)
    resolved = resolve_identities(nodes, kept_edges)
    previous = _previous(resolved, seed)
    expected, expected_changes = carry_over_person_ids(resolved, previous)

    con = duckdb.connect()
    con.execute("create schema intermediate")
    con.execute("create schema ml")
    for table, frame in [
        ("intermediate.int_identity_nodes", nodes),
        ("intermediate.int_identity_edges", edges),
        ("ml.identity_assignments", previous),
    ]:
        con.register("_frame", frame)
        con.execute(f"create table {table} as select * from _frame")
        con.unregister("_frame")

    graph = read_coded_graph(con, EDGES_SQL)
    assert list(graph.keys) == sorted(
        set(nodes["node_key"]) | set(edges["node_key_a"]) | set(edges["node_key_b"])
    )
    assert (graph.n > len(graph.nodes)) == linker_only
    kept, firings = cut_coded_by_guardrails(graph, GUARDRAILS)
    resolution = resolve_coded(kept)
    got, changes = _carried_over(con, resolution)

    pd.testing.assert_frame_equal(firings, expected_firings)
    assert len(expected_firings) > 0
    pd.testing.assert_frame_equal(resolution.assignments(), resolved)
    pd.testing.assert_frame_equal(got, expected)
    pd.testing.assert_frame_equal(changes, expected_changes)
    assert set(changes["change_type"]) == {"merge", "split"}


def test_no_previous_run_keeps_the_derived_ids():
    nodes, edges = _graph(4, False)
    con = duckdb.connect()
    con.execute("create schema intermediate")
    con.register("_nodes", nodes)
    con.register("_edges", edges)
    con.execute("create table intermediate.int_identity_nodes as select * from _nodes")
    con.execute("create table intermediate.int_identity_edges as select * from _edges")
    resolution = resolve_coded(read_coded_graph(con, EDGES_SQL))
    got, changes = _carried_over(con, resolution)
    pd.testing.assert_frame_equal(got, resolve_identities(nodes, edges))
    assert changes.empty
