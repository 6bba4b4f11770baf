"""Load landing files into `raw.<source>` tables: manifest, validation, quarantine, PII tokens.

For every file of a source:
1. it is compared with `audit.load_manifest`: a file with the size and modification time it
   loaded with is skipped without being read; otherwise its sha256 decides: unchanged files are
   skipped, identical content under another name is recorded as a duplicate delivery and not
   loaded again, and a changed file under a known name replaces the rows of its previous
   version (`PZ_REHASH=1` hashes every file);
2. it is read with DuckDB into a frame of varchar columns (`_line` numbers its rows);
3. rows breaking the contract go to `audit.quarantine` with file, line and reason, the rest go
   to `raw.<source>` with PII replaced by keyed tokens and timestamps parsed to UTC;
4. rows read = rows loaded + rows quarantined, recorded in the manifest.
Each file is one transaction: a crash never leaves half a file behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import duckdb

from dagster_project.ingest.sources import (
    METADATA_COLUMNS,
    SOURCES,
    SUPPORTED_SUFFIXES,
    SourceSpec,
)
from dagster_project.ingest.sql import ZONE_HOURS_SQL, quote_identifier, quote_literal
from dagster_project.quality.audit import ensure_data_audit_table

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 64 * 1024 * 1024  # a "very long field" is data, not an error
# The CSV reader's buffer. Left to DuckDB, it is 16 lines of MAX_LINE_BYTES (1 GB): a 1.9 GB
# file then splits into two buffers for two threads, and a gzip file crawls. One line's worth
# read the L tier's files in 40-60 % of the time (a 266 MB gzip of JSON lines: 7.4 -> 3.1 s).
READ_BUFFER_BYTES = MAX_LINE_BYTES
# Set to 1 to hash every landing file, even those whose size and modification time did not
# change since they loaded (a file rewritten in place with its old time kept).
REHASH_VARIABLE = "PZ_REHASH"
FRAME = "_pz_frame"  # temp view: one file's rows, normalized to the contract


@dataclass
class FileResult:
    file: str
    source: str
    sha256: str
    size_bytes: int
    status: str  # loaded | replaced | unchanged | duplicate_content | quarantined
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    message: str = ""
    mtime_ns: int | None = None


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def raw_table_ddl(spec: SourceSpec) -> str:
    columns = [f"{quote_identifier(c)} varchar" for c in spec.raw_columns]
    columns += [f"_{ts.name} timestamp" for ts in spec.timestamps]
    columns += [f"{name} {sql_type}" for name, sql_type in METADATA_COLUMNS.items()]
    return f"create table if not exists raw.{spec.name} ({', '.join(columns)})"


def ensure_tables(con: duckdb.DuckDBPyConnection, pii_schema: str = "pii") -> None:
    """Create every raw, audit and PII-zone table (empty) so downstream always finds them."""
    con.execute("create schema if not exists raw; create schema if not exists audit;")
    for spec in SOURCES.values():
        con.execute(raw_table_ddl(spec))
    con.execute(
        """
        create table if not exists audit.load_manifest (
            file varchar, source varchar, sha256 varchar, size_bytes bigint, status varchar,
            rows_read bigint, rows_loaded bigint, rows_quarantined bigint,
            loaded_at timestamp, message varchar, is_current boolean, mtime_ns bigint
        );
        -- warehouses created before the column existed
        alter table audit.load_manifest add column if not exists mtime_ns bigint;
        create table if not exists audit.quarantine (
            source varchar, file varchar, line bigint, reason varchar, raw_record varchar,
            quarantined_at timestamp
        );
        """
    )
    ensure_data_audit_table(con)  # published with the audit tables, even before a first audit
    profiles = SOURCES["profiles"]
    pii_cols = ", ".join(f"{c} varchar" for c in profiles.pii_zone_columns)
    con.execute(
        f"""
        create schema if not exists {pii_schema}.main;
        create table if not exists {pii_schema}.main.profiles (
            record_id varchar, source_system varchar, {pii_cols},
            _file varchar, _line bigint, _loaded_at timestamp
        );
        create table if not exists {pii_schema}.main.quarantine (
            source varchar, file varchar, line bigint, raw_record varchar,
            quarantined_at timestamp
        );
        """
    )


# --------------------------------------------------------------------------------------------
# Reading one file into the frame
# --------------------------------------------------------------------------------------------


def file_format(path: Path) -> str | None:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".gzip", ".zst"):
        suffixes = suffixes[:-1]
    return SUPPORTED_SUFFIXES.get(suffixes[-1]) if suffixes else None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def gzip_problem(path: Path) -> str | None:
    """Why a gzip file is unusable (truncated, corrupt), or None; streams, in C (zlib).

    DuckDB reads the intact part of a truncated gzip without complaint, so an incomplete
    delivery must be caught here, before any of its rows are loaded as if they were all.
    """
    decompressor = zlib.decompressobj(wbits=31)
    try:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                while block:
                    decompressor.decompress(block)
                    block = decompressor.unused_data  # next member of a multi-member file
                    if block:
                        decompressor = zlib.decompressobj(wbits=31)
    except zlib.error as error:
        return f"corrupt gzip: {error}"
    if not decompressor.eof:
        return "truncated gzip: the compressed stream ends early"
    return None


def _clean(expression: str) -> str:
    """`nullif(trim(x), '')`, with trim only where it can change something: DuckDB's trim
    decodes every character of the string, which cost about 1 s per million rows of a dozen
    columns; a value without a space at either end and without a non-ASCII character (where
    a Unicode space could be) is already trimmed."""
    x = expression
    return (
        f"nullif(case when starts_with({x}, ' ') or ends_with({x}, ' ') "
        f"or strlen({x}) <> length({x}) then trim({x}) else {x} end, '')"
    )


def _normalize_name(name: str) -> str:
    return "_".join(name.strip().lower().replace("-", " ").split())


def _frame_from_columns(
    con: duckdb.DuckDBPyConnection, spec: SourceSpec, table: str, rejects: bool = False
) -> set[str]:
    """Define FRAME over a relation of varchar columns; return the contract columns present.

    FRAME is a view: the file's rows are materialized once, in `_pz_checked`. With `rejects`,
    the lines DuckDB's reader rejected are part of it too (see `_reader_rejects`)."""
    columns = [row[0] for row in con.execute(f"describe {table}").fetchall()]
    columns = [c for c in columns if c != "_line"]
    by_contract: dict[str, str] = {}
    extras: list[str] = []
    for column in columns:
        normalized = _normalize_name(column)
        if normalized in spec.columns and normalized not in by_contract:
            by_contract[normalized] = column
        else:
            extras.append(column)
    selects = [
        f"{_clean(quote_identifier(by_contract[c]))} as {quote_identifier(c)}"
        if c in by_contract
        else f"null::varchar as {quote_identifier(c)}"
        for c in spec.columns
    ]
    if extras:
        pairs = ", ".join(f"{quote_literal(c)}, {quote_identifier(c)}" for c in extras)
        selects.append(f"json_object({pairs})::varchar as extra")
    else:
        selects.append("null::varchar as extra")
    raw_record = (
        "json_object("
        + ", ".join(f"{quote_literal(c)}, {quote_identifier(c)}" for c in columns)
        + ")::varchar"
    )
    con.execute(
        f"""
        create or replace temp view {FRAME} as
        select _line, {", ".join(selects)}, {raw_record} as _raw, null::varchar as _read_error,
               false as _rejected
        from {table} as r
        {_reader_rejects(spec) if rejects else ""}
        """
    )
    return set(by_contract)


