"""Great Expectations suites (versioned JSON in `expectations/`) run on frames read from DuckDB.

A suite file is GX's own suite JSON plus three keys in its `meta`: `relation` (the warehouse
table it validates), `asset_key` (the Dagster asset its check attaches to) and `group` (the
multi-check that runs it, see `load_suites`), and optionally `window` (below). An expectation
whose `meta.critical` is true blocks downstream assets when it fails; the others warn.
Values known only at run time (now + tolerance, the canonical event types, the catalog's item
ids) are GX suite parameters: `{"$PARAMETER": "<name>"}` in the JSON.

GX costs ~10 s to import, so it is imported inside `validate_suites` only, and every suite of
a layer is validated in one call (one checkpoint, one Data Docs build).

GX validates pandas frames. A table bigger than `PZ_GX_MAX_ROWS` (1M) is validated on a
sample of that many rows (the same rows every run), so 20M raw events cost seconds and not
GBs; its uniqueness expectations are then counted again over every row in DuckDB (a sample
hides duplicates), and the check's metadata says how many rows the suite saw of how many.

Most rows of a big table are the same as at the last validation, so a run validates what is
new (uniqueness still over every row):
- a raw suite, the rows loaded since the event chain last built (`_loaded_at`);
- a suite whose `meta.window` names `{"relation", "column"}`, the rows whose `column` is past
  the value it had when the suite last passed (`audit.expectation_windows`). The suite's
  relation must be a projection of that one (a view of its columns, same names): the rows are
  read from it. `marts.events` is one of `intermediate.int_events_identified`, whose
  `_identified_at` says when a row was last rewritten: a night validates its 0.3M rewritten
  events, not a 1M-row sample of 17M. A failed suite keeps its last mark, so the rows that
  failed are validated again until they pass.
- a suite whose `meta.window` also names a `key`, the rows of its relation whose key has a
  `column` past the mark in the window's relation (one row per key): `marts.recommendations`
  validates the lists of the people served since it last passed
  (`ml.recommendations_served.served_at`), as its rows change only when a person is served.

A suite read from its mark passed over every row at that mark, so its uniqueness is counted
over the rows of the keys read (every row holding one of them), not the whole table: a
duplicate has at least one row rewritten (or served) since.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from dagster_project.ingest.sql import quote_identifier

SUITES_DIR = Path(__file__).resolve().parents[2] / "expectations"
_COLUMN_KWARGS = ("column", "column_A", "column_B")
_COLUMN_LIST_KWARGS = ("column_list",)
_UNIQUENESS = ("expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique")


@dataclass
class ExpectationOutcome:
    expectation: str
    column: str | None
    success: bool
    critical: bool
    unexpected_count: int | None
    observed: str | None


@dataclass
class SuiteOutcome:
    suite: str
    relation: str
    asset_key: list[str]
    rows: int
    total_rows: int
    outcomes: list[ExpectationOutcome] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return all(o.success for o in self.outcomes)

    @property
    def critical_failures(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if o.critical and not o.success]

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([vars(o) for o in self.outcomes])


def load_suites(group: str, suites_dir: Path = SUITES_DIR) -> list[dict]:
    """The suite JSON documents of one check group (`meta.group`).

    A group is validated in one step after all of its assets exist, so it holds only assets
    built together (`raw`: ingest; `marts`: dbt phase 2; `ml_marts`: dbt phase 3); a group
    spanning phases would make its blocking check wait for its own downstream assets.
    """
    documents = [json.loads(p.read_text()) for p in sorted(suites_dir.glob("*.json"))]
    return [d for d in documents if d["meta"]["group"] == group]


def referenced_columns(suite: dict) -> list[str]:
    columns: list[str] = []
    for expectation in suite["expectations"]:
        kwargs = expectation.get("kwargs", {})
        for key in _COLUMN_KWARGS:
            if key in kwargs:
                columns.append(kwargs[key])
        for key in _COLUMN_LIST_KWARGS:
            columns.extend(kwargs.get(key, []))
    return list(dict.fromkeys(columns))


@dataclass
class SuiteFrame:
    """What a suite validates: the frame (every row, the rows of a load window, or a sample of
    them) of a relation of `total_rows`, and when the frame is not the whole table, each
    uniqueness expectation's unexpected count over the whole table."""

    frame: pd.DataFrame
    total_rows: int
    full_uniqueness: dict[tuple[str, str], int] = field(default_factory=dict)
    window: str | None = None  # which rows, when not all of them
    # A suite with `meta.window`: the newest value of its column at this read (the mark the
    # next run starts after, once this one passed).
    through: datetime | None = None

    @property
    def sampled(self) -> bool:
        return len(self.frame) < self.total_rows


