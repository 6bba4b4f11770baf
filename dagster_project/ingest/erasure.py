"""Right to erasure that sticks: purge erased people from raw tables and the PII zone, and
remember them by token so a later delivery of the same rows is purged again.

`audit.erasure_registry` holds one keyed HMAC token per erased identifier (never the identifier
itself): `pz_hmac('<type>:<value>')` for user ids, anonymous ids, record ids, session ids and
event ids, and `pz_hmac('email_token:<token>')` for emails. A request for a user id or an email
erases the whole person: every identifier linked to it in the raw data (records carrying the
user id or email, anonymous ids seen logged in as the user, the user ids of those records) and
in the previous run's identity map.

Every ingest asset calls `enforce_erasures` after loading, so whatever order the sources load
in, no erased row survives to dbt; everything downstream (marts, ML tables, the published
snapshot) is rebuilt from raw and loses the person too. Tables that persist across runs and
hold a `person_id` (in schemas `ml` and `audit`) are purged by person_id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import duckdb

REGISTRY_DDL = """
create table if not exists audit.erasure_registry (
    subject_token varchar, identifier_type varchar, registered_at timestamp
);
create table if not exists audit.erasure_log (
    processed_at timestamp, trigger_source varchar, requests_processed bigint,
    identifiers_registered bigint, rows_removed bigint, detail varchar
);
"""

# Identifier columns per raw table: (identifier_type, SQL expression of the value).
_IDENTIFIER_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "events": [
        ("user_id", "user_id"),
        ("anonymous_id", "anonymous_id"),
        ("event_id", "event_id"),
        ("session_id", "session_id"),
    ],
    "profiles": [
        ("record_id", "coalesce(source_system, '') || ':' || record_id"),
        ("user_id", "user_id"),
        ("email_token", "email_token"),
    ],
    "consent": [("user_id", "user_id"), ("email_token", "email_token")],
    "context": [("event_id", "event_id"), ("session_id", "session_id")],
    "erasure": [("user_id", "user_id"), ("email_token", "email_token")],
}


def _token(identifier_type: str, expression: str) -> str:
    return f"pz_hmac('{identifier_type}:' || ({expression}))"


@dataclass
class ErasureOutcome:
    requests_processed: int = 0
    identifiers_registered: int = 0
    rows_removed: dict[str, int] = field(default_factory=dict)

    @property
    def total_removed(self) -> int:
        return sum(self.rows_removed.values())


def _register_requests(con: duckdb.DuckDBPyConnection, now: datetime) -> tuple[int, int]:
    """Turn raw.erasure requests into registry tokens for the whole person; return counts."""
    requests = con.execute("select count(*) from raw.erasure").fetchall()[0][0]
    if not requests:
        return 0, 0
    before = con.execute("select count(*) from audit.erasure_registry").fetchall()[0][0]
    con.execute(
        """
        create or replace temp table _pz_erased_ids as
        with requested_users as (
            select user_id from raw.erasure where user_id is not null
        ),
        requested_emails as (
            select email_token from raw.erasure where email_token is not null
        ),
        -- records reached by the requested user ids or emails, and the user ids they carry
        records as (
            select source_system, record_id, user_id, email_token from raw.profiles
            where user_id in (select user_id from requested_users)
               or email_token in (select email_token from requested_emails)
        ),
        users as (
            select user_id from requested_users
            union select user_id from records where user_id is not null
            union select user_id from raw.consent
                where email_token in (select email_token from requested_emails)
                  and user_id is not null
        ),
        emails as (
            select email_token from requested_emails
            union select email_token from records where email_token is not null
        ),
        -- devices seen logged in as an erased user
        devices as (
            select distinct anonymous_id from raw.events
            where user_id in (select user_id from users) and anonymous_id is not null
        ),
        events as (
            select event_id, session_id from raw.events
            where user_id in (select user_id from users)
               or anonymous_id in (select anonymous_id from devices)
        )
        select 'user_id' as identifier_type, user_id as identifier from users
        union select 'email_token', email_token from emails
        union select 'record_id', coalesce(source_system, '') || ':' || record_id from records
        union select 'anonymous_id', anonymous_id from devices
        union select 'event_id', event_id from events
        union select 'session_id', session_id from events where session_id is not null
        """
    )
    # The previous run's identity map links identifiers the raw data alone may not.
    has_map = con.execute(
        "select count(*) from information_schema.tables "
        "where table_schema = 'ml' and table_name = 'identity_assignments'"
    ).fetchall()[0][0]
    if has_map:
        con.execute(
            """
            insert into _pz_erased_ids
            select a.identifier_type,
                   case when a.identifier_type = 'record_id'
                        then coalesce(a.source_system, '') || ':' || a.identifier
                        else a.identifier end
            from ml.identity_assignments as a
            where a.person_id in (
                select person_id from ml.identity_assignments as m
                inner join _pz_erased_ids as e
                    on m.identifier_type = e.identifier_type
                   and (case when m.identifier_type = 'record_id'
                             then coalesce(m.source_system, '') || ':' || m.identifier
                             else m.identifier end) = e.identifier
            )
            union
            select 'person_id', person_id from ml.identity_assignments as m
            inner join _pz_erased_ids as e
                on m.identifier_type = e.identifier_type
               and (case when m.identifier_type = 'record_id'
                         then coalesce(m.source_system, '') || ':' || m.identifier
                         else m.identifier end) = e.identifier
            """
        )
    con.execute(
        """
        insert into audit.erasure_registry
        select distinct pz_hmac(identifier_type || ':' || identifier), identifier_type, $now
        from _pz_erased_ids
        where identifier is not null
          and pz_hmac(identifier_type || ':' || identifier) not in (
              select subject_token from audit.erasure_registry
          )
        """,
        {"now": now},
    )
    after = con.execute("select count(*) from audit.erasure_registry").fetchall()[0][0]
    return requests, after - before


def _purge_table(con: duckdb.DuckDBPyConnection, source: str) -> int:
    """Delete the rows of raw.<source> holding any registered identifier."""
    columns = _IDENTIFIER_COLUMNS.get(source)
    if not columns:
        return 0
    # Hash each distinct value once, not each row: a person has many events, an id one token.
    matches = " or ".join(
        f"({expression}) in (select v from (select distinct ({expression}) as v "
        f"from raw.{source}) where v is not null and "
        f"{_token(identifier_type, 'v')} in (select subject_token from _pz_registry))"
        for identifier_type, expression in columns
    )
    removed = con.execute(f"delete from raw.{source} where {matches}").fetchall()[0][0]
    return int(removed)


def _purge_pii_zone(con: duckdb.DuckDBPyConnection) -> int:
    """Delete PII-zone profile rows of erased records (matched by record id token)."""
    removed = con.execute(
        f"""
        delete from pii.main.profiles
        where {_token("record_id", "coalesce(source_system, '') || ':' || record_id")}
              in (select subject_token from _pz_registry)
        """
    ).fetchall()[0][0]
    return int(removed)


def _purge_person_tables(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Delete rows of persisted ML / audit tables that name an erased person_id."""
    tables = con.execute(
        """
        select table_schema || '.' || table_name from information_schema.columns
        where table_catalog = current_database() and column_name = 'person_id'
          and table_schema in ('ml', 'audit')
        """
    ).fetchall()
    removed = {}
    for (table,) in tables:
        count = con.execute(
            f"delete from {table} where person_id is not null and "
            f"{_token('person_id', 'person_id')} in (select subject_token from _pz_registry)"
        ).fetchall()[0][0]
        if count:
            removed[table] = int(count)
    return removed


