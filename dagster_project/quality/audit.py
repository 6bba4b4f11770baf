"""The data audit: per run, source and column, what arrived and how usable it was.

Profiles the typed dbt staging views (one per raw source): rows, completeness, distinct
values, min / max / mean / variance of numbers, values nulled as invalid or unrecognized (the
staging flags `is_<column>_invalid` / `is_<column>_unrecognized`), and per source one `*` row
with freshness (age of the newest record), records per day and rows quarantined at ingest.
All SQL, in DuckDB.

A night should not profile 17M events to learn about the 0.7M it loaded. So, per source:

- **Reused.** A source whose profile cannot have changed since the last audit (a night lands
  events and contexts, not profiles or consents) gets that profile again, with this run's
  freshness and quarantine count. Its fingerprint covers which rows its raw table holds, every
  staging view's SQL, every config table and the audit's own SQL.
- **Merged.** A source that only gained rows since its last audit (the rows loaded up to
  then are exactly those, and the views, config and audit SQL are as then) profiles only the
  rows loaded since, and merges that with its last profile: counts add up, min / max compare
  as values, means and sample variances combine exactly (up to float rounding). Distinct
  values cannot be added up, so the audit keeps, per source and column, the 64-bit hash of
  every distinct value it profiled (`audit.data_audit_distinct`; `*`: the days of the
  timestamp column, for records per day): a night counts only its new rows' values that are
  not kept yet. At L that is about 40M hashes (the events' 17M ids and 2M timestamps
  most of them), and a night's events audit reads 0.7M rows instead of 17M (1.9 s against
  15-18 s). Two different values with the same hash would count once: at 17M values, about
  one chance in 100,000. The scan that profiles rows also collects their hashes.
- **Profiled whole** otherwise: the first audit, a deleted raw row (erasure, a replaced
  file), a changed view, config row or audit SQL, a full refresh (`make full-refresh`, the run
  tag `pz/full_refresh`). Its distinct values are kept again from scratch. The audit runs
  after the identity step, whose erasure check deletes the raw rows of erased people it
  finds through their identifiers: profiled before it, the next night would find rows
  deleted and profile the source whole again.

A raw table's rows are known by their load keys (`_file`, `_line`, `_loaded_at`), not by their
content: the pipeline changes a raw table only by loading rows (each load has its own
`_loaded_at`; a replaced file's rows are deleted and loaded again) and by deleting them
(erasure). Hashing every column of the 17M raw events took 3-9 s of each night at L, the keys
0.3 s. An edit of a raw row by hand, outside the pipeline, is not seen; a full refresh
profiles every source again. Merging needs the staging view to hold one row per raw row, with
`_loaded_at` passed through, as every staging view does.
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


# Per source, what its kept distinct values (audit.data_audit_distinct) and last profile were
# computed from (not published): the run, `definitions_fingerprint`, the newest load and the
# hash of the load keys of the rows profiled. Sources without load keys have no load.
STATE_DDL = """
create table if not exists audit.data_audit_state (
    source varchar, run_id varchar, definitions varchar, loaded_through timestamp,
    loaded_rows_hash varchar
)
"""
# Per source and column, the hash of every distinct value profiled (`*`: the days of the
# source's timestamp column), so a night counts the distinct values of its new rows against
# them instead of over every row (not published; erasure deletes raw rows, which re-profiles).
DISTINCT_DDL = """
create table if not exists audit.data_audit_distinct (
    source varchar, column_name varchar, value_hash ubigint
)
"""
# Changes when the way profiles are merged does: every source is then profiled whole once.
_MERGE_VERSION = "merge-1"


def ensure_data_audit_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create schema if not exists audit")
    con.execute(DATA_AUDIT_DDL)
    con.execute(INPUTS_DDL)
    con.execute(STATE_DDL)
    con.execute(DISTINCT_DDL)


@dataclass(frozen=True)
class AuditOutcome:
    rows: int  # rows of audit.data_audit written for the run
    reused: tuple[str, ...]  # sources whose last profile was still current
    seconds: dict[str, float] = field(default_factory=dict)  # per source, its profile's time
    merged: tuple[str, ...] = ()  # sources whose new rows were merged into the last profile


LOAD_KEYS = ("_file", "_line", "_loaded_at")  # which load a raw row came from, and where


def _rows_hash_sql(table: str, columns: tuple[str, ...] = ()) -> str:
    """Row count, xor and sum of a hash of every row, or of its `columns` (the sum catches a
    repeated pair)."""
    row = f"hash({', '.join(quote_identifier(c) for c in columns)})" if columns else "hash(t)"
    return (
        f"(select count(*) || ':' || coalesce(bit_xor({row}), 0) || ':' "
        f"|| coalesce(sum({row}::hugeint), 0) from {table} as t)"
    )


def definitions_fingerprint(con: duckdb.DuckDBPyConnection, profile_sql: str) -> str:
    """What a profile is computed with, as one md5: the SQL of every staging view (rendered:
    a changed mapping macro or var shows), every config table's rows (mappings the views join)
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
        "md5($merge)",
    ]
    return con.execute(
        f"select md5(concat_ws('|', {', '.join(parts)}))",
        {"profile": profile_sql, "merge": _MERGE_VERSION},
    ).fetchall()[0][0]


