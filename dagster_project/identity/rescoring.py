"""Score only what changed: a run with the stored Splink model re-scores the records that are
new or changed since the last run, against every record, and keeps the links between the
records that did not change.

A pair's score depends on its two records, the model (m and u values, the prior) and the term
frequencies of the values compared. Between trainings the model is the same, and an unchanged
pair is still a candidate pair (blocking reads only its two records), so its score moves only
with the term frequencies, by as little as the records added since move them. Each training
(`retrain_every_days`, identity.yaml) scores every pair again. A run scores every pair when:
the model is trained that run, the records were scored with another model (or never), the
last links are not in the warehouse, a full refresh is asked for, or more than
`MAX_CHANGED_SHARE` of the records changed (scoring them against all then costs about as much).

What was scored is kept in the PII zone (`pii.main.identity_scored_records`): each record's
node key, a 64-bit hash of its normalized fields (plaintext never leaves the zone) and the
model it was scored with. It is replaced by every run that links, and so is a digest of the
rows the records were read from (`pii.main.identity_records_digest`): a run whose records match
it keeps every link without reading them (`dagster_project.identity.erasure.link_and_erase`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

import duckdb
import numpy as np
import pandas as pd

from dagster_project.ingest.sql import quote_identifier
from dagster_project.warehouse_io import register_frame

SCORED_TABLE = "pii.main.identity_scored_records"
LINKS_TABLE = "ml.identity_links"
# Above this share of changed (or new) records, every pair is scored instead.
MAX_CHANGED_SHARE = 0.25
_FRAME = "_pz_scored_now"


def record_fingerprints(records: pd.DataFrame) -> pd.DataFrame:
    """unique_id and a 64-bit hash of every other column of `records` (row by row, vectorized):
    a record whose normalized fields change gets another fingerprint."""
    fields = records.drop(columns=["unique_id"])
    hashed = pd.util.hash_pandas_object(fields, index=False).to_numpy(np.uint64)
    return pd.DataFrame({"unique_id": records["unique_id"].to_numpy(), "fingerprint": hashed})


@dataclass(frozen=True)
class Rescoring:
    """What a run scores with the stored model: `changed` record ids (new or changed) against
    all; `kept` links (between records that did not change) stay as they were scored."""

    changed: list[str]
    removed: int
    kept: pd.DataFrame

    def describe(self, records: int) -> str:
        if not self.changed and not self.removed:
            return f"no record new, changed or gone: all {len(self.kept):,} links kept"
        return (
            f"{len(self.changed):,} of {records:,} records new or changed, {self.removed:,} "
            f"gone: scored against all; {len(self.kept):,} links between the others kept"
        )


def plan_rescoring(
    con: duckdb.DuckDBPyConnection, fingerprints: pd.DataFrame, model_trained_at: datetime
) -> tuple[Rescoring | None, str]:
    """The records to re-score and the links to keep, or None (score every pair) and why."""
    if not _exists(con, "pii", "identity_scored_records") or not _exists(
        con, "warehouse", "identity_links", schema="ml"
    ):
        return None, "no links of an earlier run"
    scored_with = con.execute(f"select distinct model_trained_at from {SCORED_TABLE}").fetchall()
    if [row[0] for row in scored_with] != [model_trained_at]:
        return None, "the last links were scored with another model"
    register_frame(con, _FRAME, fingerprints)
    try:
        changed = [
            row[0]
            for row in con.execute(
                f"""
                select now.unique_id from {_FRAME} as now
                left join {SCORED_TABLE} as last using (unique_id)
                where last.fingerprint is distinct from now.fingerprint
                order by now.unique_id
                """
            ).fetchall()
        ]
        if len(changed) > MAX_CHANGED_SHARE * max(len(fingerprints), 1):
            return None, (
                f"{len(changed):,} of {len(fingerprints):,} records new or changed "
                f"(more than {MAX_CHANGED_SHARE:.0%})"
            )
        con.execute(
            f"""
            create or replace temp table _pz_rescored as
            select unique_id from {SCORED_TABLE}
            where unique_id not in (select unique_id from {_FRAME})
            union all
            select unnest($changed::varchar[])
            """,
            {"changed": changed},
        )
        removed = con.execute(
            f"select count(*) from {SCORED_TABLE} "
            f"where unique_id not in (select unique_id from {_FRAME})"
        ).fetchall()[0][0]
        kept = con.execute(
            f"""
            select node_key_a, node_key_b, method, match_probability from {LINKS_TABLE}
            where node_key_a not in (select unique_id from _pz_rescored)
                and node_key_b not in (select unique_id from _pz_rescored)
            order by node_key_a, node_key_b
            """
        ).df()
    finally:
        con.unregister(_FRAME)
        con.execute("drop table if exists _pz_rescored")
    return Rescoring(changed, int(removed), kept), "records scored with the stored model"


def merge_links(kept: pd.DataFrame, rescored: pd.DataFrame) -> pd.DataFrame:
    """The kept links and the re-scored records' links (scored record first) as one set: each
    pair once, lower node key first, as a prediction over all pairs gives them."""
    a, b = rescored["node_key_a"], rescored["node_key_b"]
    rescored = rescored.assign(node_key_a=a.where(a < b, b), node_key_b=b.where(a < b, a))
    rescored = rescored.drop_duplicates(["node_key_a", "node_key_b"])
    links = pd.concat([kept, rescored[kept.columns]], ignore_index=True)
    return links.sort_values(["node_key_a", "node_key_b"], ignore_index=True)


def save_scored_records(
    con: duckdb.DuckDBPyConnection, fingerprints: pd.DataFrame, model_trained_at: datetime | None
) -> None:
    """Remember what this run's links were scored from (nothing, when no model scored)."""
    con.execute(
        f"create or replace table {SCORED_TABLE} "
        "(unique_id varchar, fingerprint ubigint, model_trained_at timestamp)"
    )
    if model_trained_at is None or not len(fingerprints):
        return
    register_frame(con, _FRAME, fingerprints)
    try:
        con.execute(
            f"insert into {SCORED_TABLE} select unique_id, fingerprint, $at from {_FRAME}",
            {"at": model_trained_at},
        )
    finally:
        con.unregister(_FRAME)


