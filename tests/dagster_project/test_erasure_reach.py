"""Erasure resolves only the part of the identity graph the evidence reaches: the same people
as resolving the whole graph with every pair scored, from a few records scored against all."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pytest

from dagster_project.identity.erasure import read_evidence_graph, resolve_with_evidence
from dagster_project.identity.graph import (
    EDGE_COLUMNS,
    cut_coded_by_guardrails,
    drop_codes,
    read_coded_graph,
)
from dagster_project.identity.splink_linker import (
    SplinkScorer,
    blocking_condition,
    evidence_node_key,
    read_erasure_evidence,
    read_profile_records,
)
from dagster_project.ingest.erasure import ensure_erasure_tables
from dagster_project.ingest.sql import install_macros
from dagster_project.tunables import load_identity_tunables
from models_ml.identity import resolve_coded
from tests.conftest import TEST_PII_KEY
from tests.dagster_project.test_splink_linker import _records

FIELDS = ("first_name", "last_name", "birth_date", "email", "phone", "address", "postcode", "city")


def _record_key(unique_id: str) -> tuple[str, str]:
    _, source, record_id = unique_id.split("|")
    return source, record_id


@pytest.fixture
def graph_con(tmp_path: Path):
    """A warehouse whose identity graph is `_records`' people, with deterministic edges that
    make a chain: the evidence is person 1 (found by Splink); person 1's crm_a record shares a
    user id with person 5's (deterministic), whose crm_b copy only Splink links. Person 9's
    user id is registered for erasure; person 7 is nobody's."""
    records, _ = _records(people=200, duplicated=40)
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    con.execute(f"attach '{tmp_path / 'pii.duckdb'}' as pii")
    install_macros(con, TEST_PII_KEY.encode())
    ensure_erasure_tables(con)
    for schema in ("intermediate", "config", "raw"):
        con.execute(f"create schema {schema}")
    con.execute("create table config.identity_junk_values as select 'n/a' as value")
    keys = pd.DataFrame([_record_key(u) for u in records["unique_id"]], columns=["src", "rid"])
    profiles = pd.concat([keys, records.drop(columns="unique_id")], axis=1)
    profiles["birth_date"] = profiles["birth_date"].dt.date
    profiles["_line"] = range(len(profiles))
    con.register("_profiles", profiles)
    # dbt's tables as the linker reads them: typed values, plaintext in the PII zone
    con.execute(
        "create table intermediate.int_profiles_deduplicated as select src as source_system, "
        "rid as record_id, 'f' as _file, _line, birth_date, "
        "postcode, city from _profiles"
    )
    con.execute(
        "create table pii.main.profiles as select 'f' as _file, _line, "
        f"{', '.join(c for c in FIELDS if c != 'birth_date')}, "
        "strftime(birth_date, '%Y-%m-%d') as birth_date from _profiles"
    )
    con.execute(
        "create table intermediate.int_identity_nodes as "
        "select 'record_id|' || src || '|' || rid as node_key, 'record_id' as identifier_type, "
        "rid as identifier, src as source_system, false as is_junk from _profiles "
        "union all select 'user_id||' || u, 'user_id', u, null, false "
        "from (values ('U-1'), ('U-9'), ('U-7')) as t(u)"
    )
    con.execute(
        "create table intermediate.int_identity_edges as select * from (values "
        "('record_id|crm_a|1', 'user_id||U-1', 'profile_user_id', 1.0), "
        "('record_id|crm_a|5', 'user_id||U-1', 'profile_user_id', 1.0), "
        "('record_id|crm_a|9', 'user_id||U-9', 'profile_user_id', 1.0), "
        "('record_id|crm_a|7', 'user_id||U-7', 'profile_user_id', 1.0)"
        ") as t(node_key_a, node_key_b, method, match_probability)"
    )
    con.execute(
        "insert into audit.erasure_registry select pz_hmac('user_id:U-9'), 'user_id', now()"
    )
    person_1 = profiles.iloc[[1]]
    con.register("_person_1", person_1)
    con.execute(
        "insert into pii.main.erasure_evidence by name select 'EVID-1' as record_id, "
        "'crm_z' as source_system, first_name, last_name, "
        "strftime(birth_date, '%Y-%m-%d') as birth_date, email, phone, address, postcode, "
        "city from _person_1"
    )
    yield con
    con.close()


def _people_with(resolved: pd.DataFrame, node_keys: set[str]) -> set[frozenset]:
    """Each person holding one of `node_keys`, as the set of its records (`source|id`)."""
    keyed = resolved.assign(
        node_key=resolved["identifier_type"]
        + "|"
        + resolved["source_system"].fillna("")
        + "|"
        + resolved["identifier"]
    )
    people = keyed[keyed["node_key"].isin(node_keys)]["person_id"].unique()
    records = keyed[keyed["person_id"].isin(people) & (keyed["identifier_type"] == "record_id")]
    records = records["source_system"] + "|" + records["identifier"]
    return {frozenset(group) for _, group in records.groupby(keyed["person_id"])}