def _drop_rejects(con: duckdb.DuckDBPyConnection) -> None:
    """DuckDB keeps reject tables between scans; start every file from empty ones."""
    con.execute("drop table if exists _pz_rejects; drop table if exists _pz_scans")


def _number_rows_around_rejects(
    con: duckdb.DuckDBPyConnection, table: str, header_lines: int
) -> None:
    """Give the rows of `table` their data-row number in the file, counting rejected lines.

    The reader numbers only the rows it accepted; the k-th accepted row sits after every
    rejected row r_j (the j-th rejected) with r_j - j < k, so its number is k plus their count.
    """
    con.execute(
        f"""
        create or replace temp table _pz_reject_lines as
        select line - {header_lines} as r, row_number() over (order by line) as j
        from (select distinct line from _pz_rejects
              where scan_id = (select max(scan_id) from _pz_scans));
        update {table} set _line = _line + (
            select count(*) from _pz_reject_lines where r - j < {table}._line
        )
        where exists (select 1 from _pz_reject_lines);
        """
    )


def _reader_rejects(spec: SourceSpec) -> str:
    """`union all` the lines DuckDB's reader rejected (wrong field count, bad encoding...) to
    FRAME, one row per line.

    Their number is the physical line in the file (header included), which is what a person
    opening the file, and the sample data's ground truth, count."""
    nulls = ", ".join(f"null::varchar as {quote_identifier(c)}" for c in spec.columns)
    return f"""
        union all
        select line as _line, {nulls}, null::varchar as extra, any_value(csv_line) as _raw,
               string_agg(distinct error_type || ': ' || error_message, '; ') as _read_error,
               true as _rejected
        from _pz_rejects
        where scan_id = (select max(scan_id) from _pz_scans)
        group by line
    """


# Up to this many lines rejected by the CSV reader, the accepted rows are numbered by an
# expression (one comparison per rejected line); beyond, by a numbered copy updated in place.
MAX_REJECTS_NUMBERED_INLINE = 64