def enforce_erasures(
    con: duckdb.DuckDBPyConnection, sources: list[str], now: datetime, trigger: str
) -> ErasureOutcome:
    """Register new erasure requests, then purge `sources` (all raw tables when the trigger is
    the erasure source itself), the PII zone and person-keyed ML tables. Needs the ingest
    macros (`pz_hmac`) and the PII zone attached as `pii`."""
    con.execute(REGISTRY_DDL)
    outcome = ErasureOutcome()
    con.execute("begin transaction")
    try:
        outcome.requests_processed, outcome.identifiers_registered = _register_requests(con, now)
        con.execute(
            "create or replace temp table _pz_registry as "
            "select distinct subject_token from audit.erasure_registry"
        )
        if con.execute("select count(*) from _pz_registry").fetchall()[0][0]:
            for source in sources:
                outcome.rows_removed[f"raw.{source}"] = _purge_table(con, source)
            outcome.rows_removed.update(_purge_person_tables(con))
        con.execute(
            "insert into audit.erasure_log values ($at, $trigger, $req, $ids, $rows, $detail)",
            {
                "at": now,
                "trigger": trigger,
                "req": outcome.requests_processed,
                "ids": outcome.identifiers_registered,
                "rows": outcome.total_removed,
                "detail": ", ".join(
                    f"{k}={v}" for k, v in sorted(outcome.rows_removed.items()) if v
                ),
            },
        )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    # The PII zone is another database file: DuckDB writes one database per transaction.
    if con.execute("select count(*) from _pz_registry").fetchall()[0][0]:
        outcome.rows_removed["pii.profiles"] = _purge_pii_zone(con)
    return outcome


_ASSIGNED_IDENTIFIER = (
    "case when identifier_type = 'record_id' "
    "then coalesce(source_system, '') || ':' || identifier else identifier end"
)


def drop_erased_people(con: duckdb.DuckDBPyConnection, now: datetime) -> ErasureOutcome:
    """After identity resolution: a person holding any erased identifier is erased whole.

    Probabilistic links can join identifiers that the raw data alone never tied to an erasure
    request; this registers every identifier of such a person, removes the person from
    `ml.identity_assignments` and purges the raw tables and PII zone again.
    """
    con.execute(REGISTRY_DDL)
    con.execute(
        f"""
        create or replace temp table _pz_erased_people as
        select distinct person_id from ml.identity_assignments
        where pz_hmac(identifier_type || ':' || ({_ASSIGNED_IDENTIFIER}))
              in (select subject_token from audit.erasure_registry)
        """
    )
    if not con.execute("select count(*) from _pz_erased_people").fetchall()[0][0]:
        return ErasureOutcome()
    con.execute(
        f"""
        insert into audit.erasure_registry
        select distinct token, identifier_type, $now from (
            select pz_hmac(identifier_type || ':' || ({_ASSIGNED_IDENTIFIER})) as token,
                   identifier_type
            from ml.identity_assignments
            where person_id in (select person_id from _pz_erased_people)
            union all
            select pz_hmac('person_id:' || person_id), 'person_id' from _pz_erased_people
        )
        where token not in (select subject_token from audit.erasure_registry)
        """,
        {"now": now},
    )
    con.execute(
        "delete from ml.identity_assignments "
        "where person_id in (select person_id from _pz_erased_people)"
    )
    from dagster_project.ingest.sources import SOURCES

    return enforce_erasures(con, list(SOURCES), now, trigger="identity")
