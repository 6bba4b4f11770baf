"""Which people a night's recommendation run serves, and how the others keep their lists.

A person's list depends on their own interactions, their cluster segment, the contexts they
are in (an open checkout), the exclusions (purchased, out of stock) and the rules, and on the
models fitted on everyone's interactions. At 1M people a night brings new events for about
4 % of them, yet serving everyone wrote 21.8M rows every night.

So a night that reuses the last model selection (`previous_selection`) serves only the people
whose list may have changed since it was served:

- people never served (new, newly consenting, or a person_id a merge or split created);
- people whose interactions changed (new events, events a merge or split moved, a changed
  weight): a fingerprint of their interaction rows differs from the one they were served with;
- people whose cluster segment changed;
- people in a context tonight, or when they were served (its items, e.g. the curated ones in
  order of popularity, move every night);
- people whose list holds an item out of stock tonight, or one no longer in the catalog.

Everyone else keeps the list they were served, from the models of that night. People without
personalization consent tonight lose theirs. Everyone is served again when the model selection
runs (every `reselect_every_days` of data, on a full refresh, or when a selection setting
changed), when a serving setting, a rule or the chosen algorithm changed, and on every run with
`serve_changed_people_only: false` (pipeline.yaml).

The trade-off, a product decision: a person who did nothing keeps the list of the night they
were last served, for at most `reselect_every_days` days of data; it does not follow overnight
shifts in what is popular (or the decay of their own history's weights) until then. Rules that
must hold every night (consent, out-of-stock items, contexts) still do.

`ml.recommendations_served` keeps, per person in `ml.recommendations`, what they were served
with: `served_at`, `history` (the fingerprint), `segment_id`, `in_context` and `served_with`
(a digest of the settings, rules and chosen algorithm), and `history_built_at` (when
int_person_activity last recomputed the person, as the fingerprint was taken).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import duckdb
import pandas as pd

from dagster_project.warehouse_io import read_frame, register_frame, table_exists

SERVED_TABLE = "ml.recommendations_served"
RECOMMENDATIONS_TABLE = "ml.recommendations"
# Tonight's state: a table, as the step closes its connection while the models are fitted.
TONIGHT = "ml._pz_serving_tonight"
SERVE_CHANGED_KEY = "serve_changed_people_only"
# Settings that change neither what is served nor to whom.
_NOT_SERVED_WITH = (
    "serve_batch_people",
    "score_threads",
    SERVE_CHANGED_KEY,
    "reselect_every_days",
)

# Tonight's state of each person who may be served (personalization consent): the fingerprint
# of the interaction rows the recommenders read for them (the same rows as INTERACTIONS_SQL:
# rows of people with neither consent are not read, so they are not here either), their cluster
# segment and whether they are in a context. A person's rows are fingerprinted by count and an
# order-independent XOR of row hashes. int_interactions_weighted recomputes a person's rows
# only when int_person_activity recomputes them (a new `_built_at`), so a person whose
# `_built_at` is the one their stored fingerprint was taken at keeps it ({reused}): at L that
# hashes the rows of the 4 % of people a night changed, not all 11.7M (about 2 s). The rows are
# picked by one semi join with the people to hash (`hashed`, tens of thousands), not a semi
# join with every person and an anti join with the reused ones (a million each): at L with 187k
# people to hash, 3.6 s against 5.5 s, the same state.
_TONIGHT_SQL = """
create or replace table {tonight} as
with people as ({people}),
built as (
    select person_id, _built_at from {activity}
),
reused as ({reused}),
hashed as (
    select people.person_id from people
    anti join reused on people.person_id = reused.person_id
),
history as (
    select
        interactions.person_id,
        hash(count(*), bit_xor(hash(
            interactions.item_id, interactions.weight, interactions.occurred_at
        ))) as history
    from intermediate.int_interactions_weighted as interactions
    semi join hashed on interactions.person_id = hashed.person_id
    where interactions.item_id is not null
    group by interactions.person_id
),
segments as ({segments})
select
    people.person_id,
    coalesce(reused.history, history.history, 0::ubigint) as history,
    built._built_at as history_built_at,
    segments.segment_id,
    people.person_id in (select person_id from {contexts}) as in_context
