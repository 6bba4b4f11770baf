"""The recommendation and experiment assets against a real DuckDB warehouse, run by Dagster.

The warehouse holds exactly the relations the assets read (as dbt would leave them), built by
hand so each rule has a person who must trigger it: an open checkout, a purchase, an item out
of stock, a person without personalization consent (P39), a person who revoked analytics
consent (P38, the only one ever to touch the gadget g0).
"""

import dataclasses
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from dagster import materialize

from dagster_project.assets.experiments import experiments, update_assignments
from dagster_project.assets.recommendations import previous_selection, recommendations
from dagster_project.resources import WarehouseResource
from dagster_project.tunables import load_tunables
from models_ml.experiments import Experiment, assign_variants

DAY = pd.Timestamp("2024-05-01")
# Two taste groups of 6 items each ("b*" books, "s*" sports) and one curated item per group;
# a gadget nobody but P38 (analytics consent revoked) ever touches.
ITEMS = pd.DataFrame(
    {
        "item_id": [f"b{i}" for i in range(6)] + [f"s{i}" for i in range(6)] + ["g0"],
        "title": [f"Novel {i}" for i in range(6)] + [f"Tent {i}" for i in range(6)] + ["Drone"],
        "category": ["books"] * 6 + ["sports"] * 6 + ["gadgets"],
        "tags": ["paperback"] * 6 + ["outdoor"] * 6 + ["electronic"],
        "is_in_stock": [True] * 5 + [False] + [True] * 7,  # b5 out of stock
        "is_curated": [False] * 4 + [True, False] + [False] * 5 + [True, False],  # b4, s5
    }
)
REVOKED_ANALYTICS, NO_PERSONALIZATION = "P38", "P39"


def _events() -> pd.DataFrame:
    rows = []
    for n in range(40):
        person, group = f"P{n:02d}", "b" if n % 2 == 0 else "s"
        for j in range(4):
            item = f"{group}{(n + j) % 5}"
            rows.append((person, item, "view_product", DAY + pd.Timedelta(hours=n + j)))
    rows.append(("P00", "b3", "purchase", DAY + pd.Timedelta(days=3)))  # P00 bought b3
    rows.append(("P01", "s1", "begin_checkout", DAY + pd.Timedelta(days=4)))  # open checkout
    rows.append(("P02", "b1", "begin_checkout", DAY + pd.Timedelta(days=2)))  # ... then bought
    rows.append(("P02", "b1", "purchase", DAY + pd.Timedelta(days=2, hours=1)))
    rows.append(("P03", "s2", "click_recommendation", DAY + pd.Timedelta(days=1)))
    # Were P38 counted, g0 would be the most popular item by far.
    for n in range(6):
        rows.append((REVOKED_ANALYTICS, "g0", "purchase", DAY + pd.Timedelta(days=2, hours=n)))
    events = pd.DataFrame(rows, columns=["person_id", "item_id", "event_type", "occurred_at"])
    events["event_id"] = [f"e{i}" for i in range(len(events))]
    return events


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    data_dir = tmp_path_factory.mktemp("recommendations")
    (data_dir / "warehouse").mkdir()
    con = duckdb.connect(str(data_dir / "warehouse" / "warehouse.duckdb"))
    events = _events()
    weights = {"view_product": 1.0, "begin_checkout": 3.0, "purchase": 5.0}
    weights["click_recommendation"] = 1.5
    interactions = events.assign(weight=events.event_type.map(weights))
    con.register("interactions_frame", interactions)
    people = pd.DataFrame({"person_id": sorted(events.person_id.unique())})
    people["has_personalization_consent"] = people.person_id != NO_PERSONALIZATION
    analytics = people[["person_id"]].assign(
        has_analytics_consent=people.person_id != REVOKED_ANALYTICS
    )
    # Cluster segments follow the taste groups; P30-P37 have none (overall popularity).
    number = people.person_id.str[1:].astype(int)
    clustered = people[people.has_personalization_consent & (number < 30)]
    segments = pd.DataFrame(
        {
            "person_id": clustered.person_id,
            "segment_type": "cluster",
            "segment_id": "c" + (number[clustered.index] % 2).astype(str),
            "segment_name": "taste group",
            "score": 1.0,
        }
    )
    for schema in ("intermediate", "marts", "config", "ml"):
        con.execute(f"create schema {schema}")
    con.execute(
        "create table intermediate.int_interactions_weighted as select * from interactions_frame"
    )
    con.register("analytics_frame", analytics)
    con.register("segments_frame", segments)
    con.execute("create table intermediate.int_analytics_consents_resolved as from analytics_frame")
    con.execute("create table ml.user_segments as from segments_frame")
    con.execute("create table marts.events as select * from events")
    con.execute("create table marts.items as select * from ITEMS")
    con.execute("create table marts.user_profiles as select * from people")
    con.execute("create table config.run_settings as select null::timestamp as as_of")
    con.close()
    resources = {"warehouse": WarehouseResource(data_dir=str(data_dir))}
    result = materialize([recommendations, experiments], resources=resources)
    assert result.success
    return data_dir


