"""Pure parts of identity resolution around the graph: guardrails, id carry-over, evaluation.

- `apply_guardrails`: cut the weakest breakable edges of every component that holds more than
  one `user_id` or too many records, until no component breaks a rule (or nothing is left to
  cut). Probabilistic edges go first (lowest probability first), then the weaker deterministic
  methods in the configured order; a record's own `user_id` edge is never cut.
- `carry_over_person_ids`: keep last run's `person_id` for the new component that holds most of
  its identifiers; record merges (one new person from several old ones) and splits.
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
from models_ml.identity import stable_person_ids

GUARDRAIL_USER_IDS = "max_user_ids_per_person"
GUARDRAIL_CLUSTER_SIZE = "max_records_per_person"


def _components(codes_a: np.ndarray, codes_b: np.ndarray, n: int) -> np.ndarray:
    graph = sparse.coo_array(
        (np.ones(len(codes_a), dtype=np.int8), (codes_a, codes_b)), shape=(n, n)
    ).tocsr()
    return csgraph.connected_components(graph, directed=False)[1]


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
        edges_cut, resolved (False when only unbreakable edges were left).
    """
    edges = edges.reset_index(drop=True)
    keys = pd.Index(
        pd.concat([nodes[NODE_KEY], edges[NODE_KEY_A], edges[NODE_KEY_B]]).dropna().unique()
    ).sort_values()
    n = len(keys)
    a = keys.get_indexer(edges[NODE_KEY_A])
    b = keys.get_indexer(edges[NODE_KEY_B])
    node_type = pd.Series(nodes[IDENTIFIER_TYPE].to_numpy(), index=nodes[NODE_KEY].to_numpy())
    node_type = node_type[~node_type.index.duplicated()].reindex(keys).to_numpy()
    is_user = node_type == USER_ID
    is_record = node_type == RECORD_ID

    method_rank = edges[METHOD].map({m: i for i, m in enumerate(breakable_methods)})
    is_breakable = method_rank.notna().to_numpy()
    strength = method_rank.fillna(len(breakable_methods)).to_numpy() * 2.0 + pd.to_numeric(
        edges[MATCH_PROBABILITY], errors="coerce"
    ).fillna(1.0).to_numpy().clip(0, 1)
    kept = np.ones(len(edges), dtype=bool)
    firings: dict[int, dict] = {}
    first_round = True
    for _ in range(max_rounds):
        component = _components(a[kept], b[kept], n)
        n_users = np.bincount(component, weights=is_user, minlength=n)
        n_records = np.bincount(component, weights=is_record, minlength=n)
        too_many_users = n_users > max_user_ids
        too_big = n_records > max_records
        offending = too_many_users | too_big
        if first_round:
            anchor = np.full(n, -1)
            order = np.argsort(component, kind="stable")
            first = np.r_[True, component[order][1:] != component[order][:-1]]
            anchor[component[order][first]] = order[first]
            for c in np.flatnonzero(offending):
                firings[c] = {
                    "guardrail": GUARDRAIL_USER_IDS
                    if too_many_users[c]
                    else GUARDRAIL_CLUSTER_SIZE,
                    "anchor_node_key": keys[anchor[c]],
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
    cut_edges = np.flatnonzero(~kept)
    if firings:
        first_of_cut = pd.Series(first_component[a[cut_edges]]).value_counts()
        final = _components(a[kept], b[kept], n)
        still = (np.bincount(final, weights=is_user, minlength=n) > max_user_ids) | (
            np.bincount(final, weights=is_record, minlength=n) > max_records
        )
        unresolved = set(first_component[np.flatnonzero(still[final])].tolist())
        for c, row in firings.items():
            row["edges_cut"] = int(first_of_cut.get(c, 0))
            row["resolved"] = c not in unresolved
    firing_frame = pd.DataFrame(
        list(firings.values()),
        columns=["guardrail", "anchor_node_key", "user_ids", "records", "edges_cut", "resolved"],
    ).sort_values("anchor_node_key", ignore_index=True)
    return edges[kept].reset_index(drop=True), firing_frame


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
    change_columns = ["change_type", "person_id", "previous_person_id", "identifiers"]
    no_changes = pd.DataFrame({c: pd.Series(dtype=object) for c in change_columns}).astype(
        {"identifiers": "int64"}
    )
    if previous is None or previous.empty or assignments.empty:
        return assignments, no_changes
    join_keys = [IDENTIFIER_TYPE, IDENTIFIER, SOURCE_SYSTEM]
    prev = previous[[*join_keys, PERSON_ID]].rename(columns={PERSON_ID: "previous_person_id"})
    current = assignments.assign(**{SOURCE_SYSTEM: assignments[SOURCE_SYSTEM].fillna("")})
    prev = prev.assign(**{SOURCE_SYSTEM: prev[SOURCE_SYSTEM].fillna("")})
    overlap = (
        current.merge(prev, on=join_keys, how="inner")
        .groupby([PERSON_ID, "previous_person_id"], as_index=False)
        .size()
        .rename(columns={"size": "identifiers"})
    )
    # Each old id goes to the new person with the largest share of it ...
    best_for_old = overlap.sort_values(
        ["previous_person_id", "identifiers", PERSON_ID], ascending=[True, False, True]
    ).drop_duplicates("previous_person_id")
    # ... and each new person takes, among the old ids it won, the one it shares most with.
    keeper = best_for_old.sort_values(
        [PERSON_ID, "identifiers", "previous_person_id"], ascending=[True, False, True]
    ).drop_duplicates(PERSON_ID)
    mapping = dict(zip(keeper[PERSON_ID], keeper["previous_person_id"], strict=True))
    taken = set(prev["previous_person_id"]) | set(mapping.values())
    fresh = pd.Index(current[PERSON_ID].unique()).difference(pd.Index(list(mapping)))
    colliding = [p for p in fresh if p in taken]
    if colliding:
        rederived = stable_person_ids(np.asarray([f"{p}|rederived" for p in colliding], object))
        mapping.update(dict(zip(colliding, rederived, strict=True)))
    final = assignments.assign(
        **{PERSON_ID: assignments[PERSON_ID].map(lambda p: mapping.get(p, p))}
    )
    overlap = overlap.assign(person_id=overlap[PERSON_ID].map(lambda p: mapping.get(p, p)))
    merges = overlap[overlap["person_id"] != overlap["previous_person_id"]]
    n_new_per_old = overlap.groupby("previous_person_id")["person_id"].transform("nunique")
    is_split = (n_new_per_old > 1) & (overlap["person_id"] != overlap["previous_person_id"])
    n_old_per_new = overlap.groupby("person_id")["previous_person_id"].transform("nunique")
    is_merge = (n_old_per_new > 1) & (overlap["person_id"] != overlap["previous_person_id"])
    changes = pd.concat(
        [
            merges[is_merge[merges.index]].assign(change_type="merge"),
            merges[is_split[merges.index] & ~is_merge[merges.index]].assign(change_type="split"),
        ]
    )[change_columns].sort_values(["change_type", "person_id", "previous_person_id"])
    return final, changes.reset_index(drop=True).astype({"identifiers": "int64"})


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