def _md5(con: duckdb.DuckDBPyConnection, text: str) -> str:
    return con.execute("select md5($text)", {"text": text}).fetchall()[0][0]


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
    relation: str,
    described: list[tuple[str, str]],
    timestamp_column: str,
    *,
    distinct: bool = True,
) -> str:
    """One row per column plus the `*` row of the source, from a single scan: every aggregate
    in one `select` (one row), unpivoted by a union over that row. Without `distinct`, the
    distinct values and records per day (which need every value seen) are left null: the
    audit counts them from its kept distinct values instead (`write_data_audit`)."""
    aggregates = _profile_aggregates(described, timestamp_column, distinct=distinct)
    return (
        f"with _pz_profile as materialized (select {', '.join(aggregates)} from {relation}) "
        + _unpivoted_profile_sql(described, "_pz_profile")
    )


def _profile_aggregates(
    described: list[tuple[str, str]],
    timestamp_column: str,
    *,
    distinct: bool = True,
    hashes: bool = False,
) -> list[str]:
    """The aggregates of `column_profile_sql`'s scan; with `hashes`, also the list of the
    distinct hashes of each column's values (`c<i>_hashes`) and of the timestamp's days
    (`_day_hashes`), in the same scan: building the distinct values to keep in separate scans
    made a whole profile of the L events take 18-21 s instead of 11-12."""
    names = {name for name, _ in described}
    aggregates = ["count(*) as _rows"]
    for i, (name, sql_type) in enumerate(profiled_columns(described)):
        col = quote_identifier(name)
        numeric = sql_type.upper().startswith(_NUMERIC)
        invalid = _flag_for(name, "invalid", names)
        unrecognized = _flag_for(name, "unrecognized", names)
        aggregates.append(
            f"""count({col}) as c{i}_non_null,
            {f"count(distinct {col})" if distinct else "null::bigint"} as c{i}_distinct,
            min({col})::varchar as c{i}_min, max({col})::varchar as c{i}_max,
            {f"avg({col})::double" if numeric else "null::double"} as c{i}_mean,
            {f"var_samp({col})::double" if numeric else "null::double"} as c{i}_variance,
            {f"count_if({quote_identifier(invalid)})" if invalid else "null::bigint"}
                as c{i}_invalid,
            {f"count_if({quote_identifier(unrecognized)})" if unrecognized else "null::bigint"}
                as c{i}_unrecognized"""
        )
        if hashes:
            aggregates.append(
                f"list(distinct hash({col})) filter (where {col} is not null) as c{i}_hashes"
            )
    ts = quote_identifier(timestamp_column) if timestamp_column in names else "null::timestamp"
    per_day = f"count(*) / nullif(count(distinct {ts}::date), 0)" if distinct else "null::double"
    aggregates.append(f"max({ts})::timestamp as _newest, {per_day} as _per_day")
    if hashes and timestamp_column in names:
        aggregates.append(
            f"list(distinct hash({ts}::date)) filter (where {ts} is not null) as _day_hashes"
        )
    return aggregates


