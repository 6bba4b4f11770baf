"""The identity step resolves only the touched components of the graph, and ends with exactly
the tables a resolution of the whole graph gives: assignments (person_ids carried over from the
same last run), merges and splits, guardrail firings and the graph state.

Each case resolves a random graph once, copies the warehouse, changes both copies the same way
(nodes and edges added, removed and re-scored, a person erased as the erasure sweep does) and
resolves one copy incrementally and the other in full.
"""

from __future__ import annotations

import shutil

import duckdb
import numpy as np
import pandas as pd
import pytest

from dagster_project.assets.identity import resolve_assignments
from dagster_project.identity.graph import assignment_stats
from dagster_project.identity.scope import COMPONENTS_STATE, EDGES_STATE, NODES_STATE
from models_ml.identity import identity_stats

TUNABLES = {
    "guardrails": {
        "max_user_ids_per_person": 1,
        "max_records_per_person": 4,
        "breakable_methods": ["splink", "login_stitch", "email"],
    }
}
KINDS = ["record_id", "user_id", "anonymous_id", "email_token"]
METHODS = ["profile_user_id", "email", "splink", "login_stitch"]


def _node(kind: str, identifier: str, source: str | None) -> tuple:
    return (f"{kind}|{source or ''}|{identifier}", kind, identifier, source, False)


def _random_graph(rng: np.random.Generator, n_nodes: int, n_edges: int):
    rows = {
        _node(kind, f"i{i}", "crm" if kind == "record_id" else None)
        for i, kind in enumerate(rng.choice(KINDS, n_nodes))
    }
    nodes = pd.DataFrame(
        sorted(rows),
        columns=["node_key", "identifier_type", "identifier", "source_system", "is_junk"],
    )
    keys = np.append(nodes["node_key"].to_numpy(), ["phone_token||0", "phone_token||1"])
    ends = rng.choice(keys, (n_edges, 2))
    edges = pd.DataFrame(
        {
            "node_key_a": ends[:, 0],
            "node_key_b": ends[:, 1],
            "method": rng.choice(METHODS, n_edges),
            "match_probability": rng.choice([0.9, 0.95, 0.99, 1.0], n_edges),
        }
    )
    return nodes, edges


def _load(con: duckdb.DuckDBPyConnection, nodes: pd.DataFrame, edges: pd.DataFrame) -> None:
    """The graph as dbt (deterministic edges) and the linker (splink edges) leave it."""
    con.execute("create schema if not exists intermediate")
    con.execute("create schema if not exists ml")
    splink = edges["method"] == "splink"
    for table, frame in [
        ("intermediate.int_identity_nodes", nodes),
        ("intermediate.int_identity_edges", edges[~splink]),
        ("ml.identity_links", edges[splink]),
    ]:
        con.register("_frame", frame)
        con.execute(f"create or replace table {table} as select * from _frame")
        con.unregister("_frame")


def _change(con: duckdb.DuckDBPyConnection, rng: np.random.Generator) -> None:
    """The same night in both copies: new nodes and edges, gone ones, a re-scored link, and
    one person erased (their rows swept from every table, the graph state included)."""
    nodes = con.sql("select * from intermediate.int_identity_nodes").df()
    edges = con.sql(
        "select * from intermediate.int_identity_edges union all select * from ml.identity_links"
    ).df()
    keys = nodes["node_key"].to_numpy()
    gone = set(rng.choice(keys, 3, replace=False))
    erased_person = con.execute(
        "select person_id from ml.identity_assignments order by person_id limit 1 offset 2"
    ).fetchall()[0][0]
    erased = {
        f"{t}|{s or ''}|{i}"
        for t, i, s in con.execute(
            "select identifier_type, identifier, source_system from ml.identity_assignments "
            "where person_id = $p",
            {"p": erased_person},
        ).fetchall()
    }
    new_nodes = pd.DataFrame(
        [_node("anonymous_id", "new1", None), _node("record_id", "new2", "shop")],
        columns=nodes.columns,
    )
    nodes = pd.concat([nodes[~nodes["node_key"].isin(gone | erased)], new_nodes])
    edges = edges[
        ~edges["node_key_a"].isin(gone | erased) & ~edges["node_key_b"].isin(gone | erased)
    ]
    edges = edges.drop(index=edges.index[:2])  # two edges gone
    edges.loc[edges.index[5], "match_probability"] = 0.91  # a link scored again
    live = nodes["node_key"].to_numpy()
    # two devices of different people seen logged in as one: a merge
    devices = con.execute(
        "select min(identifier) from ml.identity_assignments where identifier_type = "
        "'anonymous_id' group by person_id order by 1 limit 2 offset 5"
    ).fetchall()
    merged = [f"anonymous_id||{d}" for (d,) in devices]
    merged = [k for k in merged if k not in gone | erased] + ["anonymous_id||new1"] * 2
    added = pd.DataFrame(
        {
            "node_key_a": [
                "anonymous_id||new1",
                "record_id|shop|new2",
                merged[0],
                *rng.choice(live, 2),
            ],
            "node_key_b": [*rng.choice(live, 1), "phone_token||7", merged[1], *rng.choice(live, 2)],
            "method": ["login_stitch", "splink", "profile_user_id", "email", "splink"],
            "match_probability": [1.0, 0.97, 1.0, 1.0, 0.93],
        }
    )
    _load(con, nodes, pd.concat([edges, added], ignore_index=True))
    # what the erasure sweep does to the step's own tables
    for table, column in [
        (
            "ml.identity_assignments",
            "identifier_type || '|' || coalesce(source_system, '') || '|' || identifier",
        ),
        (NODES_STATE, "node_key"),
        ("ml.identity_guardrail_firings", "anchor_node_key"),
    ]:
        con.execute(
            f"delete from {table} where {column} in (select unnest($keys))",
            {"keys": sorted(erased)},
        )