def _uniqueness_columns(expectation: dict) -> list[str]:
    kwargs = expectation.get("kwargs", {})
    return [kwargs["column"]] if "column" in kwargs else list(kwargs.get("column_list", []))


def _outcome_column(kwargs: dict) -> str | None:
    return kwargs.get("column") or ",".join(kwargs.get("column_list", [])) or None


def _keys(columns: list[str]) -> str:
    return ", ".join(quote_identifier(c) for c in columns)


def _duplicate_rows(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    columns: list[str],
    among: str | None = None,
) -> int:
    """Rows sharing their key with another row, as GX counts them (rows whose key columns are
    all null are ignored). With `among` (a query of key columns), only the rows whose key is
    one of its keys: all of them when no other key can repeat (the rows rewritten since the
    relation last had no duplicate). At L, the event ids of 0.3M of 17M events: 0.8 s against
    3.1 s over every row."""
    keys = _keys(columns)
    not_all_null = " or ".join(f"{quote_identifier(c)} is not null" for c in columns)
    if among is not None:
        matches = " and ".join(
            f"r.{quote_identifier(c)} is not distinct from a.{quote_identifier(c)}" for c in columns
        )
        grouped = ", ".join(f"r.{quote_identifier(c)}" for c in columns)
        return con.execute(
            f"select coalesce(sum(n), 0) from (select count(*) as n from {relation} as r "
            f"semi join (select distinct {keys} from ({among})) as a on {matches} "
            f"where {not_all_null} group by {grouped} having count(*) > 1)"
        ).fetchone()[0]
    # First the distinct hashes of the keys, one 8-byte value per row instead of the key
    # columns (at L, 1.3-1.7 s instead of 2.1-3.0 per table): rows sharing a key share its
    # hash, so as many distinct hashes as rows means no duplicate. Otherwise (a duplicate,
    # or two keys of one hash), the exact count.
    hashed = con.execute(
        f"select count(*) - count(distinct hash({keys})) from {relation} where {not_all_null}"
    ).fetchone()[0]
    if not hashed:
        return 0
    return con.execute(
        f"select coalesce(sum(n), 0) from (select count(*) as n from {relation} "
        f"where {not_all_null} group by {keys} having count(*) > 1)"
    ).fetchone()[0]


# Rows re-validated of a source that loaded nothing since the last build: its newest load
# passed when it arrived, and a night that brings no profiles or consents re-read 1M rows of
# each (at L, about 6 s a night).
RECHECK_MAX_ROWS = 10_000


def _load_window(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    since: datetime,
    column: str = "_loaded_at",
    key: str | None = None,
) -> tuple[str, str, bool]:
    """(SQL condition, description, whether the rows are new) of the rows whose `column` (when
    they were loaded or rewritten) is after `since`; when there are none, of the newest ones (a
    rerun still validates something).

    With `key` (a suite whose `meta.window` has one), `relation` holds one row per key, e.g.
    when a person's list was last served: the condition selects the suite's rows whose `key`
    has a `column` after `since` there."""
    col = quote_identifier(column)
    loads = column == "_loaded_at" and key is None

    def rows(condition: str) -> str:
        if key is None:
            return condition
        k = quote_identifier(key)
        return f"{k} in (select {k} from {relation} where {condition})"

    newer = con.execute(
        f"select count(*) from {relation} where {col} > $since", {"since": since}
    ).fetchone()[0]
    if newer:
        return (
            rows(f"{col} > timestamp '{since.isoformat(sep=' ')}'"),
            f"loaded since {since}"
            if loads
            else f"{key + 's with ' if key else ''}{column} after {since}",
            True,
        )
    newest = con.execute(f"select max({col}) from {relation}").fetchone()[0]
    if newest is None:
        return "true", "all rows", True
    return (
        rows(f"{col} = timestamp '{newest.isoformat(sep=' ')}'"),
        f"of the newest load ({newest}), nothing loaded since the last build"
        if loads
        else f"of the newest rows ({column} = {newest}), none newer since the suite last passed",
        False,
    )


def _columns_of(con: duckdb.DuckDBPyConnection, relation: str) -> set[str]:
    """The columns of `relation`, none when it does not exist."""
    try:
        return {row[0] for row in con.execute(f"describe {relation}").fetchall()}
    except duckdb.CatalogException:
        return set()