def _whole_graph(
    con, links: pd.DataFrame, evidence_links: pd.DataFrame, guardrails
) -> pd.DataFrame:
    """The resolution erasure made before: every pair scored, the whole graph resolved."""
    nodes, edges = read_evidence_graph(con)
    con.register("_ev_nodes", nodes)
    con.register("_ev_edges", edges)
    con.register("_links", pd.concat([links, evidence_links], ignore_index=True))
    graph = read_coded_graph(
        con,
        f"select {EDGE_COLUMNS} from intermediate.int_identity_edges union all "
        f"select {EDGE_COLUMNS} from _ev_edges union all select {EDGE_COLUMNS} from _links",
        "select node_key, identifier_type, identifier, source_system "
        "from intermediate.int_identity_nodes union all "
        "select node_key, any_value(identifier_type), any_value(identifier), "
        "any_value(source_system) from _ev_nodes where node_key not in "
        "(select node_key from intermediate.int_identity_nodes) group by node_key",
    )
    drop_codes(con)
    kept, _ = cut_coded_by_guardrails(graph, guardrails)
    types = tuple(kept.nodes["identifier_type"].dropna().unique())
    return resolve_coded(kept, assigned_types=types).assignments()


@pytest.mark.parametrize("in_child", [False, True], ids=["in_process", "in_child_process"])
def test_the_evidence_reaches_the_same_people_as_the_whole_graph(graph_con, in_child):
    con = graph_con
    tunables = load_identity_tunables()
    settings = {**tunables["probabilistic"], "subprocess_min_records": None}
    records = read_profile_records(con).drop(columns="is_birth_date_nulled")
    if in_child:
        settings["subprocess_min_records"] = len(records)
    evidence = read_erasure_evidence(con)
    with SplinkScorer(records, settings) as scorer:
        reached = resolve_with_evidence(con, scorer, evidence, tunables["guardrails"])
        scored = scorer.info["records_scored_against_all"]
        evidence_links = scorer.links_from(new_records=evidence)
        evidence_links["node_key_a"] = evidence_node_key(evidence_links["node_key_a"])
        links = scorer.predict()
    assert scorer.info.get("subprocess", False) is in_child
    whole = _whole_graph(con, links, evidence_links, tunables["guardrails"])

    seeds = {"record_id|crm_z|EVID-1", "user_id||U-9"}
    expected = _people_with(whole, seeds)
    # the chain: Splink to person 1, their user id to person 5's record, Splink to its copy
    erased = next(p for p in expected if "crm_z|EVID-1" in p)
    assert {"crm_a|1", "crm_b|1", "crm_a|5", "crm_b|5"} <= erased
    assert any("crm_a|9" in p for p in expected)
    assert _people_with(reached, seeds) == expected
    assert "U-7" not in set(reached["identifier"])
    # ... from the few records reached, not all 240 of them
    assert 0 < scored <= 12, scored
    # the part of the graph erasure leaves behind is gone
    temp = con.execute(
        "select table_name from duckdb_tables() where table_name like '_pz_erasure%' "
        "or table_name like '_pz_identity%'"
    )
    assert temp.fetchall() == []


def test_scoring_some_records_against_all_finds_their_links_in_the_whole_prediction():
    records, _ = _records(people=200, duplicated=40)
    settings = {**load_identity_tunables()["probabilistic"], "subprocess_min_records": None}
    some = records["unique_id"].iloc[::6].tolist()
    with SplinkScorer(records, settings) as scorer:
        part = scorer.links_from(ids=[*some, "record_id|crm_q|not-a-record"])
        whole = scorer.predict()

    def pairs(frame: pd.DataFrame) -> pd.Series:
        a, b = frame["node_key_a"], frame["node_key_b"]
        pair = a.where(a < b, b) + " " + b.where(a < b, a)
        return frame["match_probability"].set_axis(pair).groupby(level=0).first().sort_index()

    touching = whole[whole["node_key_a"].isin(some) | whole["node_key_b"].isin(some)]
    assert len(touching) >= 5
    pd.testing.assert_series_equal(pairs(part), pairs(touching), rtol=1e-9)
    assert (part["node_key_a"] != part["node_key_b"]).all()


