import numpy as np
import pandas as pd

from models_ml.identity import (
    identity_stats,
    people_with_multiple_user_ids,
    resolve_identities,
    stable_person_ids,
)

U1 = "p_1917d02e661654b9"  # stable_person_ids(["user_id||u1"])
A9 = "p_cb03323da57014c4"  # stable_person_ids(["anonymous_id||a9"])


def _nodes(rows):
    return pd.DataFrame(
        [(f"{t}|{s or ''}|{i}", t, i, s) for t, i, s in rows],
        columns=["node_key", "identifier_type", "identifier", "source_system"],
    )


def _edges(rows):
    return pd.DataFrame(rows, columns=["node_key_a", "node_key_b", "method", "match_probability"])


NODES = _nodes(
    [
        ("anonymous_id", "a1", None),
        ("anonymous_id", "a9", None),
        ("record_id", "r1", "crm"),
        ("record_id", "r2", "shop"),
        ("user_id", "u1", None),
        ("email_token", "e1", None),
    ]
)
# a1 -login- u1 -profile- r1 -email- e1 -email- r2 : one person, joined transitively.
EDGES = _edges(
    [
        ("anonymous_id||a1", "user_id||u1", "login_stitch", None),
        ("record_id|crm|r1", "user_id||u1", "profile_user_id", None),
        ("record_id|crm|r1", "email_token||e1", "email", None),
        ("record_id|shop|r2", "email_token||e1", "email", 0.93),
    ]
)


def test_chain_joins_transitively_and_singleton_stays_alone():
    expected = pd.DataFrame(
        {
            "identifier_type": [
                "anonymous_id",
                "anonymous_id",
                "record_id",
                "record_id",
                "user_id",
            ],
            "identifier": ["a1", "a9", "r1", "r2", "u1"],
            "source_system": [None, None, "crm", "shop", None],
            "person_id": [U1, A9, U1, U1, U1],
            "method": ["login_stitch", "self", "profile_user_id", "email", "self"],
            "match_probability": [1.0, 1.0, 1.0, 0.93, 1.0],
        }
    )
    result = resolve_identities(NODES, EDGES)
    pd.testing.assert_frame_equal(result, expected, check_dtype=False)


def test_person_id_is_a_pinned_keyed_hash():
    assert stable_person_ids(["user_id||u1", "anonymous_id||a9"]).tolist() == [U1, A9]


