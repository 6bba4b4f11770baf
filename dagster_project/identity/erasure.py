"""Erasure through identity resolution: a request erases the person, not just the records that
carry the requested user id or email.

Ingest purges what a request names and keeps the purged profile records in the PII zone as
evidence (`pii.main.erasure_evidence`, see `dagster_project.ingest.erasure`). Before anyone is
linked, `link_and_erase`:

1. trains Splink on the current records and scores the evidence against them (the evidence
   changes no model input);
2. resolves the part of the identity graph (with the evidence in it) that the evidence
   reaches: dbt's deterministic nodes and edges, the evidence's own (its user id, email and
   phone), the Splink links of every record reached (scored against all records, in rounds,
   until nothing new is reached), cut by the same guardrails as the identity map;
3. erases, whole, every person of that part holding an erased identifier (an evidence record
   always is one): registers all their identifiers and purges them everywhere
   (`erase_people`), then deletes the evidence;
4. when that removed current records, trains Splink again on what remains, so this run's links
   are exactly those of a run where the person never existed (and the next run's), unless the
   model was trained on a sample of the records that none of them was in: that sample, and so
   the model, is what training on the rest gives (`training_sample`; 25 s at L); then
   scores every pair of records once, or, with the stored model, only the records new or
   changed since the last run (`dagster_project.identity.rescoring`).
"""

from __future__ import annotations

import time
from datetime import datetime

import duckdb
import pandas as pd

from dagster_project.identity.graph import (
    EDGE_COLUMNS,
    cut_coded_by_guardrails,
    drop_codes,
    read_coded_graph,
)
from dagster_project.identity.rescoring import (
    all_links_kept,
    last_records_digest,
    merge_links,
    plan_rescoring,
    record_fingerprints,
    records_digest,
    save_records_digest,
    save_scored_records,
)
from dagster_project.identity.splink_linker import (
    PROFILE_RECORDS_INPUTS,
    PROFILE_RECORDS_SQL,
    SplinkScorer,
    compared_fields,
    evidence_node_key,
    fits,
    model_fingerprint,
    read_erasure_evidence,
    read_model,
    read_profile_record_ids,
    read_profile_records,
    sample_digest,
    save_model,
    usable_model,
)
from dagster_project.ingest.erasure import (
    ErasureOutcome,
    _subject,
    clear_evidence,
    ensure_erasure_tables,
    erase_people,
    load_junk_values,
)
from dagster_project.settings import duckdb_memory_limit
from dagster_project.warehouse_io import read_frame, register_frame, release_cache
from models_ml.frames import isin
from models_ml.identity import resolve_coded

# The evidence as identity-graph nodes and deterministic edges, like int_identity_nodes /
# int_identity_edges build them for current records (same node keys, methods and junk rule).
EVIDENCE_GRAPH_SQL = """
with junk as (select junk_value from {junk}),
evidence as (
    select distinct record_id, source_system, user_id, email_token, phone_token
    from pii.main.erasure_evidence
    where record_id is not null
),
record_values as (
    select record_id, source_system, 'user_id' as identifier_type, user_id as identifier,
           'profile_user_id' as method
    from evidence where user_id is not null
    union all
    select record_id, source_system, 'email_token', email_token, 'email'
    from evidence where email_token is not null
    union all
    select record_id, source_system, 'phone_token', phone_token, 'phone'
    from evidence where phone_token is not null
),
linkable as (
    select * from record_values
    where lower(identifier) not in (select junk_value from junk)
),
nodes as (
    select distinct
        'record_id|' || coalesce(source_system, '') || '|' || record_id as node_key,
        'record_id' as identifier_type, record_id as identifier, source_system,
        false as is_junk
    from evidence
    union
    select distinct identifier_type || '||' || identifier, identifier_type, identifier,
        null, false
    from linkable
)
select 'node' as part, node_key, identifier_type, identifier, source_system, is_junk,
    null as node_key_b, null as method
from nodes
union all
select distinct 'edge', 'record_id|' || coalesce(source_system, '') || '|' || record_id, null,
    null, null, null, identifier_type || '||' || identifier, method
from linkable
"""


