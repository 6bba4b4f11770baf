"""Identity resolution: one `person_id` per connected component of the identity graph.

Input is the graph dbt builds (`intermediate.int_identity_nodes` / `int_identity_edges`): a node
per identifier seen (record_id, user_id, anonymous_id, and linker-only types such as
email_token), an edge per deterministic or probabilistic link. Every node reachable from another
belongs to the same person.

`person_id` is derived from one *anchor* node per component, so it is stable across runs and
does not move when unrelated identifiers arrive. The anchor is the component's node with the
smallest `node_key` of the most durable identifier type present, in this order:
`user_id`, `record_id`, `anonymous_id`, then linker-only types. Hashing only the anchor's key
keeps the id unchanged as long as the anchor stays in the component; a component that gains a
`user_id` (an anonymous visitor who logs in) moves to the id derived from that user_id.

Each identifier also gets the `method` and `match_probability` of the edge that joined it to
its component: the edge to its predecessor in a breadth-first walk from the anchor, visiting
neighbors in `node_key` order (so the answer is deterministic and ignores unrelated nodes).
The anchor itself gets method `"self"` and probability 1.0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse import csgraph

from models_ml.columns import (
    ANONYMOUS_ID,
    ASSIGNED_IDENTIFIER_TYPES,
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

SELF_METHOD = "self"
PERSON_ID_PREFIX = "p_"

# Fixed 16-byte SipHash key: changing it re-keys every person_id in the warehouse.
_PERSON_ID_HASH_KEY = "pz-person-id-v1!"

# Lower rank = preferred anchor. Anything not listed (linker-only types) ranks last.
_ANCHOR_PREFERENCE = {USER_ID: 0, RECORD_ID: 1, ANONYMOUS_ID: 2}
_LINKER_RANK = len(_ANCHOR_PREFERENCE)


def stable_person_ids(anchor_keys: pd.Series | np.ndarray) -> np.ndarray:
    """`"p_"` + 16 lowercase hex chars of a keyed 64-bit SipHash of each key.

    Deterministic across processes and machines (unlike Python's `hash`), vectorized.
    """
    keys = np.asarray(anchor_keys, dtype=object)
    hashes = pd.util.hash_array(keys, hash_key=_PERSON_ID_HASH_KEY, categorize=False)
    shifts = np.arange(60, -4, -4, dtype=np.uint64)
    nibbles = (hashes[:, None] >> shifts) & np.uint64(0xF)
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)[nibbles.astype(np.intp)]
    prefix = np.broadcast_to(
        np.frombuffer(PERSON_ID_PREFIX.encode(), dtype=np.uint8), (len(keys), len(PERSON_ID_PREFIX))
    )
    raw = np.ascontiguousarray(np.hstack([prefix, digits]))
    return raw.view(f"S{raw.shape[1]}").ravel().astype(str)


def resolve_identities(
    nodes: pd.DataFrame,
    edges: pd.DataFrame,
    *,
    col_node_key: str = NODE_KEY,
    col_identifier_type: str = IDENTIFIER_TYPE,
    col_identifier: str = IDENTIFIER,
    col_source_system: str = SOURCE_SYSTEM,
    col_node_key_a: str = NODE_KEY_A,
    col_node_key_b: str = NODE_KEY_B,
    col_method: str = METHOD,
    col_match_probability: str = MATCH_PROBABILITY,
    col_person: str = PERSON_ID,
    assigned_types: tuple[str, ...] = ASSIGNED_IDENTIFIER_TYPES,
) -> pd.DataFrame:
    """Assign a stable `person_id` to every identifier node of an assigned type.

    Args:
        nodes: one row per identifier: node_key, identifier_type, identifier, source_system.
            Duplicate node_keys keep their first row.
        edges: node_key_a, node_key_b, method, match_probability (null = deterministic = 1.0).
            An endpoint missing from `nodes` still links (as a linker-only node).
        assigned_types: identifier types that get an output row.

    Returns:
        `ml.identity_assignments`: identifier_type, identifier, source_system, person_id,
        method, match_probability; one row per node of an assigned type, in node_key order.
    """
    out_columns = [
        col_identifier_type,
        col_identifier,
        col_source_system,
        col_person,
        col_method,
        col_match_probability,
    ]
    nodes = nodes.dropna(subset=[col_node_key]).drop_duplicates(col_node_key)
    edges = edges.dropna(subset=[col_node_key_a, col_node_key_b])
    # One sorted factorization of every key seen: code order is node_key order.
    codes, keys = pd.factorize(
        pd.concat(
            [nodes[col_node_key], edges[col_node_key_a], edges[col_node_key_b]],
            ignore_index=True,
        ),
        sort=True,
    )
    n, n_nodes, n_edges = len(keys), len(nodes), len(edges)
    if n == 0:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in out_columns}).astype(
            {col_match_probability: float}
        )
    node_code = codes[:n_nodes]
    a, b = codes[n_nodes : n_nodes + n_edges], codes[n_nodes + n_edges :]

    graph = _symmetric_graph(a, b, n)
    _, component = csgraph.connected_components(graph, directed=False)

    anchor_rank = np.full(n, _LINKER_RANK, dtype=np.int64)
    anchor_rank[node_code] = (
        nodes[col_identifier_type].map(_ANCHOR_PREFERENCE).fillna(_LINKER_RANK).to_numpy()
    )
    order = np.lexsort((np.arange(n), anchor_rank, component))
    is_first = np.r_[True, component[order][1:] != component[order][:-1]]
    anchors = np.empty(component.max() + 1, dtype=np.int64)
    anchors[component[order][is_first]] = order[is_first]
    person_of_component = stable_person_ids(np.asarray(keys.take(anchors), dtype=object))

    predecessor = _bfs_predecessors(a, b, n, anchors)
    method, probability = _joining_edge_attributes(
        predecessor, a, b, n, edges[col_method], edges[col_match_probability]
    )

    is_assigned = nodes[col_identifier_type].isin(assigned_types).to_numpy()
    assigned_code = node_code[is_assigned]
    in_key_order = np.argsort(assigned_code, kind="stable")
    assigned_code = assigned_code[in_key_order]
    assigned = nodes[[col_identifier_type, col_identifier, col_source_system]].iloc[
        np.flatnonzero(is_assigned)[in_key_order]
    ]
    return assigned.assign(
        **{
            col_person: person_of_component[component[assigned_code]],
            col_method: method[assigned_code],
            col_match_probability: probability[assigned_code],
        }
    ).reset_index(drop=True)[out_columns]


def identity_stats(
    assignments: pd.DataFrame,
    *,
    col_person: str = PERSON_ID,
    col_identifier_type: str = IDENTIFIER_TYPE,
    col_identifier: str = IDENTIFIER,
    col_method: str = METHOD,
) -> dict:
    """Summary of an identity map for run metadata and guardrails.

    `people_with_multiple_user_ids` counts persons whose component holds more than one distinct
    user_id: usually an over-merge (shared email, junk identifier) that a later step should split.
    """
    per_person = assignments.groupby(col_person, sort=False).size()
    return {
        "identifiers": int(len(assignments)),
        "people": int(len(per_person)),
        "singleton_people": int((per_person == 1).sum()),
        "largest_person_identifiers": int(per_person.max()) if len(per_person) else 0,
        "people_with_multiple_user_ids": int(
            len(
                people_with_multiple_user_ids(
                    assignments,
                    col_person=col_person,
                    col_identifier_type=col_identifier_type,
                    col_identifier=col_identifier,
                )
            )
        ),
        "identifiers_by_method": {
            str(k): int(v) for k, v in assignments[col_method].value_counts().sort_index().items()
        },
    }


def people_with_multiple_user_ids(
    assignments: pd.DataFrame,
    *,
    col_person: str = PERSON_ID,
    col_identifier_type: str = IDENTIFIER_TYPE,
    col_identifier: str = IDENTIFIER,
) -> pd.DataFrame:
    """Persons holding more than one distinct user_id: person_id, n_user_ids (most first)."""
    user_rows = assignments[assignments[col_identifier_type] == USER_ID]
    counts = user_rows.groupby(col_person)[col_identifier].nunique()
    counts = counts[counts > 1].rename("n_user_ids").reset_index()
    return counts.sort_values(["n_user_ids", col_person], ascending=[False, True]).reset_index(
        drop=True
    )


def _symmetric_graph(a: np.ndarray, b: np.ndarray, n: int) -> sparse.csr_array:
    rows = np.concatenate([a, b])
    cols = np.concatenate([b, a])
    graph = sparse.csr_array((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n))
    graph.sum_duplicates()
    graph.sort_indices()
    return graph


def _bfs_predecessors(a: np.ndarray, b: np.ndarray, n: int, anchors: np.ndarray) -> np.ndarray:
    """Predecessor of each node in a breadth-first walk from its component's anchor.

    A virtual root (index n) links to every anchor, so one walk covers all components; anchors
    get predecessor -1. Neighbors are visited in index (= node_key) order.
    """
    root = np.full(len(anchors), n, dtype=np.int64)
    graph = _symmetric_graph(np.concatenate([a, root]), np.concatenate([b, anchors]), n + 1)
    _, predecessor = csgraph.breadth_first_order(graph, n, directed=True, return_predecessors=True)
    predecessor = predecessor[:n].astype(np.int64)
    predecessor[predecessor == n] = -1
    return predecessor


def _joining_edge_attributes(
    predecessor: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    n: int,
    methods: pd.Series,
    probabilities: pd.Series,
) -> tuple[np.ndarray, np.ndarray]:
    """Method and probability of the edge (node, predecessor); the anchor gets "self", 1.0.

    Between two nodes with several edges the strongest wins (highest probability, then method
    name), so the choice does not depend on input row order.
    """
    lo = np.minimum(a, b).astype(np.int64)
    hi = np.maximum(a, b).astype(np.int64)
    edge_table = pd.DataFrame(
        {
            "pair": lo * n + hi,
            "probability": pd.to_numeric(probabilities, errors="coerce").fillna(1.0).to_numpy(),
            "method": methods.to_numpy(),
        }
    )
    edge_table = edge_table.sort_values(
        ["pair", "probability", "method"], ascending=[True, False, True]
    ).drop_duplicates("pair")
    pairs = edge_table["pair"].to_numpy()

    node = np.arange(n, dtype=np.int64)
    joined = predecessor >= 0
    node_pair = np.minimum(node, predecessor) * n + np.maximum(node, predecessor)
    position = np.searchsorted(pairs, node_pair[joined])

    method = np.full(n, SELF_METHOD, dtype=object)
    probability = np.ones(n, dtype=float)
    method[joined] = edge_table["method"].to_numpy()[position]
    probability[joined] = edge_table["probability"].to_numpy()[position]
    return method, probability
