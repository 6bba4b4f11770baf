"""Pure parts of identity resolution around the graph: guardrails, id carry-over, evaluation.

- `apply_guardrails`: cut the weakest breakable edges of every component that holds more than
  one `user_id` or too many records, until no component breaks a rule (or nothing is left to
  cut). Probabilistic edges go first (lowest probability first), then the weaker deterministic
  methods in the configured order; a record's own `user_id` edge is never cut.
  `guardrail_cuts` does the same on a `CodedGraph` (integer node codes, see models_ml.identity).
- `carry_over_person_ids`: keep last run's `person_id` for the new component that holds most of
  its identifiers; record merges (one new person from several old ones) and splits.
  `carry_over_codes` does it on person codes, for identifiers matched elsewhere (in DuckDB).
- `pairwise_scores`: pairwise precision, recall and F1 of a clustering against labels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse import csgraph

from models_ml.columns import (
    IDENTIFIER,
    IDENTIFIER_TYPE,
    MATCH_PROBABILITY,
    METHOD,
    NODE_KEY,
    NODE_KEY_A,
    NODE_KEY_B,
    PERSON_ID,
    RECORD_ID,
    SOURCE_SYSTEM,
    USER_ID,
)
from models_ml.identity import (
    CODE_A,
    CODE_B,
    NODE_CODE,
    CodedGraph,
    encode_graph,
    lookup,
    run_starts,
    stable_person_ids,
)

GUARDRAIL_USER_IDS = "max_user_ids_per_person"
GUARDRAIL_CLUSTER_SIZE = "max_records_per_person"
NODE_COLUMNS = (IDENTIFIER_TYPE, IDENTIFIER, SOURCE_SYSTEM)


def _components(codes_a: np.ndarray, codes_b: np.ndarray, n: int) -> np.ndarray:
    graph = sparse.coo_array(
        (np.ones(len(codes_a), dtype=np.int8), (codes_a, codes_b)), shape=(n, n)
    ).tocsr()
    return csgraph.connected_components(graph, directed=False)[1]


def _split_components(
    component: np.ndarray,
    changed: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    kept: np.ndarray,
) -> np.ndarray:
    """The components after edges were cut inside the `changed` ones (a mask over labels):
    only their nodes are labelled again, with labels no component has; every other component
    keeps its label. An edge joins two nodes of one component, so the kept edges of a changed
    component are those whose first end lies in it. Labels stay below 2n (renumbered when
    they would not)."""
    n = len(component)
    inside = np.flatnonzero(changed[component])
    if not len(inside):
        return component
    local = np.full(n, -1, dtype=np.int64)
    local[inside] = np.arange(len(inside))
    edges = kept & changed[component[a]]
    split = component.copy()
    start = int(component.max()) + 1
    if start + len(inside) > 2 * n:
        split = np.unique(component, return_inverse=True)[1]
        start = int(split.max()) + 1
    split[inside] = start + _components(local[a[edges]], local[b[edges]], len(inside))
    return split


def apply_guardrails(
    nodes: pd.DataFrame,
    edges: pd.DataFrame,
    *,
    max_user_ids: int = 1,
    max_records: int = 50,
    breakable_methods: tuple[str, ...] = ("splink", "login_stitch", "phone", "email"),
    cut_fraction: float = 0.1,
    max_rounds: int = 200,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Drop the weakest breakable edges of components that break a guardrail.

    Args:
        nodes: node_key, identifier_type, identifier (one row per node).
        edges: node_key_a, node_key_b, method, match_probability.
        max_user_ids: most distinct user_ids one person may hold.
        max_records: most record_id nodes one person may hold.
        breakable_methods: methods that may be cut, weakest first. Within a method the lowest
            match_probability goes first. Other methods are never cut.
        cut_fraction: each round cuts, per offending component, the weakest
            max(1, cut_fraction * breakable edges) edges (ties at the cut point included).

    Returns:
        (kept edges, firings): firings has one row per component that broke a rule in the
        first round: guardrail, anchor node_key (smallest key), user_ids, records,
        edges_cut, resolved (False when only unbreakable edges were left). An edge missing
        an end joins nothing and is kept.
    """
    edges = edges.reset_index(drop=True)
    with_ends = edges[[NODE_KEY_A, NODE_KEY_B]].notna().all(axis=1).to_numpy()
    graph = encode_graph(nodes.reindex(columns=[NODE_KEY, *NODE_COLUMNS]), edges)
    kept = np.ones(len(edges), dtype=bool)
    kept[with_ends], firings = guardrail_cuts(
        graph,
        max_user_ids=max_user_ids,
        max_records=max_records,
        breakable_methods=breakable_methods,
        cut_fraction=cut_fraction,
        max_rounds=max_rounds,
    )
    return edges[kept].reset_index(drop=True), firings


