"""Right to erasure that sticks: a request erases the whole person, everywhere, for good.

`audit.erasure_registry` holds one keyed HMAC token per erased identifier (never the identifier
itself): `pz_hmac('<type>:<value>')` for user ids, anonymous ids, record ids (value
`<source_system>:<record_id>`), event ids, session ids and person ids, and
`pz_hmac('email_token:<token>')` / `pz_hmac('phone_token:<token>')` for emails and phones.

A request goes through two steps:

1. At ingest (`enforce_erasures`, called by every ingest asset after it loads): the request's
   user id / email token is registered, with what the raw data links to it deterministically
   (records carrying it, their user ids and emails, devices seen logged in as those users, their
   events) and the previous run's identity map. Every raw table is purged of registered
   identifiers, so a re-delivered row never reaches dbt. A purged profile record moves from the
   PII zone's `profiles` to its `erasure_evidence`: its plaintext is what lets identity
   resolution find the person's *other* records (Splink: name, birth date, address).
2. At identity resolution (`erase_people`, called by `dagster_project.identity.erasure` with
   the graph resolved together with that evidence): every person holding a registered
   identifier is erased whole. All their identifiers (records, user ids, devices, email and
   phone tokens, events, sessions, person ids) are registered, then purged from the raw
   tables, the PII zone, and every derived table (intermediate, marts, history snapshots, ML
   and audit tables). The evidence is then deleted: it lives in the PII zone for one run only.

Later loads of the same rows are purged on arrival by their tokens. The erasure log
(`audit.erasure_log`) holds counts only, never an identifier.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import duckdb
import pandas as pd

from dagster_project.ingest.sources import SOURCES
from dagster_project.tunables import load_tunables

REGISTRY_DDL = """
create table if not exists audit.erasure_registry (
    subject_token varchar, identifier_type varchar, registered_at timestamp
);
create table if not exists audit.erasure_log (
    processed_at timestamp, trigger_source varchar, requests_processed bigint,
    identifiers_registered bigint, rows_removed bigint, detail varchar, sources_checked varchar
);
-- logs written before the column existed (their runs count as having checked nothing)
alter table audit.erasure_log add column if not exists sources_checked varchar;
"""

# PII zone: the profile records purged for an erasure, kept until identity resolution has
# matched them against everyone else (then deleted).
EVIDENCE_DDL = f"""
create table if not exists pii.main.erasure_evidence (
    record_id varchar, source_system varchar, user_id varchar, email_token varchar,
    phone_token varchar, {", ".join(f"{c} varchar" for c in SOURCES["profiles"].pii_zone_columns)},
    captured_at timestamp
);
"""

# Identifier columns per raw table: (identifier_type, SQL expression of the value).
_IDENTIFIER_COLUMNS: dict[str, list[tuple[str, str]]] = {
    # An event goes by its user and device: every erased event and session id was registered
    # from the events of registered users and devices (`_add_events`, and the identity step
    # registers every device of an erased person), so its rows carry one of those. Matching
    # them by event and session id too hashed every event id of the table (17 M at 1 M people)
    # for nothing. The ids are for the context rows, which carry no user.
    "events": [("user_id", "user_id"), ("anonymous_id", "anonymous_id")],
    "profiles": [
        ("record_id", "coalesce(source_system, '') || ':' || record_id"),
        ("user_id", "user_id"),
        ("email_token", "email_token"),
        ("phone_token", "phone_token"),
    ],
    "consent": [("user_id", "user_id"), ("email_token", "email_token")],
    "context": [("event_id", "event_id"), ("session_id", "session_id")],
    "erasure": [("user_id", "user_id"), ("email_token", "email_token")],
}

# Quarantined rows keep the raw record as JSON: (identifier_type, value from it).
_QUARANTINE_JSON = "(case when json_valid(raw_record) then raw_record end)"
_QUARANTINE_FIELDS: list[tuple[str, str]] = [
    (kind, f"json_extract_string({_QUARANTINE_JSON}, '$.{kind}')")
    for kind in ("user_id", "anonymous_id", "event_id", "session_id")
] + [
    (
        "record_id",
        f"coalesce(json_extract_string({_QUARANTINE_JSON}, '$.source_system'), '') || ':' "
        f"|| json_extract_string({_QUARANTINE_JSON}, '$.record_id')",
    ),
    ("email_token", f"pz_token('email', json_extract_string({_QUARANTINE_JSON}, '$.email'))"),
    ("phone_token", f"pz_token('phone', json_extract_string({_QUARANTINE_JSON}, '$.phone'))"),
]

# Columns of derived tables that hold an erasable identifier, by name: column -> type.
_DERIVED_COLUMNS = {
    "user_id": "user_id",
    "anonymous_id": "anonymous_id",
    "event_id": "event_id",
    "session_id": "session_id",
    "email_token": "email_token",
    "phone_token": "phone_token",
    "person_id": "person_id",
    "previous_person_id": "person_id",
}
# Identity-graph node keys (`<type>|<source_system>|<identifier>`).
_NODE_KEY_COLUMNS = ("node_key", "node_key_a", "node_key_b", "anchor_node_key")
# Columns of summary tables (data_audit) whose value may happen to be an identifier: nulled.
_MASKED_COLUMNS = ("min_value", "max_value")
# Tables that are the erasure machinery itself, or hold no person.
_NOT_SWEPT = {
    "audit.erasure_registry",
    "audit.erasure_log",
    "audit.load_manifest",
    "audit.erasure_checked_identifiers",
    "audit.erasure_checked_against",
}


def _subject(alias: str = "") -> str:
    """The value an identifier is tokenized by: a record id is qualified by its source system."""
    a = f"{alias}." if alias else ""
    return (
        f"(case when {a}identifier_type = 'record_id' "
        f"then coalesce({a}source_system, '') || ':' || {a}identifier else {a}identifier end)"
    )


def _token(identifier_type: str, expression: str) -> str:
    return f"pz_hmac('{identifier_type}:' || ({expression}))"


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    return int(con.execute(sql).fetchall()[0][0])


@dataclass
class ErasureOutcome:
    requests_processed: int = 0
    identifiers_registered: int = 0
    people_erased: int = 0
    skipped: bool = False  # nothing new to enforce (see enforce_erasures)
    # rows deleted per table (quarantine tables: rows whose raw record was blanked)
    rows_removed: dict[str, int] = field(default_factory=dict)
    person_ids: set[str] = field(default_factory=set)  # this resolution's erased person_ids

    @property
    def total_removed(self) -> int:
        return sum(self.rows_removed.values())


def ensure_erasure_tables(con: duckdb.DuckDBPyConnection) -> None:
    """The registry and log (warehouse) and the evidence table (PII zone, attached as `pii`)."""
    con.execute("create schema if not exists audit")
    con.execute(REGISTRY_DDL)
    con.execute("create schema if not exists pii.main")
    con.execute(EVIDENCE_DDL)


def load_junk_values(con: duckdb.DuckDBPyConnection) -> str:
    """Temp table `_pz_junk (junk_value)`: pipeline.yaml's identity junk values (`n/a`,
    `test@example.com`), lowercased, with their email, phone and name tokens. A junk value
    links nothing, so it is never erased as a person's identifier (only when requested)."""
    values = sorted({v.strip().lower() for v in load_tunables().identity_junk_values})
    con.execute(
        """
        create or replace temp table _pz_junk as
        select distinct junk_value from (
            select unnest([v, pz_token('email', v), pz_token('phone', v), pz_token('name', v)])
                as junk_value
            from (select unnest($values::varchar[]) as v)
        ) where junk_value is not null
        """,
        {"values": values},
    )
    return "_pz_junk"


