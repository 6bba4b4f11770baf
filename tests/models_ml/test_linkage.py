"""Guardrails, person_id carry-over and pairwise scores on small inline graphs."""

import numpy as np
import pandas as pd
import pytest

from models_ml import linkage
from models_ml.identity import resolve_identities, stable_person_ids
from models_ml.linkage import (
    GUARDRAIL_CLUSTER_SIZE,
    GUARDRAIL_USER_IDS,
    apply_guardrails,
    carry_over_person_ids,
    pairwise_scores,
)


def _nodes(keys):
    return pd.DataFrame(
        {
            "node_key": keys,
            "identifier_type": [k.split("|")[0] for k in keys],
            "identifier": [k.split("|")[2] for k in keys],
            "source_system": [k.split("|")[1] or None for k in keys],
        }
    )


def _edges(rows):
    return pd.DataFrame(rows, columns=["node_key_a", "node_key_b", "method", "match_probability"])


R1, R2, R3, R4 = (f"record_id|crm|r{i}" for i in range(1, 5))
U1, U2 = "user_id||u1", "user_id||u2"


def test_user_id_conflict_cuts_the_weakest_probabilistic_edge():
    nodes = _nodes([R1, R2, R3, U1, U2])
    edges = _edges(
        [
            (R1, U1, "profile_user_id", 1.0),
            (R3, U2, "profile_user_id", 1.0),
            (R1, R2, "splink", 0.99),
            (R2, R3, "splink", 0.91),  # the weak link that joins two users
        ]
    )
    kept, firings = apply_guardrails(nodes, edges, max_user_ids=1, max_records=10)
    assert sorted(kept["match_probability"]) == [0.99, 1.0, 1.0]
    assert firings.to_dict("records") == [
        {
            "guardrail": GUARDRAIL_USER_IDS,
            "anchor_node_key": R1,
            "user_ids": 2,
            "records": 3,
            "edges_cut": 1,
            "resolved": True,
        }
    ]
    people = resolve_identities(nodes, kept).set_index("identifier")["person_id"]
    assert people["r1"] == people["r2"] == people["u1"] != people["r3"]


def test_cluster_size_cap_and_unbreakable_edges():
    nodes = _nodes([R1, R2, R3, R4, U1])
    edges = _edges(
        [
            (R1, U1, "profile_user_id", 1.0),
            (R2, U1, "profile_user_id", 1.0),
            (R3, U1, "profile_user_id", 1.0),
            (R3, R4, "splink", 0.95),
        ]
    )
    kept, firings = apply_guardrails(nodes, edges, max_user_ids=1, max_records=2)
    assert len(kept) == 3  # the splink edge is cut, the user_id edges cannot be
    assert firings["guardrail"].tolist() == [GUARDRAIL_CLUSTER_SIZE]
    assert firings["edges_cut"].tolist() == [1]
    assert firings["resolved"].tolist() == [False]


def test_no_firing_when_every_component_is_fine():
    nodes = _nodes([R1, R2, U1])
    edges = _edges([(R1, U1, "profile_user_id", 1.0), (R1, R2, "splink", 0.97)])
    kept, firings = apply_guardrails(nodes, edges)
    assert len(kept) == 2 and firings.empty


def _assign(rows):
    return pd.DataFrame(
        rows, columns=["identifier_type", "identifier", "source_system", "person_id"]
    ).assign(method="self", match_probability=1.0)


def test_carry_over_keeps_ids_and_records_merge_and_split():
    previous = _assign(
        [
            ("record_id", "r1", "crm", "p_old_a"),
            ("record_id", "r2", "crm", "p_old_a"),
            ("record_id", "r3", "crm", "p_old_b"),
            ("record_id", "r4", "crm", "p_old_c"),
            ("record_id", "r5", "crm", "p_old_c"),
            ("record_id", "r6", "crm", "p_old_c"),
        ]
    )
    current = _assign(
        [
            ("record_id", "r1", "crm", "p_new_1"),  # a and b merged
            ("record_id", "r2", "crm", "p_new_1"),
            ("record_id", "r3", "crm", "p_new_1"),
            ("record_id", "r4", "crm", "p_new_2"),  # c split 2 + 1
            ("record_id", "r5", "crm", "p_new_2"),
            ("record_id", "r6", "crm", "p_new_3"),
            ("record_id", "r7", "crm", "p_new_4"),  # a new person
        ]
    )
    carried, changes = carry_over_person_ids(current, previous)
    assert carried["person_id"].tolist() == [
        "p_old_a",
        "p_old_a",
        "p_old_a",
        "p_old_c",
        "p_old_c",
        "p_new_3",
        "p_new_4",
    ]
    assert changes.to_dict("records") == [
        {
            "change_type": "merge",
            "person_id": "p_old_a",
            "previous_person_id": "p_old_b",
            "identifiers": 1,
        },
        {
            "change_type": "split",
            "person_id": "p_new_3",
            "previous_person_id": "p_old_c",
            "identifiers": 1,
        },
    ]