def guardrail_cuts(
    graph: CodedGraph,
    *,
    max_user_ids: int,
    max_records: int,
    breakable_methods: tuple[str, ...],
    cut_fraction: float = 0.1,
    max_rounds: int = 200,
) -> tuple[np.ndarray, pd.DataFrame]:
    """`apply_guardrails` on a `CodedGraph`: (which of its edges are kept, firings)."""
    n, edges = graph.n, graph.edges
    a, b = edges[CODE_A].to_numpy(np.int64), edges[CODE_B].to_numpy(np.int64)
    node_code = graph.nodes[NODE_CODE].to_numpy(np.int64)
    node_type = graph.nodes[IDENTIFIER_TYPE]
    is_user = np.zeros(n, dtype=bool)
    is_user[node_code] = lookup(node_type, {USER_ID: True}, False)
    is_record = np.zeros(n, dtype=bool)
    is_record[node_code] = lookup(node_type, {RECORD_ID: True}, False)

    method_rank = lookup(edges[METHOD], {m: i for i, m in enumerate(breakable_methods)}, -1)
    is_breakable = method_rank >= 0
    strength = np.where(is_breakable, method_rank, len(breakable_methods)) * 2.0 + pd.to_numeric(
        edges[MATCH_PROBABILITY], errors="coerce"
    ).fillna(1.0).to_numpy().clip(0, 1)
    kept = np.ones(len(edges), dtype=bool)
    firings: dict[int, dict] = {}
    first_round = True
    # The whole graph's components once; after each round only those it cut edges in are
    # split again (the whole graph's cost 1.4 s at 1M people, and a guardrail can take many
    # rounds). A label indexes the per-component arrays: n_users[c] is component c's.
    component = _components(a, b, n)
    for _ in range(max_rounds):
        n_users = np.bincount(component, weights=is_user)
        n_records = np.bincount(component, weights=is_record)
        too_many_users = n_users > max_user_ids
        too_big = n_records > max_records
        offending = too_many_users | too_big
        if first_round:
            anchor = np.full(n, -1)
            order = np.argsort(component, kind="stable")
            first = np.r_[True, component[order][1:] != component[order][:-1]]
            anchor[component[order][first]] = order[first]
            fired = np.flatnonzero(offending)
            for c, anchor_key in zip(fired, graph.node_keys(anchor[fired]), strict=True):
                firings[c] = {
                    "guardrail": GUARDRAIL_USER_IDS
                    if too_many_users[c]
                    else GUARDRAIL_CLUSTER_SIZE,
                    "anchor_node_key": anchor_key,
                    "user_ids": int(n_users[c]),
                    "records": int(n_records[c]),
                    "edges_cut": 0,
                    "resolved": True,
                }
            first_component = component
            first_round = False
        edge_component = component[a]
        candidates = np.flatnonzero(kept & is_breakable & offending[edge_component])
        if len(candidates) == 0:
            break
        frame = pd.DataFrame(
            {"edge": candidates, "component": edge_component[candidates], "s": strength[candidates]}
        ).sort_values(["component", "s", "edge"])
        size = frame.groupby("component")["edge"].transform("size").to_numpy()
        rank = frame.groupby("component").cumcount().to_numpy()
        quota = np.maximum(1, np.floor(size * cut_fraction)).astype(int)
        cut_point = frame["s"].to_numpy()[np.flatnonzero(rank == quota - 1)]
        threshold = pd.Series(cut_point, index=frame["component"].unique()).reindex(
            frame["component"]
        )
        cut = frame["edge"].to_numpy()[frame["s"].to_numpy() <= threshold.to_numpy()]
        kept[cut] = False
        changed = np.zeros(len(offending), dtype=bool)
        changed[edge_component[cut]] = True
        component = _split_components(component, changed, a, b, kept)
    cut_edges = np.flatnonzero(~kept)
    if firings:
        first_of_cut = pd.Series(first_component[a[cut_edges]]).value_counts()
        final = component  # the kept edges' components
        still = (np.bincount(final, weights=is_user) > max_user_ids) | (
            np.bincount(final, weights=is_record) > max_records
        )
        unresolved = set(first_component[np.flatnonzero(still[final])].tolist())
        for c, row in firings.items():
            row["edges_cut"] = int(first_of_cut.get(c, 0))
            row["resolved"] = c not in unresolved
    firing_frame = pd.DataFrame(
        list(firings.values()),
        columns=["guardrail", "anchor_node_key", "user_ids", "records", "edges_cut", "resolved"],
    ).sort_values("anchor_node_key", ignore_index=True)
    return kept, firing_frame