def read_evidence_graph(con: duckdb.DuckDBPyConnection) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(nodes, deterministic edges) of the erasure evidence in the PII zone."""
    junk = load_junk_values(con)
    graph = read_frame(con, EVIDENCE_GRAPH_SQL.format(junk=junk))
    parts = graph.pop("part")
    nodes = graph[parts == "node"][
        ["node_key", "identifier_type", "identifier", "source_system", "is_junk"]
    ]
    edges = graph[parts == "edge"].rename(columns={"node_key": "node_key_a"})
    edges = edges[["node_key_a", "node_key_b", "method"]].assign(match_probability=1.0)
    return nodes.reset_index(drop=True), edges.reset_index(drop=True)


# The part of the identity graph an erasure can reach, built up in DuckDB by
# `_reachable_from_evidence`: its nodes (with the round that reached them) and the edges that
# are not dbt's (the evidence's own, and the Splink links from the records scored so far).
_REACHED = "_pz_erasure_reached"
_SCORED = "_pz_erasure_scored"
_EXTRA_EDGES = "_pz_erasure_edges"
_EVIDENCE_NODES = "_pz_erasure_evidence_nodes"
_FRAME = "_pz_erasure_frame"
_TEMP_TABLES = (_REACHED, _SCORED, _EXTRA_EDGES, _EVIDENCE_NODES)
_ALL_EDGES = f"""
    select {EDGE_COLUMNS} from intermediate.int_identity_edges
    union all select {EDGE_COLUMNS} from {_EXTRA_EDGES}
"""
# dbt's nodes that were reached, then the evidence's that dbt does not have (a node_key keeps
# its first row); every edge between reached nodes (an edge has both ends reached or none).
_REACHED_NODES_SQL = f"""
    select n.node_key, n.identifier_type, n.identifier, n.source_system
    from intermediate.int_identity_nodes as n semi join {_REACHED} as r using (node_key)
    union all
    select node_key, any_value(identifier_type), any_value(identifier), any_value(source_system)
    from {_EVIDENCE_NODES}
    where node_key not in (select node_key from intermediate.int_identity_nodes)
    group by node_key
"""
_REACHED_EDGES_SQL = f"""
    select {EDGE_COLUMNS} from intermediate.int_identity_edges as e
    semi join {_REACHED} as r on r.node_key = e.node_key_a
    union all select {EDGE_COLUMNS} from {_EXTRA_EDGES}
