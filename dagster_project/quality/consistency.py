"""Consistency checks across sources: counted and flagged, never fatal.

Each check is one SQL query returning the offending keys (one row each) with a `detail`; the
asset check reports how many there are and shows the first few.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb


@dataclass(frozen=True)
class ConsistencyCheck:
    name: str
    asset: tuple[str, ...]  # the asset key the check is attached to
    description: str
    sql: str  # returns (key, detail), one row per inconsistent key


CONSISTENCY_CHECKS = [
    ConsistencyCheck(
        name="device_with_several_users",
        asset=("staging", "stg_events__events"),
        description="An anonymous (device/browser) id seen with more than one user_id.",
        sql="""
            select anonymous_id as key,
                   count(distinct user_id) || ' users: '
                   || string_agg(distinct user_id, ', ' order by user_id) as detail
            from staging.stg_events__events
            where anonymous_id is not null and user_id is not null
            group by anonymous_id having count(distinct user_id) > 1
            order by count(distinct user_id) desc, anonymous_id
        """,
    ),
    ConsistencyCheck(
        name="user_with_conflicting_birth_dates",
        asset=("staging", "stg_profiles__profiles"),
        description="One user_id with different birth dates across profile records/systems.",
        sql="""
            select user_id as key,
                   string_agg(distinct coalesce(source_system, '?') || '=' || birth_date, ', '
                              order by coalesce(source_system, '?') || '=' || birth_date)
                       as detail
            from staging.stg_profiles__profiles
            where user_id is not null and birth_date is not null
            group by user_id having count(distinct birth_date) > 1
            order by user_id
        """,
    ),
    ConsistencyCheck(
        name="session_spanning_days",
        asset=("marts", "sessions"),
        description="A session whose first and last event fall on different UTC days.",
        sql="""
            select session_id as key,
                   started_at::varchar || ' -> ' || ended_at::varchar as detail
            from marts.sessions
            where started_at::date <> ended_at::date
            order by started_at, session_id
        """,
    ),
]


def find_inconsistencies(
    con: duckdb.DuckDBPyConnection, check: ConsistencyCheck, examples: int = 10
) -> tuple[int, list[tuple[str, str]]]:
    """How many keys break the check, and the first `examples` of them. The check runs once
    (its source is often a view over every event: counting and showing it as two queries
    computed the view twice); its offending keys are kept in a temp table meanwhile."""
    con.execute(f"create or replace temp table _pz_inconsistent as {check.sql}")
    try:
        count = con.execute("select count(*) from _pz_inconsistent").fetchall()[0][0]
        shown = con.execute(f"select * from _pz_inconsistent limit {int(examples)}").fetchall()
    finally:
        con.execute("drop table if exists _pz_inconsistent")
    return count, shown