def _read_csv(con: duckdb.DuckDBPyConnection, spec: SourceSpec, path: Path) -> set[str]:
    _drop_rejects(con)
    con.execute(
        """
        create or replace temp table _pz_csv as
        select *
        from read_csv($path, all_varchar = true, header = true, store_rejects = true,
                      rejects_table = '_pz_rejects', rejects_scan = '_pz_scans',
                      max_line_size = $max_line, buffer_size = $buffer, filename = false)
        """,
        {"path": str(path), "max_line": MAX_LINE_BYTES, "buffer": READ_BUFFER_BYTES},
    )
    # Rows DuckDB's CSV reader rejected (wrong field count, bad encoding, ...): one per line.
    return _frame_from_columns(con, spec, _numbered_csv(con, header_lines=1), rejects=True)


def _numbered_csv(con: duckdb.DuckDBPyConnection, header_lines: int) -> str:
    """`_pz_csv` with `_line`, each row's data-row number counting the rejected lines.

    A fresh table's rowid is the row's position among the accepted rows (`row_number() over
    ()` runs on one thread: 2.3 s of a 3.5M-row file). The k-th accepted row sits after every
    rejected row r_j (the j-th rejected) with r_j - j < k: its number is k plus their count,
    one comparison per rejected line. A file with a `rowid` column (it hides the pseudo-column)
    or many rejected lines is numbered the slow way."""
    columns = {row[0].lower() for row in con.execute("describe _pz_csv").fetchall()}
    shifts = [
        row[0]
        for row in con.execute(
            f"""
            select line - {header_lines} - row_number() over (order by line)
            from (select distinct line from _pz_rejects
                  where scan_id = (select max(scan_id) from _pz_scans))
            order by 1
            """
        ).fetchall()
    ]
    if "rowid" in columns or len(shifts) > MAX_REJECTS_NUMBERED_INLINE:
        con.execute(
            "create or replace temp table _pz_csv_numbered as "
            "select row_number() over () as _line, * from _pz_csv"
        )
        _number_rows_around_rejects(con, "_pz_csv_numbered", header_lines)
        return "_pz_csv_numbered"
    after = "".join(f" + (rowid + 1 > {int(shift)})::bigint" for shift in shifts)
    con.execute(
        f"create or replace temp view _pz_csv_lines as select rowid + 1{after} as _line, * "
        "from _pz_csv"
    )
    return "_pz_csv_lines"


