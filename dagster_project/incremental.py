"""When the nightly dbt step may run incrementally, and when it must rebuild from scratch.

The event chain (`int_events_deduplicated`, then `int_events_identified`, which sessionizes,
enriches and identifies them after the identity step) is incremental: a run reads the files
loaded since the last build and re-derives only the events, actors (sessions) and contexts
they touch. That is exact only while the raw input grew by appending. Anything else rebuilds
those models with `dbt build --full-refresh`:

- a landing file that was part of the last build is no longer current (a changed file replaced
  its rows, or it was forgotten);
- a configuration table the event chain reads changed (event-type or device mapping, junk
  values, the session gap);
- the SQL of the event chain (its models or macros) changed;
- nothing was built yet, or the operator asked for it (`python -m dagster_project.cli run
  --full-refresh`, or the run tag `pz/full_refresh=true` in the Dagster UI).

An erasure needs no rebuild: the identity step deletes the erased people's rows from every
warehouse table, these incremental ones included, and ingest keeps their raw rows out later.

The baseline (files and fingerprints of the last successful build) lives in
`audit.incremental_baseline`; it is written only after the dbt step succeeded.

`int_profiles_deduplicated` and `int_consent_current` are kept per key: a build recomputes only
the records (consent subjects) whose input rows changed or that are erased
(dbt_project/macros/inputs_fingerprint.sql): a night lands events and contexts, not profiles
or consents.

`int_events_identified` is in the phase after the identity step (post_identity): it also
rewrites the events whose person changed (and `int_sessions` re-aggregates the sessions of the
events it rewrote, `int_person_activity` the people whose events changed). Rows it should drop
only leave it on a full refresh, so a rebuilt `int_events_deduplicated` leaves a `pending` row
for that phase (`POST_IDENTITY_PHASE`), cleared once the phase has rebuilt in full.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb

FULL_REFRESH_TAG = "pz/full_refresh"
POST_IDENTITY_PHASE = "post_identity"
INCREMENTAL_SOURCES = ("events", "context")
# Built in the first dbt phase; int_events_identified builds in full when it is missing.
INCREMENTAL_MODELS = ("int_events_deduplicated",)
DBT_DIR = Path(__file__).resolve().parent.parent / "dbt_project"
# The SQL whose change invalidates incrementally built rows.
_CODE_GLOBS = (
    "models/staging/events/*.sql",
    "models/staging/context/*.sql",
    # their data tests: nightly, a test marked `__new_deliveries__` reads only the new rows
    "models/staging/events/*.yml",
    "models/staging/context/*.yml",
    "models/staging/config/*.sql",
    "models/intermediate/int_events_*.sql",
    "models/intermediate/int_sessions.sql",
    "models/intermediate/int_person_activity.sql",
    "models/intermediate/int_interactions_weighted.sql",
    "models/marts/user_category_affinity.sql",
    "models/intermediate/int_profiles_survived.sql",
    "models/intermediate/int_user_profiles.sql",
    "models/intermediate/int_erased_identifiers.sql",
    # kept between builds by origin (macros/identity_graph.sql): a new column fails
    "models/intermediate/int_identity_nodes.sql",
    "models/intermediate/int_identity_edges.sql",
    # kept per key (macros/inputs_fingerprint.sql): a new column fails
    "models/intermediate/int_profiles_deduplicated.sql",
    "models/intermediate/int_consent_current.sql",
    "macros/**/*.sql",
)
# Config tables (and columns) the event chain reads; run_settings.as_of moves every run.
_CONFIG_QUERIES = {
    "event_type_map": "select raw_key, event_type from config.event_type_map",
    "categorical_map": "select field, raw_key, value from config.categorical_map",
    "identity_junk_values": "select value from config.identity_junk_values",
    "session_gap": "select session_gap_minutes from config.run_settings",
    # int_interactions_weighted is kept per person: its weights apply to every stored row
    "interaction_weights": "select * from config.interaction_weights",
}


def full_refresh_requested(run_tags: dict[str, str] | None) -> bool:
    """Whether the operator asked this run to rebuild: the run tag `pz/full_refresh` (Dagster
    UI) or `PZ_FULL_REFRESH=1` (`python -m dagster_project.cli run --full-refresh`)."""
    tag = (run_tags or {}).get(FULL_REFRESH_TAG, "")
    return tag.lower() in {"1", "true", "yes"} or os.environ.get("PZ_FULL_REFRESH") == "1"


@dataclass(frozen=True)
class RefreshDecision:
    full_refresh: bool
    reason: str


def code_fingerprint(dbt_dir: Path = DBT_DIR) -> str:
    digest = hashlib.sha256()
    for pattern in _CODE_GLOBS:
        for path in sorted(dbt_dir.glob(pattern)):
            digest.update(str(path.relative_to(dbt_dir)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _table_fingerprint(con: duckdb.DuckDBPyConnection, query: str) -> str:
    try:
        row = con.execute(
            f"select md5(coalesce(string_agg(t::varchar, '|' order by t::varchar), '')) "
            f"from ({query}) as t"
        ).fetchone()
    except duckdb.CatalogException:
        return "absent"
    return row[0]


def fingerprints(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """What must stay the same for an incremental build to equal a full one."""
    found = {f"config:{name}": _table_fingerprint(con, q) for name, q in _CONFIG_QUERIES.items()}
    found["code"] = code_fingerprint()
    return found


def _ensure_baseline(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """
        create schema if not exists audit;
        create table if not exists audit.incremental_baseline (
            kind varchar, key varchar, value varchar, built_at timestamp
        );
        """
    )


def _incremental_tables_exist(con: duckdb.DuckDBPyConnection) -> bool:
    names = ", ".join(f"'{m}'" for m in INCREMENTAL_MODELS)
    found = con.execute(
        f"select count(*) from information_schema.tables where table_name in ({names})"
    ).fetchone()[0]
    return found == len(INCREMENTAL_MODELS)


def decide(con: duckdb.DuckDBPyConnection, requested: bool = False) -> RefreshDecision:
    """Incremental unless the input stopped being append-only since the last build."""
    if requested:
        return RefreshDecision(True, "full refresh requested")
    _ensure_baseline(con)
    if not _incremental_tables_exist(con):
        return RefreshDecision(True, "first build")
    baseline = con.execute("select kind, key, value from audit.incremental_baseline").fetchall()
    if not baseline:
        return RefreshDecision(True, "no baseline of a previous build")
    stored = {key: value for kind, key, value in baseline if kind == "fingerprint"}
    for key, value in fingerprints(con).items():
        if stored.get(key) != value:
            return RefreshDecision(True, f"{key} changed since the last build")
    sources = ", ".join(f"'{s}'" for s in INCREMENTAL_SOURCES)
    gone = con.execute(
        f"""
        select count(*) from (
            select key as file, value as sha256 from audit.incremental_baseline
            where kind = 'file'
            except
            select file, sha256 from audit.load_manifest
            where is_current and source in ({sources})
        )
        """
    ).fetchone()[0]
    if gone:
        return RefreshDecision(True, f"{gone} previously built file(s) replaced or forgotten")
    return RefreshDecision(False, "append-only since the last build")


def record_baseline(con: duckdb.DuckDBPyConnection, *, rebuilt: bool = False) -> None:
    """After a successful build: remember its files and fingerprints. `rebuilt` (the chain was
    built in full) leaves the post-identity phase a pending full refresh."""
    _ensure_baseline(con)
    sources = ", ".join(f"'{s}'" for s in INCREMENTAL_SOURCES)
    con.execute("begin")
    con.execute("delete from audit.incremental_baseline where kind in ('file', 'fingerprint')")
    if rebuilt:
        con.execute(
            "delete from audit.incremental_baseline where kind = 'pending' and key = $phase",
            {"phase": POST_IDENTITY_PHASE},
        )
        con.execute(
            "insert into audit.incremental_baseline values "
            "('pending', $phase, 'event chain rebuilt', now()::timestamp)",
            {"phase": POST_IDENTITY_PHASE},
        )
    con.execute(
        f"""
        insert into audit.incremental_baseline
        select 'file', file, sha256, now()::timestamp from audit.load_manifest
        where is_current and source in ({sources})
        """
    )
    con.executemany(
        "insert into audit.incremental_baseline values ('fingerprint', ?, ?, now()::timestamp)",
        list(fingerprints(con).items()),
    )
    con.execute("commit")


def last_build_time(con: duckdb.DuckDBPyConnection) -> datetime | None:
    """When the event chain last built successfully (None before the first build)."""
    _ensure_baseline(con)
    return con.execute(
        "select max(built_at) from audit.incremental_baseline where kind in ('file', 'fingerprint')"
    ).fetchone()[0]


def rebuild_pending(con: duckdb.DuckDBPyConnection, phase: str = POST_IDENTITY_PHASE) -> bool:
    """Whether the event chain was rebuilt since `phase` last built in full."""
    _ensure_baseline(con)
    return bool(
        con.execute(
            "select count(*) from audit.incremental_baseline where kind = 'pending' and key = $p",
            {"p": phase},
        ).fetchone()[0]
    )


def clear_pending(con: duckdb.DuckDBPyConnection, phase: str = POST_IDENTITY_PHASE) -> None:
    """After `phase` rebuilt in full."""
    _ensure_baseline(con)
    con.execute(
        "delete from audit.incremental_baseline where kind = 'pending' and key = $p",
        {"p": phase},
    )


def tested_since(con: duckdb.DuckDBPyConnection) -> datetime:
    """Now, in the warehouse's clock: the time a phase starts, for `record_tested`."""
    return con.execute("select now()::timestamp").fetchone()[0]


def record_tested(con: duckdb.DuckDBPyConnection, phase: str, started_at: datetime) -> None:
    """After `phase` built and passed every test of its whole selection: rows written before
    `started_at` were tested. Tests whose `where` is `__served_since_last_tested__`
    (dbt_project/macros/new_deliveries.sql) then read only the rows served since."""
    _ensure_baseline(con)
    con.execute("begin")
    con.execute(
        "delete from audit.incremental_baseline where kind = 'tested' and key = $p", {"p": phase}
    )
    con.execute(
        "insert into audit.incremental_baseline values ('tested', $p, '', $at)",
        {"p": phase, "at": started_at},
    )
    con.execute("commit")
