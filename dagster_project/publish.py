"""Publish a read-only snapshot of the output tables for SQL readers, atomically.

The working warehouse belongs to the pipeline (DuckDB allows one writer and no readers beside
it). Readers use `$PZ_DATA_DIR/published/personalization.duckdb`, which is written next to the
old one under a temporary name and moved into place with one `rename`: a reader sees the old
snapshot or the new one, never half of one, and an open reader keeps its file. A run killed
mid-publish leaves the old snapshot in place and a hidden staging file, which the next publish
deletes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import duckdb

from dagster_project.encryption import STORAGE_VERSION
from dagster_project.ingest.sql import quote_identifier, quote_literal

# Published name -> relation in the working warehouse (DESIGN.md "Outputs").
PUBLISHED_TABLES: dict[str, str] = {
    "user_profiles": "marts.user_profiles",
    "identity_map": "marts.identity_map",
    "user_profiles_history": "snapshots.user_profiles_history",
    "identity_evaluation": "ml.identity_evaluation",
    "identity_changes": "ml.identity_changes",
    "identity_guardrail_firings": "ml.identity_guardrail_firings",
    "events": "marts.events",
    "sessions": "marts.sessions",
    "items": "marts.items",
    "user_features": "marts.user_features",
    "user_segments": "marts.user_segments",
    "segment_quality": "marts.segment_quality",
    "segment_drift": "marts.segment_drift",
    "recommendations": "marts.recommendations",
    "recommendation_evaluation": "marts.recommendation_evaluation",
    "experiment_assignments": "marts.experiment_assignments",
    "experiment_results": "marts.experiment_results",
    "load_manifest": "audit.load_manifest",
    "quarantine": "audit.quarantine",
    "data_audit": "audit.data_audit",
}


def existing_relations(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute(
        "select table_schema || '.' || table_name from information_schema.tables "
        "where table_catalog = current_database()"
    ).fetchall()
    return {r[0] for r in rows}


def remove_stale_staging(target: Path) -> list[Path]:
    """Delete staging files a killed publish left next to `target` (and their WAL files).

    Only the pipeline publishes, and it holds the working warehouse's write lock while it does,
    so no other publish can be writing one of these files now.
    """
    stale = sorted(target.parent.glob(f".{target.name}.*.tmp")) + sorted(
        target.parent.glob(f".{target.name}.*.tmp.wal")
    )
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# The published events are most of the snapshot (17 M rows took 29 of ~50 s at 1M people) and
# a night changes few of them: when the last snapshot can be trusted, it is copied and only the
# events the identified-events model (re)wrote since are replaced (`_events_delta`).
EVENTS = "events"
IDENTIFIED_EVENTS = "intermediate.int_events_identified"
# Above this share of changed events (a full rebuild of the event models), copying all is cheaper.
MAX_DELTA_SHARE = 0.5
# The recommendations (21.8 M rows at 1M people) are the other large table, and between model
# selections a night serves again only some people (dagster_project/recommendation_refresh.py):
# the snapshot's rows of the others are kept, by the served_at of `ml.recommendations_served`.
RECOMMENDATIONS = "recommendations"
SERVED = "ml.recommendations_served"
# Tables whose rows change only by being written again, with a newer mark, and leave only by
# an erasure (after which every table is copied) or with their key: the snapshot's rows are
# brought up to date by the rows written since its mark and those whose key is gone
# (`_rewritten_delta`), not by hashing every row on both sides (at L, 4.0 s for the sessions
# and 5.8 s for the history, each night, for 47k and 2.5k changed rows). Published name ->
# (the table holding the rows, which the published relation projects; its key; when a row was
# last written: a session by int_sessions, a history version opened or closed by the snapshot).
REWRITTEN: dict[str, tuple[str, str, str]] = {
    "sessions": ("intermediate.int_sessions", "session_id", "_identified_at"),
    # a profile recomputed per person (int_user_profiles: the people active that day, birthdays)
    "user_profiles": ("intermediate.int_user_profiles", "person_id", "_built_at"),
    "user_profiles_history": (
        "snapshots.user_profiles_history",
        "dbt_scd_id",
        "greatest(valid_from, coalesce(valid_to, valid_from))",
    ),
}
# Every other table of a copied snapshot is compared with tonight's by a hash of each row, and
# only the rows that differ are replaced (`_rows_delta`). Most of them move little in a night
# (at L: 75k of 1.2M profiles, where the as-of age moves; 2.5k history rows, 47k of 2.9M
# sessions, 9k of 2.8M identifiers; 13.6 s of copying before); comparing costs 0.6-1.7 s a
# table, wasted on a table most of whose rows changed, which is then copied.


@contextlib.contextmanager
def _previous_snapshot(con: duckdb.DuckDBPyConnection, target: Path) -> Iterator[set[str]]:
    """The snapshot at `target` attached read-only as `pz_previous`, for the block; yields the
    columns of its `publish_info` (the marks it was written with)."""
    con.execute(f"attach {quote_literal(str(target))} as pz_previous (read_only)")
    try:
        yield {
            row[0]
            for row in con.execute(
                "select column_name from information_schema.columns "
                "where table_catalog = 'pz_previous' and table_name = 'publish_info'"
            ).fetchall()
        }
    finally:
        con.execute("detach pz_previous")


def _previous_events_watermark(
    con: duckdb.DuckDBPyConnection, target: Path, tables: dict[str, str]
) -> tuple[datetime | None, str]:
    """The `_identified_at` the snapshot at `target` holds the events of, when its events can be
    brought up to date by the rows rewritten since; else (None, why not)."""
    if EVENTS not in tables or not target.exists():
        return None, "no earlier snapshot"
    identified = _has_identified_at(con)
    if not identified:
        return None, f"{IDENTIFIED_EVENTS} has no _identified_at"
    with _previous_snapshot(con, target) as info:
        if "events_identified_through" not in info:
            return None, "the earlier snapshot predates incremental publishing"
        published_at, watermark = con.execute(
            "select published_at, events_identified_through from pz_previous.main.publish_info"
        ).fetchall()[0]
        old = _columns(con, f"pz_previous.main.{EVENTS}")
        new = _columns(con, tables[EVENTS])
    if old != new:
        return None, "the events columns changed"
    if watermark is None:
        return None, "the earlier snapshot has no events"
    # An erasure deletes and blanks rows without rewriting them: then every event is copied.
    erased = (
        "audit.erasure_registry" in existing_relations(con)
        and con.execute(
            "select count(*) from audit.erasure_registry where registered_at >= $at",
            {"at": published_at},
        ).fetchall()[0][0]
    )
    if erased:
        return None, "an erasure since the earlier snapshot"
    return watermark, f"events rewritten after {watermark}"


def _previous_served_watermark(
    con: duckdb.DuckDBPyConnection, target: Path, tables: dict[str, str]
) -> datetime | None:
    """The `served_at` the recommendations of the snapshot at `target` are up to date with,
    when its rows can be brought up to date by the people served since; else None. Called when
    the snapshot's events are (no erasure since)."""
    if RECOMMENDATIONS not in tables or SERVED not in existing_relations(con):
        return None
    with _previous_snapshot(con, target) as info:
        if "recommendations_served_through" not in info:
            return None
        watermark = con.execute(
            "select recommendations_served_through from pz_previous.main.publish_info"
        ).fetchall()[0][0]
        old = _columns(con, f"pz_previous.main.{RECOMMENDATIONS}")
        new = _columns(con, tables[RECOMMENDATIONS])
    return watermark if old == new else None


