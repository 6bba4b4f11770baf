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

All the work is on integer node codes (`CodedGraph`): each node_key is replaced once by its
rank among the sorted keys, so "smallest key" is "smallest code" and no string is indexed,
sorted or joined again; only the anchors' keys are read back, to hash them. `resolve_identities`
codes frames with one sorted factorization; the identity step has DuckDB code the graph as it
reads it (`dagster_project.identity.graph.read_coded_graph`) and calls `resolve_coded`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse import csgraph

from models_ml.columns import (
    ANONYMOUS_ID,
    ASSIGNED_IDENTIFIER_TYPES,
    IDENTIFIER,
    IDENTIFIER_TYPE,
    IDENTITY_ASSIGNMENT_COLUMNS,
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


# Integer node codes: code i is the i-th smallest node_key (see `CodedGraph`).
NODE_CODE = "node_code"
CODE_A = "code_a"
CODE_B = "code_b"


def _person_id_hashes(anchor_keys: pd.Series | np.ndarray) -> np.ndarray:
    keys = np.asarray(anchor_keys, dtype=object)
    return pd.util.hash_array(keys, hash_key=_PERSON_ID_HASH_KEY, categorize=False)


def _format_person_ids(hashes: np.ndarray) -> np.ndarray:
    """`"p_"` + the 16 lowercase hex chars of each hash: string order is hash order."""
    shifts = np.arange(60, -4, -4, dtype=np.uint64)
    nibbles = (hashes[:, None] >> shifts) & np.uint64(0xF)
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)[nibbles.astype(np.intp)]
    prefix = np.broadcast_to(
        np.frombuffer(PERSON_ID_PREFIX.encode(), dtype=np.uint8),
        (len(hashes), len(PERSON_ID_PREFIX)),
    )
    raw = np.ascontiguousarray(np.hstack([prefix, digits]))
    return raw.view(f"S{raw.shape[1]}").ravel().astype(str)


def stable_person_ids(anchor_keys: pd.Series | np.ndarray) -> np.ndarray:
    """`"p_"` + 16 lowercase hex chars of a keyed 64-bit SipHash of each key.

    Deterministic across processes and machines (unlike Python's `hash`), vectorized.
    """
    return _format_person_ids(_person_id_hashes(anchor_keys))


def run_starts(values: np.ndarray) -> np.ndarray:
    """Which elements of sorted `values` start a run of equal ones (an empty mask for an empty
    array: a part of the graph without edges, or without an identifier held last run)."""
    return np.r_[True, values[1:] != values[:-1]] if len(values) else np.zeros(0, dtype=bool)