"""


def resolve_with_evidence(
    con: duckdb.DuckDBPyConnection,
    scorer: SplinkScorer,
    evidence: pd.DataFrame,
    guardrails: dict,
) -> pd.DataFrame:
    """Every identifier of the people the erasure evidence can belong to (linker-only types
    included), with the person it resolves to: identifier_type, identifier, source_system,
    person_id.

    That is the part of the identity graph (with the evidence in it) connected to the
    evidence or to a registered identifier: dbt's deterministic edges, the evidence's own,
    and the Splink links of every record in it, found by scoring only those records against
    all (`_reachable_from_evidence`), never every pair. It is resolved like
    `ml.identity_assignments`, with the same guardrails: they cut each connected part on its
    own, so its people are those of the whole graph. At 1.36 M records this replaces a
    prediction over all pairs (72 s) and a resolution of the whole graph (36 s).
    """
    evidence_nodes, evidence_edges = read_evidence_graph(con)
    evidence_links = scorer.links_from(new_records=evidence)
    evidence_links = evidence_links.assign(
        node_key_a=evidence_node_key(evidence_links["node_key_a"])
    )
    try:
        _reachable_from_evidence(con, scorer, evidence_nodes, evidence_edges, evidence_links)
        graph = read_coded_graph(con, _REACHED_EDGES_SQL, _REACHED_NODES_SQL)
    finally:
        drop_codes(con)
        for table in _TEMP_TABLES:
            con.execute(f"drop table if exists {table}")
    kept, _ = cut_coded_by_guardrails(graph, guardrails)
    del graph
    types = tuple(kept.nodes["identifier_type"].dropna().unique())
    resolved = resolve_coded(kept, assigned_types=types).assignments()
    return resolved[["identifier_type", "identifier", "source_system", "person_id"]]


def _reachable_from_evidence(
    con: duckdb.DuckDBPyConnection,
    scorer: SplinkScorer,
    evidence_nodes: pd.DataFrame,
    evidence_edges: pd.DataFrame,
    evidence_links: pd.DataFrame,
) -> None:
    """Fill `_REACHED` with every node connected to the evidence, or to a current identifier
    that is registered for erasure, and `_EXTRA_EDGES` with the edges that are not dbt's.

    In rounds: follow the deterministic edges from the nodes reached last, then score the
    profile records reached and not scored yet against every record (`links_from`) and reach
    their links' other ends; until a round reaches nothing new. Every record reached is
    scored, so every Splink link with an end in `_REACHED` is in `_EXTRA_EDGES`, each pair
    once (as in a prediction over all pairs).
    """
    con.execute(
        f"create or replace temp table {_EXTRA_EDGES} as "
        f"select {EDGE_COLUMNS} from intermediate.int_identity_edges limit 0"
    )
    for name, frame in (
        (_EVIDENCE_NODES, evidence_nodes),
        (None, evidence_edges),
        (None, evidence_links),
    ):
        con.register(_FRAME, frame)
        try:
            if name:
                con.execute(f"create or replace temp table {name} as select * from {_FRAME}")
            else:
                con.execute(f"insert into {_EXTRA_EDGES} select {EDGE_COLUMNS} from {_FRAME}")
        finally:
            con.unregister(_FRAME)
    con.execute(
        f"""
        create or replace temp table {_REACHED} as
        select node_key, 0 as round from {_EVIDENCE_NODES}
        union
        select node_key, 0 from intermediate.int_identity_nodes
        where pz_hmac(identifier_type || ':' || {_subject()})
              in (select subject_token from audit.erasure_registry)
        """
    )
    con.execute(f"create or replace temp table {_SCORED} (node_key varchar)")
    round_ = 0
    while True:
        while _reach_along(con, _ALL_EDGES, round_):
            round_ += 1
        unscored = [
            row[0]
            for row in con.execute(
                f"select node_key from {_REACHED} where starts_with(node_key, 'record_id|') "
                f"and node_key not in (select node_key from {_SCORED})"
            ).fetchall()
        ]
        if not unscored:
            return
        links = scorer.links_from(ids=unscored)
        register_frame(con, _FRAME, links)
        try:
            con.execute(f"insert into {_SCORED} select unnest($ids)", {"ids": unscored})
            # a pair once, whichever of its records was scored first
            con.execute(
                f"""
                insert into {_EXTRA_EDGES}
                select distinct on (a, b) a, b, method, match_probability
                from (
                    select least(node_key_a, node_key_b) as a,
                           greatest(node_key_a, node_key_b) as b, method, match_probability
                    from {_FRAME}
                ) as l
                where not exists (
                    select 1 from {_EXTRA_EDGES} as e
                    where e.node_key_a = l.a and e.node_key_b = l.b and e.method = l.method
                )
                """
            )
            round_ += 1
            con.execute(
                f"""
                insert into {_REACHED}
                select distinct node_key_b, $round from {_FRAME}
                where node_key_b not in (select node_key from {_REACHED})
                """,
                {"round": round_},
            )
        finally:
            con.unregister(_FRAME)


def _reach_along(con: duckdb.DuckDBPyConnection, edges_sql: str, round_: int) -> bool:
    """Add the nodes one edge away from those reached in `round_`, as round `round_` + 1;
    whether there were any."""
    added = con.execute(
        f"""
        insert into {_REACHED}
        select distinct other, $next from (
            select e.node_key_b as other from ({edges_sql}) as e
            semi join {_REACHED} as r on r.node_key = e.node_key_a and r.round = $round
            union all
            select e.node_key_a from ({edges_sql}) as e
            semi join {_REACHED} as r on r.node_key = e.node_key_b and r.round = $round
        )
        where other is not null and other not in (select node_key from {_REACHED})
        """,
        {"round": round_, "next": round_ + 1},
    ).fetchall()[0][0]
    return added > 0


# What the run's metadata says of a model trained this run (see `_LinkerSession`).
_TRAINING_INFO = (
    "fingerprint",
    "model",
    "records_trained_on",
    "em_passes",
    "seconds_setup",
    "seconds_u",
    "seconds_em",
)


class _Clock:
    """Seconds since the last lap, for the step's log."""

    def __init__(self) -> None:
        self._last = time.monotonic()

    def lap(self) -> float:
        now = time.monotonic()
        seconds, self._last = round(now - self._last, 1), now
        return seconds