def _frame(data_dir: Path, sql: str) -> pd.DataFrame:
    con = duckdb.connect(str(data_dir / "warehouse" / "warehouse.duckdb"), read_only=True)
    try:
        return con.sql(sql).df()
    finally:
        con.close()


def test_the_coded_read_of_the_interactions_is_the_read_of_interactions_sql(warehouse, tmp_path):
    """read_interactions: the rows and order of INTERACTIONS_SQL, ids as categoricals over the
    sorted people of the consent tables and items of every interaction; a person with neither
    consent is not read (their id is an unused category)."""
    from dagster_project.assets.recommendations import INTERACTIONS_SQL, read_interactions

    shutil.copytree(warehouse, tmp_path / "copy")
    con = duckdb.connect(str(tmp_path / "copy" / "warehouse" / "warehouse.duckdb"))
    try:
        con.execute(
            "update intermediate.int_analytics_consents_resolved "
            "set has_analytics_consent = false where person_id = $p",
            {"p": NO_PERSONALIZATION},
        )
        coded = read_interactions(con)
        plain = con.execute(INTERACTIONS_SQL).df()
    finally:
        con.close()
    categories = coded["person_id"].cat.categories
    assert categories.is_monotonic_increasing and NO_PERSONALIZATION in categories
    assert NO_PERSONALIZATION not in set(plain["person_id"]) and len(plain) > 100
    assert coded["item_id"].cat.categories.is_monotonic_increasing
    coded = coded.astype({"person_id": str, "item_id": str})
    pd.testing.assert_frame_equal(coded, plain, check_dtype=False)


def test_every_consenting_person_gets_k_clean_ranked_items(warehouse):
    recs = _frame(warehouse, "select * from ml.recommendations")
    k = load_tunables().recommendations["top_k"]
    assert set(recs.person_id) == {f"P{n:02d}" for n in range(39)}, "P39 has no consent"
    # Popularity tops everyone up with every item someone interacted with (b0-b4, s0-s4) that
    # the person has not seen: at least that many rows (capped at k), whatever else applies.
    events = _events()
    unseen = 10 - events.groupby("person_id").item_id.nunique()
    per_person = recs.groupby("person_id").size()
    assert (per_person >= unseen.reindex(per_person.index).clip(upper=k)).all()
    ranks = recs.sort_values(["person_id", "rank"]).groupby("person_id")["rank"].apply(list)
    assert all(r == list(range(1, len(r) + 1)) for r in ranks)
    assert not recs.duplicated(["person_id", "item_id"]).any()
    assert "b5" not in set(recs.item_id), "out of stock"
    assert not ((recs.person_id == "P00") & (recs.item_id == "b3")).any(), "purchased"
    assert recs.reason.str.len().gt(0).all()


def test_an_open_checkout_gets_the_curated_items_first(warehouse):
    recs = _frame(warehouse, "select * from ml.recommendations order by person_id, rank")
    p01 = recs[recs.person_id == "P01"]
    assert p01.item_id.tolist()[:2] == ["s5", "b4"] or p01.item_id.tolist()[:2] == ["b4", "s5"]
    assert (p01.reason.iloc[:2] == "rule:open_checkout_curated").all()
    assert (p01.algorithm.iloc[:2] == "rule").all()
    p02 = recs[recs.person_id == "P02"]
    assert not (p02.algorithm == "rule").any(), "P02's checkout ended in a purchase"