def _register(
    con: duckdb.DuckDBPyConnection, now: datetime, identifiers: str = "_pz_erased_ids"
) -> int:
    """Add the tokens of `identifiers` (a table: identifier_type, identifier, source_system)
    to the registry; return how many were new."""
    before = _count(con, "select count(*) from audit.erasure_registry")
    con.execute(
        f"""
        insert into audit.erasure_registry
        select token, identifier_type, $now from (
            select distinct pz_hmac(identifier_type || ':' || {_subject()}) as token,
                   identifier_type
            from {identifiers}
            where identifier is not null
        )
        where token not in (select subject_token from audit.erasure_registry)
        """,
        {"now": now},
    )
    return _count(con, "select count(*) from audit.erasure_registry") - before


def _has_previous_map(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(
        _count(
            con,
            "select count(*) from information_schema.tables where table_catalog = "
            "current_database() and table_schema = 'ml' and table_name = 'identity_assignments'",
        )
    )


def _add_previous_people(con: duckdb.DuckDBPyConnection) -> None:
    """Extend `_pz_erased_ids` with the previous run's people holding one of its identifiers:
    their identifiers and their person_id (the id last run's tables and history know)."""
    if not _has_previous_map(con):
        return
    con.execute(
        f"""
        create or replace temp table _pz_previous_people as
        select distinct m.person_id
        from ml.identity_assignments as m
        inner join _pz_erased_ids as e
            on m.identifier_type = e.identifier_type and {_subject("m")} = {_subject("e")}
        """
    )
    con.execute(
        """
        insert into _pz_erased_ids
        select identifier_type, identifier, source_system
        from ml.identity_assignments
        where person_id in (select person_id from _pz_previous_people)
        union
        select 'person_id', person_id, null from _pz_previous_people
        """
    )


def _add_events(con: duckdb.DuckDBPyConnection) -> None:
    """Extend `_pz_erased_ids` with the events and sessions of its users and devices (so their
    context rows go too)."""
    con.execute(
        """
        insert into _pz_erased_ids
        with events as (
            select event_id, session_id from raw.events
            where user_id in (
                    select identifier from _pz_erased_ids where identifier_type = 'user_id'
                )
               or anonymous_id in (
                   select identifier from _pz_erased_ids where identifier_type = 'anonymous_id'
               )
        )
        select 'event_id', event_id, null from events
        union select 'session_id', session_id, null from events where session_id is not null
        """
    )


def _register_requests(con: duckdb.DuckDBPyConnection, now: datetime) -> tuple[int, int]:
    """Turn raw.erasure requests into registry tokens for what the raw data and the previous
    identity map tie to them; return (requests, new tokens). The rest of the person is found
    by identity resolution (`erase_people`), with the purged records as evidence."""
    requests = _count(con, "select count(*) from raw.erasure")
    if not requests:
        return 0, 0
    load_junk_values(con)
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
        -- the values these link to (a junk value links nothing)
        linked_users as (
            select user_id from records
            union select user_id from raw.consent
                where email_token in (select email_token from requested_emails)
        ),
        users as (
            select user_id from requested_users
            union select user_id from linked_users
                where user_id is not null
                  and lower(user_id) not in (select junk_value from _pz_junk)
        ),
        emails as (
            select email_token from requested_emails
            union select email_token from records
                where email_token is not null
                  and lower(email_token) not in (select junk_value from _pz_junk)
        ),
        -- devices seen logged in as an erased user
        devices as (
            select distinct anonymous_id from raw.events
            where user_id in (select user_id from users) and anonymous_id is not null
              and lower(anonymous_id) not in (select junk_value from _pz_junk)
        )
        select 'user_id' as identifier_type, user_id as identifier,
               null::varchar as source_system
        from users
        union select 'email_token', email_token, null from emails
        union select 'record_id', record_id, source_system from records
        union select 'anonymous_id', anonymous_id, null from devices
        """
    )
    _add_previous_people(con)
    _add_events(con)
    return requests, _register(con, now)


def _in_files(files: list[str] | None, column: str = "_file") -> str:
    """SQL predicate: the row came from one of `files` (always true for None: every row)."""
    if files is None:
        return "true"
    if not files:
        return "false"
    return f"{column} in ({', '.join(_quote(f) for f in files)})"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _purge_table(
    con: duckdb.DuckDBPyConnection,
    source: str,
    files: list[str] | None,
    *,
    by_new_identifiers: bool = False,
) -> int:
    """Delete the rows of raw.<source> (of `files` only, unless None) holding any registered
    identifier; with `by_new_identifiers`, those holding an identifier of `_pz_erased_ids` (in
    plaintext: the source was checked against every older token, see `_checked_against_registry`).
    """
    columns = _IDENTIFIER_COLUMNS.get(source)
    if not columns:
        return 0
    scope = _in_files(files)
    if by_new_identifiers:
        matches = " or ".join(
            f"({expression}) in (select {_subject()} from _pz_erased_ids "
            f"where identifier_type = '{identifier_type}' and identifier is not null)"
            for identifier_type, expression in columns
        )
    else:
        # Hash each distinct value once, not each row: a person has many events, an id one token.
        matches = " or ".join(
            f"({expression}) in (select v from (select distinct ({expression}) as v "
            f"from raw.{source} where {scope}) where v is not null and "
            f"{_token(identifier_type, 'v')} in (select subject_token from _pz_registry))"
            for identifier_type, expression in columns
        )
    matches = f"{scope} and ({matches})"
    if source == "profiles":
        # What identity resolution needs of a purged record beside the PII zone's plaintext.
        # The matching rows are found once (hashing 1.4M record keys took 3 s at L), then
        # copied and deleted by rowid, stable within this transaction.
        con.execute(
            f"create or replace temp table _pz_purged_rows as "
            f"select rowid as row from raw.profiles where {matches}"
        )
        con.execute(
            "insert into _pz_purged_profiles select record_id, source_system, user_id, "
            "email_token, phone_token, _file, _line from raw.profiles "
            "where rowid in (select row from _pz_purged_rows)"
        )
        matches = "rowid in (select row from _pz_purged_rows)"
    removed = con.execute(f"delete from raw.{source} where {matches}").fetchall()[0][0]
    con.execute("drop table if exists _pz_purged_rows")
    return int(removed)


def _quarantine_matches() -> str:
    return " or ".join(
        f"coalesce({_token(identifier_type, expression)} in "
        "(select subject_token from _pz_registry), false)"
        for identifier_type, expression in _QUARANTINE_FIELDS
    )


def _redact_quarantine(
    con: duckdb.DuckDBPyConnection, table: str, files: list[str] | None = None
) -> int:
    """Blank the raw record of quarantined rows (of `files` only, unless None) that name a
    registered identifier. The row (file, line, reason) stays: every file still reconciles
    (rows read = loaded + quarantined)."""
    return _count(
        con,
        f"update {table} set raw_record = null "
        f"where raw_record is not null and {_in_files(files, 'file')} "
        f"and ({_quarantine_matches()})",
    )


def _purge_person_tables(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Delete rows of persisted ML / audit tables that name an erased person_id."""
    tables = con.execute(
        """
        select c.table_schema || '.' || c.table_name
        from information_schema.columns as c
        inner join information_schema.tables as t
            on c.table_catalog = t.table_catalog and c.table_schema = t.table_schema
           and c.table_name = t.table_name
        where c.table_catalog = current_database() and c.column_name = 'person_id'
          and c.table_schema in ('ml', 'audit', 'snapshots') and t.table_type = 'BASE TABLE'
        order by 1
        """
    ).fetchall()
    removed = {}
    for (table,) in tables:
        count = _count(
            con,
            f"delete from {table} where person_id in (select v from (select distinct person_id "
            f"as v from {table}) where v is not null and "
            f"{_token('person_id', 'v')} in (select subject_token from _pz_registry))",
        )
        if count:
            removed[table] = count
    return removed


def _purge_pii_zone(
    con: duckdb.DuckDBPyConnection,
    keep_evidence: bool,
    now: datetime,
    files: list[str] | None = None,
    *,
    by_new_identifiers: bool = False,
) -> dict[str, int]:
    """Delete PII-zone rows of erased records; blank quarantined rows naming an erased one
    (rows of `files` only, unless None).

    With `keep_evidence`, a deleted profile row moves to `pii.main.erasure_evidence` first (with
    the user id and tokens its raw row had), for the next identity resolution.

    With `by_new_identifiers` (the profiles were checked against every token but those just
    registered), the erased records are those of `_pz_erased_ids` and the ones just purged
    from the raw profiles (`_pz_purged_records`), matched by value.
    """
    record = "coalesce(source_system, '') || ':' || record_id"
    if by_new_identifiers:
        erased = (
            f"{record} in (select {_subject()} from _pz_erased_ids "
            "where identifier_type = 'record_id' and identifier is not null "
            "union all select coalesce(source_system, '') || ':' || identifier "
            "from _pz_purged_records)"
        )
    else:
        erased = f"{_token('record_id', record)} in (select subject_token from _pz_registry)"
    profile_columns = ", ".join(f"p.{c}" for c in SOURCES["profiles"].pii_zone_columns)
    con.execute("begin transaction")
    try:
        # The erased rows are found once (a token per row), then copied and deleted by rowid.
        con.execute(
            "create or replace temp table _pz_erased_rows as select rowid as row "
            f"from pii.main.profiles where {_in_files(files)} and {erased}"
        )
        if keep_evidence:
            con.execute(
                f"""
                insert into pii.main.erasure_evidence
                select p.record_id, p.source_system, r.user_id,
                       coalesce(r.email_token, pz_token('email', p.email)),
                       coalesce(r.phone_token, pz_token('phone', p.phone)),
                       {profile_columns}, $now
                from pii.main.profiles as p
                left join _pz_purged_profiles as r on p._file = r._file and p._line = r._line
                where p.rowid in (select row from _pz_erased_rows)
                """,
                {"now": now},
            )
        removed = {
            "pii.profiles": _count(
                con,
                "delete from pii.main.profiles where rowid in (select row from _pz_erased_rows)",
            ),
            "pii.quarantine": _redact_quarantine(con, "pii.main.quarantine", files),
        }
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    finally:
        con.execute("drop table if exists _pz_erased_rows")
    return removed


def _purge_warehouse(
    con: duckdb.DuckDBPyConnection,
    sources: list[str],
    outcome: ErasureOutcome,
    now: datetime,
    *,
    by_plaintext: bool,
    files: list[str] | None = None,
    by_new_identifiers: frozenset[str] = frozenset(),
) -> bool:
    """Purge what the registry names from `sources` (by token), the quarantine and
    person-keyed tables; or, with `by_plaintext`, every raw and derived table by the plaintext
    identifiers of `_pz_erased_ids`. With `files`, only rows loaded from those files (the rest
    was purged against this same registry before; person-keyed tables too). The sources of
    `by_new_identifiers` were checked against every token but those just registered from
    `_pz_erased_ids`: they are purged of its identifiers, in plaintext. Return whether the
    registry names anything."""
    con.execute(
        "create or replace temp table _pz_registry as "
        "select distinct subject_token from audit.erasure_registry"
    )
    con.execute(
        "create or replace temp table _pz_purged_profiles (record_id varchar, "
        "source_system varchar, user_id varchar, email_token varchar, phone_token varchar, "
        "_file varchar, _line bigint)"
    )
    if not _count(con, "select count(*) from _pz_registry"):
        return False
    if by_plaintext:
        # The identifiers are known in plaintext: raw tables go by them like the rest.
        outcome.rows_removed.update(_sweep_tables(con))
    else:
        for source in sources:
            outcome.rows_removed[f"raw.{source}"] = _purge_table(
                con, source, files, by_new_identifiers=source in by_new_identifiers
            )
    # A record purged for its user id, email or phone is the erased person's: remember it (its
    # PII-zone row and later deliveries go by that token). Its other identifiers are for
    # identity resolution to judge (a junk email is nobody's).
    con.execute(
        "create or replace temp table _pz_purged_records as select distinct 'record_id' as "
        "identifier_type, record_id as identifier, source_system from _pz_purged_profiles"
    )
    outcome.identifiers_registered += _register(con, now, "_pz_purged_records")
    con.execute(
        "insert into _pz_registry select distinct subject_token from audit.erasure_registry "
        "where subject_token not in (select subject_token from _pz_registry)"
    )
    outcome.rows_removed["audit.quarantine"] = _redact_quarantine(con, "audit.quarantine", files)
    if files is None:
        for table, count in _purge_person_tables(con).items():
            outcome.rows_removed[table] = outcome.rows_removed.get(table, 0) + count
    return True


def _register_and_purge(
    con: duckdb.DuckDBPyConnection,
    register: Callable[[], None],
    sources: list[str],
    outcome: ErasureOutcome,
    now: datetime,
    trigger: str,
    *,
    keep_evidence: bool,
    by_plaintext: bool,
    files: list[str] | None = None,
) -> None:
    """`register` (fills the registry and `outcome`) and the warehouse purge in one
    transaction, then the PII zone in its own (DuckDB writes one database per transaction),
    then one log row of counts. `files` scopes the purge to the rows of those files, unless
    `register` added a token (then every row is checked)."""
    con.execute("begin transaction")
    try:
        checked = (
            frozenset()
            if by_plaintext
            else frozenset(s for s in sources if _checked_against_registry(con, s))
        )
        register()
        by_new_identifiers: frozenset[str] = frozenset()
        if outcome.identifiers_registered:
            files = None
            # The tokens `register` added are of identifiers of `_pz_erased_ids`: a source
            # checked against all the others before is matched with those in plaintext, not
            # by hashing each of its values: the first run's erasure step at L purged the
            # context (6.4M event ids) and consent rows in 0.2 s instead of 6.1 s.
            by_new_identifiers = checked
            # hashes of identifiers, some of them tonight's erased people's: the next check
            # after identity resolution checks every identifier against the grown registry
            con.execute(f"drop table if exists {CHECKED_IDENTIFIERS}")
            con.execute(f"drop table if exists {CHECKED_AGAINST}")
        purged = _purge_warehouse(
            con,
            sources,
            outcome,
            now,
            by_plaintext=by_plaintext,
            files=files,
            by_new_identifiers=by_new_identifiers,
        )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    if purged:
        outcome.rows_removed.update(
            _purge_pii_zone(
                con,
                keep_evidence,
                now,
                files,
                by_new_identifiers="profiles" in by_new_identifiers,
            )
        )
    con.execute(
        "insert into audit.erasure_log (processed_at, trigger_source, requests_processed, "
        "identifiers_registered, rows_removed, detail, sources_checked) "
        "values ($at, $trigger, $req, $ids, $rows, $detail, $sources)",
        {
            "at": now,
            "trigger": trigger,
            "sources": ",".join(sorted(sources)),
            "req": outcome.requests_processed,
            "ids": outcome.identifiers_registered,
            "rows": outcome.total_removed,
            "detail": ", ".join(
                [f"people={outcome.people_erased}"] * bool(outcome.people_erased)
                + [f"{k}={v}" for k, v in sorted(outcome.rows_removed.items()) if v]
            ),
        },
    )


def _last_checked(con: duckdb.DuckDBPyConnection, sources: list[str]) -> datetime | None:
    """When every row of all `sources` was last checked against the whole registry: the
    oldest, over `sources`, of the last purge that covered each (None: one never was).

    A purge at `now` covers the tokens registered up to `now`, its own included (they are
    registered in the same transaction), so a token registered later is what makes a source
    due for a full check again. Which step registered it does not matter: the erasure source's
    own step purges every source, so the request it registers does not make the next run of
    each other source check all its rows again."""
    checked = dict(
        con.execute(
            """
            select source, max(processed_at)
            from (select unnest(string_split(sources_checked, ',')) as source, processed_at
                  from audit.erasure_log where sources_checked is not null)
            group by source
            """
        ).fetchall()
    )
    if any(source not in checked for source in sources):
        return None
    return min(checked[source] for source in sources)


def _checked_against_registry(con: duckdb.DuckDBPyConnection, source: str) -> bool:
    """Whether every row of raw.<source> was checked against every token of the registry: its
    last check came after the newest token was registered and after its newest rows were
    loaded (a source with no rows was never checked, and need not be)."""
    last = _last_checked(con, [source])
    newest_row, rows = con.execute(
        f"select max(_loaded_at), count(*) from raw.{source}"
    ).fetchall()[0]
    if last is None:
        return not rows
    newest_token = con.execute("select max(registered_at) from audit.erasure_registry").fetchall()[
        0
    ][0]
    return (newest_token is None or newest_token <= last) and (
        newest_row is None or newest_row <= last
    )


def _registry_grew_since_last(con: duckdb.DuckDBPyConnection, sources: list[str]) -> bool:
    """Whether the registry gained a token since every row of `sources` was last checked."""
    last = _last_checked(con, sources)
    if last is None:
        return True
    grown = con.execute(
        "select count(*) from audit.erasure_registry where registered_at > $last",
        {"last": last},
    ).fetchall()[0][0]
    return bool(grown)


def enforce_erasures(
    con: duckdb.DuckDBPyConnection,
    sources: list[str],
    now: datetime,
    trigger: str,
    *,
    new_files: list[str] | None = None,
) -> ErasureOutcome:
    """Register new erasure requests, then purge `sources` (all raw tables when the trigger is
    the erasure source itself), the quarantine, the PII zone (purged profile records become
    erasure evidence) and person-keyed ML tables. Needs the ingest macros (`pz_hmac`) and the
    PII zone attached as `pii`.

    `new_files` (None: unknown, check everything) are the files this load added. When the
    registry has not grown since every row of `sources` was last checked (by any step: the
    log records which sources each purge covered), they were purged against this same
    registry then: only the rows of `new_files` are checked, and with no new file nothing is
    done (`outcome.skipped`). A nightly run with one new events file then hashes
    that file's identifiers, not every identifier of every raw table once per source.
    """
    ensure_erasure_tables(con)
    outcome = ErasureOutcome()
    files = None if new_files is None or _registry_grew_since_last(con, sources) else new_files
    if files == []:
        outcome.skipped = True
        return outcome

    def register() -> None:
        outcome.requests_processed, outcome.identifiers_registered = _register_requests(con, now)

    _register_and_purge(
        con,
        register,
        sources,
        outcome,
        now,
        trigger,
        keep_evidence=True,
        by_plaintext=False,
        files=files,
    )
    return outcome


def erase_people(
    con: duckdb.DuckDBPyConnection, resolved: pd.DataFrame | str, now: datetime, trigger: str
) -> ErasureOutcome:
    """Erase, whole, every person of `resolved` who holds a registered identifier.

    Args:
        resolved: one resolution of the identity graph: identifier_type, identifier,
            source_system, person_id for every identifier node, linker-only types (email and
            phone tokens) included; a frame, or the name of a relation holding them.
        now: registration time.
        trigger: for the log.

    Registers every identifier of those people (and their previous run's person, events and
    sessions), then purges every raw table, the quarantine, the PII zone and every derived
    table. Needs `pz_hmac` and `pii` on `con`. Returns counts and the erased person_ids of
    `resolved` (not logged: the log holds counts only).
    """
    ensure_erasure_tables(con)
    outcome = ErasureOutcome()
    relation = resolved if isinstance(resolved, str) else "_pz_resolved_in"
    if not isinstance(resolved, str):
        con.register(relation, resolved)
    try:
        con.execute(
            f"""
            create or replace temp table _pz_resolved as
            select identifier_type, identifier, source_system, person_id,
                   {_subject()} as subject
            from {relation}
            """
        )
    finally:
        if not isinstance(resolved, str):
            con.unregister(relation)
    # Hash each distinct identifier once; keep the people holding a registered one.
    con.execute(
        """
        create or replace temp table _pz_erased_people as
        with registered as materialized (
            select identifier_type, subject
            from (select distinct identifier_type, subject from _pz_resolved)
            where pz_hmac(identifier_type || ':' || subject)
                  in (select subject_token from audit.erasure_registry)
        )
        select distinct r.person_id
        from _pz_resolved as r
        inner join registered
            on r.identifier_type = registered.identifier_type
           and r.subject = registered.subject
        """
    )
    outcome.person_ids = {
        row[0] for row in con.execute("select person_id from _pz_erased_people").fetchall()
    }
    outcome.people_erased = len(outcome.person_ids)
    if not outcome.people_erased:
        return outcome

    def register() -> None:
        con.execute(
            """
            create or replace temp table _pz_erased_ids as
            select identifier_type, identifier, source_system from _pz_resolved
            where person_id in (select person_id from _pz_erased_people)
            union
            select 'person_id', person_id, null from _pz_erased_people
            """
        )
        _add_previous_people(con)
        _add_events(con)
        outcome.identifiers_registered = _register(con, now)

    _register_and_purge(
        con, register, list(SOURCES), outcome, now, trigger, keep_evidence=False, by_plaintext=True
    )
    return outcome


def _sweep_tables(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Delete the rows naming an identifier of `_pz_erased_ids` from every table of the
    warehouse (raw, intermediate, marts, snapshots, ml, audit), matched by column name, in
    plaintext: derived tables were built from raw rows purged now, and some (history, ML
    tables) persist across runs."""
    con.execute(
        f"""
        create or replace temp table _pz_erased_keys as
        select distinct identifier_type || ':' || {_subject()} as erased_key
        from _pz_erased_ids where identifier is not null
        union
        -- the same identifier as an identity-graph node key
        select distinct
            identifier_type || '|' || coalesce(source_system, '') || '|' || identifier
        from _pz_erased_ids where identifier is not null
        """
    )
    columns = con.execute(
        """
        select c.table_schema || '.' || c.table_name, list(c.column_name order by c.column_name)
        from information_schema.columns as c
        inner join information_schema.tables as t
            on c.table_catalog = t.table_catalog and c.table_schema = t.table_schema
           and c.table_name = t.table_name
        where c.table_catalog = current_database() and t.table_type = 'BASE TABLE'
          and c.table_schema <> 'config'
        group by 1 order by 1
        """
    ).fetchall()
    removed = {}
    for table, names in columns:
        if table in _NOT_SWEPT:
            continue
        for name in _MASKED_COLUMNS:
            if name in names:
                # a profile of a column (min / max) may be one of the person's identifiers
                con.execute(
                    f"update {table} set {name} = null where cast({name} as varchar) in "
                    "(select identifier from _pz_erased_ids)"
                )
        keys = _derived_keys(set(names))
        if not keys:
            continue
        matches = " or ".join(
            f"coalesce(cast({key} as varchar) in (select erased_key from _pz_erased_keys), false)"
            for key in keys
        )
        count = _count(con, f"delete from {table} where {matches}")
        if count:
            removed[table] = count
    return removed


def _derived_keys(columns: set[str]) -> list[str]:
    """SQL expressions giving, per row, the erased-key form of each identifier column present."""
    keys = [f"'{kind}:' || {name}" for name, kind in _DERIVED_COLUMNS.items() if name in columns]
    if "record_id" in columns:
        system = "coalesce(source_system, '')" if "source_system" in columns else "''"
        keys.append(f"'record_id:' || {system} || ':' || record_id")
    if {"identifier_type", "identifier"} <= columns:
        system = "source_system" if "source_system" in columns else "null"
        keys.append(
            f"identifier_type || ':' || case when identifier_type = 'record_id' "
            f"then coalesce({system}, '') || ':' || identifier else identifier end"
        )
    if {"subject_type", "subject_id"} <= columns:
        keys.append("subject_type || ':' || subject_id")
    keys += [name for name in _NODE_KEY_COLUMNS if name in columns]
    return keys


def clear_evidence(con: duckdb.DuckDBPyConnection) -> int:
    """Delete the erasure evidence from the PII zone (after identity resolution used it)."""
    ensure_erasure_tables(con)
    return _count(con, "delete from pii.main.erasure_evidence")


# The identifiers of ml.identity_assignments already checked against the registry, as a hash of
# (identifier_type, subject), and the registry (and DuckDB version: `hash`) they were checked
# against. Not an identifier column: the erasure sweep has nothing to match in them.
CHECKED_IDENTIFIERS = "audit.erasure_checked_identifiers"
CHECKED_AGAINST = "audit.erasure_checked_against"
_ASSIGNED = "ml.identity_assignments"


def _registry_fingerprint(con: duckdb.DuckDBPyConnection) -> str:
    """The registry's tokens (it only grows) and the DuckDB version whose `hash` keyed the
    checked identifiers."""
    count, tokens = con.execute(
        "select count(*), coalesce(bit_xor(hash(subject_token)), 0) from audit.erasure_registry"
    ).fetchall()[0]
    return f"{duckdb.__version__}:{count}:{tokens}"


def _checked_against(con: duckdb.DuckDBPyConnection) -> str | None:
    exists = _count(
        con,
        "select count(*) from information_schema.tables where table_catalog = "
        "current_database() and table_schema = 'audit' "
        "and table_name in ('erasure_checked_identifiers', 'erasure_checked_against')",
    )
    if exists < 2:
        return None
    rows = con.execute(f"select registry from {CHECKED_AGAINST}").fetchall()
    return rows[0][0] if len(rows) == 1 else None


def _record_checked(con: duckdb.DuckDBPyConnection, registry: str) -> None:
    """Every identifier of the assignments passed the check against `registry`."""
    con.execute(
        f"create or replace table {CHECKED_IDENTIFIERS} as "
        f"select distinct hash(identifier_type, {_subject()}) as h from {_ASSIGNED}"
    )
    con.execute(
        f"create or replace table {CHECKED_AGAINST} as select $r as registry", {"r": registry}
    )


def drop_erased_people(con: duckdb.DuckDBPyConnection, now: datetime) -> ErasureOutcome:
    """Defensive, after identity resolution: erase the people of `ml.identity_assignments`
    that hold a registered identifier (and remove them from it). Identity resolution erases
    them before it links anyone (`dagster_project.identity.erasure`); this catches what an
    out-of-order run (identity without ingest) might have let through.

    The registry holds keyed hashes (`pz_hmac`), so checking an identifier means hashing it:
    at L, 4.7 s a night for the 2.8M identifiers. While the registry is the one the last check
    passed against, an identifier checked then still passes, and only the others (a night's
    few thousand new or re-resolved ones, told by a hash of type and value kept in
    `audit.erasure_checked_identifiers`) are hashed. If one of them is registered, or the
    registry changed, every identifier is checked (and its person erased whole, with the
    identifiers checked before). A 64-bit hash of a new identifier equal to a checked one's
    would skip it; at 2.8M checked and thousands new a night, odds of about 1 in 10^9 a night,
    and ingest and identity resolution have erased the person before this check. The hashes
    are of people's identifiers: an erasure that registers a token drops them (its persons'
    among them) with the registry state, and the next check hashes every identifier.
    """
    if not _has_previous_map(con):
        return ErasureOutcome()
    ensure_erasure_tables(con)
    registry = _registry_fingerprint(con)
    if _checked_against(con) == registry:
        con.execute(
            f"""
            create or replace temp table _pz_unchecked as
            select distinct identifier_type, subject, h from (
                select identifier_type, {_subject()} as subject,
                       hash(identifier_type, {_subject()}) as h
                from {_ASSIGNED}
            ) anti join {CHECKED_IDENTIFIERS} using (h)
            """
        )
        try:
            registered = _count(
                con,
                "select count(*) from _pz_unchecked "
                "where pz_hmac(identifier_type || ':' || subject) "
                "in (select subject_token from audit.erasure_registry)",
            )
            if not registered:
                con.execute(
                    f"insert into {CHECKED_IDENTIFIERS} select distinct h from _pz_unchecked"
                )
                return ErasureOutcome()
        finally:
            con.execute("drop table if exists _pz_unchecked")
    # read in DuckDB, not through pandas (2.8 M rows at 1M people)
    outcome = erase_people(con, _ASSIGNED, now, trigger="identity")
    _record_checked(con, _registry_fingerprint(con))
    return outcome
