"""Erasure through identity resolution: a request erases the person, not just the records that
carry the requested user id or email.

Ingest purges what a request names and keeps the purged profile records in the PII zone as
evidence (`pii.main.erasure_evidence`, see `dagster_project.ingest.erasure`). Before anyone is
linked, `link_and_erase`:

1. trains Splink on the current records and scores the evidence against them (the evidence
   changes no model input);
2. resolves the identity graph with the evidence in it: dbt's deterministic nodes and edges,
   the evidence's own (its user id, email and phone), the Splink links among current records
   and from the evidence, all cut by the same guardrails as the identity map;
3. erases, whole, every person of that graph holding an erased identifier (an evidence record
   always is one): registers all their identifiers and purges them everywhere
   (`erase_people`), then deletes the evidence;
4. when that removed current records, trains Splink again on what remains, so this run's links
   are exactly those of a run where the person never existed (and the next run's).
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
from dagster_project.identity.splink_linker import (
    evidence_node_key,
    predict_links_and_matches,
    read_erasure_evidence,
    read_model,
    read_profile_records,
    save_model,
    usable_model,
)
from dagster_project.ingest.erasure import (
    ErasureOutcome,
    clear_evidence,
    ensure_erasure_tables,
    erase_people,
    load_junk_values,
)
from dagster_project.warehouse_io import read_frame
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


# The graph with the evidence in it, coded in DuckDB (`read_coded_graph`): dbt's nodes, then
# the evidence's that dbt does not have (a node_key keeps its first row), and every edge.
_EVIDENCE_FRAMES = ("_pz_evidence_nodes", "_pz_evidence_edges", "_pz_links")
_WITH_EVIDENCE_NODES_SQL = f"""
    select node_key, identifier_type, identifier, source_system
    from intermediate.int_identity_nodes
    union all
    select node_key, any_value(identifier_type), any_value(identifier), any_value(source_system)
    from {_EVIDENCE_FRAMES[0]}
    where node_key not in (select node_key from intermediate.int_identity_nodes)
    group by node_key
"""
_WITH_EVIDENCE_EDGES_SQL = f"""
    select {EDGE_COLUMNS} from intermediate.int_identity_edges
    union all select {EDGE_COLUMNS} from {_EVIDENCE_FRAMES[1]}
    union all select {EDGE_COLUMNS} from {_EVIDENCE_FRAMES[2]}
"""


def resolve_with_evidence(
    con: duckdb.DuckDBPyConnection,
    links: pd.DataFrame,
    evidence_links: pd.DataFrame,
    guardrails: dict,
) -> pd.DataFrame:
    """Every identifier of the graph with the evidence in it (linker-only types included), with
    the person it resolves to: identifier_type, identifier, source_system, person_id.

    Resolved like `ml.identity_assignments` (the same guardrails, on node codes made in
    DuckDB: at 1.2 M people, reading every node_key into pandas and coding it twice took
    48 s of this step).
    """
    evidence_nodes, evidence_edges = read_evidence_graph(con)
    evidence_links = evidence_links.assign(
        node_key_a=evidence_node_key(evidence_links["node_key_a"])
    )
    frames = (
        evidence_nodes,
        evidence_edges,
        pd.concat([links, evidence_links], ignore_index=True),
    )
    for name, frame in zip(_EVIDENCE_FRAMES, frames, strict=True):
        con.register(name, frame)
    try:
        graph = read_coded_graph(con, _WITH_EVIDENCE_EDGES_SQL, _WITH_EVIDENCE_NODES_SQL)
    finally:
        for name in _EVIDENCE_FRAMES:
            con.unregister(name)
        drop_codes(con)
    kept, _ = cut_coded_by_guardrails(graph, guardrails)
    del graph
    types = tuple(kept.nodes["identifier_type"].dropna().unique())
    resolved = resolve_coded(kept, assigned_types=types).assignments()
    return resolved[["identifier_type", "identifier", "source_system", "person_id"]]


class _Clock:
    """Seconds since the last lap, for the step's log."""

    def __init__(self) -> None:
        self._last = time.monotonic()

    def lap(self) -> float:
        now = time.monotonic()
        seconds, self._last = round(now - self._last, 1), now
        return seconds


def link_and_erase(
    con: duckdb.DuckDBPyConnection, tunables: dict, now: datetime
) -> tuple[pd.DataFrame, dict, ErasureOutcome]:
    """Splink links of the current profile records, after erasing the people the erasure
    evidence resolves to (see the module docstring). Needs `pz_hmac` and `pii` on `con`.

    Returns:
        (links for `ml.identity_links`, info for run metadata, what erasure did: counts)
    """
    settings = tunables["probabilistic"]
    ensure_erasure_tables(con)
    clock = _Clock()
    records = read_profile_records(con)
    evidence = read_erasure_evidence(con)
    nulled = int(records.pop("is_birth_date_nulled").sum())
    has_evidence = len(evidence) > 0
    model = usable_model(read_model(con), settings, now)
    seconds = {"read_records": clock.lap()}
    links, evidence_links, info = predict_links_and_matches(records, settings, evidence, model)
    seconds["linking"] = clock.lap()
    del records, evidence  # the plaintext goes no further than this function
    outcome = ErasureOutcome()
    if has_evidence:
        resolved = resolve_with_evidence(con, links, evidence_links, tunables["guardrails"])
        seconds["resolve_evidence"] = clock.lap()
        outcome = erase_people(con, resolved, now, trigger="identity/evidence")
        # every identifier of the graph, resolved: not held while Splink runs again
        del resolved, evidence_links
        outcome.rows_removed["pii.erasure_evidence"] = clear_evidence(con)
        seconds["erase"] = clock.lap()
        if outcome.rows_removed.get("raw.profiles"):
            # The person's records trained the model above (or the stored one): train on what
            # remains instead, and keep that model.
            del links
            records = read_profile_records(con)
            nulled = int(records.pop("is_birth_date_nulled").sum())
            links, _, info = predict_links_and_matches(records, settings, None)
            del records
            seconds["linking_again"] = clock.lap()
    info["step_seconds"] = seconds
    if info.get("model_trained"):
        save_model(con, now, info)
    info.pop("model", None)
    info.pop("fingerprint", None)
    info["invalid_birth_dates_nulled"] = nulled
    return links, info, outcome