WINDOWS_DDL = """
create table if not exists audit.expectation_windows (
    run_id varchar, validated_at timestamp, suite varchar, relation varchar,
    window_column varchar, through timestamp
)
"""


def window_of(suite: dict) -> tuple[str, str] | None:
    """(relation, column) of a suite's `meta.window`: the table its relation projects and the
    column saying when a row of it was last rewritten."""
    window = suite["meta"].get("window")
    return (window["relation"], window["column"]) if window else None


def window_key(suite: dict) -> str | None:
    """The `key` of a suite's `meta.window`, if any: its relation's rows are those whose key
    the window's relation marked since the last pass (`_load_window`), not a projection."""
    return (suite["meta"].get("window") or {}).get("key")


def last_passed_through(con: duckdb.DuckDBPyConnection, suite: dict) -> datetime | None:
    """The mark of `meta.window`'s column when the suite last passed (None: it never did, or
    its window changed since)."""
    spec = window_of(suite)
    exists = con.execute(
        "select count(*) from duckdb_tables() where database_name = current_database() "
        "and schema_name = 'audit' and table_name = 'expectation_windows'"
    ).fetchone()[0]
    if spec is None or not exists:
        return None
    rows = con.execute(
        "select through from audit.expectation_windows where suite = $suite "
        "and relation = $relation and window_column = $column "
        "order by validated_at desc limit 1",
        {"suite": suite["name"], "relation": spec[0], "column": spec[1]},
    ).fetchall()
    return rows[0][0] if rows else None


def record_passed_windows(
    con: duckdb.DuckDBPyConnection,
    suites: list[dict],
    frames: dict[str, SuiteFrame],
    outcomes: list[SuiteOutcome],
    run_id: str,
    at: datetime,
) -> None:
    """Move the mark of every windowed suite that passed to what it read this run."""
    con.execute("create schema if not exists audit")
    con.execute(WINDOWS_DDL)
    passed = {outcome.suite for outcome in outcomes if outcome.success}
    for suite in suites:
        spec, frame = window_of(suite), frames.get(suite["name"])
        if spec is None or frame is None or frame.through is None:
            continue
        if suite["name"] not in passed:
            continue
        con.execute(
            "insert into audit.expectation_windows values ($run, $at, $suite, $relation, "
            "$column, $through)",
            {
                "run": run_id,
                "at": at,
                "suite": suite["name"],
                "relation": spec[0],
                "column": spec[1],
                "through": frame.through,
            },
        )


def read_suite_frame(
    con: duckdb.DuckDBPyConnection,
    suite: dict,
    max_rows: int | None = None,
    since: datetime | None = None,
) -> SuiteFrame:
    """Only the columns the suite looks at; a missing column is simply absent (and fails its
    `expect_column_to_exist`). With `since`, only the rows loaded after it (a table with
    `_loaded_at`), or rewritten after it (a suite with `meta.window`, read from the relation
    its own projects): the older ones passed before; with none, a sample of at most
    `RECHECK_MAX_ROWS` of the newest. Over `max_rows` rows, a sample of `max_rows`
    (`_hash_sample_sql`). Uniqueness is counted over the whole table, or over every row of the
    keys read when the suite passed at its mark (module docstring)."""
    relation = suite["meta"]["relation"]
    present = {row[0] for row in con.execute(f"describe {relation}").fetchall()}
    columns = [c for c in referenced_columns(suite) if c in present]
    select = ", ".join(quote_identifier(c) for c in columns) or "1 as _no_columns"
    total = con.execute(f"select count(*) from {relation}").fetchone()[0]
    source, column, through, source_columns = relation, "_loaded_at", None, present
    spec, key, marked = window_of(suite), window_key(suite), False
    if spec is not None:
        window_columns = _columns_of(con, spec[0])
        if key is None and spec[1] in window_columns and set(columns) <= window_columns:
            source, column, source_columns, marked = spec[0], spec[1], window_columns, True
        elif key is not None and spec[1] in window_columns and {key} <= window_columns & present:
            marked = True
        if marked:
            through = con.execute(
                f"select max({quote_identifier(spec[1])}) from {spec[0]}"
            ).fetchone()[0]
    condition, window, new_rows = "true", None, True
    if since is not None and marked and key is not None:
        condition, window, new_rows = _load_window(con, spec[0], since, spec[1], key)
    elif since is not None and column in source_columns:
        condition, window, new_rows = _load_window(con, source, since, column)
    if not new_rows:
        max_rows = min(max_rows or RECHECK_MAX_ROWS, RECHECK_MAX_ROWS)
    rows = con.execute(f"select count(*) from {source} where {condition}").fetchone()[0]
    if max_rows is None or rows <= max_rows:
        frame = suite_rows(con, f"select {select} from {source} where {condition}")
    elif not columns:
        frame = suite_rows(con, f"select {select} from {source} limit {int(max_rows)}")
    else:
        frame = suite_rows(con, _hash_sample_sql(source, select, condition, rows, max_rows))
    if len(frame) == total:
        return SuiteFrame(frame, total, window=window, through=through)
    # A `meta.window` suite read from its mark passed over every row at that mark: a
    # duplicate now has a row rewritten since (or of a key marked since), so only the keys of
    # those rows are counted.
    since_passed = marked and since is not None
    full = {}
    for expectation in suite["expectations"]:
        key_columns = _uniqueness_columns(expectation)
        if expectation["type"] in _UNIQUENESS and all(c in present for c in key_columns):
            column = _outcome_column(expectation.get("kwargs", {}))
            among = f"select {_keys(key_columns)} from {source} where {condition}"
            full[(expectation["type"], column)] = _duplicate_rows(
                con, relation, key_columns, among if since_passed else None
            )
    return SuiteFrame(frame, total, full, window=window, through=through)