def _tables(con: duckdb.DuckDBPyConnection) -> dict[str, list]:
    queries = {
        "assignments": "select * from ml.identity_assignments",
        "firings": "select * exclude (run_id) from ml.identity_guardrail_firings",
        "nodes": f"select * from {NODES_STATE}",
        "edges": f"select distinct * from {EDGES_STATE}",
        "components": f"select * from {COMPONENTS_STATE}",
    }
    return {name: sorted(con.execute(sql).fetchall(), key=repr) for name, sql in queries.items()}


def _sorted_changes(changes: pd.DataFrame) -> list:
    return sorted(changes.itertuples(index=False, name=None))


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_touched_components_resolve_like_the_whole_graph(tmp_path, seed):
    rng = np.random.default_rng(seed)
    incremental_path, full_path = tmp_path / "incremental.duckdb", tmp_path / "full.duckdb"
    with duckdb.connect(str(incremental_path)) as con:
        _load(con, *_random_graph(rng, 400, 160))
        first = resolve_assignments(con, TUNABLES, "run-1")
        assert first.scope.full
        assert con.execute("select count(*) from ml.identity_guardrail_firings").fetchall()[0][0]
    shutil.copyfile(incremental_path, full_path)

    night = np.random.default_rng(seed + 100)
    with duckdb.connect(str(incremental_path)) as con:
        _change(con, np.random.default_rng(seed + 100))
        partial = resolve_assignments(con, TUNABLES, "run-2")
        got = _tables(con)
        got_stats = assignment_stats(con, "ml.identity_assignments")
    with duckdb.connect(str(full_path)) as con:
        _change(con, night)
        whole = resolve_assignments(con, TUNABLES, "run-2", requested=True)
        expected = _tables(con)
        frame = con.sql("select * from ml.identity_assignments").df()

    assert whole.scope.full and not partial.scope.full
    held = len(expected["nodes"])
    assert 0 < partial.scope.touched_nodes < held / 2
    assert got == expected
    assert _sorted_changes(partial.changes) == _sorted_changes(whole.changes)
    assert len(whole.changes)  # the night merged or split someone
    assert got_stats == identity_stats(frame)


def test_an_unchanged_graph_resolves_nothing_and_changed_guardrails_resolve_all(tmp_path):
    rng = np.random.default_rng(7)
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        _load(con, *_random_graph(rng, 200, 150))
        resolve_assignments(con, TUNABLES, "run-1")
        before = _tables(con)
        again = resolve_assignments(con, TUNABLES, "run-2")
        assert again.scope.nothing_touched and again.edges_in == 0
        assert _tables(con) == before
        # a new device seen alone: one node resolved, no identifier of it held last run
        con.execute(
            "insert into intermediate.int_identity_nodes values "
            "('anonymous_id||lone', 'anonymous_id', 'lone', null, false)"
        )
        lone = resolve_assignments(con, TUNABLES, "run-2b")
        assert not lone.scope.full and lone.scope.touched_nodes == 1
        assert con.execute(
            "select method from ml.identity_assignments where identifier = 'lone'"
        ).fetchall() == [("self",)]
        looser = {"guardrails": {**TUNABLES["guardrails"], "max_records_per_person": 9}}
        changed = resolve_assignments(con, looser, "run-3")
        assert changed.scope.full
        assert changed.scope.reason == "the guardrails or the resolution changed"