def value_codes(values, *, sort: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(code of each value, the distinct values as an object array): nulls get the last code,
    whose value is None. With `sort`, code order is value order (fast on categoricals)."""
    codes, uniques = pd.factorize(values, sort=sort)
    names = np.append(np.asarray(uniques, dtype=object), None)
    return np.where(codes < 0, len(uniques), codes), names


def lookup(values, mapping: dict, default) -> np.ndarray:
    """`mapping[value]` for every value (nulls and unmapped values: `default`), one lookup per
    distinct value."""
    codes, names = value_codes(values)
    return np.asarray([mapping.get(v, default) for v in names])[codes]


@dataclass(frozen=True)
class CodedGraph:
    """The identity graph with every node_key replaced by its integer code, the key's rank
    among all keys: code order is node_key order, so "the smallest key" is "the smallest code".

    keys: the node_key of each code, ascending and unique (numpy array, pandas Index or Series).
    nodes: one row per node, no two with the same code: `node_code` (int64), identifier_type,
        identifier, source_system.
    edges: `code_a`, `code_b` (int64), method, match_probability (null = 1.0). A code without a
        node row is a linker-only node.
    """

    keys: Any
    nodes: pd.DataFrame
    edges: pd.DataFrame

    @property
    def n(self) -> int:
        return len(self.keys)

    def node_keys(self, codes: np.ndarray) -> np.ndarray:
        """The node_keys of `codes`, as an object array."""
        return np.asarray(self.keys.take(np.asarray(codes, dtype=np.int64)), dtype=object)

    def with_edges(self, kept: np.ndarray) -> CodedGraph:
        """The same nodes with only the edges where `kept` (a boolean mask) is true."""
        return CodedGraph(self.keys, self.nodes, self.edges[kept].reset_index(drop=True))


def encode_graph(nodes: pd.DataFrame, edges: pd.DataFrame) -> CodedGraph:
    """One sorted factorization of every node_key of `nodes` (node_key, identifier_type,
    identifier, source_system) and `edges` (node_key_a, node_key_b, method,
    match_probability): the `CodedGraph` of those frames.

    Nodes without a key are dropped, duplicate node_keys keep their first row; edges missing
    an end are dropped.
    """
    nodes = nodes.dropna(subset=[NODE_KEY]).drop_duplicates(NODE_KEY)
    edges = edges.dropna(subset=[NODE_KEY_A, NODE_KEY_B])
    codes, keys = pd.factorize(
        pd.concat([nodes[NODE_KEY], edges[NODE_KEY_A], edges[NODE_KEY_B]], ignore_index=True),
        sort=True,
    )
    n_nodes, n_edges = len(nodes), len(edges)
    return CodedGraph(
        keys=keys,
        nodes=nodes[[IDENTIFIER_TYPE, IDENTIFIER, SOURCE_SYSTEM]]
        .reset_index(drop=True)
        .assign(**{NODE_CODE: codes[:n_nodes].astype(np.int64)}),
        edges=edges[[METHOD, MATCH_PROBABILITY]]
        .reset_index(drop=True)
        .assign(
            **{
                CODE_A: codes[n_nodes : n_nodes + n_edges].astype(np.int64),
                CODE_B: codes[n_nodes + n_edges :].astype(np.int64),
            }
        ),
    )


@dataclass(frozen=True)
class Resolution:
    """Identity resolution before person ids are carried over.

    assigned: identifier_type, identifier, source_system, method, match_probability; one row
        per node of an assigned type, in node_key order.
    node_code: the code of each assigned row.
    person_code: each assigned row's person, an index into `person_ids`.
    person_ids: the distinct freshly derived person_ids, ascending.
    """

    assigned: pd.DataFrame
    node_code: np.ndarray
    person_code: np.ndarray
    person_ids: np.ndarray

    def assignments(self, person_ids: np.ndarray | None = None) -> pd.DataFrame:
        """`ml.identity_assignments` with `person_ids` (default: the derived ones)."""
        people = self.person_ids if person_ids is None else person_ids
        people = pd.array(np.asarray(people, dtype=object), dtype="str").take(self.person_code)
        frame = self.assigned.assign(**{PERSON_ID: people})
        return frame[list(IDENTITY_ASSIGNMENT_COLUMNS)]


def resolve_coded(
    graph: CodedGraph, *, assigned_types: tuple[str, ...] = ASSIGNED_IDENTIFIER_TYPES
) -> Resolution:
    """`resolve_identities` on a `CodedGraph`, with each row's person as a code."""
    n, nodes, edges = graph.n, graph.nodes, graph.edges
    node_code = nodes[NODE_CODE].to_numpy(np.int64)
    a, b = edges[CODE_A].to_numpy(np.int64), edges[CODE_B].to_numpy(np.int64)
    _, component = csgraph.connected_components(_symmetric_graph(a, b, n), directed=False)

    anchor_rank = np.full(n, _LINKER_RANK, dtype=np.int64)
    anchor_rank[node_code] = lookup(nodes[IDENTIFIER_TYPE], _ANCHOR_PREFERENCE, _LINKER_RANK)
    order = np.lexsort((np.arange(n), anchor_rank, component))
    is_first = run_starts(component[order])
    anchors = np.empty(component.max() + 1 if n else 0, dtype=np.int64)
    anchors[component[order][is_first]] = order[is_first]
    # A person_id is its hash's hex digits: hash order is person_id order.
    hashes, person_of_component = np.unique(
        _person_id_hashes(graph.node_keys(anchors)), return_inverse=True
    )

    predecessor = _bfs_predecessors(a, b, n, anchors)
    method_code, methods, probability = _joining_edge_attributes(
        predecessor, a, b, n, edges[METHOD], edges[MATCH_PROBABILITY]
    )

    rows = np.flatnonzero(
        lookup(nodes[IDENTIFIER_TYPE], dict.fromkeys(assigned_types, True), False)
    )
    rows = rows[np.argsort(node_code[rows], kind="stable")]
    assigned_code = node_code[rows]
    assigned = (
        nodes[[IDENTIFIER_TYPE, IDENTIFIER, SOURCE_SYSTEM]]
        .iloc[rows]
        .reset_index(drop=True)
        .assign(
            **{
                METHOD: pd.array(methods, dtype="str").take(method_code[assigned_code]),
                MATCH_PROBABILITY: probability[assigned_code],
            }
        )
    )
    return Resolution(
        assigned=assigned,
        node_code=assigned_code,
        person_code=person_of_component[component[assigned_code]].astype(np.int64),
        person_ids=_format_person_ids(hashes),
    )


def component_labels(graph: CodedGraph) -> np.ndarray:
    """Per node code, a label of its connected component (edges as given, so before any
    guardrail cut): a keyed 64-bit hash of the component's smallest node_key, as int64. A
    component keeps its label while its smallest key stays in it."""
    if graph.n == 0:
        return np.zeros(0, dtype=np.int64)
    a = graph.edges[CODE_A].to_numpy(np.int64)
    b = graph.edges[CODE_B].to_numpy(np.int64)
    _, component = csgraph.connected_components(_symmetric_graph(a, b, graph.n), directed=False)
    # codes ascend with the keys: a component's first code is its smallest key
    _, first, inverse = np.unique(component, return_index=True, return_inverse=True)
    hashes = _person_id_hashes(graph.node_keys(first)).view(np.int64)
    return hashes[inverse]


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
    node_columns = {
        col_node_key: NODE_KEY,
        col_identifier_type: IDENTIFIER_TYPE,
        col_identifier: IDENTIFIER,
        col_source_system: SOURCE_SYSTEM,
    }
    edge_columns = {
        col_node_key_a: NODE_KEY_A,
        col_node_key_b: NODE_KEY_B,
        col_method: METHOD,
        col_match_probability: MATCH_PROBABILITY,
    }
    out_columns = {
        **{name: col for col, name in node_columns.items()},
        **{name: col for col, name in edge_columns.items()},
        PERSON_ID: col_person,
    }
    graph = encode_graph(
        nodes[list(node_columns)].rename(columns=node_columns),
        edges[list(edge_columns)].rename(columns=edge_columns),
    )
    if graph.n == 0:
        return pd.DataFrame(
            {out_columns[c]: pd.Series(dtype=object) for c in IDENTITY_ASSIGNMENT_COLUMNS}
        ).astype({col_match_probability: float})
    resolution = resolve_coded(graph, assigned_types=assigned_types)
    return resolution.assignments().rename(columns=out_columns)


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
    # Counted on codes, not by grouping the strings: at L (2.8M identifiers) 3.1-3.3 s -> 2.2-2.4 s.
    person_code, people = pd.factorize(assignments[col_person])
    per_person = np.bincount(person_code[person_code >= 0], minlength=len(people))
    is_user = (assignments[col_identifier_type] == USER_ID).to_numpy(dtype=bool, na_value=False)
    user_code, _ = pd.factorize(assignments[col_identifier][is_user])
    user_person = person_code[is_user]
    known = (user_code >= 0) & (user_person >= 0)
    pairs = np.unique(user_person[known].astype(np.int64) * (len(people) + 1) + user_code[known])
    user_ids_per_person = np.bincount(pairs // (len(people) + 1), minlength=len(people))
    return {
        "identifiers": int(len(assignments)),
        "people": int(len(people)),
        "singleton_people": int((per_person == 1).sum()),
        "largest_person_identifiers": int(per_person.max()) if len(people) else 0,
        "people_with_multiple_user_ids": int((user_ids_per_person > 1).sum()),
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
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Method and probability of the edge (node, predecessor); the anchor gets "self", 1.0:
    (each node's method as an index into the methods, the methods, the probabilities).

    Between two nodes with several edges the strongest wins (highest probability, then method
    name), so the choice does not depend on input row order.
    """
    lo = np.minimum(a, b).astype(np.int64)
    hi = np.maximum(a, b).astype(np.int64)
    pair = lo * n + hi
    probability = pd.to_numeric(probabilities, errors="coerce").fillna(1.0).to_numpy(float)
    method_code, method_names = value_codes(methods, sort=True)
    strongest = np.lexsort((method_code, -probability, pair))
    strongest = strongest[run_starts(pair[strongest])]
    pairs = pair[strongest]

    node = np.arange(n, dtype=np.int64)
    joined = predecessor >= 0
    node_pair = np.minimum(node, predecessor) * n + np.maximum(node, predecessor)
    edge = strongest[np.searchsorted(pairs, node_pair[joined])]

    method = np.full(n, len(method_names), dtype=np.int64)
    probability_out = np.ones(n, dtype=float)
    method[joined] = method_code[edge]
    probability_out[joined] = probability[edge]
    return method, np.append(method_names, SELF_METHOD), probability_out
