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

Distinct values are counted from `audit.data_audit_distinct`: per source and column, the
64-bit hashes of its distinct non-null values (and of the days of its timestamp column), kept
from one audit to the next. A count is exact unless two of a column's values share a hash: at
17M distinct values a chance of about 1 in 100,000 of one too few.

A source that only gained rows since its last audit (a night's events and contexts) is
profiled by merging: the new rows' profile (those loaded after the last audit's
`loaded_through`) is added to the last one, and their values' hashes no older value has join
the kept ones. Counts, minimum and maximum add up exactly; mean and variance combine by the
pairwise formula (Chan, Golub and LeVeque), equal to a full profile's to about 1e-12 relative.
(Counting the distinct values of the older rows instead needs their values: through the
staging view, a scan per column, slower than profiling every row.) It needs the older rows to
be exactly those of the last audit (the hash of their load keys is kept), the same staging SQL,
config and audit SQL, a staging view with one row per raw row (as every staging view here:
typing and mapping, no filters) and columns whose minimum and maximum read back from text
(numbers, text, times, booleans). Anything else profiles every row and replaces the source's
hashes: an erasure deletes raw rows, so the erased values' hashes go the same night.

On a copy of the L warehouse, the night's audit (0.3M new events and contexts) took 5.8-6.1 s
instead of 38.3 s, with the same rows as a full profile; a full profile takes 58-65 s instead
of 38.3 s, most of the difference writing the 41M hashes (17M of them the events' ids).

A raw table's rows are known by their load keys (`_file`, `_line`, `_loaded_at`), not by their
content: the pipeline changes a raw table only by loading rows (each load has its own
`_loaded_at`; a replaced file's rows are deleted and loaded again) and by deleting them
(erasure). Hashing every column of the 17M raw events took 3-9 s of each night at L, the keys
0.3 s. An edit of a raw row by hand, outside the pipeline, is not seen; a full refresh
(`make full-refresh`, the run tag `pz/full_refresh`) profiles every source again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
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

# What each source's profile of a run was computed from (not published): `input_fingerprint`
# of everything (reused as is when equal), `code_fingerprint` of the staging SQL, config and
# audit SQL alone, and the raw rows it covered: loaded through `loaded_through`, their load
# keys hashing to `rows_hash` (a later audit merges only if those rows are still all there).
INPUTS_DDL = """
create table if not exists audit.data_audit_inputs (
    run_id varchar, source varchar, input_fingerprint varchar
)
"""
# The hashes of each source's distinct values per column ('*': the days of its timestamp
# column), and the run whose rows they are (not published).
DISTINCT_DDL = """
create table if not exists audit.data_audit_distinct (
    source varchar, column_name varchar, value_hash ubigint
);
create table if not exists audit.data_audit_distinct_run (source varchar, run_id varchar);
"""
_INPUTS_ADDED = (
    ("code_fingerprint", "varchar"),
    ("loaded_through", "timestamp"),
    ("rows_hash", "varchar"),
)

_NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE", "DECIMAL")
# Types whose minimum and maximum, stored as text, cast back to the same value (to merge).
_MERGEABLE = (
    *_NUMERIC,
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "VARCHAR",
    "TIMESTAMP",
    "DATE",
    "TIME",
    "BOOLEAN",
    "UUID",
)
_FLAG_SUFFIXES = ("_invalid", "_unrecognized")
_HELPER_SUFFIXES = ("_raw", "_key", "_parsed")


def ensure_data_audit_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create schema if not exists audit")
    con.execute(DATA_AUDIT_DDL)
    con.execute(INPUTS_DDL)
    con.execute(DISTINCT_DDL)
    for name, sql_type in _INPUTS_ADDED:  # warehouses audited before these columns
        con.execute(
            f"alter table audit.data_audit_inputs add column if not exists {name} {sql_type}"
        )


@dataclass(frozen=True)
class AuditOutcome:
    rows: int  # rows of audit.data_audit written for the run
    reused: tuple[str, ...]  # sources whose last profile was still current
    merged: tuple[str, ...] = ()  # sources profiled as their last profile plus the new rows


LOAD_KEYS = ("_file", "_line", "_loaded_at")  # which load a raw row came from, and where


def _hash_sql(row: str, where: str = "") -> str:
    """Row count, xor and sum of `row` (a hash; the sum catches a repeated pair), over the rows
    `where` selects (an aggregate filter), as one text."""
    only = f" filter (where {where})" if where else ""
    return (
        f"count(*){only} || ':' || coalesce(bit_xor({row}){only}, 0) || ':' "
        f"|| coalesce(sum({row}::hugeint){only}, 0)"
    )


def _rows_hash_sql(table: str, columns: tuple[str, ...] = ()) -> str:
    """The hash of every row of `table`, or of its `columns`, as a scalar subquery."""
    row = f"hash({', '.join(quote_identifier(c) for c in columns)})" if columns else "hash(t)"
    return f"(select {_hash_sql(row)} from {table} as t)"


@dataclass(frozen=True)
class RawRows:
    """Which rows a raw table holds: the hash of all of them, the newest load, and the hash of
    those loaded through a given time (the last audit's `loaded_through`)."""

    rows_hash: str
    loaded_through: datetime | None  # None: the table has no load keys
    hash_through: str | None


def raw_rows(con: duckdb.DuckDBPyConnection, source: str, through: datetime | None) -> RawRows:
    """One scan of `raw.<source>`'s load keys (see the module's docstring); every column when
    it has none."""
    present = {
        name
        for (name,) in con.execute(
            "select column_name from duckdb_columns() where database_name = current_database() "
            "and schema_name = 'raw' and table_name = $source",
            {"source": source},
        ).fetchall()
    }
    table = f"raw.{quote_identifier(source)}"
    if not present.issuperset(LOAD_KEYS):
        return RawRows(con.execute(f"select {_rows_hash_sql(table)}").fetchall()[0][0], None, None)
    row = f"hash({', '.join(quote_identifier(c) for c in LOAD_KEYS)})"
    rows_hash, newest, hash_through = con.execute(
        f"select {_hash_sql(row)}, max(_loaded_at), "
        f"{_hash_sql(row, '_loaded_at <= $through::timestamp')} from {table}",
        {"through": through},
    ).fetchall()[0]
    return RawRows(rows_hash, newest, hash_through if through is not None else None)


def code_fingerprint(con: duckdb.DuckDBPyConnection, profile_sql: str) -> str:
    """The md5 of what a profile is computed by: the SQL of every staging view (rendered: a
    changed mapping macro or var shows), every config table's rows (mappings the views join),
    and `profile_sql` itself (the columns the view has, and this module's SQL)."""
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
        *(_rows_hash_sql(table) for table in config_tables),
        "md5($profile)",
    ]
    return con.execute(
        f"select md5(concat_ws('|', {', '.join(parts)}))", {"profile": profile_sql}
    ).fetchall()[0][0]


def input_fingerprint(code: str, rows: RawRows) -> str:
    """The md5 of everything a source's profile is computed from: its code fingerprint and
    which rows its raw table holds."""
    return hashlib.md5(f"{code}|{rows.rows_hash}".encode()).hexdigest()


@dataclass(frozen=True)
class LastAudit:
    run_id: str
    input_fingerprint: str | None
    code_fingerprint: str | None
    loaded_through: datetime | None
    rows_hash: str | None


def _last_audit(con: duckdb.DuckDBPyConnection, source: str) -> LastAudit | None:
    """What the last audited run of `source` was computed from."""
    rows = con.execute(
        "select i.run_id, i.input_fingerprint, i.code_fingerprint, i.loaded_through, "
        "i.rows_hash from audit.data_audit_inputs as i "
        "join (select run_id, max(audited_at) as audited_at from audit.data_audit "
        "where source = $source group by run_id) as a using (run_id) "
        "where i.source = $source order by a.audited_at desc limit 1",
        {"source": source},
    ).fetchall()
    return LastAudit(*rows[0]) if rows else None


def _hashes_run(con: duckdb.DuckDBPyConnection, source: str) -> str | None:
    """The run whose rows the kept hashes of `source`'s values are."""
    rows = con.execute(
        "select run_id from audit.data_audit_distinct_run where source = $source",
        {"source": source},
    ).fetchall()
    return rows[0][0] if rows else None


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


def _column_aggregates(i: int, name: str, sql_type: str, names: set[str]) -> str:
    """The aggregates of one column's profile (typed minimum and maximum)."""
    col = quote_identifier(name)
    numeric = sql_type.upper().startswith(_NUMERIC)
    invalid = _flag_for(name, "invalid", names)
    unrecognized = _flag_for(name, "unrecognized", names)
    return f"""count({col}) as c{i}_non_null, min({col}) as c{i}_min, max({col}) as c{i}_max,
            {f"avg({col})::double" if numeric else "null::double"} as c{i}_mean,
            {f"var_samp({col})::double" if numeric else "null::double"} as c{i}_variance,
            {f"count_if({quote_identifier(invalid)})" if invalid else "null::bigint"}
                as c{i}_invalid,
            {f"count_if({quote_identifier(unrecognized)})" if unrecognized else "null::bigint"}
                as c{i}_unrecognized"""


def _timestamp_sql(timestamp_column: str, names: set[str]) -> str:
    return quote_identifier(timestamp_column) if timestamp_column in names else "null::timestamp"


def hashed_columns(
    described: list[tuple[str, str]], timestamp_column: str
) -> list[tuple[str, str, str]]:
    """(column name, expression, list column) of what `audit.data_audit_distinct` keeps the
    distinct hashes of: every profiled column, and '*' the days of the timestamp column."""
    names = {name for name, _ in described}
    hashed = [
        (name, quote_identifier(name), f"c{i}_hashes")
        for i, (name, _) in enumerate(profiled_columns(described))
    ]
    if timestamp_column in names:
        hashed.append(("*", f"{quote_identifier(timestamp_column)}::date", "_day_hashes"))
    return hashed


def profile_scan_sql(
    relation: str, described: list[tuple[str, str]], timestamp_column: str, where: str = "true"
) -> str:
    """One row of every aggregate a profile needs over the rows of `relation` that `where`
    selects, in a single scan: per column count, typed minimum and maximum, mean, variance,
    nulled and unrecognized values, and the list of its distinct values' hashes (one scan with
    lists cost what one with distinct counts did at L, 24 s for the events; a query per column
    twice that)."""
    names = {name for name, _ in described}
    aggregates = ["count(*) as _rows"] + [
        _column_aggregates(i, name, sql_type, names)
        for i, (name, sql_type) in enumerate(profiled_columns(described))
    ]
    aggregates += [
        f"coalesce(list(distinct hash({expression})) filter (where {expression} is not null), "
        f"[]) as {hashes}"
        for _, expression, hashes in hashed_columns(described, timestamp_column)
    ]
    aggregates.append(f"max({_timestamp_sql(timestamp_column, names)})::timestamp as _newest")
    return f"select {', '.join(aggregates)} from {relation} where {where}"


def column_profile_sql(
    described: list[tuple[str, str]], timestamp_column: str, distinct_counts: str
) -> str:
    """One row per column plus the `*` row of the source, from the one row of `_pz_profile`
    (`profile_scan_sql` of every row), unpivoted by a union over that row. `distinct_counts` is
    a relation of (column_name, distinct_values), '*' for the days."""
    parts = []
    for i, (name, sql_type) in enumerate(profiled_columns(described)):
        parts.append(
            f"""
            select {quote_literal(name)} as column_name, {quote_literal(sql_type)} as data_type,
                _rows as rows, c{i}_non_null as non_null,
                coalesce(d.distinct_values, 0) as distinct_values,
                c{i}_min::varchar as min_value, c{i}_max::varchar as max_value,
                c{i}_mean as mean, c{i}_variance as variance, c{i}_invalid as nulled_invalid,
                c{i}_unrecognized as unrecognized,
                null::timestamp as newest_record_at, null::double as records_per_day
            from _pz_profile
            left join _pz_distinct as d on d.column_name = {quote_literal(name)}
            """
        )
    parts.append(
        """
        select '*', 'table', _rows, _rows, null, null, null, null, null, null, null, _newest,
            _rows / nullif(coalesce(d.distinct_values, 0), 0)
        from _pz_profile
        left join _pz_distinct as d on d.column_name = '*'
        """
    )
    return f"with _pz_distinct as ({distinct_counts}) " + " union all ".join(parts)


def mergeable(described: list[tuple[str, str]]) -> bool:
    """Whether a profile of the view can be merged: rows known by load time, and every profiled
    column's minimum and maximum read back from text."""
    return any(name == "_loaded_at" for name, _ in described) and all(
        sql_type.upper().startswith(_MERGEABLE) for _, sql_type in profiled_columns(described)
    )


def merged_profile_sql(
    described: list[tuple[str, str]], timestamp_column: str, distinct_counts: str
) -> str:
    """The profile of all rows as the last profile (`audit.data_audit` of run `$last_run`,
    source `$source`) of the rows loaded through `$through`, plus the one row of `_pz_profile`
    (`profile_scan_sql` of the rows loaded after): the same rows and columns as
    `column_profile_sql`, distinct values and days from `distinct_counts`."""
    columns = profiled_columns(described)
    parts = []
    for i, (name, sql_type) in enumerate(columns):
        typed = f"cast(last.min_value as {sql_type})", f"cast(last.max_value as {sql_type})"
        parts.append(
            f"""
            select {quote_literal(name)} as column_name, {quote_literal(sql_type)} as data_type,
                last.rows + b._rows as rows,
                last.non_null + b.c{i}_non_null as non_null,
                coalesce(d.distinct_values, 0) as distinct_values,
                least({typed[0]}, b.c{i}_min)::varchar as min_value,
                greatest({typed[1]}, b.c{i}_max)::varchar as max_value,
                {_merged_moments("last", f"b.c{i}")},
                last.nulled_invalid + b.c{i}_invalid as nulled_invalid,
                last.unrecognized + b.c{i}_unrecognized as unrecognized,
                null::timestamp as newest_record_at, null::double as records_per_day
            from _pz_last as last
            cross join _pz_profile as b
            left join _pz_distinct as d on d.column_name = {quote_literal(name)}
            where last.column_name = {quote_literal(name)}
            """
        )
    parts.append(
        """
        select '*', 'table', last.rows + b._rows, last.rows + b._rows, null, null, null, null,
            null, null, null, greatest(last.newest_record_at, b._newest),
            (last.rows + b._rows) / nullif(coalesce(d.distinct_values, 0), 0)
        from _pz_last as last
        cross join _pz_profile as b
        left join _pz_distinct as d on d.column_name = '*'
        where last.column_name = '*'
        """
    )
    return f"""
        with _pz_last as (
            select * from audit.data_audit where run_id = $last_run and source = $source
        ),
        _pz_distinct as ({distinct_counts})
        """ + " union all ".join(parts)


def _merged_moments(last: str, new: str) -> str:
    """Mean and sample variance of two parts from each part's count, mean and variance
    (Chan, Golub and LeVeque's pairwise update)."""
    n0, n1 = f"{last}.non_null", f"{new}_non_null"
    m0, m1 = f"{last}.mean", f"{new}_mean"
    # sum of squared deviations of each part (var_samp is null for fewer than two values)
    ss0, ss1 = (
        f"coalesce({last}.variance * ({n0} - 1), 0)",
        f"coalesce({new}_variance * ({n1} - 1), 0)",
    )
    total = f"({n0} + {n1})"
    return f"""case
                    when {m0} is null then {m1}
                    when {m1} is null then {m0}
                    else ({m0} * {n0} + {m1} * {n1}) / {total}
                end as mean,
                case
                    when {m0} is null and {m1} is null then null
                    when {total} < 2 then null
                    else (
                        {ss0} + {ss1}
                        + coalesce(({m1} - {m0}) * ({m1} - {m0}) * {n0} * {n1} / {total}, 0)
                    ) / ({total} - 1)
                end as variance"""


def _scan(
    con: duckdb.DuckDBPyConnection,
    source: str,
    described: list[tuple[str, str]],
    timestamp_column: str,
    scan_sql: str,
    parameters: dict,
    *,
    kept: bool,
) -> None:
    """Run `scan_sql` (`profile_scan_sql`) into the temporary table `_pz_profile` and keep the
    hashes it found in `audit.data_audit_distinct`: added to the `kept` ones (the new rows of a
    merge), or instead of them."""
    con.execute(f"create or replace temp table _pz_profile as {scan_sql}", parameters)
    if not kept:
        con.execute(
            "delete from audit.data_audit_distinct where source = $source", {"source": source}
        )
    for column, _, hashes in hashed_columns(described, timestamp_column):
        found = f"select unnest({hashes}) as value_hash from _pz_profile"
        if kept:
            found = f"""
                select found.value_hash
                from ({found}) as found
                anti join (
                    select value_hash from audit.data_audit_distinct
                    where source = $source and column_name = $column
                ) as kept
                    on found.value_hash = kept.value_hash
            """
        con.execute(
            f"insert into audit.data_audit_distinct select $source, $column, value_hash "
            f"from ({found})",
            {"source": source, "column": column},
        )


def _insert_profile(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    audited_at: datetime,
    source: str,
    relation: str,
    profile: str,
    parameters: dict,
) -> None:
    """Write the rows of `profile` as this run's audit of `source`, with this run's freshness
    and quarantine count."""
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
        {"run": run_id, "at": audited_at, "source": source, "relation": relation, **parameters},
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
    freshness and quarantine count, and one that only gained rows its last profile merged with
    the new rows' (unless `forced`: a full refresh profiles every row)."""
    ensure_data_audit_table(con)
    con.execute("delete from audit.data_audit where run_id = $run", {"run": run_id})
    con.execute("delete from audit.data_audit_inputs where run_id = $run", {"run": run_id})
    reused, merged = [], []
    counts = (
        "select column_name, count(*) as distinct_values from audit.data_audit_distinct "
        "where source = $source group by column_name"
    )
    for source, (relation, timestamp_column) in relations.items():
        # Staging relations are views: one scan computes every column's profile.
        described = [(r[0], r[1]) for r in con.execute(f"describe {relation}").fetchall()]
        profile = column_profile_sql(described, timestamp_column, counts)
        merge = merged_profile_sql(described, timestamp_column, counts)
        scan = profile_scan_sql(relation, described, timestamp_column)
        code = code_fingerprint(con, "|".join([scan, profile, merge]))
        last = None if forced else _last_audit(con, source)
        rows = raw_rows(con, source, last.loaded_through if last else None)
        fingerprint = input_fingerprint(code, rows)
        parameters: dict = {}
        con.begin()  # the kept hashes move with the profile they count
        try:
            if last is not None and last.input_fingerprint == fingerprint:
                profile = (
                    "select * from audit.data_audit "
                    f"where run_id = {quote_literal(last.run_id)} "
                    f"and source = {quote_literal(source)}"
                )
                reused.append(source)
            elif (
                last is not None
                and last.code_fingerprint == code
                and last.loaded_through is not None
                and last.rows_hash == rows.hash_through
                and _hashes_run(con, source) == last.run_id
                and mergeable(described)
            ):
                parameters = {"last_run": last.run_id}
                new_rows = profile_scan_sql(
                    relation, described, timestamp_column, "_loaded_at > $through::timestamp"
                )
                _scan(
                    con,
                    source,
                    described,
                    timestamp_column,
                    new_rows,
                    {"through": last.loaded_through},
                    kept=True,
                )
                profile = merge
                merged.append(source)
            else:
                _scan(con, source, described, timestamp_column, scan, {}, kept=False)
            _insert_profile(con, run_id, audited_at, source, relation, profile, parameters)
            con.execute("drop table if exists _pz_profile")
            # whichever way, the kept hashes are now those of this run's rows
            con.execute(
                "delete from audit.data_audit_distinct_run where source = $source",
                {"source": source},
            )
            con.execute(
                "insert into audit.data_audit_distinct_run values ($source, $run)",
                {"source": source, "run": run_id},
            )
            con.execute(
                "insert into audit.data_audit_inputs (run_id, source, input_fingerprint, "
                "code_fingerprint, loaded_through, rows_hash) "
                "values ($run, $source, $fingerprint, $code, $through, $rows_hash)",
                {
                    "run": run_id,
                    "source": source,
                    "fingerprint": fingerprint,
                    "code": code,
                    "through": rows.loaded_through,
                    "rows_hash": rows.rows_hash,
                },
            )
        except BaseException:
            con.rollback()
            raise
        con.commit()
    count = con.execute(
        "select count(*) from audit.data_audit where run_id = $run", {"run": run_id}
    ).fetchall()[0][0]
    return AuditOutcome(rows=count, reused=tuple(reused), merged=tuple(merged))


def events_per_day_sql(days: int = 14) -> str:
    """Events per UTC day over the newest `days` days with data (for the audit's UI view)."""
    return f"""
        select occurred_at::date as day, count(*) as events
        from staging.stg_events__events
        where occurred_at is not null
        group by 1 order by 1 desc limit {int(days)}
    """