def _previous_rewrite_marks(
    con: duckdb.DuckDBPyConnection, target: Path, tables: dict[str, str]
) -> dict[str, datetime]:
    """Per table of `REWRITTEN`, the mark its rows in the snapshot at `target` are up to date
    with (used when its columns are tonight's). Called when the snapshot's events can be
    brought up to date (no erasure since)."""
    names = [name for name in REWRITTEN if name in tables]
    if not names:
        return {}
    with _previous_snapshot(con, target) as info:
        if "rewritten_through" not in info:
            return {}
        marks = con.execute(
            "select rewritten_through from pz_previous.main.publish_info"
        ).fetchall()[0][0]
    return {name: marks[name] for name in names if (marks or {}).get(name) is not None}


def _rewrite_marks(con: duckdb.DuckDBPyConnection, tables: dict[str, str]) -> dict[str, datetime]:
    """Per table of `REWRITTEN` published, the newest mark of its rows tonight."""
    present = existing_relations(con)
    marks = {}
    for name, (source, _, mark) in REWRITTEN.items():
        if name in tables and source in present:
            try:
                marks[name] = con.execute(f"select max({mark}) from {source}").fetchall()[0][0]
            except duckdb.BinderException:  # not the columns this expects: hashed instead
                continue
    return {name: mark for name, mark in marks.items() if mark is not None}


