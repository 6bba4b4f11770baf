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
model it was scored with. It is replaced by every run that links.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb
import numpy as np
import pandas as pd

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


def _exists(con, catalog: str, table: str, schema: str = "main") -> bool:
    return bool(
        con.execute(
            "select count(*) from duckdb_tables() "
            "where database_name = $c and schema_name = $s and table_name = $t",
            {"c": catalog, "s": schema, "t": table},
        ).fetchall()[0][0]
    )