# The records the last links were computed from, as one digest (and what their metadata
# needs: the fields compared, the records and birth dates nulled), with the model that scored
# them. Replaced by every run that links; in the PII zone beside the scored records.
DIGEST_TABLE = "pii.main.identity_records_digest"


@dataclass(frozen=True)
class RecordsDigest:
    digest: str
    records: int
    birth_dates_nulled: int


def records_digest(
    con: duckdb.DuckDBPyConnection, records_sql: str, inputs: tuple[str, ...]
) -> RecordsDigest:
    """A digest of the records `records_sql` reads, from what it reads, in DuckDB: the SQL's
    text and, per query of `inputs` (every relation it reads; the first one a row per record,
    with `is_birth_date_nulled`), the count and the xor and sum of a 64-bit hash per row.
    Reading the 1.36M records of L into pandas and hashing them (`record_fingerprints`) took
    7.5 s; hashing the normalized records in DuckDB 3.2 s (the regular expressions); their
    inputs 1 s."""
    parts = [duckdb.__version__, hashlib.sha256(records_sql.encode()).hexdigest()]
    rows = nulled = 0
    for position, sql in enumerate(inputs):
        columns = [row[0] for row in con.execute(f"describe {sql}").fetchall()]
        hashed = "hash(" + ", ".join(quote_identifier(c) for c in columns) + ")"
        flag = "is_birth_date_nulled" if position == 0 else "false"
        count, xor, total, flagged = con.execute(
            f"""
            select count(*), coalesce(bit_xor(h), 0), coalesce(sum(h::hugeint), 0),
                count(*) filter (where flag)
            from (select {hashed} as h, {flag} as flag from ({sql}))
            """
        ).fetchall()[0]
        parts.append(f"{count}:{xor}:{total}")
        if position == 0:
            rows, nulled = int(count), int(flagged)
    return RecordsDigest(hashlib.sha256("|".join(parts).encode()).hexdigest(), rows, nulled)


def save_records_digest(
    con: duckdb.DuckDBPyConnection,
    records_sql: str,
    inputs: tuple[str, ...],
    model_trained_at: datetime | None,
    fields_compared: list[str] | None,
) -> None:
    """Remember the records this run's links come from (nothing, when no stored model scored
    them or the fields compared are unknown: the next run then reads the records)."""
    con.execute(
        f"create or replace table {DIGEST_TABLE} (digest varchar, model_trained_at timestamp, "
        "fields_compared varchar[])"
    )
    if model_trained_at is None or fields_compared is None:
        return
    digest = records_digest(con, records_sql, inputs)
    con.execute(
        f"insert into {DIGEST_TABLE} values ($d, $at, $fields)",
        {"d": digest.digest, "at": model_trained_at, "fields": list(fields_compared)},
    )


def last_records_digest(
    con: duckdb.DuckDBPyConnection,
) -> tuple[str, datetime, list[str]] | None:
    """(digest, model trained at, fields compared) of the last run's records, if kept."""
    if not _exists(con, "pii", "identity_records_digest"):
        return None
    rows = con.execute(
        f"select digest, model_trained_at, fields_compared from {DIGEST_TABLE}"
    ).fetchall()
    return (rows[0][0], rows[0][1], list(rows[0][2])) if len(rows) == 1 else None


def all_links_kept(
    con: duckdb.DuckDBPyConnection, model_trained_at: datetime
) -> pd.DataFrame | None:
    """Every last link, as `plan_rescoring` keeps them when no record changed, or None when
    the last links or scored records are missing or another model scored them."""
    if not _exists(con, "pii", "identity_scored_records") or not _exists(
        con, "warehouse", "identity_links", schema="ml"
    ):
        return None
    scored_with = con.execute(f"select distinct model_trained_at from {SCORED_TABLE}").fetchall()
    if [row[0] for row in scored_with] != [model_trained_at]:
        return None
    return con.execute(
        f"select node_key_a, node_key_b, method, match_probability from {LINKS_TABLE} "
        "order by node_key_a, node_key_b"
    ).df()


def _exists(con, catalog: str, table: str, schema: str = "main") -> bool:
    return bool(
        con.execute(
            "select count(*) from duckdb_tables() "
            "where database_name = $c and schema_name = $s and table_name = $t",
            {"c": catalog, "s": schema, "t": table},
        ).fetchall()[0][0]
    )