def _rewritten_delta(
    con: duckdb.DuckDBPyConnection, name: str, relation: str, through: datetime
) -> bool:
    """Bring the copied snapshot's table `name` up to date: the rows written after `through`
    replace their old rows, the rows whose key is gone leave. False (nothing changed in the
    snapshot) when most rows were written, or `relation` is not a projection of the table
    holding them."""
    source, key, mark = REWRITTEN[name]
    published = [row[0] for row in con.execute(f"describe {relation}").fetchall()]
    stored = {row[0] for row in con.execute(f"describe {source}").fetchall()}
    if key not in published or not set(published) <= stored:
        return False
    changed, total = con.execute(
        f"select count(*) filter (where {mark} > $w), count(*) from {source}", {"w": through}
    ).fetchall()[0]
    if changed > MAX_DELTA_SHARE * total:
        return False
    table = f"pz_snapshot.main.{quote_identifier(name)}"
    key = quote_identifier(key)
    # A row stays when its key is still there and was not written since: one anti-join over the
    # keys not written since (at L, for the 1.2M rows of the history: 0.3 s against 0.4-0.65 s
    # as two conditions, a key written since or gone; 0.9-1.1 s as `not exists`). The keys are
    # never null (the subquery leaves null ones out: with one, `not in` would delete nothing).
    con.execute(
        f"delete from {table} where {key} not in (select {key} from {source} "
        f"where {key} is not null and ({mark} > $w) is not true)",
        {"w": through},
    )
    columns = ", ".join(quote_identifier(c) for c in published)
    con.execute(
        f"insert into {table} select {columns} from {source} where {mark} > $w", {"w": through}
    )
    return True


def _recommendations_delta(
    con: duckdb.DuckDBPyConnection, relation: str, watermark: datetime
) -> bool:
    """Bring the copied snapshot's recommendations up to date: the people served after
    `watermark` get tonight's rows, the people no longer served lose theirs. False (nothing
    changed in the snapshot) when most people were served.

    Exact because a person's rows of `ml.recommendations` change only when they are served
    (their `served_at` moves on), when they leave it (and `ml.recommendations_served` with
    it), or by an erasure, after which the caller copies every table."""
    changed, total = con.execute(
        f"select count(*) filter (where served_at > $w), count(*) from {SERVED}", {"w": watermark}
    ).fetchall()[0]
    if changed > MAX_DELTA_SHARE * total:
        return False
    con.execute(
        f"delete from pz_snapshot.main.{RECOMMENDATIONS} where person_id not in "
        f"(select person_id from {SERVED} where served_at <= $w)",
        {"w": watermark},
    )
    con.execute(
        f"insert into pz_snapshot.main.{RECOMMENDATIONS} select * from {relation} "
        f"where person_id in (select person_id from {SERVED} where served_at > $w)",
        {"w": watermark},
    )
    return True


def _events_delta(con: duckdb.DuckDBPyConnection, relation: str, watermark: datetime) -> bool:
    """Bring the copied snapshot's events up to date: the events rewritten after `watermark`
    replace their old rows. False (nothing changed in the snapshot) when they are most of them.

    Exact because a row of the identified events changes only by being rewritten (a newer
    `_identified_at`) or by an erasure (checked before), and one leaves it only by an erasure or
    a full rebuild, after which every row is rewritten: the caller compares the row counts,
    which differ exactly when an event left."""
    con.execute(
        "create or replace temp table _pz_changed_events as select event_id "
        f"from {IDENTIFIED_EVENTS} where _identified_at > $w",
        {"w": watermark},
    )
    changed, total = con.execute(
        f"select (select count(*) from _pz_changed_events), (select count(*) from {relation})"
    ).fetchall()[0]
    if changed > MAX_DELTA_SHARE * total:
        return False
    # The published columns read from the identified events themselves (`relation` is a view
    # of their columns): filtered on _identified_at, the scan skips every block older than the
    # watermark (at L 5 s for a night's 272 k events, 14 s through the view by event_id).
    published = [row[0] for row in con.execute(f"describe {relation}").fetchall()]
    stored = {row[0] for row in con.execute(f"describe {IDENTIFIED_EVENTS}").fetchall()}
    if not set(published) <= stored:
        return False
    con.execute(
        f"delete from pz_snapshot.main.{EVENTS} "
        "where event_id in (select event_id from _pz_changed_events)"
    )
    columns = ", ".join(quote_identifier(c) for c in published)
    con.execute(
        f"insert into pz_snapshot.main.{EVENTS} select {columns} from {IDENTIFIED_EVENTS} "
        "where _identified_at > $w",
        {"w": watermark},
    )
    return True