from people
left join reused on people.person_id = reused.person_id
left join history on people.person_id = history.person_id
left join built on people.person_id = built.person_id
left join (
    select person_id, min(segment_id) as segment_id from segments group by person_id
) as segments
    on people.person_id = segments.person_id
"""
ACTIVITY_TABLE = "intermediate.int_person_activity"
_REUSED_SQL = """
select served.person_id, served.history
from {served} as served
inner join built
    on served.person_id = built.person_id
    and served.history_built_at = built._built_at
"""
_NOTHING_REUSED_SQL = "select null::varchar as person_id, null::ubigint as history where false"

_CHANGED_SQL = """
select tonight.person_id
from {tonight} as tonight
left join {served} as served on tonight.person_id = served.person_id
where served.person_id is null
    or served.history <> tonight.history
    or served.segment_id is distinct from tonight.segment_id
    or tonight.in_context
    or served.in_context
union
select recommendations.person_id
from {recommendations} as recommendations
semi join {tonight} as tonight on recommendations.person_id = tonight.person_id
where recommendations.item_id in (select item_id from ({out_of_stock}))
    or recommendations.item_id not in (
        select item_id from ({catalog}) where item_id is not null
    )
order by person_id
"""


@dataclass(frozen=True)
class ServingPlan:
    """Whom tonight's run serves: everyone (`people` is None) or `people`, and why."""

    people: pd.Series | None
    eligible: int
    why: str

    @property
    def everyone(self) -> bool:
        return self.people is None