CHANGE_COLUMNS = ["change_type", "person_id", "previous_person_id", "identifiers"]


def no_changes() -> pd.DataFrame:
    """An empty changes frame of `carry_over_person_ids`."""
    return pd.DataFrame({c: pd.Series(dtype=object) for c in CHANGE_COLUMNS}).astype(
        {"identifiers": "int64"}
    )


def carry_over_person_ids(
    assignments: pd.DataFrame, previous: pd.DataFrame | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Give each new person the previous person_id that most of its identifiers had.

    An old person_id goes to the one new person holding most of its identifiers (ties: the
    smallest new id); a new person takes the old id it shares most identifiers with (ties: the
    smallest old id) when that id is still free. Everyone else keeps the freshly derived id,
    re-derived if it collides with an id that existed last run.

    Returns:
        (assignments with carried person_ids, changes): changes has change_type (`merge`: the
        person absorbed `previous_person_id`; `split`: the person was cut out of
        `previous_person_id`), person_id, previous_person_id, identifiers (shared count).
    """
    if previous is None or previous.empty or assignments.empty:
        return assignments, no_changes()
    join_keys = [IDENTIFIER_TYPE, IDENTIFIER, SOURCE_SYSTEM]
    person_code, person_ids = pd.factorize(assignments[PERSON_ID], sort=True)
    previous_code, previous_ids = pd.factorize(previous[PERSON_ID], sort=True)
    current = assignments[join_keys].assign(
        **{SOURCE_SYSTEM: assignments[SOURCE_SYSTEM].fillna(""), "_person": person_code}
    )
    prev = previous[join_keys].assign(
        **{SOURCE_SYSTEM: previous[SOURCE_SYSTEM].fillna(""), "_previous": previous_code}
    )
    matches = current.merge(prev, on=join_keys, how="inner")
    matches = matches[(matches["_person"] >= 0) & (matches["_previous"] >= 0)]
    final_ids, changes = carry_over_codes(
        np.asarray(person_ids, dtype=object),
        matches["_person"].to_numpy(np.int64),
        matches["_previous"].to_numpy(np.int64),
        np.asarray(previous_ids, dtype=object),
    )
    people = np.where(
        person_code >= 0, final_ids[person_code], assignments[PERSON_ID].to_numpy(dtype=object)
    )
    return assignments.assign(**{PERSON_ID: people}), changes


def carry_over_codes(
    person_ids: np.ndarray,
    match_person: np.ndarray,
    match_previous: np.ndarray,
    previous_ids: np.ndarray,
) -> tuple[np.ndarray, pd.DataFrame]:
    """`carry_over_person_ids` on codes: (the final person_id of each new person, changes).

    Args:
        person_ids: the distinct new person_ids, ascending (a new person's code is its index).
        match_person, match_previous: one pair per identifier held both now and last run: its
            new person's code and its previous person_id's code (an index into
            `previous_ids`).
        previous_ids: every distinct person_id of last run, ascending.
    """
    n_previous = max(len(previous_ids), 1)
    pairs, identifiers = np.unique(
        match_person.astype(np.int64) * n_previous + match_previous, return_counts=True
    )
    # One row per (new, old) pair, in (new id, old id) order.
    new, old = pairs // n_previous, pairs % n_previous
    # Each old id goes to the new person with the largest share of it ...
    best_for_old = np.lexsort((new, -identifiers, old))
    best_for_old = best_for_old[run_starts(old[best_for_old])]
    # ... and each new person takes, among the old ids it won, the one it shares most with.
    keeper = best_for_old[
        np.lexsort((old[best_for_old], -identifiers[best_for_old], new[best_for_old]))
    ]
    keeper = keeper[run_starts(new[keeper])]
    final_ids = np.asarray(person_ids, dtype=object).copy()
    final_ids[new[keeper]] = previous_ids[old[keeper]]
    fresh = np.ones(len(person_ids), dtype=bool)
    fresh[new[keeper]] = False
    fresh = np.flatnonzero(fresh)
    colliding = fresh[pd.Index(previous_ids).get_indexer(final_ids[fresh]) >= 0]
    if len(colliding):
        final_ids[colliding] = stable_person_ids(
            np.asarray([f"{p}|rederived" for p in final_ids[colliding]], object)
        )
    if not len(pairs):
        return final_ids, no_changes()

    person = final_ids[new]
    previous_person = previous_ids[old]
    moved = person != previous_person
    final_code, distinct_ids = pd.factorize(final_ids)
    final_code = final_code[new]
    if len(distinct_ids) == len(final_ids):
        # No two new persons share a final id: the (final id, old id) pairs are distinct too.
        old_per_final = np.bincount(final_code)[final_code]
        final_per_old = np.bincount(old)[old]
    else:
        old_per_final = _distinct_per_group(final_code, old)
        final_per_old = _distinct_per_group(old, final_code)
    is_merge = moved & (old_per_final > 1)
    is_split = moved & ~is_merge & (final_per_old > 1)
    changes = pd.DataFrame(
        {
            "change_type": np.where(is_merge, "merge", "split").astype(object),
            "person_id": person,
            "previous_person_id": previous_person,
            "identifiers": identifiers.astype(np.int64),
        }
    )
    changes = pd.concat([changes[is_merge], changes[is_split]])
    changes = changes.sort_values(["change_type", "person_id", "previous_person_id"])
    return final_ids, changes.reset_index(drop=True)


def _distinct_per_group(group: np.ndarray, value: np.ndarray) -> np.ndarray:
    """For each row, how many distinct `value`s the rows of its `group` hold."""
    width = int(value.max()) + 1
    pair_group = np.unique(group * width + value) // width
    groups, counts = np.unique(pair_group, return_counts=True)
    return counts[np.searchsorted(groups, group)]


def _pairs(counts: pd.Series) -> int:
    values = counts.to_numpy(dtype=np.int64)
    return int((values * (values - 1) // 2).sum())


def pairwise_scores(predicted: pd.Series, truth: pd.Series) -> dict[str, float | int]:
    """Pairwise precision / recall / F1 of a clustering: the pairs of records put together.

    `predicted` and `truth` are aligned cluster labels, one per record (nulls = own cluster).
    """
    frame = pd.DataFrame({"p": predicted.to_numpy(), "t": truth.to_numpy()})
    own = pd.Series(np.arange(len(frame)).astype(str), index=frame.index)
    frame["p"] = frame["p"].astype(object).where(frame["p"].notna(), "~" + own)
    frame["t"] = frame["t"].astype(object).where(frame["t"].notna(), "~" + own)
    predicted_pairs = _pairs(frame.groupby("p").size())
    true_pairs = _pairs(frame.groupby("t").size())
    both = _pairs(frame.groupby(["p", "t"]).size())
    precision = both / predicted_pairs if predicted_pairs else 1.0
    recall = both / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "records": int(len(frame)),
        "predicted_pairs": predicted_pairs,
        "true_pairs": true_pairs,
        "true_positive_pairs": both,
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
    }