def _columns(con: duckdb.DuckDBPyConnection, relation: str) -> list[tuple[str, str]]:
    """(name, type) of each column of `relation` (a table or a view), in order."""
    return [(row[0], row[1]) for row in con.execute(f"describe {relation}").fetchall()]


def _same_columns(con: duckdb.DuckDBPyConnection, tables: dict[str, str]) -> set[str]:
    """The published names whose table in the snapshot being written has the columns (names,
    types, order) of their relation tonight."""
    present = {
        row[0]
        for row in con.execute(
            "select table_name from information_schema.tables where table_catalog = 'pz_snapshot'"
        ).fetchall()
    }
    return {
        name
        for name, relation in tables.items()
        if name in present
        and _columns(con, f"pz_snapshot.main.{quote_identifier(name)}") == _columns(con, relation)
    }


def _rows_delta(con: duckdb.DuckDBPyConnection, name: str, relation: str) -> int | str:
    """Make the copied snapshot's table `name` equal to `relation` by deleting the rows that are
    not in it any more and inserting the new ones, rows compared by a hash of every column.
    Returns the rows replaced (deleted + inserted), or why not (nothing changed in the
    snapshot): they exceed MAX_DELTA_SHARE of the rows, or a hash is not unique on either side
    (identical rows, or a collision), where a set difference would not be exact.

    Exact but for a 64-bit hash collision between a row and the row it became (the caller
    then also compares the row counts)."""
    columns = [row[0] for row in con.execute(f"describe {relation}").fetchall()]
    row_hash = "hash(" + ", ".join(quote_identifier(c) for c in columns) + ")"
    table = f"pz_snapshot.main.{quote_identifier(name)}"
    try:
        con.execute(
            f"create or replace temp table _pz_old as select rowid as rid, {row_hash} as h "
            f"from {table}"
        )
        con.execute(
            f"create or replace temp table _pz_new as select {row_hash} as h from {relation}"
        )
        old, old_distinct, new, new_distinct = con.execute(
            "select (select count(*) from _pz_old), (select count(distinct h) from _pz_old), "
            "(select count(*) from _pz_new), (select count(distinct h) from _pz_new)"
        ).fetchall()[0]
        if old != old_distinct or new != new_distinct:
            return "rows repeat"
        con.execute(
            "create or replace temp table _pz_gone as "
            "select rid from _pz_old anti join _pz_new using (h)"
        )
        con.execute(
            "create or replace temp table _pz_added as "
            "select h from _pz_new anti join _pz_old using (h)"
        )
        gone, added = con.execute(
            "select (select count(*) from _pz_gone), (select count(*) from _pz_added)"
        ).fetchall()[0]
        if gone + added > MAX_DELTA_SHARE * max(new, 1):
            return "most rows changed"
        if gone:
            con.execute(f"delete from {table} where rowid in (select rid from _pz_gone)")
        if added:
            con.execute(
                f"insert into {table} select * from {relation} "
                f"where {row_hash} in (select h from _pz_added)"
            )
        return gone + added
    finally:
        for temp in ("_pz_old", "_pz_new", "_pz_gone", "_pz_added"):
            con.execute(f"drop table if exists {temp}")


