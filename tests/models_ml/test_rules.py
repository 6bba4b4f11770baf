import pandas as pd
import pytest

from models_ml.rules import RecommendationRules, apply_rules

# Algorithmic candidates for two people (already ranked by their algorithm).
CANDIDATES = pd.DataFrame(
    {
        "person_id": ["p1"] * 4 + ["p2"] * 4,
        "rank": [1, 2, 3, 4] * 2,
        "item_id": ["a", "b", "c", "d", "b", "c", "d", "e"],
        "score": [0.9, 0.8, 0.7, 0.6, 0.9, 0.8, 0.7, 0.6],
        "algorithm": ["ease"] * 8,
        "reason": ["ease: people with your history liked it"] * 8,
    }
)
ITEMS = pd.DataFrame({"item_id": list("abcdefg"), "category": ["x", "x", "y", "z", "z", "x", "y"]})
RULES = RecommendationRules.from_dict(
    {
        "context_rules": [{"name": "open_checkout_curated", "when": "open_checkout"}],
        "pins": [{"name": "gift_card", "item_ids": ["g"]}],
        "boosts": [{"name": "z_week", "factor": 4.0, "categories": ["z"]}],
    }
)


def _lists(frame: pd.DataFrame) -> dict[str, list[tuple[str, str]]]:
    frame = frame.sort_values(["person_id", "rank"])
    return {
        person: list(zip(group.item_id, group.reason.astype(str), strict=True))
        for person, group in frame.groupby("person_id")
    }


def test_precedence_pins_then_context_then_boosts_then_algorithm():
    out = apply_rules(
        CANDIDATES,
        RULES,
        4,
        people=["p1", "p2", "p3"],
        items=ITEMS,
        contexts={"open_checkout": ["p2"]},
        curated_items=["f", "c"],
    )
    algo = "ease: people with your history liked it"
    boosted = f"rule:z_week boosted {algo}"
    assert _lists(out) == {
        # pin first; d (rank 4 / 4 = 1) boosted above a (rank 1; ties keep tier then order)
        "p1": [("g", "rule:gift_card"), ("a", algo), ("d", boosted), ("b", algo)],
        # open checkout: curated f, c before algorithmic items; c only once
        "p2": [
            ("g", "rule:gift_card"),
            ("f", "rule:open_checkout_curated"),
            ("c", "rule:open_checkout_curated"),
            ("d", boosted),  # rank 3 / 4 beats e (rank 4 / 4)
        ],
        # no candidates at all: still the pin
        "p3": [("g", "rule:gift_card")],
    }
    assert out.groupby("person_id")["rank"].apply(list).to_dict() == {
        "p1": [1, 2, 3, 4],
        "p2": [1, 2, 3, 4],
        "p3": [1],
    }
    assert set(out.algorithm.astype(str)) == {"rule", "ease"}


def test_exclusions_beat_every_rule_and_algorithm():
    out = apply_rules(
        CANDIDATES,
        RULES,
        3,
        items=ITEMS,
        contexts={"open_checkout": ["p1"]},
        curated_items=["f", "c"],
        exclude_pairs=pd.DataFrame({"person_id": ["p1", "p2"], "item_id": ["a", "b"]}),
        exclude_items=["g", "f"],
    )
    lists = _lists(out)
    assert [item for item, _ in lists["p1"]] == ["c", "d", "b"], "curated c, boosted d, then b"
    assert [item for item, _ in lists["p2"]] == ["d", "e", "c"], "boosted d, e (rank 1) lead"
    assert not out.duplicated(["person_id", "item_id"]).any()


@pytest.mark.parametrize(
    "bad",
    [
        {"context_rules": [{"name": "x", "when": "full_moon"}]},
        {"pins": [{"name": "x", "item_ids": []}]},
        {"boosts": [{"name": "x", "factor": 0}]},
        {"pins": [{"name": "x", "item_ids": ["a"]}], "boosts": [{"name": "x", "factor": 2}]},
    ],
)
def test_invalid_rules_are_refused(bad):
    with pytest.raises(ValueError):
        RecommendationRules.from_dict(bad)


def test_the_shipped_rules_file_is_valid():
    from dagster_project.tunables import load_tunables

    rules = RecommendationRules.from_dict(load_tunables().recommendation_rules)
    assert rules.exclude_purchased and rules.exclude_out_of_stock
    assert [r.when for r in rules.context_rules] == ["open_checkout"]


def test_categorical_ids_give_the_same_lists_as_text_ids():
    # what the chain hands the rules when serving: ids as categoricals over every person
    # and item of the models, most of them absent from these rows
    categorical = CANDIDATES.assign(
        person_id=pd.Categorical(CANDIDATES.person_id, categories=["p9", "p2", "p1", "p3"]),
        item_id=pd.Categorical(CANDIDATES.item_id, categories=list("zyxedcba")),
    )
    arguments = dict(
        people=["p1", "p2", "p3"],
        items=ITEMS,
        contexts={"open_checkout": ["p2"]},
        curated_items=["f", "c"],
        exclude_pairs=pd.DataFrame({"person_id": ["p1"], "item_id": ["b"]}),
        exclude_items=["e"],
    )
    expected = apply_rules(CANDIDATES, RULES, 4, **arguments)
    pd.testing.assert_frame_equal(apply_rules(categorical, RULES, 4, **arguments), expected)
    assert _lists(expected)["p1"][2:] == [
        ("d", "rule:z_week boosted ease: people with your history liked it"),
        ("c", "ease: people with your history liked it"),
    ]


def test_a_long_context_list_gives_each_person_its_first_allowed_items():
    # Each person in the context gets curated items until k are allowed: past exclusions
    # (theirs and everyone's) and the items a pin already shows, however long the list.
    rules = RecommendationRules.from_dict(
        {
            "context_rules": [{"name": "checkout", "when": "open_checkout"}],
            "pins": [{"name": "pin", "item_ids": ["c4"]}],
        }
    )
    out = apply_rules(
        CANDIDATES,
        rules,
        3,
        people=["p1", "p2", "p3"],
        contexts={"open_checkout": ["p2", "p1", "p1", "nobody"]},
        curated_items=[f"c{i}" for i in range(1, 30)],
        exclude_pairs=pd.DataFrame(
            {"person_id": ["p1", "p1", "p2", "p2"], "item_id": ["c1", "c3", "a", "unknown"]}
        ),
        exclude_items=["c2"],
    )
    assert _lists(out) == {
        "p1": [("c4", "rule:pin"), ("c5", "rule:checkout"), ("c6", "rule:checkout")],
        "p2": [("c4", "rule:pin"), ("c1", "rule:checkout"), ("c3", "rule:checkout")],
        "p3": [("c4", "rule:pin")],  # not in the context, no candidates
    }
    curated = out[out["reason"] == "rule:checkout"]
    assert curated["score"].tolist() == [1 / 5, 1 / 6, 1.0, 1 / 3]  # 1 / curated position