def link_and_erase(
    con: duckdb.DuckDBPyConnection, tunables: dict, now: datetime, *, score_all: bool = False
) -> tuple[pd.DataFrame, dict, ErasureOutcome]:
    """Splink links of the current profile records, after erasing the people the erasure
    evidence resolves to (see the module docstring). Needs `pz_hmac` and `pii` on `con`.

    With the stored model, only the records new or changed since the last run are scored
    (against all), and the other links kept (`dagster_project.identity.rescoring`); when no
    record changed, Splink does not run at all. `score_all` scores every pair (a full
    refresh).

    Returns:
        (links for `ml.identity_links`, info for run metadata, what erasure did: counts)
    """
    settings = tunables["probabilistic"]
    ensure_erasure_tables(con)
    clock = _Clock()
    if not score_all:
        unchanged = _links_of_unchanged_records(con, settings, now, clock)
        if unchanged is not None:
            return unchanged
    records = read_profile_records(con)
    evidence = read_erasure_evidence(con)
    nulled_flags = records.pop("is_birth_date_nulled")
    nulled = int(nulled_flags.sum())
    model = usable_model(read_model(con), settings, now)
    fingerprints = record_fingerprints(records)
    seconds = {"read_records": clock.lap()}
    outcome = ErasureOutcome()
    scorer = None
    kept_training: dict = {}
    try:
        if len(evidence):
            scorer = SplinkScorer(records, settings, model)
            # the sample a model trained here learnt from: if erasing leaves it as it was,
            # training again would give the same model
            sample = sample_digest(records, settings) if scorer.info.get("model_trained") else None
            seconds["model"] = clock.lap()
            resolved = resolve_with_evidence(con, scorer, evidence, tunables["guardrails"])
            erasure_info = {
                "erasure_records_scored": scorer.info.get("records_scored_against_all", 0),
                "erasure_identifiers_reached": int(len(resolved)),
            }
            seconds["resolve_evidence"] = clock.lap()
            outcome = erase_people(con, resolved, now, trigger="identity/evidence")
            del resolved  # identifiers of people, resolved: not held while Splink runs again
            outcome.rows_removed["pii.erasure_evidence"] = clear_evidence(con)
            # erasing scanned the large tables: their cached blocks would sit beside Splink's
            # process (at L, 5.5 GB here beside its 3.4 GB)
            release_cache(con, duckdb_memory_limit())
            seconds["erase"] = clock.lap()
            if outcome.rows_removed.get("raw.profiles"):
                # The person's records may have trained the model above (or the stored one):
                # train on what remains instead, and keep that model. A model trained above on
                # a sample that none of them was in is that model (`training_sample`): kept.
                trained = scorer.info
                records, nulled_flags, removed = _remaining_records(con, records, nulled_flags)
                nulled = int(nulled_flags.sum())
                fingerprints = record_fingerprints(records)
                model = None
                if sample is not None and sample == sample_digest(records, settings):
                    model = {"fingerprint": trained["fingerprint"], "model": trained["model"]}
                if removed is not None and compared_fields(records, settings) == trained.get(
                    "fields_compared"
                ):
                    scorer.reopen_without(removed, settings, model)
                else:
                    scorer.reopen(records, settings, model)
                if model is not None:
                    # trained this run, not a stored one: scored in full below, and saved
                    kept_training = {k: v for k, v in trained.items() if k in _TRAINING_INFO}
                    kept_training.update(model_trained=True, model_kept_after_erasure=True)
                    model = None
                seconds["model_again"] = clock.lap()
            scorer.info.update(erasure_info)
        del evidence
        plan, why = None, "full refresh" if score_all else "the model is trained this run"
        if not score_all and fits(model, records, settings):
            plan, why = plan_rescoring(con, fingerprints, model["trained_at"])
        if plan is not None and not plan.changed and scorer is None:
            links, info = plan.kept, _unscored_info(records, settings, model)
        else:
            if scorer is None:
                release_cache(con, duckdb_memory_limit())
                scorer = SplinkScorer(records, settings, model)
                seconds["model"] = clock.lap()
            del records  # the plaintext goes no further than this function (and Splink's)
            if plan is not None:
                links = merge_links(plan.kept, scorer.links_from(ids=plan.changed))
            else:
                links = scorer.predict()
            # after scoring: a scorer in a child process takes the child's info back then
            info = {**scorer.info, **kept_training}
        seconds["predict"] = clock.lap()
    finally:
        if scorer is not None:
            scorer.close()
    info["scoring"] = plan.describe(len(fingerprints)) if plan else f"every pair ({why})"
    info["records_rescored"] = len(plan.changed) if plan else len(fingerprints)
    info["step_seconds"] = seconds
    info.setdefault("seconds", round(sum(seconds.values()), 1))
    if info.get("model_trained"):
        save_model(con, now, info)
        trained_at = now
    else:
        trained_at = model["trained_at"] if model and "model_trained" in info else None
    save_scored_records(con, fingerprints, trained_at)
    save_records_digest(
        con, PROFILE_RECORDS_SQL, PROFILE_RECORDS_INPUTS, trained_at, info.get("fields_compared")
    )
    info.pop("model", None)
    info.pop("fingerprint", None)
    info["invalid_birth_dates_nulled"] = nulled
    return links, info, outcome