def publish_snapshot(
    con: duckdb.DuckDBPyConnection,
    target: Path,
    published_at: datetime,
    run_id: str,
    tables: dict[str, str] = PUBLISHED_TABLES,
    log=None,
) -> dict[str, int]:
    """Copy `tables` into a new DuckDB file and atomically replace `target` with it.

    The new file starts as a copy of the last snapshot when its events can be updated in place
    (`_previous_events_watermark`). Then the events and the recommendations replace the rows
    rewritten or served since it (`_events_delta`, `_recommendations_delta`), every other table
    whose columns did not change the rows that differ (`_rows_delta`); a table most of whose
    rows changed, or that is new, is copied whole. Without a usable last snapshot every table
    is copied. `log` (a callable) hears which way the events and the recommendations were
    published, then per table its rows, how it was written and how long that took.
    """
    present = existing_relations(con)
    missing = sorted(f"{name} ({rel})" for name, rel in tables.items() if rel not in present)
    if missing:
        raise RuntimeError(f"cannot publish, missing relations: {', '.join(missing)}")
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(target)
    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    watermark, why = _previous_events_watermark(con, target, tables)
    served_through, rewrite_marks = None, {}
    if watermark is not None:
        served_through = _previous_served_watermark(con, target, tables)
        rewrite_marks = _previous_rewrite_marks(con, target, tables)
        shutil.copyfile(target, staging)
    counts: dict[str, int] = {}
    con.execute(
        f"attach {quote_literal(str(staging))} as pz_snapshot "
        f"(storage_version {quote_literal(STORAGE_VERSION)})"
    )
    try:
        kept = {EVENTS} if watermark is not None else set()
        if served_through is not None:
            kept.add(RECOMMENDATIONS)
        if watermark is not None:
            kept |= _same_columns(con, tables) - {EVENTS, RECOMMENDATIONS}
        for (old,) in con.execute(
            "select table_name from information_schema.tables where table_catalog = 'pz_snapshot'"
        ).fetchall():
            if old not in kept:
                con.execute(f"drop table pz_snapshot.main.{old}")
        recommendations_why = "all copied"
        how: dict[str, str] = {}
        for name, relation in tables.items():
            started = time.perf_counter()
            how[name] = "copied"
            if name == EVENTS and name in kept:
                if _events_delta(con, relation, watermark) and _same_count(con, name, relation):
                    how[name] = "changed rows replaced"
                else:
                    why = "most events changed, or one left: all copied"
            elif name == RECOMMENDATIONS and name in kept:
                if _recommendations_delta(con, relation, served_through) and _same_count(
                    con, name, relation
                ):
                    recommendations_why = f"the people served after {served_through}"
                    how[name] = "changed rows replaced"
                else:
                    recommendations_why = "most people were served: all copied"
            elif name in rewrite_marks and name in kept:
                mark = rewrite_marks[name]
                if _rewritten_delta(con, name, relation, mark) and _same_count(con, name, relation):
                    how[name] = f"the rows written after {mark} replaced"
                else:
                    how[name] = "copied (most rows written, or one left unseen)"
            elif name in kept:
                replaced = _rows_delta(con, name, relation)
                if isinstance(replaced, str):
                    how[name] = f"copied ({replaced})"
                elif _same_count(con, name, relation):
                    how[name] = f"{replaced:,} changed rows replaced"
                else:
                    how[name] = "copied (the row counts differ after the delta)"
            if how[name].startswith("copied"):
                con.execute(
                    f"create or replace table pz_snapshot.main.{name} as select * from {relation}"
                )
            how[name] += f", {time.perf_counter() - started:.1f} s"
        for name in tables:
            counts[name] = con.execute(f"select count(*) from pz_snapshot.main.{name}").fetchall()[
                0
            ][0]
        through = None
        if EVENTS in tables and _has_identified_at(con):
            through = con.execute(
                f"select max(_identified_at) from {IDENTIFIED_EVENTS}"
            ).fetchall()[0][0]
        served = None
        if RECOMMENDATIONS in tables and SERVED in existing_relations(con):
            served = con.execute(f"select max(served_at) from {SERVED}").fetchall()[0][0]
        marks = _rewrite_marks(con, tables)
        con.execute(
            "create table pz_snapshot.main.publish_info as "
            "select $at::timestamp as published_at, $run as run_id, "
            "$through::timestamp as events_identified_through, "
            "$served::timestamp as recommendations_served_through, "
            "map(cast($names as varchar[]), cast($marks as timestamp[])) as rewritten_through",
            {
                "at": published_at,
                "run": run_id,
                "through": through,
                "served": served,
                "names": list(marks),
                "marks": list(marks.values()),
            },
        )
        con.execute("detach pz_snapshot")  # checkpoints: the staging file is complete
        os.replace(staging, target)
        fsync_directory(target.parent)  # the rename survives a power cut too
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.execute("detach pz_snapshot")
        staging.unlink(missing_ok=True)
        raise
    finally:
        Path(f"{staging}.wal").unlink(missing_ok=True)
    if log is not None:
        log(f"published events: {why}")
        log(f"published recommendations: {recommendations_why}")
        for name, rows in counts.items():
            log(f"published {name}: {rows:,} rows, {how[name]}")
    return counts


def _has_identified_at(con: duckdb.DuckDBPyConnection) -> bool:
    return IDENTIFIED_EVENTS in existing_relations(con) and bool(
        con.execute(
            f"select count(*) from (describe {IDENTIFIED_EVENTS}) "
            "where column_name = '_identified_at'"
        ).fetchall()[0][0]
    )


def _same_count(con: duckdb.DuckDBPyConnection, name: str, relation: str) -> bool:
    return (
        con.execute(
            f"select (select count(*) from pz_snapshot.main.{name}) = "
            f"(select count(*) from {relation})"
        ).fetchall()[0][0]
        is True
    )