_NULLABLE_INTEGERS = {
    pa.int8(): pd.Int8Dtype(),
    pa.int16(): pd.Int16Dtype(),
    pa.int32(): pd.Int32Dtype(),
    pa.int64(): pd.Int64Dtype(),
    pa.uint8(): pd.UInt8Dtype(),
    pa.uint16(): pd.UInt16Dtype(),
    pa.uint32(): pd.UInt32Dtype(),
    pa.uint64(): pd.UInt64Dtype(),
}


def suite_rows(con: duckdb.DuckDBPyConnection, sql: str) -> pd.DataFrame:
    """The rows of `sql` typed as DuckDB's `.df()` types them (an integer column with nulls
    as a nullable integer, a date as a datetime, a text column without a value as objects),
    read through Arrow. A 1M-row sample at L took 0.7-2.3 s instead of 1.4-3.5 s (raw
    profiles 0.75 s against 2.8, raw events 2.3 against 3.5): 8.2 s against 16.6 s for the
    suites of a full run."""
    table = con.execute(sql).fetch_arrow_table()
    frame = table.to_pandas(date_as_object=False)
    for name, column in zip(table.column_names, table.columns, strict=True):
        kind = column.type
        if kind in _NULLABLE_INTEGERS and column.null_count:
            frame[name] = column.to_pandas(types_mapper=_NULLABLE_INTEGERS.get)
        elif pa.types.is_date(kind):
            frame[name] = frame[name].astype("datetime64[us]")
        elif (pa.types.is_string(kind) or pa.types.is_large_string(kind)) and (
            column.null_count == len(column)
        ):
            frame[name] = np.full(len(frame), None, dtype=object)
    return frame


# A sample keeps the rows whose hash is below a cut: about 10 % more than wanted pass the
# filter, and the `max_rows` smallest hashes among them are the sample.
_HASH_BUCKETS = 1_000_000
_SAMPLE_SLACK = 1.1


def _hash_sample_sql(relation: str, select: str, condition: str, rows: int, max_rows: int) -> str:
    """`max_rows` of the `rows` rows of `relation` (where `condition`), chosen by a hash of the
    suite's columns: the same rows on every run and thread count, read in one parallel scan.
    DuckDB's seeded reservoir sample took 41 s of 17.6 M raw events (one thread gathers every
    row), this 5 s; rows with the same values are in or out together."""
    cut = min(_HASH_BUCKETS, math.ceil(max_rows * _SAMPLE_SLACK * _HASH_BUCKETS / rows))
    return (
        f"select {select} from (select {select}, hash({select}) as _pz_row_hash "
        f"from {relation} where {condition}) "
        f"where _pz_row_hash % {_HASH_BUCKETS} < {cut} "
        f"order by _pz_row_hash limit {int(max_rows)}"
    )


# A value set of more values than this (a suite parameter: the catalog's 20k item ids) is
# checked through a derived column. GX serializes an expectation's whole configuration, value
# set included, each of the ~100 times it reads it (pydantic v1 `.dict()`): 7 s for the 20k ids,
# whatever the rows, in each of three suites a night.
LARGE_VALUE_SET = 1_000
IN_SET = "<in set>"  # the derived column's value for a row whose value is in the set