def test_stable_across_calls_row_order_and_unrelated_additions():
    first = resolve_identities(NODES, EDGES)
    shuffled = resolve_identities(
        NODES.sample(frac=1, random_state=3), EDGES.sample(frac=1, random_state=4)
    )
    pd.testing.assert_frame_equal(first, shuffled)

    more_nodes = pd.concat([NODES, _nodes([("user_id", "u0", None), ("anonymous_id", "a0", None)])])
    more_edges = pd.concat(
        [EDGES, _edges([("anonymous_id||a0", "user_id||u0", "login_stitch", None)])]
    )
    grown = resolve_identities(more_nodes, more_edges)
    unchanged = grown[~grown["identifier"].isin(["u0", "a0"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(unchanged, first, check_dtype=False)


def test_anchor_prefers_user_id_then_record_id_over_smaller_keys():
    nodes = _nodes(
        [
            ("anonymous_id", "a5", None),
            ("record_id", "r5", "crm"),
            ("user_id", "u9", None),
            ("anonymous_id", "a6", None),
            ("record_id", "r3", "crm"),
        ]
    )
    edges = _edges(
        [
            ("anonymous_id||a5", "record_id|crm|r5", "login_stitch", None),
            ("record_id|crm|r5", "user_id||u9", "profile_user_id", None),
            ("anonymous_id||a6", "record_id|crm|r3", "login_stitch", None),
        ]
    )
    result = resolve_identities(nodes, edges).set_index("identifier")
    u9, r3 = stable_person_ids(["user_id||u9", "record_id|crm|r3"])
    assert result.loc[["a5", "r5", "u9"], "person_id"].tolist() == [u9, u9, u9]
    assert result.loc[["a6", "r3"], "person_id"].tolist() == [r3, r3]
    assert result.loc["u9", "method"] == "self"
    assert result.loc["r3", "method"] == "self"


def test_edge_endpoint_missing_from_nodes_still_links():
    nodes = _nodes([("record_id", "r1", "crm"), ("record_id", "r2", "shop")])
    result = resolve_identities(nodes, EDGES[EDGES["method"] == "email"])
    assert result["person_id"].nunique() == 1


def test_strongest_of_parallel_edges_wins():
    nodes = _nodes([("user_id", "u1", None), ("anonymous_id", "a1", None)])
    edges = _edges(
        [
            ("anonymous_id||a1", "user_id||u1", "fuzzy_name", 0.7),
            ("user_id||u1", "anonymous_id||a1", "login_stitch", None),
        ]
    )
    result = resolve_identities(nodes, edges).set_index("identifier")
    assert result.loc["a1", ["method", "match_probability"]].tolist() == ["login_stitch", 1.0]


def test_guardrail_counts_components_with_several_user_ids():
    nodes = _nodes(
        [
            ("user_id", "u1", None),
            ("user_id", "u2", None),
            ("record_id", "r1", "crm"),
            ("record_id", "r2", "crm"),
            ("email_token", "shared", None),
        ]
    )
    edges = _edges(
        [
            ("record_id|crm|r1", "user_id||u1", "profile_user_id", None),
            ("record_id|crm|r2", "user_id||u2", "profile_user_id", None),
            ("record_id|crm|r1", "email_token||shared", "email", None),
            ("record_id|crm|r2", "email_token||shared", "email", None),
        ]
    )
    assignments = resolve_identities(nodes, edges)
    stats = identity_stats(assignments)
    assert stats == {
        "identifiers": 4,
        "people": 1,
        "singleton_people": 0,
        "largest_person_identifiers": 4,
        "people_with_multiple_user_ids": 1,
        "identifiers_by_method": {"email": 1, "profile_user_id": 2, "self": 1},
    }
    conflicts = people_with_multiple_user_ids(assignments)
    assert conflicts.to_dict("records") == [
        {"person_id": stable_person_ids(["user_id||u1"])[0], "n_user_ids": 2}
    ]


def test_empty_input_gives_empty_frame():
    result = resolve_identities(NODES.iloc[:0], EDGES.iloc[:0])
    assert list(result.columns) == [
        "identifier_type",
        "identifier",
        "source_system",
        "person_id",
        "method",
        "match_probability",
    ]
    assert result.empty


def test_stats_count_like_grouping_the_strings():
    """identity_stats counts on codes; the figures are those of grouping the strings (people
    without a person_id and user_ids without a value are not counted; one user_id held twice,
    from two source systems, counts once)."""
    rng = np.random.default_rng(7)
    n = 5000
    frame = pd.DataFrame(
        {
            "identifier_type": rng.choice(["user_id", "anonymous_id", "record_id"], n),
            "identifier": rng.choice([f"u{i}" for i in range(900)] + [None], n),
            "source_system": rng.choice(["crm_a", "crm_b"], n),
            "person_id": rng.choice([f"p{i}" for i in range(1500)] + [None], n),
            "method": rng.choice(["self", "email"], n),
            "match_probability": 1.0,
        }
    )
    per_person = frame.groupby("person_id").size()
    users = frame[frame["identifier_type"] == "user_id"].groupby("person_id")["identifier"]

    stats = identity_stats(frame)

    assert stats["people"] == len(per_person)
    assert stats["singleton_people"] == int((per_person == 1).sum())
    assert stats["largest_person_identifiers"] == int(per_person.max())
    assert stats["people_with_multiple_user_ids"] == int((users.nunique() > 1).sum())
    assert stats["people_with_multiple_user_ids"] == len(people_with_multiple_user_ids(frame))
    assert 0 < stats["people_with_multiple_user_ids"] < stats["people"]