def test_people_with_history_get_their_taste_group(warehouse):
    # Each person has seen 4 of the 5 in-stock items of their group: the 5th comes first.
    recs = _frame(warehouse, "select * from ml.recommendations where rank = 1")
    algorithmic = recs[recs.algorithm != "rule"]
    group = algorithmic.person_id.str[1:].astype(int) % 2
    expected = group.map({0: "b", 1: "s"})
    assert (algorithmic.item_id.str[0] == expected).mean() >= 0.9


def test_the_evaluation_table_names_one_winner(warehouse):
    evaluation = _frame(warehouse, "select * from ml.recommendation_evaluation")
    assert set(evaluation.algorithm) == set(load_tunables().recommendations["candidates"])
    assert evaluation.is_chosen.sum() == 1
    assert evaluation.ndcg_at_k.between(0, 1).all() and (evaluation.n_users > 0).all()
    chosen = evaluation.loc[evaluation.is_chosen, "algorithm"].iloc[0]
    assert evaluation.loc[evaluation.is_chosen, "ndcg_at_k"].iloc[0] == evaluation.ndcg_at_k.max()
    served = _frame(warehouse, "select distinct algorithm from ml.recommendations")
    assert chosen in set(served.algorithm) or chosen == "popularity"


def test_experiments_assign_every_consenting_person_once_per_experiment(warehouse):
    assignments = _frame(warehouse, "select * from ml.experiment_assignments")
    experiments_defined = [e["name"] for e in load_tunables().experiments]
    assert set(assignments.experiment) == set(experiments_defined)
    assert not assignments.duplicated(["experiment", "person_id"]).any()
    assert (assignments.groupby("experiment").size() == 39).all()
    results = _frame(warehouse, "select * from ml.experiment_results")
    assert results.groupby("experiment").is_control.sum().eq(1).all()
    # P38 is assigned (personalization consent) but not counted (analytics consent revoked).
    assert (results.groupby("experiment").users.sum() == 38).all()
    assert results.ctr.between(0, 1).all()