def _unpivoted_profile_sql(described: list[tuple[str, str]], profile: str) -> str:
    """The rows of the profile from the one row of `profile` (`_profile_aggregates`)."""
    parts = [
        f"""
            select {quote_literal(name)} as column_name, {quote_literal(sql_type)} as data_type,
                _rows as rows, c{i}_non_null as non_null, c{i}_distinct as distinct_values,
                c{i}_min as min_value, c{i}_max as max_value, c{i}_mean as mean,
                c{i}_variance as variance, c{i}_invalid as nulled_invalid,
                c{i}_unrecognized as unrecognized,
                null::timestamp as newest_record_at, null::double as records_per_day
            from {profile}
            """
        for i, (name, sql_type) in enumerate(profiled_columns(described))
    ]
    parts.append(
        f"""
        select '*', 'table', _rows, _rows, null, null, null, null, null, null, null, _newest,
            _per_day
        from {profile}
        """
    )
    return " union all ".join(parts)


def _hashes_sql(described: list[tuple[str, str]], timestamp_column: str, profile: str) -> str:
    """(column_name, value_hash) of the hash lists of `profile` (`_profile_aggregates`)."""
    names = {name for name, _ in described}
    branches = [
        f"select {quote_literal(name)} as column_name, unnest(c{i}_hashes) as value_hash "
        f"from {profile}"
        for i, (name, _) in enumerate(profiled_columns(described))
    ]
    if timestamp_column in names:
        branches.append(f"select '*', unnest(_day_hashes) from {profile}")
    return " union all ".join(branches)


# Types whose min / max survive the trip through varchar (audit.data_audit keeps them as text):
# a kept profile's min and the new rows' min are compared as values, not as text ('10' < '9').
_ROUND_TRIP = (*_NUMERIC, "VARCHAR", "BOOLEAN", "DATE", "TIMESTAMP", "TIME", "UUID")


def _merged_profile_sql(described: list[tuple[str, str]]) -> str:
    """audit.data_audit's columns from `_pz_new` (the profile of the rows not yet profiled,
    `column_profile_sql(distinct=False)`) and `_pz_old` (the kept profile of the others, or no
    rows), with distinct values and records per day from `_pz_counts` (column_name, n: the
    source's kept distinct values). Counts and sums add up; min / max compare as values; means
    and sample variances combine exactly (Chan et al.: the sums of squared deviations add, plus
    the shift between the two means), up to float rounding."""
    bounds = {
        kind: " ".join(
            f"when {quote_literal(name)} then "
            f"{'least' if kind == 'min' else 'greatest'}("
            f"_pz_old.{kind}_value::{sql_type}, _pz_new.{kind}_value::{sql_type})::varchar"
            for name, sql_type in profiled_columns(described)
        )
        for kind in ("min", "max")
    }
    n_old, n_new = "coalesce(_pz_old.non_null, 0)", "_pz_new.non_null"
    combined_m2 = (
        f"coalesce(_pz_old.variance * ({n_old} - 1), 0) "
        f"+ coalesce(_pz_new.variance * ({n_new} - 1), 0) "
        f"+ (_pz_new.mean - _pz_old.mean) ** 2 * {n_old} * {n_new} / ({n_old} + {n_new})"
    )
    return f"""
        select
            _pz_new.column_name,
            _pz_new.data_type,
            _pz_new.rows + coalesce(_pz_old.rows, 0) as rows,
            _pz_new.non_null + coalesce(_pz_old.non_null, 0) as non_null,
            case when _pz_new.column_name <> '*' then coalesce(_pz_counts.n, 0) end
                as distinct_values,
            case _pz_new.column_name {bounds["min"] or "when null then null"} end as min_value,
            case _pz_new.column_name {bounds["max"] or "when null then null"} end as max_value,
            case
                when _pz_old.mean is null then _pz_new.mean
                when _pz_new.mean is null then _pz_old.mean
                else (_pz_old.mean * {n_old} + _pz_new.mean * {n_new}) / ({n_old} + {n_new})
            end as mean,
            case
                when _pz_old.mean is null then _pz_new.variance
                when _pz_new.mean is null then _pz_old.variance
                else ({combined_m2}) / ({n_old} + {n_new} - 1)
            end as variance,
            _pz_new.nulled_invalid + coalesce(_pz_old.nulled_invalid, 0) as nulled_invalid,
            _pz_new.unrecognized + coalesce(_pz_old.unrecognized, 0) as unrecognized,
            greatest(_pz_old.newest_record_at, _pz_new.newest_record_at) as newest_record_at,
            case when _pz_new.column_name = '*' then
                (_pz_new.rows + coalesce(_pz_old.rows, 0)) / nullif(_pz_counts.n, 0)
            end as records_per_day
        from _pz_new
        left join _pz_old on _pz_new.column_name = _pz_old.column_name
        left join _pz_counts on _pz_new.column_name = _pz_counts.column_name
    """