@pytest.mark.parametrize(
    ("erased_in_sample", "in_child"),
    [(False, False), (True, False), (False, True)],
    ids=["outside", "inside", "outside_in_child_process"],
)
def test_a_model_trained_on_a_sample_erasure_left_whole_is_not_trained_again(
    graph_con, monkeypatch, erased_in_sample, in_child
):
    """When erasure removes profile records, the model is trained again on the rest, unless it
    was trained on a sample none of them was in: that sample, and so the model, is what a run
    without them trains (and it is saved as this run's). Erasing is replaced by deleting one
    record from the linker's input. In a child process, the training is not counted here. The
    records left are the ones read before, less the erased one: not read again."""
    from datetime import datetime

    from dagster_project.identity import erasure, splink_linker
    from dagster_project.ingest.erasure import ErasureOutcome

    con = graph_con
    tunables = load_identity_tunables()
    probabilistic = {**tunables["probabilistic"], "subprocess_min_records": 1 if in_child else None}
    tunables = {**tunables, "probabilistic": {**probabilistic, "training_max_records": 150}}
    records = read_profile_records(con)
    sample = splink_linker.training_sample(records, tunables["probabilistic"])
    in_sample = records["unique_id"].isin(sample["unique_id"])
    # a record of a person nobody erases, in the sample or not
    victim = records[in_sample == erased_in_sample]["unique_id"].iloc[-1]
    source, record_id = _record_key(victim)

    def erase(con, resolved, now, trigger):
        con.execute(
            "delete from intermediate.int_profiles_deduplicated "
            "where source_system = $s and record_id = $r",
            {"s": source, "r": record_id},
        )
        line = int(record_id) + (200 if source == "crm_b" else 0)  # the fixture's numbering
        con.execute("delete from pii.main.profiles where _line = $l", {"l": line})
        return ErasureOutcome(rows_removed={"raw.profiles": 1})

    trainings = []
    real_train = splink_linker._trained_linker

    def counted(*args, **kwargs):
        trainings.append(1)
        return real_train(*args, **kwargs)

    reads = []
    real_read = erasure.read_profile_records

    def read_counted(con):
        reads.append(1)
        return real_read(con)

    monkeypatch.setattr(erasure, "erase_people", erase)
    monkeypatch.setattr(splink_linker, "_trained_linker", counted)
    monkeypatch.setattr(erasure, "read_profile_records", read_counted)
    now = datetime(2026, 11, 1)
    links, info, _ = erasure.link_and_erase(con, tunables, now, score_all=True)
    assert len(reads) == 1  # what erasure left is not read (nor sent to Splink) again
    assert len(read_profile_records(con)) == len(records) - 1
    assert info["model_trained"] is True and info["records_trained_on"] == 150
    assert info.get("model_kept_after_erasure", False) is not erased_in_sample
    assert info.get("subprocess", False) is in_child
    if not in_child:
        assert len(trainings) == (2 if erased_in_sample else 1)
    trained_at = splink_linker.read_model(con).trained_at
    assert trained_at == now

    # a run on what erasure left, without evidence: trained afresh, the same model and links
    model = splink_linker.read_model(con).model
    con.execute("delete from pii.main.erasure_evidence")
    con.execute(f"drop table {splink_linker.MODEL_TABLE}")
    again, info_again, _ = erasure.link_and_erase(con, tunables, now, score_all=True)
    assert info_again["model_trained"] is True
    if not in_child:
        assert len(trainings) == (3 if erased_in_sample else 2)

    def weights(model: dict) -> dict:
        return {k: v for k, v in model.items() if k != "linker_uid"}

    assert weights(splink_linker.read_model(con).model) == weights(model)
    pd.testing.assert_frame_equal(_sorted(again), _sorted(links))


def _sorted(links: pd.DataFrame) -> pd.DataFrame:
    return links.sort_values(["node_key_a", "node_key_b"], ignore_index=True)


def test_some_records_are_scored_against_those_sharing_a_blocking_key_only():
    """`links_from` scores against the records a blocking rule can pair them with: fewer than
    all, with the links (and probabilities) of scoring against all."""
    records, _ = _records(people=200, duplicated=40)
    settings = {**load_identity_tunables()["probabilistic"], "subprocess_min_records": None}
    some = records["unique_id"].iloc[:40:4].tolist()
    with SplinkScorer(records, settings) as scorer:
        session = scorer._local
        narrowed = scorer.links_from(ids=some)
        candidates = scorer.info["candidate_records"]
        session._candidates = lambda part: session.records  # every record, as before
        everyone = scorer.links_from(ids=some)
    assert len(some) <= candidates < len(records) / 2
    assert len(narrowed) >= 5
    pd.testing.assert_frame_equal(narrowed, everyone, rtol=1e-12)


def test_a_blocking_condition_reads_like_splinks_block_on():
    rule = ["first_name", "substr(last_name, 1, 1)"]
    assert blocking_condition(rule, "r", "p") == (
        '(r."first_name") = (p."first_name") and '
        '(substr(r."last_name", 1, 1)) = (substr(p."last_name", 1, 1))'
    )