def _read_jsonl(con: duckdb.DuckDBPyConnection, spec: SourceSpec, path: Path) -> set[str]:
    _drop_rejects(con)
    # The lines, in file order: a fresh table's rowid is the line's position (numbering them
    # with `row_number() over ()` in the read runs on one thread: 1.8 s of 3.5 s for 5M lines).
    con.execute(
        """
        create or replace temp table _pz_lines as
        select raw
        from read_csv($path, columns = {'raw': 'VARCHAR'}, header = false, delim = '\x1f',
                      quote = '', escape = '', store_rejects = true,
                      rejects_table = '_pz_rejects', rejects_scan = '_pz_scans',
                      max_line_size = $max_line, buffer_size = $buffer, strict_mode = false)
        """,
        {"path": str(path), "max_line": MAX_LINE_BYTES, "buffer": READ_BUFFER_BYTES},
    )
    # One pass parses each line (yyjson, a few times over: type, values, keys) into the
    # contract's values as a list. Parsing is cheap; materializing a parsed form is not (a MAP
    # of every object cost more than all the parses together; storing each line's key list,
    # 2-4 s of 8-10 s for 5.2M lines, so only its hash is kept). A malformed line's type is
    # null: `try` catches json_type's error (one parse; json_valid first was a second, and
    # 23.2-23.9 s against 26.2-26.7 s for the 3.8M lines of a gzip file). Never
    # `json_valid(raw) and json_type(raw) = ...`: DuckDB reorders the terms of an AND at run
    # time (adaptive filters), and json_type throws on a malformed line, which failed whole
    # files of a few hundred thousand lines.
    paths = ", ".join(quote_literal("$." + quote_identifier(c)) for c in spec.columns)
    con.execute(
        f"""
        create or replace temp table _pz_objects as
        select _line, raw, _kind,
               case when _kind = 'OBJECT' then json_extract_string(raw, [{paths}]) end
                   as _values,
               case when _kind = 'OBJECT' then hash(json_keys(raw)) end as _keys_hash
        from (select rowid + 1 as _line, raw,
                     try(json_type(raw)) as _kind
              -- blank lines are not rows (a regex: trim decodes all of a long line)
              from _pz_lines where not regexp_full_match(raw, '[\\s\\p{{Zs}}]*'))
        """
    )
    con.execute("drop table if exists _pz_lines")
    _number_rows_around_rejects(con, "_pz_objects", header_lines=0)
    # Every key of the file: those of one line per distinct key list (by its hash; two lists
    # of one hash would take 2^32 distinct lists to be likely).
    keys = [
        row[0]
        for row in con.execute(
            "select distinct unnest(json_keys(raw)) as k "
            "from (select any_value(raw) as raw from _pz_objects "
            "      where _keys_hash is not null group by _keys_hash) order by k"
        ).fetchall()
    ]
    # The key lists most lines share, from a sample; a line with one of those (checked here,
    # without duplicates) skips the per-line duplicate-key check: `list_distinct` of every
    # line's keys cost 3.5 s of 7 s checking 5M lines.
    common = [
        row[0]
        for row in con.execute(
            "select _keys_hash, json_keys(any_value(raw)) from "
            "(select _keys_hash, raw from _pz_objects using sample 4096 rows) "
            "where _keys_hash is not null group by _keys_hash "
            "order by count(*) desc, _keys_hash limit 8"
        ).fetchall()
        if len(set(row[1])) == len(row[1])
    ]
    duplicate_keys = "len(json_keys(raw)) <> len(list_distinct(json_keys(raw)))"
    if common:
        hashes = ", ".join(f"{int(h)}::ubigint" for h in common)
        duplicate_keys = f"case when _keys_hash in ({hashes}) then false else {duplicate_keys} end"
    known = [k for k in keys if k in spec.columns]
    selects = [
        f"{_clean(f'_values[{index}]')} as {quote_identifier(c)}"
        for index, c in enumerate(spec.columns, start=1)
    ]
    outside = [k for k in keys if k not in spec.columns]
    if outside:
        # The keys outside the contract that the file has, each extracted by its JSON pointer
        # ('~' and '/' escaped, RFC 6901), written as an object of those a line has. Turning
        # every object into a MAP and filtering it cost 8 s per 4M lines; this, under 1 s.
        pointers = ", ".join(
            quote_literal("/" + k.replace("~", "~0").replace("/", "~1")) for k in outside
        )
        source = f"(select *, json_extract(raw, [{pointers}]) as _extra_values from _pz_objects)"
        # `||` with a null is null, and concat_ws skips nulls: only the keys a line has
        members = ", ".join(
            f"{quote_literal(json.dumps(k, ensure_ascii=False) + ':')} || _extra_values[{index}]"
            for index, k in enumerate(outside, start=1)
        )
        extra = f"""
            case when _kind = 'OBJECT'
                then nullif('{{' || concat_ws(',', {members}) || '}}', '{{}}') end"""
    else:
        source, extra = "_pz_objects", "null::varchar"
    con.execute(
        f"""
        create or replace temp view {FRAME} as
        select _line, {", ".join(selects)}, {extra} as extra, raw as _raw,
               case
                   when _kind is null then 'malformed JSON'
                   when _kind <> 'OBJECT' then 'JSON value is not an object'
                   when {duplicate_keys} then 'JSON object has duplicate keys'
               end as _read_error,
               false as _rejected
        from {source}
        {_reader_rejects(spec)}
        """
    )
    return set(known)


def _read_parquet(con: duckdb.DuckDBPyConnection, spec: SourceSpec, path: Path) -> set[str]:
    source = quote_literal(str(path))
    # The reader's own row number (parallel; `row_number() over ()` runs on one thread), unless
    # the file has a column of that name.
    names = [
        row[0].lower() for row in con.execute(f"describe from read_parquet({source})").fetchall()
    ]
    numbered = (
        f"select row_number() over () as _line, * from read_parquet({source})"
        if "file_row_number" in names
        else "select file_row_number + 1 as _line, * exclude (file_row_number) "
        f"from read_parquet({source}, file_row_number = true)"
    )
    con.execute(f"create or replace temp view _pz_parquet_typed as {numbered}")
    described = con.execute("describe _pz_parquet_typed").fetchall()
    casts = []
    for name, sql_type, *_ in described:
        if name == "_line":
            continue
        nested = any(t in sql_type for t in ("STRUCT", "[]", "MAP", "UNION", "JSON"))
        expr = (
            f"to_json({quote_identifier(name)})::varchar"
            if nested
            else f"{quote_identifier(name)}::varchar"
        )
        casts.append(f"{expr} as {quote_identifier(name)}")
    con.execute(
        f"create or replace temp view _pz_parquet as select _line, {', '.join(casts)} "
        "from _pz_parquet_typed"
    )
    return _frame_from_columns(con, spec, "_pz_parquet")


READERS = {"csv": _read_csv, "jsonl": _read_jsonl, "parquet": _read_parquet}


# --------------------------------------------------------------------------------------------
# Validating and writing the frame
# --------------------------------------------------------------------------------------------


def _missing_columns_reason(spec: SourceSpec, present: set[str]) -> str | None:
    missing = [c for c in spec.required_columns if c not in present]
    missing += [
        " or ".join(group) for group in spec.required_any_of if not present.intersection(group)
    ]
    if missing:
        return "file lacks required column(s): " + ", ".join(missing)
    return None


