"""The data audit: per run, source and column, what arrived and how usable it was.

Profiles the typed dbt staging views (one per raw source): rows, completeness, distinct
values, min / max / mean / variance of numbers, values nulled as invalid or unrecognized (the
staging flags `is_<column>_invalid` / `is_<column>_unrecognized`), and per source one `*` row
with freshness (age of the newest record), records per day and rows quarantined at ingest.
All SQL; one `insert ... select` per source.

A source whose profile cannot have changed since the last audit (a night lands events and
contexts, not profiles or consents) gets that profile again, with this run's freshness and
quarantine count: its fingerprint (`input_fingerprint`) covers which rows its raw table holds,
every staging view's SQL, every config table and the audit's own SQL. At L that saves the 3.7 s
profiling the profiles, consents and catalog took each night.

A raw table's rows are known by their load keys (`_file`, `_line`, `_loaded_at`), not by their
content: the pipeline changes a raw table only by loading rows (each load has its own
`_loaded_at`; a replaced file's rows are deleted and loaded again) and by deleting them
(erasure). Hashing every column of the 17M raw events took 3-9 s of each night at L, the keys
0.3 s. An edit of a raw row by hand, outside the pipeline, is not seen; a full refresh
(`make full-refresh`, the run tag `pz/full_refresh`) profiles every source again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

import duckdb

from dagster_project.ingest.sql import quote_identifier, quote_literal

# source -> (staging relation, timestamp column that says how fresh the source is)
AUDITED_RELATIONS: dict[str, tuple[str, str]] = {
    "events": ("staging.stg_events__events", "occurred_at"),
    "profiles": ("staging.stg_profiles__profiles", "updated_at"),
    "catalog": ("staging.stg_catalog__items", "_loaded_at"),
    "context": ("staging.stg_context__contexts", "_loaded_at"),
    "consent": ("staging.stg_consent__consents", "recorded_at"),
    "erasure": ("staging.stg_erasure__requests", "requested_at"),
}

DATA_AUDIT_DDL = """
create table if not exists audit.data_audit (
    run_id varchar, audited_at timestamp, source varchar, relation varchar,
    column_name varchar, data_type varchar, rows bigint, non_null bigint,
    completeness double, distinct_values bigint, min_value varchar, max_value varchar,
    mean double, variance double, nulled_invalid bigint, unrecognized bigint,
    newest_record_at timestamp, freshness_hours double, records_per_day double,
    rows_quarantined bigint
)
"""

# The fingerprint each source's profile of a run was computed from (not published).
INPUTS_DDL = """
create table if not exists audit.data_audit_inputs (
    run_id varchar, source varchar, input_fingerprint varchar
)
"""

_NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE", "DECIMAL")
_FLAG_SUFFIXES = ("_invalid", "_unrecognized")
_HELPER_SUFFIXES = ("_raw", "_key", "_parsed")


def ensure_data_audit_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create schema if not exists audit")
    con.execute(DATA_AUDIT_DDL)
    con.execute(INPUTS_DDL)


@dataclass(frozen=True)
class AuditOutcome:
    rows: int  # rows of audit.data_audit written for the run
    reused: tuple[str, ...]  # sources whose last profile was still current
    seconds: dict[str, float] = field(default_factory=dict)  # per source, its profile's time


LOAD_KEYS = ("_file", "_line", "_loaded_at")  # which load a raw row came from, and where


def _rows_hash_sql(table: str, columns: tuple[str, ...] = ()) -> str:
    """Row count, xor and sum of a hash of every row, or of its `columns` (the sum catches a
    repeated pair)."""
    row = f"hash({', '.join(quote_identifier(c) for c in columns)})" if columns else "hash(t)"
    return (
        f"(select count(*) || ':' || coalesce(bit_xor({row}), 0) || ':' "
        f"|| coalesce(sum({row}::hugeint), 0) from {table} as t)"
    )


def _raw_rows_hash_sql(con: duckdb.DuckDBPyConnection, source: str) -> str:
    """The hash of which rows `raw.<source>` holds: of their load keys when it has them (see
    the module's docstring), else of every column."""
    present = {
        name
        for (name,) in con.execute(
            "select column_name from duckdb_columns() where database_name = current_database() "
            "and schema_name = 'raw' and table_name = $source",
            {"source": source},
        ).fetchall()
    }
    keys = LOAD_KEYS if present.issuperset(LOAD_KEYS) else ()
    return _rows_hash_sql(f"raw.{quote_identifier(source)}", keys)


def input_fingerprint(con: duckdb.DuckDBPyConnection, source: str, profile_sql: str) -> str:
    """What the profile of `source` is computed from, as one md5: which rows `raw.<source>`
    holds (their load keys), the SQL of every staging view (rendered: a changed mapping macro
    or var shows), every config table's rows (mappings the views join), and `profile_sql`
    itself (the columns the view has, and this module's SQL)."""
    config_tables = [
        f"config.{name}"
        for (name,) in con.execute(
            "select table_name from duckdb_tables() where database_name = current_database() "
            "and schema_name = 'config' order by table_name"
        ).fetchall()
    ]
    parts = [
        "(select string_agg(view_name || ':' || sql, '|' order by view_name) from duckdb_views() "
        "where database_name = current_database() and schema_name = 'staging')",
        _raw_rows_hash_sql(con, source),
        *(_rows_hash_sql(table) for table in config_tables),
        "md5($profile)",
    ]
    return con.execute(
        f"select md5(concat_ws('|', {', '.join(parts)}))", {"profile": profile_sql}
    ).fetchall()[0][0]


def _reusable_run(con: duckdb.DuckDBPyConnection, source: str, fingerprint: str) -> str | None:
    """The last audited run of `source`, if its profile was computed from `fingerprint`."""
    rows = con.execute(
        "select i.run_id, i.input_fingerprint from audit.data_audit_inputs as i "
        "join (select run_id, max(audited_at) as audited_at from audit.data_audit "
        "where source = $source group by run_id) as a using (run_id) "
        "where i.source = $source order by a.audited_at desc limit 1",
        {"source": source},
    ).fetchall()
    return rows[0][0] if rows and rows[0][1] == fingerprint else None


def _flag_for(column: str, kind: str, columns: set[str]) -> str | None:
    """The staging flag of `column` (`is_price_invalid`; `is_curated_invalid` for is_curated)."""
    bare = column.removeprefix("is_")
    for name in (f"is_{bare}_{kind}", f"is_{column}_{kind}"):
        if name in columns:
            return name
    return None


def profiled_columns(described: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The business columns of a staging view: not its flags, helpers or load metadata."""
    return [
        (name, sql_type)
        for name, sql_type in described
        if not name.startswith("_")
        and not name.endswith(_FLAG_SUFFIXES)
        and not name.endswith(_HELPER_SUFFIXES)
    ]


def column_profile_sql(
    relation: str, described: list[tuple[str, str]], timestamp_column: str
) -> str:
    """One row per column plus the `*` row of the source, from a single scan: every aggregate
    in one `select` (one row), unpivoted by a union over that row."""
    names = {name for name, _ in described}
    aggregates, parts = ["count(*) as _rows"], []
    for i, (name, sql_type) in enumerate(profiled_columns(described)):
        col = quote_identifier(name)
        numeric = sql_type.upper().startswith(_NUMERIC)
        invalid = _flag_for(name, "invalid", names)
        unrecognized = _flag_for(name, "unrecognized", names)
        aggregates.append(
            f"""count({col}) as c{i}_non_null, count(distinct {col}) as c{i}_distinct,
            min({col})::varchar as c{i}_min, max({col})::varchar as c{i}_max,
            {f"avg({col})::double" if numeric else "null::double"} as c{i}_mean,
            {f"var_samp({col})::double" if numeric else "null::double"} as c{i}_variance,
            {f"count_if({quote_identifier(invalid)})" if invalid else "null::bigint"}
                as c{i}_invalid,
            {f"count_if({quote_identifier(unrecognized)})" if unrecognized else "null::bigint"}
                as c{i}_unrecognized"""
        )
        parts.append(
            f"""
            select {quote_literal(name)} as column_name, {quote_literal(sql_type)} as data_type,
                _rows as rows, c{i}_non_null as non_null, c{i}_distinct as distinct_values,
                c{i}_min as min_value, c{i}_max as max_value, c{i}_mean as mean,
                c{i}_variance as variance, c{i}_invalid as nulled_invalid,
                c{i}_unrecognized as unrecognized,
                null::timestamp as newest_record_at, null::double as records_per_day
            from _pz_profile
            """
        )
    ts = quote_identifier(timestamp_column) if timestamp_column in names else "null::timestamp"
    aggregates.append(
        f"max({ts})::timestamp as _newest, count(*) / nullif(count(distinct {ts}::date), 0) "
        "as _per_day"
    )
    parts.append(
        """
        select '*', 'table', _rows, _rows, null, null, null, null, null, null, null, _newest,
            _per_day
        from _pz_profile
        """
    )
    return (
        f"with _pz_profile as materialized (select {', '.join(aggregates)} from {relation}) "
        + " union all ".join(parts)
    )


def write_data_audit(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    audited_at: datetime,
    relations: dict[str, tuple[str, str]] = AUDITED_RELATIONS,
    *,
    forced: bool = False,
) -> AuditOutcome:
    """Profile every staging relation into `audit.data_audit` for this run; a source whose
    inputs did not change since its last audit gets that profile again, with this run's
    freshness and quarantine count (unless `forced`: a full refresh)."""
    ensure_data_audit_table(con)
    con.execute("delete from audit.data_audit where run_id = $run", {"run": run_id})
    con.execute("delete from audit.data_audit_inputs where run_id = $run", {"run": run_id})
    reused, seconds = [], {}
    for source, (relation, timestamp_column) in relations.items():
        started = time.perf_counter()
        # Staging relations are views: one scan computes every column's profile.
        described = [(r[0], r[1]) for r in con.execute(f"describe {relation}").fetchall()]
        profile = column_profile_sql(relation, described, timestamp_column)
        fingerprint = input_fingerprint(con, source, profile)
        last_run = None if forced else _reusable_run(con, source, fingerprint)
        if last_run is not None:
            profile = (
                "select * from audit.data_audit "
                f"where run_id = {quote_literal(last_run)} and source = {quote_literal(source)}"
            )
            reused.append(source)
        con.execute(
            f"""
            insert into audit.data_audit
            with profile as ({profile}),
            quarantined as (
                select count(*) as n from audit.quarantine where source = $source
            )
            select $run, $at, $source, $relation, column_name, data_type, rows, non_null,
                non_null / nullif(rows, 0), distinct_values, min_value, max_value, mean,
                variance, nulled_invalid, unrecognized, newest_record_at,
                date_diff('minute', newest_record_at, $at::timestamp) / 60.0,
                records_per_day,
                case when column_name = '*' then (select n from quarantined) end
            from profile
            """,
            {"run": run_id, "at": audited_at, "source": source, "relation": relation},
        )
        con.execute(
            "insert into audit.data_audit_inputs values ($run, $source, $fingerprint)",
            {"run": run_id, "source": source, "fingerprint": fingerprint},
        )
        seconds[source] = round(time.perf_counter() - started, 2)
    rows = con.execute(
        "select count(*) from audit.data_audit where run_id = $run", {"run": run_id}
    ).fetchall()[0][0]
    return AuditOutcome(rows=rows, reused=tuple(reused), seconds=seconds)


def events_per_day_sql(days: int = 14) -> str:
    """Events per UTC day over the newest `days` days with data (for the audit's UI view)."""
    return f"""
        select occurred_at::date as day, count(*) as events
        from staging.stg_events__events
        where occurred_at is not null
        group by 1 order by 1 desc limit {int(days)}
    """