def _links_of_unchanged_records(
    con: duckdb.DuckDBPyConnection, settings: dict, now: datetime, clock: _Clock
) -> tuple[pd.DataFrame, dict, ErasureOutcome] | None:
    """What `link_and_erase` returns when it would keep every link, found without reading the
    records into pandas, or None (then it reads them): no erasure evidence, the stored model
    still usable and fitting the fields the last run compared, and the records as the last
    run left them (`records_digest`: every row of what they are read from, in DuckDB). At
    L this is about 1.5 s of a night instead of 7.5 (reading the 1.36M records and hashing them in
    pandas) plus writing their fingerprints again."""
    model = usable_model(read_model(con), settings, now)
    last = last_records_digest(con)
    if model is None or last is None or last[1] != model["trained_at"]:
        return None
    digest, trained_at, fields = last
    if model["fingerprint"] != model_fingerprint(settings, fields):
        return None
    if con.execute("select count(*) from pii.main.erasure_evidence").fetchall()[0][0]:
        return None
    current = records_digest(con, PROFILE_RECORDS_SQL, PROFILE_RECORDS_INPUTS)
    if current.digest != digest:
        return None
    links = all_links_kept(con, trained_at)
    if links is None:
        return None
    seconds = {"read_records": clock.lap(), "predict": 0.0}
    info = {
        "records": current.records,
        "fields_compared": fields,
        "threshold": float(settings["match_threshold"]),
        "model_trained": False,
        "scoring": f"no record new, changed or gone: all {len(links):,} links kept",
        "records_rescored": 0,
        "step_seconds": seconds,
        "seconds": round(sum(seconds.values()), 1),
        "invalid_birth_dates_nulled": current.birth_dates_nulled,
    }
    return links, info, ErasureOutcome()


def _remaining_records(
    con: duckdb.DuckDBPyConnection, records: pd.DataFrame, nulled_flags: pd.Series
) -> tuple[pd.DataFrame, pd.Series, list[str] | None]:
    """The profile records after an erasure, and the unique_ids it removed: `records` less
    those no longer current, when every current record was among them (erasing only removes
    records; the others' values are not touched), without reading the plaintext again; else
    read again (removed: None)."""
    current = read_profile_record_ids(con)
    keep = isin(records["unique_id"], current)
    if int(keep.sum()) != len(current):
        again = read_profile_records(con)
        return again, again.pop("is_birth_date_nulled"), None
    removed = records.loc[~keep, "unique_id"].tolist()
    return (
        records[keep].reset_index(drop=True),
        nulled_flags[keep].reset_index(drop=True),
        removed,
    )


def _unscored_info(records: pd.DataFrame, settings: dict, model: dict) -> dict:
    """Run metadata of a run that kept every link: no record changed, Splink did not run."""
    return {
        "records": int(len(records)),
        "fields_compared": compared_fields(records, settings),
        "threshold": float(settings["match_threshold"]),
        "model_trained": False,
    }