def _reason_expression(spec: SourceSpec, file_reason: str | None) -> str:
    checks = []
    for reason, predicate in spec.row_rules:
        checks.append(f"case when {predicate} then {quote_literal(reason)} end")
    for ts in spec.timestamps:
        if not ts.required:
            continue
        column = quote_identifier(_timestamp_source_column(ts))
        # a zone named but not known (its row of the zone table says so: `_typed_timestamps`)
        unknown_tz = (
            f"when {ts.timezone_column} is not null and not coalesce({_zone_known(ts)}, false) "
            f"then 'unknown timezone: ' || left({ts.timezone_column}, 64) "
            if ts.timezone_column
            else ""
        )
        checks.append(
            f"case when {column} is null then 'missing {ts.name}' "
            f"when _{ts.name} is not null then null {unknown_tz}"
            f"else 'unparseable timestamp: ' || left({column}, 64) end"
        )
    # A row the reader could not parse, or a file without a required column, has one reason;
    # otherwise every broken rule is listed. '' means the row is good.
    first = ["_read_error"] + ([quote_literal(file_reason)] if file_reason else [])
    return f"coalesce({', '.join(first)}, nullif(concat_ws('; ', {', '.join(checks)}), ''), '')"


def _timestamp_source_column(ts) -> str:
    return ts.source_column or ts.name


def _zone_hours_table(ts) -> str:
    return f"_pz_zone_hours_{ts.name}"


def _zone_known(ts) -> str:
    return f"_{ts.name}_zone_known"


def _typed_timestamps(con: duckdb.DuckDBPyConnection, spec: SourceSpec) -> tuple[list[str], str]:
    """The typed timestamp columns of FRAME (as `f`) and the joins they need: a timestamp in
    a named zone takes its hour's offset, and whether the zone is known at all, from a table
    of the frame's (zone, hour) pairs (`ZONE_HOURS_SQL`), built here.

    Each row with a zone meets exactly one row of that table (the hour of a value that is not
    a local time is null, matched as such). Asking `pz_timezones` about every row instead
    (`zone in (select ...)`) cost three joins over all the rows, 1.4 s of 6.3 s at 3.5M rows,
    whatever branch a row took."""
    columns, joins = [], []
    for ts in spec.timestamps:
        column = f"f.{quote_identifier(_timestamp_source_column(ts))}"
        if ts.timezone_column is None:
            columns.append(f"pz_parse_ts({column}, null, null, null) as _{ts.name}")
            continue
        tz = f"f.{quote_identifier(ts.timezone_column)}"
        table = _zone_hours_table(ts)
        con.execute(
            f"create or replace temp table {table} as "
            + ZONE_HOURS_SQL.format(ts=column, tz=tz, source=f"{FRAME} as f")
        )
        columns.append(
            f"pz_parse_ts({column}, {tz}, {table}.zone_offset, {table}.is_known) as _{ts.name}"
        )
        columns.append(f"{table}.is_known as {_zone_known(ts)}")
        joins.append(
            f"left join {table} on {table}.zone = trim({tz}) and {table}.hour "
            f"is not distinct from date_trunc('hour', try_cast(trim({column}) as timestamp))"
        )
    return columns, " ".join(joins)


def _check_frame(con: duckdb.DuckDBPyConnection, spec: SourceSpec, file_reason: str | None) -> None:
    """Turn FRAME into `_pz_checked`: typed timestamps and a `_reason` ('' = good row), and
    `_pz_bad_raw`: the raw record of each bad row.

    Only the bad rows' records are kept: at L, copying every line of a 1.9 GB file into
    `_pz_checked` spilled to disk, and a CSV or Parquet row's record is a JSON object built
    from its columns."""
    typed, joins = _typed_timestamps(con, spec)
    con.execute(
        f"""
        create or replace temp table _pz_checked as
        with typed as (
            select f.* exclude (_raw){", " + ", ".join(typed) if typed else ""}
            from {FRAME} as f {joins}
        )
        select *, {_reason_expression(spec, file_reason)} as _reason from typed
        """
    )
    con.execute(
        f"""
        create or replace temp table _pz_bad_raw as
        select f._line, f._rejected, f._raw from {FRAME} as f
        {_bad_rows_filter(con)}
        """
    )
    _drop_scratch(con)


# Up to this many bad rows, `_pz_bad_raw` picks them from FRAME by a list of their lines.
MAX_BAD_ROWS_LISTED = 10_000