def _latest_audited_run(con: duckdb.DuckDBPyConnection, source: str) -> str | None:
    rows = con.execute(
        "select run_id from audit.data_audit where source = $source "
        "order by audited_at desc limit 1",
        {"source": source},
    ).fetchall()
    return rows[0][0] if rows else None


@dataclass(frozen=True)
class _Loaded:
    """What a raw table holds, by load keys: its newest load, and a hash of its rows' keys."""

    through: datetime | None
    rows_hash: str


def _loaded(con: duckdb.DuckDBPyConnection, source: str, through: datetime | None = None):
    """`_Loaded` of `raw.<source>`, or of its rows loaded up to `through`."""
    table = f"raw.{quote_identifier(source)}"
    if through is not None:
        table = (
            f"(select * from {table} where _loaded_at <= "
            f"timestamp {quote_literal(through.isoformat(sep=' '))})"
        )
    newest, rows_hash = con.execute(
        f"select (select max(_loaded_at) from {table}), {_rows_hash_sql(table, LOAD_KEYS)}"
    ).fetchall()[0]
    return _Loaded(newest, rows_hash)


def _mergeable_since(
    con: duckdb.DuckDBPyConnection,
    source: str,
    described: list[tuple[str, str]],
    definitions: str,
) -> tuple[str, datetime] | None:
    """(the run whose profile holds the older rows, the newest load it profiled) when the
    profile of `source` can be the last one merged with the rows loaded since: the raw table
    has load keys, the staging view passes `_loaded_at` through and its columns keep their
    values through text, the view's SQL and the config are as then (`definitions`), the last
    audit of the source is the kept one, and the rows loaded up to then are still exactly
    those (no erasure or replaced file deleted one)."""
    names = {name for name, _ in described}
    if "_loaded_at" not in names or not _has_load_keys(con, source):
        return None
    if not all(t.upper().startswith(_ROUND_TRIP) for _, t in profiled_columns(described)):
        return None
    state = con.execute(
        "select run_id, definitions, loaded_through, loaded_rows_hash "
        "from audit.data_audit_state where source = $source",
        {"source": source},
    ).fetchall()
    if not state:
        return None
    run_id, kept_definitions, through, rows_hash = state[0]
    if kept_definitions != definitions or through is None:
        return None
    if _latest_audited_run(con, source) != run_id:
        return None
    if _loaded(con, source, through).rows_hash != rows_hash:
        return None
    return run_id, through


def _has_load_keys(con: duckdb.DuckDBPyConnection, source: str) -> bool:
    present = {
        name
        for (name,) in con.execute(
            "select column_name from duckdb_columns() where database_name = current_database() "
            "and schema_name = 'raw' and table_name = $source",
            {"source": source},
        ).fetchall()
    }
    return present.issuperset(LOAD_KEYS)


def _profile(
    con: duckdb.DuckDBPyConnection,
    source: str,
    relation: str,
    described: list[tuple[str, str]],
    timestamp_column: str,
    since: tuple[str, datetime] | None,
) -> str:
    """Profile the rows of `relation` not yet profiled (all of them without `since`), keep
    their distinct values, and return the SQL of the source's whole profile: the new rows'
    merged with the kept one (`_merged_profile_sql`). Runs inside the caller's transaction."""
    if since is None:
        new_rows = relation
        con.execute("delete from audit.data_audit_distinct where source = $s", {"s": source})
        old = "select * from audit.data_audit where false"
    else:
        base_run, through = since
        new_rows = (
            f"(select * from {relation} where _loaded_at > "
            f"timestamp {quote_literal(through.isoformat(sep=' '))})"
        )
        old = (
            f"select * from audit.data_audit where run_id = {quote_literal(base_run)} "
            f"and source = {quote_literal(source)}"
        )
    # One scan of the new rows: their profile and the distinct hashes of every column.
    aggregates = _profile_aggregates(described, timestamp_column, distinct=False, hashes=True)
    con.execute(
        f"create or replace temp table _pz_scan as select {', '.join(aggregates)} from {new_rows}"
    )
    con.execute(
        f"""
        insert into audit.data_audit_distinct
        select {quote_literal(source)}, fresh.column_name, fresh.value_hash
        from ({_hashes_sql(described, timestamp_column, "_pz_scan")}) as fresh
        anti join (
            select column_name, value_hash from audit.data_audit_distinct
            where source = {quote_literal(source)}
        ) as kept
            on fresh.column_name = kept.column_name and fresh.value_hash = kept.value_hash
        """
    )
    con.execute(
        "create or replace temp table _pz_new as " + _unpivoted_profile_sql(described, "_pz_scan")
    )
    con.execute(f"create or replace temp table _pz_old as {old}")
    con.execute(
        "create or replace temp table _pz_counts as select column_name, count(*) as n "
        "from audit.data_audit_distinct where source = $s group by column_name",
        {"s": source},
    )
    return _merged_profile_sql(described)