def _assignments(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    frame = con.sql("select experiment, person_id, variant, bucket from ml.experiment_assignments")
    return frame.df().sort_values(["experiment", "person_id"], ignore_index=True)


def _from_scratch(defined: list[Experiment], people: list[str]) -> pd.DataFrame:
    frame = pd.concat([assign_variants(e, people) for e in defined], ignore_index=True)
    frame = frame[["experiment", "person_id", "variant", "bucket"]].astype({"person_id": str})
    return frame.sort_values(["experiment", "person_id"], ignore_index=True)


def test_a_night_assigns_the_new_people_only_and_equals_assigning_everyone(warehouse, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(warehouse, copy)
    defined = [Experiment.from_dict(entry) for entry in load_tunables().experiments]
    # the first experiment's variants in the other order: its cuts move, so everyone again
    first = defined[0]
    changed = [
        dataclasses.replace(first, variants=dict(reversed(first.variants.items()))),
        *defined[1:],
    ]
    con = duckdb.connect(str(copy / "warehouse" / "warehouse.duckdb"))
    try:
        # P00 withdraws personalization consent, P40 arrives with it
        con.execute(
            "update marts.user_profiles set has_personalization_consent = false "
            "where person_id = 'P00'"
        )
        con.execute(
            "insert into marts.user_profiles by name "
            "select 'P40' as person_id, true as has_personalization_consent"
        )
        night = update_assignments(con, defined)
        after_night = _assignments(con)
        redefined = update_assignments(con, changed)
        after_change = _assignments(con)
    finally:
        con.close()
    people = [f"P{n:02d}" for n in range(1, 39)] + ["P40"]
    assert (night.rows, night.why) == (len(defined), "the new people only")
    pd.testing.assert_frame_equal(after_night, _from_scratch(defined, people), check_dtype=False)
    assert redefined.rows == len(people) * len(changed)
    pd.testing.assert_frame_equal(after_change, _from_scratch(changed, people), check_dtype=False)


def test_a_person_without_personalization_consent_gets_no_rows(warehouse):
    for table in ("ml.recommendations", "ml.experiment_assignments"):
        people = _frame(warehouse, f"select distinct person_id from {table}").person_id
        assert NO_PERSONALIZATION not in set(people), table


def test_revoked_analytics_consent_counts_in_no_aggregate_but_still_personalizes(warehouse):
    recs = _frame(warehouse, "select * from ml.recommendations")
    # Only P38 ever touched g0: counted, it would top popularity and co-occur with b-items.
    assert "g0" not in set(recs.item_id)
    # P38 still gets every in-stock item they have not seen, the one of their own taste group
    # (from their own history: b0, b1, b3, b4 seen) first.
    p38 = recs[recs.person_id == REVOKED_ANALYTICS].sort_values("rank")
    assert p38.item_id.tolist()[0] == "b2"
    assert set(p38.item_id) == {"b2", "s0", "s1", "s2", "s3", "s4"}


def test_segment_popularity_is_evaluated_and_only_segmented_people_get_it(warehouse):
    evaluation = _frame(warehouse, "select * from ml.recommendation_evaluation")
    segment = evaluation.set_index("algorithm").loc["segment_popularity"]
    assert segment.n_users > 0 and 0 <= segment.ndcg_at_k <= 1
    recs = _frame(warehouse, "select * from ml.recommendations")
    by_segment = recs[recs.algorithm == "segment_popularity"]
    assert (by_segment.person_id.str[1:].astype(int) < 30).all(), "P30-P37 have no segment"
    assert by_segment.reason.eq("segment_popularity: popular with people like you").all()


def test_model_selection_is_reused_until_it_is_due(warehouse, tmp_path, monkeypatch):
    """A run within `reselect_every_days` of the last model selection serves by its winner
    (refitted on the run's data) without evaluating again; a full refresh, changed settings
    or older data evaluate again."""
    data_dir = tmp_path / "copy"
    shutil.copytree(warehouse, data_dir)
    before = _frame(data_dir, "select * from ml.recommendation_evaluation order by algorithm")
    recs_before = _frame(data_dir, "select * from ml.recommendations order by person_id, rank")
    resources = {"warehouse": WarehouseResource(data_dir=str(data_dir))}
    result = materialize([recommendations], resources=resources)
    assert result.success
    metadata = result.asset_materializations_for_node("recommendations")[-1].metadata
    assert metadata["model_selection"].text.startswith("model selection of 2024-05-")
    after = _frame(data_dir, "select * from ml.recommendation_evaluation order by algorithm")
    pd.testing.assert_frame_equal(after, before)  # not evaluated again: same run_at
    recs_after = _frame(data_dir, "select * from ml.recommendations order by person_id, rank")
    pd.testing.assert_frame_equal(recs_after, recs_before)
    selections = _frame(data_dir, "select * from audit.recommender_selection")
    assert len(selections) == 1

    settings = load_tunables().recommendations
    con = duckdb.connect(str(data_dir / "warehouse" / "warehouse.duckdb"), read_only=True)
    try:
        as_of = selections["as_of"].iloc[0]
        assert previous_selection(con, settings, as_of)[0] is not None
        for changed, reason in [
            ({**settings, "eval_k": 5}, "settings changed"),
            ({**settings, "reselect_every_days": 0}, "every run"),
        ]:
            previous, why = previous_selection(con, changed, as_of)
            assert previous is None and reason in why
        later = as_of + pd.Timedelta(days=settings["reselect_every_days"])
        assert "days of data old" in previous_selection(con, settings, later)[1]
        earlier = as_of - pd.Timedelta(hours=1)
        assert "after this run's as_of" in previous_selection(con, settings, earlier)[1]
        assert previous_selection(con, settings, as_of, forced=True)[0] is None
    finally:
        con.close()

    monkeypatch.setenv("PZ_FULL_REFRESH", "1")
    assert materialize([recommendations], resources=resources).success
    again = _frame(data_dir, "select * from ml.recommendation_evaluation order by algorithm")
    assert (again["run_at"] > before["run_at"]).all()
    assert len(_frame(data_dir, "select * from audit.recommender_selection")) == 2


def _night(data_dir: Path, statements: list[str]) -> None:
    con = duckdb.connect(str(data_dir / "warehouse" / "warehouse.duckdb"))
    try:
        for statement in statements:
            con.execute(statement)
    finally:
        con.close()


# A night between model selections: P04 views an item, P41 arrives (a new person with
# history), P05 withdraws personalization consent, s0 goes out of stock, s3 leaves the catalog,
# and P40 makes b1 by far
# the most popular item (which moves the popularity fallback of unchanged people).
NEXT_NIGHT = [
    "insert into intermediate.int_interactions_weighted values "
    "('P04', 's4', 'view_product', timestamp '2024-05-04 10:00', 'n1', 1.0)",
    *[
        "insert into intermediate.int_interactions_weighted values "
        f"('P40', 'b1', 'purchase', timestamp '2024-05-04 1{n}:00', 'n4{n}', 5.0)"
        for n in range(8)
    ],
    "insert into intermediate.int_interactions_weighted values "
    "('P41', 's1', 'view_product', timestamp '2024-05-04 09:00', 'n50', 1.0), "
    "('P41', 's2', 'view_product', timestamp '2024-05-04 09:05', 'n51', 1.0)",
    "insert into marts.user_profiles values ('P40', true), ('P41', true)",
    "insert into intermediate.int_analytics_consents_resolved values ('P40', true), ('P41', true)",
    "update marts.user_profiles set has_personalization_consent = false where person_id = 'P05'",
    "update marts.items set is_in_stock = false where item_id = 's0'",
    "delete from marts.items where item_id = 's3'",
]


def _with_serving(monkeypatch, **changes) -> None:
    """The recommendation settings of pipeline.yaml, with `changes`, for the asset."""
    import dataclasses

    from dagster_project.assets import recommendations as asset_module

    tunables = load_tunables()
    pipeline = {**tunables.pipeline, "recommendations": {**tunables.recommendations, **changes}}
    changed = dataclasses.replace(tunables, pipeline=pipeline)
    monkeypatch.setattr(asset_module, "load_tunables", lambda: changed)


def test_a_night_between_selections_serves_only_the_people_whose_list_may_have_changed(
    warehouse, tmp_path, monkeypatch
):
    """Between model selections a run serves the people whose history, segment, context or
    out-of-stock items changed, and the new ones; the others keep their list (and their served
    night). A served person's list is the one serving everyone would give them."""
    changed_only, everyone = tmp_path / "changed", tmp_path / "everyone"
    for data_dir in (changed_only, everyone):
        shutil.copytree(warehouse, data_dir)
        _night(data_dir, NEXT_NIGHT)
    before = _frame(warehouse, "select * from ml.recommendations order by person_id, rank")
    served_before = _frame(warehouse, "select * from ml.recommendations_served")
    holding_s0 = set(before.loc[before.item_id == "s0", "person_id"])
    holding_s3 = set(before.loc[before.item_id == "s3", "person_id"])
    assert holding_s0 and holding_s3 - holding_s0, "the test needs people whose list holds these"

    result = materialize(
        [recommendations], resources={"warehouse": WarehouseResource(data_dir=str(changed_only))}
    )
    assert result.success
    metadata = result.asset_materializations_for_node("recommendations")[0].metadata
    after = _frame(changed_only, "select * from ml.recommendations order by person_id, rank")
    served = _frame(changed_only, "select * from ml.recommendations_served")
    fresh = set(served.person_id) - set(
        served.merge(served_before, on=["person_id", "served_at"]).person_id
    )
    # P01 has an open checkout; P05 lost consent; P40 and P41 are new.
    expected = {"P01", "P04", "P40", "P41"} | holding_s0 | holding_s3
    assert len(set(before.person_id) - expected - {"P05"}) >= 5, "people who keep their list"
    assert fresh == expected
    assert metadata["people_served_tonight"].value == len(expected)
    assert "P05" not in set(after.person_id) and "P05" not in set(served.person_id)
    assert "s0" not in set(after.item_id)
    kept = before[~before.person_id.isin(expected | {"P05"})].reset_index(drop=True)
    unchanged = after[~after.person_id.isin(expected)].reset_index(drop=True)
    pd.testing.assert_frame_equal(unchanged, kept)

    _with_serving(monkeypatch, serve_changed_people_only=False)
    result = materialize(
        [recommendations], resources={"warehouse": WarehouseResource(data_dir=str(everyone))}
    )
    assert result.success
    full = _frame(everyone, "select * from ml.recommendations order by person_id, rank")
    assert set(full.person_id) == set(after.person_id)
    assert len(_frame(everyone, "select * from ml.recommendations_served")) == len(served)
    pd.testing.assert_frame_equal(
        after[after.person_id.isin(expected)].reset_index(drop=True),
        full[full.person_id.isin(expected)].reset_index(drop=True),
    )
    # Serving everyone would have moved the lists (their scores, at least) of people who did
    # nothing: the refitted models differ, the trade-off is real.
    assert (
        not full[~full.person_id.isin(expected)]
        .reset_index(drop=True)
        .equals(after[~after.person_id.isin(expected)].reset_index(drop=True))
    )


def test_tonights_fingerprints_are_reused_for_the_people_whose_interactions_were_not_rebuilt(
    warehouse, tmp_path
):
    """A person whose int_person_activity `_built_at` is the one their stored fingerprint was
    taken at keeps it; the others are hashed again, and the state equals one taken from
    scratch. (P02's rows are changed behind the model's back, without a new `_built_at`, to
    show that its stored fingerprint is what is kept.)"""
    from dagster_project import recommendation_refresh as refresh
    from dagster_project.assets.recommendations import PEOPLE_SQL, SEGMENTS_SQL

    shutil.copytree(warehouse, tmp_path / "copy")
    con = duckdb.connect(str(tmp_path / "copy" / "warehouse" / "warehouse.duckdb"))

    def tonight(reuse: bool) -> pd.DataFrame:
        contexts = pd.Series(["P03"])
        refresh.prepare_tonight(
            con, people_sql=PEOPLE_SQL, segments_sql=SEGMENTS_SQL, contexts=contexts, reuse=reuse
        )
        return con.execute(f"select * from {refresh.TONIGHT} order by person_id").df()

    try:
        con.execute(
            "create table intermediate.int_person_activity as select distinct person_id, "
            "timestamp '2024-03-01' as _built_at from intermediate.int_interactions_weighted"
        )
        first = tonight(reuse=False)
        con.execute(f"create or replace table {refresh.SERVED_TABLE} as from first")
        # P01 gets a new interaction and is recomputed; P02's rows change unannounced
        for person in ("P01", "P02"):
            con.execute(
                "insert into intermediate.int_interactions_weighted (person_id, item_id, "
                "event_type, weight, occurred_at) select person_id, item_id, event_type, "
                "weight + 1, occurred_at from intermediate.int_interactions_weighted "
                "where person_id = $p limit 1",
                {"p": person},
            )
        con.execute(
            "update intermediate.int_person_activity set _built_at = timestamp '2024-03-02' "
            "where person_id = 'P01'"
        )
        reused, scratch = tonight(reuse=True), tonight(reuse=False)
    finally:
        con.close()
    by_person = {
        name: frame.set_index("person_id")
        for name, frame in (("first", first), ("reused", reused), ("scratch", scratch))
    }
    assert by_person["reused"].loc["P01", "history"] == by_person["scratch"].loc["P01", "history"]
    assert by_person["reused"].loc["P01", "history"] != by_person["first"].loc["P01", "history"]
    assert by_person["reused"].loc["P02", "history"] == by_person["first"].loc["P02", "history"]
    assert by_person["scratch"].loc["P02", "history"] != by_person["first"].loc["P02", "history"]
    others = scratch[~scratch["person_id"].isin(["P02"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        reused[~reused["person_id"].isin(["P02"])].reset_index(drop=True), others
    )
    assert len(others) > 30 and others["history_built_at"].notna().sum() > 30