def _derived_in_set_column(
    frame: pd.DataFrame, expectation: dict, parameters: dict
) -> tuple[dict, str | None]:
    """(expectation to validate, the derived column added to `frame` or None).

    An `expect_column_values_to_be_in_set` whose value set is a parameter of more than
    `LARGE_VALUE_SET` values is validated on a column holding `IN_SET` for a value in the set,
    the value itself otherwise, null for null, against `[IN_SET]`: the same rows pass, fail
    and are ignored (GX ignores nulls), and the unexpected values GX lists are the real ones.
    """
    kwargs = expectation.get("kwargs", {})
    value_set = kwargs.get("value_set")
    if (
        expectation.get("type") != "expect_column_values_to_be_in_set"
        or not isinstance(value_set, dict)
        or "$PARAMETER" not in value_set
        or kwargs.get("column") not in frame.columns
    ):
        return expectation, None
    name = value_set["$PARAMETER"]
    values = parameters.get(name)
    if not isinstance(values, list | tuple | set) or len(values) <= LARGE_VALUE_SET:
        return expectation, None
    column = kwargs["column"]
    derived = f"{column}__in__{name}"
    original = frame[column]
    frame[derived] = original.astype(object).where(~original.isin(values), IN_SET)
    note = (
        f"`{column}` checked against the {len(values):,} values of `{name}`, as `{derived}` "
        f"(`{IN_SET}` when in the set): GX is slow with a large value set."
    )
    meta = {**(expectation.get("meta") or {}), "notes": note}
    kwargs = {**kwargs, "column": derived, "value_set": [IN_SET]}
    return {**expectation, "kwargs": kwargs, "meta": meta}, derived


def _observed(result: dict) -> str | None:
    value = result.get("observed_value")
    return None if value is None else str(value)[:200]


def validate_suites(
    suites: list[dict],
    frames: dict[str, SuiteFrame],
    parameters: dict,
    docs_dir: Path,
) -> list[SuiteOutcome]:
    """Validate each suite against its frame in one GX checkpoint; write Data Docs HTML.

    On a sampled frame, a uniqueness expectation's outcome is the whole table's count. A value
    set of more than `LARGE_VALUE_SET` values is checked through a derived column
    (`_derived_in_set_column`), reported under the column it checks."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx
    from great_expectations.core import ExpectationSuite
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    docs_dir.mkdir(parents=True, exist_ok=True)
    context.add_data_docs_site(
        site_name="warehouse",
        site_config={
            "class_name": "SiteBuilder",
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(docs_dir),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    datasource = context.data_sources.add_pandas("warehouse")
    outcomes = []
    for document in suites:
        name = document["name"]
        suite_frame = frames[name]
        frame = suite_frame.frame.copy(deep=False)
        suite = ExpectationSuite(name=name, meta=document.get("meta", {}))
        checks = {}  # derived column -> the column it checks
        for expectation in document["expectations"]:
            validated, derived = _derived_in_set_column(frame, expectation, parameters)
            if derived is not None:
                checks[derived] = expectation["kwargs"]["column"]
            suite.add_expectation_configuration(ExpectationConfiguration(**validated))
        suite = context.suites.add(suite)
        batch = datasource.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=name, data=batch, suite=suite)
        )
        result = definition.run(
            batch_parameters={"dataframe": frame},
            expectation_parameters=parameters,
            result_format="SUMMARY",
        )
        outcome = SuiteOutcome(
            suite=name,
            relation=document["meta"]["relation"],
            asset_key=list(document["meta"]["asset_key"]),
            rows=len(suite_frame.frame),
            total_rows=suite_frame.total_rows,
        )
        for expectation_result in result.results:
            config = expectation_result.expectation_config
            details = expectation_result.result or {}
            column = _outcome_column(config.kwargs)
            column = checks.get(column, column)
            success = bool(expectation_result.success)
            unexpected = details.get("unexpected_count")
            observed = _observed(details)
            if (config.type, column) in suite_frame.full_uniqueness:
                unexpected = suite_frame.full_uniqueness[(config.type, column)]
                success = unexpected == 0
                observed = f"{unexpected} duplicate rows in all {suite_frame.total_rows} rows"
            outcome.outcomes.append(
                ExpectationOutcome(
                    expectation=config.type,
                    column=column,
                    success=success,
                    critical=bool((config.meta or {}).get("critical", False)),
                    unexpected_count=unexpected,
                    observed=observed,
                )
            )
        outcomes.append(outcome)
    context.build_data_docs(site_names=["warehouse"])
    return outcomes