_TEMP_TABLES = ("_pz_scan", "_pz_new", "_pz_old", "_pz_counts")


def write_data_audit(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    audited_at: datetime,
    relations: dict[str, tuple[str, str]] = AUDITED_RELATIONS,
    *,
    forced: bool = False,
) -> AuditOutcome:
    """Profile every staging relation into `audit.data_audit` for this run (the module's
    docstring says when a source's last profile is reused or merged with its new rows; a
    full refresh, `forced`, profiles every source whole), with this run's freshness and
    quarantine count."""
    ensure_data_audit_table(con)
    con.execute("delete from audit.data_audit where run_id = $run", {"run": run_id})
    con.execute("delete from audit.data_audit_inputs where run_id = $run", {"run": run_id})
    reused, merged, seconds = [], [], {}
    for source, (relation, timestamp_column) in relations.items():
        started = time.perf_counter()
        described = [(r[0], r[1]) for r in con.execute(f"describe {relation}").fetchall()]
        definitions = definitions_fingerprint(
            con, column_profile_sql(relation, described, timestamp_column)
        )
        # Which rows the raw table holds: by their load keys when it has them (see the
        # module's docstring), else by every column.
        loaded = _loaded(con, source) if _has_load_keys(con, source) else None
        raw_rows = (
            loaded.rows_hash
            if loaded
            else con.execute(
                f"select {_rows_hash_sql(f'raw.{quote_identifier(source)}')}"
            ).fetchall()[0][0]
        )
        fingerprint = _md5(con, f"{definitions}|{raw_rows}")
        last_run = None if forced else _reusable_run(con, source, fingerprint)
        con.execute("begin transaction")
        try:
            if last_run is not None:
                profile = (
                    "select * from audit.data_audit where run_id = "
                    f"{quote_literal(last_run)} and source = {quote_literal(source)}"
                )
                reused.append(source)
            else:
                since = None if forced else _mergeable_since(con, source, described, definitions)
                profile = _profile(con, source, relation, described, timestamp_column, since)
                if since is not None:
                    merged.append(source)
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
            # The kept distinct values are those of the rows this run's profile counts.
            con.execute("delete from audit.data_audit_state where source = $s", {"s": source})
            con.execute(
                "insert into audit.data_audit_state values ($source, $run, $definitions, "
                "$through, $rows_hash)",
                {
                    "source": source,
                    "run": run_id,
                    "definitions": definitions,
                    "through": loaded.through if loaded else None,
                    "rows_hash": loaded.rows_hash if loaded else None,
                },
            )
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
        finally:
            for table in _TEMP_TABLES:
                con.execute(f"drop table if exists temp.{table}")
        seconds[source] = round(time.perf_counter() - started, 2)
    rows = con.execute(
        "select count(*) from audit.data_audit where run_id = $run", {"run": run_id}
    ).fetchall()[0][0]
    return AuditOutcome(rows=rows, reused=tuple(reused), merged=tuple(merged), seconds=seconds)


def events_per_day_sql(days: int = 14) -> str:
    """Events per UTC day over the newest `days` days with data (for the audit's UI view)."""
    return f"""
        select occurred_at::date as day, count(*) as events
        from staging.stg_events__events
        where occurred_at is not null
        group by 1 order by 1 desc limit {int(days)}
    """