def test_carry_over_rederives_a_fresh_id_that_collides():
    previous = _assign([("record_id", "r1", "crm", "p_x"), ("record_id", "r2", "crm", "p_x")])
    current = _assign([("record_id", "r1", "crm", "p_y"), ("record_id", "r2", "crm", "p_x")])
    carried, changes = carry_over_person_ids(current, previous)
    assert carried["person_id"].iloc[0] == "p_x" or carried["person_id"].iloc[1] == "p_x"
    assert carried["person_id"].nunique() == 2
    assert changes["change_type"].tolist() == ["split"]


def test_carry_over_without_previous_run_changes_nothing():
    current = _assign([("record_id", "r1", "crm", "p_1")])
    carried, changes = carry_over_person_ids(current, None)
    assert carried.equals(current) and changes.empty


def test_pairwise_scores():
    predicted = pd.Series(["a", "a", "a", "b", "c"])
    truth = pd.Series(["x", "x", "y", "y", None])
    scores = pairwise_scores(predicted, truth)
    # predicted pairs: 3 (aaa); true pairs: 2 (xx, yy); shared: 1 (the two x in a)
    assert scores["predicted_pairs"] == 3 and scores["true_pairs"] == 2
    assert scores["precision"] == pytest.approx(1 / 3)
    assert scores["recall"] == pytest.approx(1 / 2)
    assert scores["f1"] == pytest.approx(0.4)


def test_carry_over_counts_people_by_final_id_when_a_rederived_id_is_taken():
    # p_x is re-derived (it existed last run) into exactly the fresh id another new person
    # already has: both end up as one person, cut out of p_w (a split, not a merge).
    rederived = str(stable_person_ids(["p_x|rederived"])[0])
    previous = _assign(
        [("record_id", f"w{i}", "crm", "p_w") for i in range(1, 8)]
        + [("record_id", "f1", "crm", "p_x")]
    )
    current = _assign(
        [("record_id", "w1", "crm", rederived), ("record_id", "w2", "crm", "p_x")]
        + [("record_id", f"w{i}", "crm", "p_e") for i in range(3, 8)]
        + [("record_id", "f1", "crm", "p_f")]
    )
    carried, changes = carry_over_person_ids(current, previous)
    assert carried["person_id"].tolist() == [rederived] * 2 + ["p_w"] * 5 + ["p_x"]
    split = {"change_type": "split", "person_id": rederived, "previous_person_id": "p_w"}
    assert changes.to_dict("records") == [{**split, "identifiers": 1}] * 2


def _random_graph(seed: int, clusters: int, n_edges: int):
    """Nodes in `clusters` groups (the first one large), edges within a group: many
    components, some of them breaking a guardrail."""
    rng = np.random.default_rng(seed)
    sizes = [80] + [6] * (clusters - 1)
    group = np.repeat(np.arange(clusters), sizes)
    kinds = rng.choice(["record_id", "user_id", "anonymous_id"], size=len(group), p=[0.5, 0.2, 0.3])
    keys = [f"{kind}|{'crm' if kind == 'record_id' else ''}|n{i}" for i, kind in enumerate(kinds)]
    start = np.r_[0, np.cumsum(sizes)[:-1]]
    in_group = rng.integers(0, clusters, size=n_edges)
    ends = (
        start[in_group, None]
        + rng.integers(0, 1 << 30, size=(n_edges, 2)) % np.array(sizes)[in_group, None]
    )
    methods = rng.choice(["splink", "email", "login_stitch", "profile_user_id"], size=n_edges)
    return _nodes(keys), _edges(
        [
            (keys[x], keys[y], m, round(float(p), 3))
            for (x, y), m, p in zip(ends, methods, rng.uniform(0.5, 1.0, n_edges), strict=True)
        ]
    )


@pytest.mark.parametrize("seed", range(6))
def test_splitting_only_the_cut_components_gives_what_recomputing_all_of_them_gives(
    seed, monkeypatch
):
    """Each round splits again only the components it cut edges in; recomputing every
    component of the whole graph each round (as before) must cut the same edges and report the
    same firings, over many rounds (a dense component and tight limits) and beside many
    components that never offend."""
    nodes, edges = _random_graph(seed, clusters=50, n_edges=400 + 40 * seed)
    limits = {"max_user_ids": 1 + seed % 2, "max_records": 3 + seed}
    kept, firings = apply_guardrails(nodes, edges, **limits)

    def whole_graph(component, changed, a, b, kept_mask):
        return linkage._components(a[kept_mask], b[kept_mask], len(component))

    monkeypatch.setattr(linkage, "_split_components", whole_graph)
    expected_kept, expected_firings = apply_guardrails(nodes, edges, **limits)
    assert len(expected_firings) > 3 and len(kept) < len(edges)  # the case is not trivial
    pd.testing.assert_frame_equal(kept, expected_kept)
    pd.testing.assert_frame_equal(firings, expected_firings)


def test_split_components_renumbers_labels_that_would_reach_2n():
    # four nodes whose labels are already high: splitting the component labelled 5 would need
    # labels 6 to 8, so the labels are renumbered first; the partition is what the edges say
    component = np.array([5, 5, 5, 1])
    changed = np.zeros(6, dtype=bool)
    changed[5] = True
    a, b, kept = np.array([0, 1]), np.array([1, 2]), np.array([True, False])
    split = linkage._split_components(component, changed, a, b, kept)
    assert split.max() < 2 * len(component)
    assert split[0] == split[1] and len({split[0], split[2], split[3]}) == 3