def served_with(settings: dict, rule_config: dict, chosen: str) -> str:
    """The digest of what a list was served with: the recommendation settings (but those in
    `_NOT_SERVED_WITH`), the rules and the chosen algorithm."""
    kept = {k: v for k, v in settings.items() if k not in _NOT_SERVED_WITH}
    payload = json.dumps([kept, rule_config, chosen], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def prepare_tonight(
    con: duckdb.DuckDBPyConnection,
    *,
    people_sql: str,
    segments_sql: str,
    contexts: pd.Series,
    reuse: bool = True,
) -> None:
    """Tonight's state of every person who may be served, in the table `TONIGHT`; with
    `reuse`, a person whose interactions were not recomputed since their stored state keeps
    its fingerprint (`_TONIGHT_SQL`)."""
    con.execute("create schema if not exists ml")
    has_activity = table_exists(con, ACTIVITY_TABLE) and _has_column(
        con, ACTIVITY_TABLE, "_built_at"
    )
    reused = _NOTHING_REUSED_SQL
    if reuse and has_activity and _has_column(con, SERVED_TABLE, "history_built_at"):
        reused = _REUSED_SQL.format(served=SERVED_TABLE)
    activity = (
        ACTIVITY_TABLE
        if has_activity
        else "(select null::varchar as person_id, null::timestamp as _built_at where false)"
    )
    register_frame(con, "_pz_contexts", pd.DataFrame({"person_id": contexts.astype(object)}))
    try:
        con.execute(
            _TONIGHT_SQL.format(
                tonight=TONIGHT,
                people=people_sql,
                segments=segments_sql,
                contexts="_pz_contexts",
                activity=activity,
                reused=reused,
            )
        )
    finally:
        con.unregister("_pz_contexts")


def _has_column(con: duckdb.DuckDBPyConnection, table: str, column: str) -> bool:
    if not table_exists(con, table):
        return False
    return column in {row[0] for row in con.execute(f"describe {table}").fetchall()}


def plan_serving(
    con: duckdb.DuckDBPyConnection,
    *,
    settings: dict,
    digest: str,
    selection_reused: bool,
    out_of_stock_sql: str,
    catalog_sql: str,
) -> ServingPlan:
    """Whom to serve tonight (module docstring); `prepare_tonight` ran on `con` first."""
    eligible = con.execute(f"select count(*) from {TONIGHT}").fetchall()[0][0]

    def everyone(why: str) -> ServingPlan:
        return ServingPlan(None, eligible, f"everyone: {why}")

    if not settings.get(SERVE_CHANGED_KEY, True):
        return everyone(f"{SERVE_CHANGED_KEY} is false")
    if not selection_reused:
        return everyone("the model selection ran tonight")
    if not (table_exists(con, SERVED_TABLE) and table_exists(con, RECOMMENDATIONS_TABLE)):
        return everyone("nobody was served yet")
    digests = [
        row[0] for row in con.execute(f"select distinct served_with from {SERVED_TABLE}").fetchall()
    ]
    if digests != [digest]:
        return everyone("the settings, rules or chosen algorithm changed since the last serving")
    changed = read_frame(
        con,
        _CHANGED_SQL.format(
            tonight=TONIGHT,
            served=SERVED_TABLE,
            recommendations=RECOMMENDATIONS_TABLE,
            out_of_stock=out_of_stock_sql,
            catalog=catalog_sql,
        ),
    )["person_id"]
    return ServingPlan(
        changed,
        eligible,
        f"{len(changed):,} of {eligible:,} people whose history, segment, context or "
        "unavailable items changed; the others keep their lists",
    )


def store_served(
    con: duckdb.DuckDBPyConnection, plan: ServingPlan, tonight_rows: str, digest: str
) -> int:
    """Make `ml.recommendations` and `ml.recommendations_served` tonight's, in one transaction:
    `tonight_rows` (a table of the rows served tonight) replaces the lists of the people served,
    and people no longer eligible lose theirs. Returns the rows of `ml.recommendations`.
    """
    state = (
        f"select tonight.person_id, now()::timestamp as served_at, tonight.history, "
        f"tonight.segment_id, tonight.in_context, '{digest}' as served_with, "
        f"tonight.history_built_at from {TONIGHT} as tonight"
    )
    con.execute("begin transaction")
    try:
        if plan.everyone:  # tonight's rows become the table: renamed, not copied
            con.execute(f"drop table if exists {RECOMMENDATIONS_TABLE}")
            name = RECOMMENDATIONS_TABLE.split(".")[1]
            con.execute(f"alter table {tonight_rows} rename to {name}")
            con.execute(f"create or replace table {SERVED_TABLE} as {state}")
        else:
            register_frame(con, "_pz_served_people", pd.DataFrame({"person_id": plan.people}))
            try:
                con.execute(
                    "create or replace temp table _pz_served_people_t as "
                    "select person_id from _pz_served_people"
                )
            finally:
                con.unregister("_pz_served_people")
            con.execute(
                f"delete from {RECOMMENDATIONS_TABLE} where person_id in "
                "(select person_id from _pz_served_people_t) "
                f"or person_id not in (select person_id from {TONIGHT})"
            )
            con.execute(f"insert into {RECOMMENDATIONS_TABLE} select * from {tonight_rows}")
            con.execute(
                f"create or replace table {SERVED_TABLE} as "
                f"select tonight.person_id, "
                "case when fresh.person_id is null then served.served_at "
                "else now()::timestamp end as served_at, "
                "tonight.history, tonight.segment_id, tonight.in_context, "
                f"'{digest}' as served_with, tonight.history_built_at "
                f"from {TONIGHT} as tonight "
                f"left join {SERVED_TABLE} as served on tonight.person_id = served.person_id "
                "left join _pz_served_people_t as fresh on tonight.person_id = fresh.person_id"
            )
            con.execute("drop table _pz_served_people_t")
            con.execute(f"drop table {tonight_rows}")
        con.execute(f"drop table {TONIGHT}")
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return con.execute(f"select count(*) from {RECOMMENDATIONS_TABLE}").fetchall()[0][0]