def _bad_rows_filter(con: duckdb.DuckDBPyConnection) -> str:
    """The clause that keeps FRAME's bad rows, for `_pz_bad_raw`.

    A list of their lines is a filter DuckDB pushes below FRAME's projection, so only the bad
    rows build their raw record (a CSV or Parquet row's is a JSON object of all its columns);
    joined to the bad rows instead, every row built it first: 1.2 s of a 3.5M-row CSV file
    with one bad row. Beyond a few thousand bad rows, the join."""
    bad = con.execute(
        f"select _line, _rejected from _pz_checked where _reason <> '' "
        f"limit {MAX_BAD_ROWS_LISTED + 1}"
    ).fetchall()
    if len(bad) > MAX_BAD_ROWS_LISTED:
        return (
            "semi join (select _line, _rejected from _pz_checked where _reason <> '') as bad "
            "using (_line, _rejected)"
        )
    accepted = [int(line) for line, rejected in bad if not rejected] or [-1]
    rejected = [int(line) for line, rejected in bad if rejected] or [-1]
    return (
        f"where (not f._rejected and f._line in ({', '.join(map(str, accepted))})) "
        f"or (f._rejected and f._line in ({', '.join(map(str, rejected))}))"
    )


def _drop_checked(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("drop table if exists _pz_checked; drop table if exists _pz_bad_raw")


_SCRATCH_VIEWS = (FRAME, "_pz_csv_lines", "_pz_parquet", "_pz_parquet_typed")
_SCRATCH_TABLES = (
    "_pz_csv",
    "_pz_csv_numbered",
    "_pz_lines",
    "_pz_objects",
    "_pz_reject_lines",
)


def _drop_scratch(con: duckdb.DuckDBPyConnection) -> None:
    """Drop what a reader left behind (FRAME's views first, then the tables under them)."""
    for view in _SCRATCH_VIEWS:
        con.execute(f"drop view if exists {view}")
    zone_hours = [_zone_hours_table(ts) for spec in SOURCES.values() for ts in spec.timestamps]
    for table in (*_SCRATCH_TABLES, *zone_hours):
        con.execute(f"drop table if exists {table}")


def _write_pii_zone(
    con: duckdb.DuckDBPyConnection, spec: SourceSpec, relative: str, at, has_rows: bool
) -> None:
    """Replace this file's rows in the PII zone (its own transaction: DuckDB writes one
    database per transaction). Runs before the warehouse commit, so a crash in between makes
    the next run load the file again and rewrite the same rows."""
    if not spec.holds_pii:
        return
    params = {"file": relative, "at": at, "source": spec.name}
    con.execute("begin transaction")
    try:
        con.execute("delete from pii.main.quarantine where file = $file", {"file": relative})
        if spec.pii_zone_columns:
            con.execute("delete from pii.main.profiles where _file = $file", {"file": relative})
        if not has_rows:
            con.execute("commit")
            return
        con.execute(
            """
            insert into pii.main.quarantine
            select $source, $file, _line, b._raw, $at
            from _pz_checked left join _pz_bad_raw as b using (_line, _rejected) where _reason <> ''
            """,
            params,
        )
        if spec.pii_zone_columns:
            plain = ", ".join(quote_identifier(c) for c in spec.pii_zone_columns)
            con.execute(
                f"""
                insert into pii.main.profiles
                select record_id, source_system, {plain}, $file, _line, $at
                from _pz_checked where _reason = ''
                """,
                {"file": relative, "at": at},
            )
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise


# A PII column is tokenized once per distinct value (then joined back by its value) when it
# holds at most this share of distinct values among its non-null ones; else row by row. An
# HMAC is two SHA-256s: at L, the 787k records of one CRM file took 3.4 s row by row and 1.8 s
# with names and addresses (13k, 8k and 204k distinct values) tokenized per value. Emails and
# phones, nearly one per row, gain nothing from the join.
MAX_DISTINCT_SHARE_PER_VALUE = 0.5


def _tokens_per_value(con: duckdb.DuckDBPyConnection, spec: SourceSpec) -> list[str]:
    """The PII columns of `spec` worth tokenizing per distinct value (by approximate counts of
    the good rows of `_pz_checked`)."""
    columns = list(spec.pii_columns)
    if not columns:
        return []
    counts = con.execute(
        "select "
        + ", ".join(
            f"count({quote_identifier(c)}), approx_count_distinct({quote_identifier(c)})"
            for c in columns
        )
        + " from _pz_checked where _reason = ''"
    ).fetchall()[0]
    return [
        c
        for i, c in enumerate(columns)
        if counts[2 * i] and counts[2 * i + 1] <= MAX_DISTINCT_SHARE_PER_VALUE * counts[2 * i]
    ]


def _write_warehouse(
    con: duckdb.DuckDBPyConnection, spec: SourceSpec, relative: str, sha: str, at
) -> tuple[int, int]:
    per_value = _tokens_per_value(con, spec)
    tokens = [  # one CTE per column tokenized per value: its values and their tokens
        f"_pz_tokens_{i} as (select v, pz_token({quote_literal(spec.pii_columns[c])}, v) as t "
        f"from (select distinct {quote_identifier(c)} as v from _pz_checked "
        f"where _reason = '' and {quote_identifier(c)} is not null))"
        for i, c in enumerate(per_value)
    ]
    values = [
        f"_pz_tokens_{per_value.index(c)}.t"
        if c in per_value
        else f"pz_token({quote_literal(spec.pii_columns[c])}, r.{quote_identifier(c)})"
        if c in spec.pii_columns
        else f"r.{quote_identifier(c)}"
        for c in spec.columns
    ]
    values += [f"r._{ts.name}" for ts in spec.timestamps]
    joins = " ".join(
        f"left join _pz_tokens_{i} on r.{quote_identifier(c)} = _pz_tokens_{i}.v"
        for i, c in enumerate(per_value)
    )
    con.execute(
        f"""
        insert into raw.{spec.name}
        {"with " + ", ".join(tokens) if tokens else ""}
        select {", ".join(values)}, r.extra, $file, r._line, $sha, $at
        from _pz_checked as r {joins} where r._reason = '' order by r._line
        """,
        {"file": relative, "sha": sha, "at": at},
    )
    # A PII-bearing source keeps the raw record in the PII zone only.
    public_raw = "null" if spec.holds_pii else "b._raw"
    con.execute(
        f"""
        insert into audit.quarantine
        select $source, $file, _line, _reason, {public_raw}, $at
        from _pz_checked left join _pz_bad_raw as b using (_line, _rejected)
        where _reason <> '' order by _line
        """,
        {"file": relative, "at": at, "source": spec.name},
    )
    loaded, quarantined = con.execute(
        "select count(*) filter (where _reason = ''), count(*) filter (where _reason <> '') "
        "from _pz_checked"
    ).fetchall()[0]
    return loaded, quarantined


# --------------------------------------------------------------------------------------------
# One file, one source
# --------------------------------------------------------------------------------------------


def _forget_file(
    con: duckdb.DuckDBPyConnection, spec: SourceSpec, relative: str, old_sha: str
) -> None:
    """Remove every warehouse row a previous version of this file contributed.

    Files skipped earlier as copies of that version are forgotten too, so they load again.
    """
    params = {"file": relative}
    con.execute(
        "update audit.load_manifest set is_current = false "
        "where status = 'duplicate_content' and sha256 = $sha",
        {"sha": old_sha},
    )
    con.execute(f"delete from raw.{spec.name} where _file = $file", params)
    con.execute("delete from audit.quarantine where file = $file", params)
    con.execute("update audit.load_manifest set is_current = false where file = $file", params)


def _record(con: duckdb.DuckDBPyConnection, result: FileResult, loaded_at: datetime) -> None:
    row = asdict(result)
    con.execute(
        """
        insert into audit.load_manifest (
            file, source, sha256, size_bytes, status, rows_read, rows_loaded,
            rows_quarantined, loaded_at, message, is_current, mtime_ns
        ) values (
            $file, $source, $sha256, $size_bytes, $status, $rows_read, $rows_loaded,
            $rows_quarantined, $loaded_at, $message, true, $mtime_ns
        )
        """,
        {**row, "loaded_at": loaded_at},
    )


def _read_and_check(
    con: duckdb.DuckDBPyConnection,
    spec: SourceSpec,
    path: Path,
    result: FileResult,
    gzip_check: Future[str | None] | None = None,
) -> bool:
    """Read the file into `_pz_checked`; False when the file is rejected whole (or empty).

    `gzip_check` (a gzip file's `gzip_problem`, running in a thread beside the read) is
    waited for after DuckDB has read the file: a corrupt or truncated stream rejects the file
    whatever DuckDB made of it."""
    fmt = file_format(path)
    if fmt is None:
        result.status = "quarantined"
        result.message = f"unsupported file type {''.join(path.suffixes) or '(no extension)'}"
        return False
    if path.stat().st_size == 0:
        result.message = "empty file: no rows"
        return False
    error_message = None
    try:
        present = READERS[fmt](con, spec, path)
        file_reason = _missing_columns_reason(spec, present)
        # FRAME is a view: the file is read to the end here, so a broken file fails here.
        _check_frame(con, spec, file_reason)
        if not con.execute("select count(*) from _pz_checked").fetchall()[0][0]:
            # Nothing to lose: an empty delivery is not a broken one (a JSON file without rows
            # names no columns at all); the manifest says why nothing loaded.
            has_header = fmt != "jsonl" and file_reason
            result.message = "no data rows" + (f" (and {file_reason})" if has_header else "")
            file_reason = None
    except duckdb.Error as error:
        _drop_scratch(con)
        error_message = str(error).strip().splitlines()[0][:500]
    problem = gzip_check.result() if gzip_check is not None else None
    if problem or error_message:
        _drop_checked(con)
        result.status = "quarantined"
        result.message = f"unreadable {fmt} file: {problem or error_message}"
        return False
    if file_reason:
        result.status = "quarantined"
        result.message = file_reason
    return True


def ingest_file(
    con: duckdb.DuckDBPyConnection,
    spec: SourceSpec,
    path: Path,
    raw_dir: Path,
    loaded_at: datetime,
    rehash: bool = False,
) -> FileResult:
    """Load one file (one transaction) unless it is unchanged: same size and modification
    time as when it loaded (or, with `rehash`, or when those differ: the same sha256)."""
    relative = path.relative_to(raw_dir).as_posix()
    stat = path.stat()
    previous = con.execute(
        "select sha256, size_bytes, mtime_ns from audit.load_manifest "
        "where file = $file and is_current",
        {"file": relative},
    ).fetchall()
    previous = previous[0] if previous else None
    if previous and (previous[1], previous[2]) == (stat.st_size, stat.st_mtime_ns) and not rehash:
        # Same size, same modification time: the file loaded before (not read, not hashed).
        return FileResult(relative, spec.name, previous[0], stat.st_size, status="unchanged")
    # The file is hashed (and a gzip file's stream checked) in threads while DuckDB reads it:
    # hashlib and zlib release the GIL, and DuckDB leaves a core idle on a gzip file (one
    # stream, one decompressing thread). The read is wasted only when the hash then says the
    # file is unchanged or a copy of another, which is rare (a touched file, a re-delivery).
    # At L (3.4 GB of events) hashing and the check took 15 s one after the other.
    result = FileResult(
        relative, spec.name, "", stat.st_size, status="loaded", mtime_ns=stat.st_mtime_ns
    )
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="pz-ingest") as pool:
        hashing = pool.submit(sha256_of, path)
        gzip_check = (
            pool.submit(gzip_problem, path) if path.suffix.lower() in (".gz", ".gzip") else None
        )
        has_rows = _read_and_check(con, spec, path, result, gzip_check)
        result.sha256 = sha = hashing.result()
    if previous and previous[0] == sha:
        _drop_checked(con)
        # Touched but not changed: remember the new time, so the next run need not hash it.
        con.execute(
            "update audit.load_manifest set mtime_ns = $mtime where file = $file and is_current",
            {"mtime": stat.st_mtime_ns, "file": relative},
        )
        return FileResult(
            relative, spec.name, sha, stat.st_size, status="unchanged", mtime_ns=stat.st_mtime_ns
        )
    twin = con.execute(
        """
        select file from audit.load_manifest
        where sha256 = $sha and is_current and file <> $file and status in ('loaded', 'replaced')
        order by file limit 1
        """,
        {"sha": sha, "file": relative},
    ).fetchall()
    twin = twin[0] if twin else None
    if twin:
        _drop_checked(con)
        has_rows = False
        result = FileResult(
            relative,
            spec.name,
            sha,
            stat.st_size,
            status="duplicate_content",
            mtime_ns=stat.st_mtime_ns,
            message=f"same content as {twin[0]}, already loaded; not loaded again",
        )
    else:
        if previous and result.status == "loaded":
            result.status = "replaced"
        if has_rows or previous:
            _write_pii_zone(con, spec, relative, loaded_at, has_rows)

    con.execute("begin transaction")
    try:
        if previous:
            _forget_file(con, spec, relative, previous[0])
        if has_rows:
            result.rows_loaded, result.rows_quarantined = _write_warehouse(
                con, spec, relative, sha, loaded_at
            )
            result.rows_read = result.rows_loaded + result.rows_quarantined
            if result.rows_read == 0 and not result.message:
                result.message = "no data rows"
        elif result.status == "quarantined":
            con.execute(
                "insert into audit.quarantine values ($source, $file, null, $reason, null, $at)",
                {"source": spec.name, "file": relative, "reason": result.message, "at": loaded_at},
            )
        _record(con, result, loaded_at)
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    finally:
        _drop_checked(con)
        _drop_scratch(con)
    return result


def landing_files(raw_dir: Path, source: str) -> list[Path]:
    folder = raw_dir / source
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def ingest_source(
    con: duckdb.DuckDBPyConnection,
    source: str,
    raw_dir: Path,
    loaded_at: datetime,
    progress: Callable[[str], None] = log.info,
) -> list[FileResult]:
    """Load every new or changed file of one source; return one result per file seen."""
    spec = SOURCES[source]
    results = []
    files = landing_files(raw_dir, source)
    rehash = os.environ.get(REHASH_VARIABLE) == "1"
    progress(
        f"{source}: {len(files)} file(s) in {raw_dir / source}"
        + (f" ({REHASH_VARIABLE}=1: every file hashed)" if rehash else "")
    )
    for path in files:
        result = ingest_file(con, spec, path, raw_dir, loaded_at, rehash=rehash)
        progress(
            f"{source}: {result.file} -> {result.status}: read {result.rows_read}, "
            f"loaded {result.rows_loaded}, quarantined {result.rows_quarantined}"
            + (f" ({result.message})" if result.message else "")
        )
        results.append(result)
    return results
