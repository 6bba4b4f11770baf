"""When a step may reuse its last model selection instead of choosing again.

Model selection (recommendations: the holdout evaluation of every candidate; propensity: both
model families fitted and compared on a later window; clustering: every k from k_min to k_max)
is the larger part of those steps' time, and its winner rarely changes from one day of data to
the next. So a step chooses again only when

- it never chose, or the operator asked for a full refresh (`incremental.full_refresh_requested`);
- `reselect_every_days` is 0 (choose every run), or that many days of data (the run's as_of)
  passed since its last choice;
- the run's as_of is before the last choice's (a backfill must not choose with later data);
- a setting the choice depends on changed (every setting of the step but those in `ignore`).

Other runs refit the chosen model on the night's data: every output is still tonight's.

`audit.model_selection(step, selected_at, as_of, chosen, settings_sha256)` has a row per
selection of every step. Recommendations kept theirs in `audit.recommender_selection` before:
the first selection recorded moves those rows here and leaves a view of that name behind.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import duckdb

SELECTION_TABLE = "audit.model_selection"
LEGACY_RECOMMENDER_TABLE = "audit.recommender_selection"
REUSE_KEY = "reselect_every_days"
_COLUMNS = "selected_at, as_of, chosen, settings_sha256"


@dataclass(frozen=True)
class Selection:
    """A step's last model selection: when, on data up to which as_of, and what it chose."""

    selected_at: datetime
    as_of: datetime | None
    chosen: str


def settings_sha256(settings: dict, ignore: Iterable[str] = (REUSE_KEY,)) -> str:
    """What a model selection depends on: the step's settings but those in `ignore`."""
    ignored = set(ignore)
    chosen_on = {k: v for k, v in settings.items() if k not in ignored}
    return hashlib.sha256(json.dumps(chosen_on, sort_keys=True, default=str).encode()).hexdigest()


def reusable_selection(
    con: duckdb.DuckDBPyConnection,
    step: str,
    settings: dict,
    as_of: datetime | None,
    *,
    forced: bool = False,
    ignore: Iterable[str] = (REUSE_KEY,),
) -> tuple[Selection | None, str]:
    """`step`'s last model selection when this run may reuse it, else None; and why."""
    days = int(settings.get(REUSE_KEY) or 0)
    if forced:
        return None, "full refresh requested"
    if days <= 0:
        return None, f"{REUSE_KEY} is 0: every run"
    last = _last_row(con, step)
    if last is None:
        return None, "no earlier model selection"
    selected_at, last_as_of, chosen, sha = last
    if sha != settings_sha256(settings, ignore):
        return None, f"the {step} settings changed since the last model selection"
    if as_of is None or last_as_of is None or as_of - last_as_of >= timedelta(days=days):
        return None, f"the last model selection is {days} or more days of data old"
    if as_of < last_as_of:  # a run back in time (`as_of`) must not choose with later data
        return None, "the last model selection saw data after this run's as_of"
    return Selection(selected_at, last_as_of, chosen), (
        f"reused (selection of {last_as_of:%Y-%m-%d}, {REUSE_KEY}: {days})"
    )


def record_selection(
    con: duckdb.DuckDBPyConnection,
    step: str,
    settings: dict,
    as_of: datetime | None,
    chosen: str,
    *,
    ignore: Iterable[str] = (REUSE_KEY,),
) -> datetime:
    """Remember that `step` chose `chosen` tonight, on data up to `as_of`; returns the
    selection's `selected_at` (what a model stored for it is kept under)."""
    _ensure_table(con)
    selected_at = datetime.now(UTC).replace(tzinfo=None)
    con.execute(
        f"insert into {SELECTION_TABLE} values ($step, $at, $as_of, $chosen, $sha)",
        {
            "step": step,
            "at": selected_at,
            "as_of": as_of,
            "chosen": chosen,
            "sha": settings_sha256(settings, ignore),
        },
    )
    return selected_at


def _table_type(con: duckdb.DuckDBPyConnection, qualified: str) -> str | None:
    schema, name = qualified.split(".")
    found = con.execute(
        "select table_type from information_schema.tables where table_catalog = "
        "current_database() and table_schema = $schema and table_name = $name",
        {"schema": schema, "name": name},
    ).fetchall()
    return found[0][0] if found else None


def _last_row(con: duckdb.DuckDBPyConnection, step: str) -> tuple | None:
    sources = []
    if _table_type(con, SELECTION_TABLE):
        sources.append(f"select step, {_COLUMNS} from {SELECTION_TABLE}")
    if _table_type(con, LEGACY_RECOMMENDER_TABLE) == "BASE TABLE":  # not moved yet
        sources.append(
            f"select 'recommendations' as step, {_COLUMNS} from {LEGACY_RECOMMENDER_TABLE}"
        )
    if not sources:
        return None
    rows = con.execute(
        f"select {_COLUMNS} from ({' union all '.join(sources)}) "
        "where step = $step order by selected_at desc limit 1",
        {"step": step},
    ).fetchall()
    return rows[0] if rows else None


def _ensure_table(con: duckdb.DuckDBPyConnection) -> None:
    """Create the table; move the rows of `audit.recommender_selection`, then a view of it."""
    con.execute("create schema if not exists audit")
    con.execute(
        f"create table if not exists {SELECTION_TABLE} (step varchar, selected_at timestamp, "
        "as_of timestamp, chosen varchar, settings_sha256 varchar)"
    )
    if _table_type(con, LEGACY_RECOMMENDER_TABLE) == "VIEW":
        return
    con.execute("begin")
    try:
        if _table_type(con, LEGACY_RECOMMENDER_TABLE) == "BASE TABLE":
            con.execute(
                f"insert into {SELECTION_TABLE} select 'recommendations', {_COLUMNS} "
                f"from {LEGACY_RECOMMENDER_TABLE}"
            )
            con.execute(f"drop table {LEGACY_RECOMMENDER_TABLE}")
        con.execute(
            f"create view {LEGACY_RECOMMENDER_TABLE} as select {_COLUMNS} from {SELECTION_TABLE} "
            "where step = 'recommendations'"
        )
        con.execute("commit")
    except duckdb.Error:
        con.execute("rollback")
        raise
