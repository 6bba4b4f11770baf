"""Probabilistic matching of profile records with Splink (Fellegi-Sunter) on DuckDB.

Splink compares plaintext (names by Jaro-Winkler, dates by distance), so the records are read
from the PII zone on a connection that has it attached, and Splink runs in its own in-memory
DuckDB: no plaintext is ever written to a file. Only record-level links leave this module
(record node keys, match probability, method) and go to `ml.identity_links`.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import re
import resource
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from dagster_project.warehouse_io import arrow_for_duckdb, read_frame
from models_ml.frames import isin

SPLINK_METHOD = "splink"
MATCH_FIELDS = (
    "first_name",
    "last_name",
    "birth_date",
    "email",
    "phone",
    "address",
    "postcode",
    "city",
)
MIN_FIELD_COMPLETENESS = 0.01  # a field present in fewer records is not compared
# Fields compared with term-frequency adjustments (see `_comparison`).
TERM_FREQUENCY_FIELDS = ("first_name", "last_name", "email", "postcode", "city")

# Normalization shared by the records Splink matches: plaintext from the PII zone, typed values
# from dbt where there are any (an invalid birth date is already null there). Junk values
# (`n/a`, `test@example.com`) are nulled so they never count as agreement.
_RECORDS_SQL = """
with junk as (select lower(trim(value)) as junk_value from config.identity_junk_values),
plain as ({plain}),
records as (
    select
        unique_id,
        nullif(regexp_replace(lower(trim(first_name)), '\\s+', ' ', 'g'), '') as first_name,
        nullif(regexp_replace(lower(trim(last_name)), '\\s+', ' ', 'g'), '') as last_name,
        birth_date,
        is_birth_date_nulled,
        nullif(lower(trim(email)), '') as email,
        nullif(regexp_replace(phone, '[^0-9]', '', 'g'), '') as phone,
        nullif(regexp_replace(lower(trim(address)), '\\s+', ' ', 'g'), '') as address,
        nullif(upper(replace(trim(postcode), ' ', '')), '') as postcode,
        nullif(lower(trim(city)), '') as city
    from plain
)
select
    unique_id,
    case when first_name in (select junk_value from junk) then null else first_name end
        as first_name,
    case when last_name in (select junk_value from junk) then null else last_name end
        as last_name,
    birth_date,
    is_birth_date_nulled,
    case when email in (select junk_value from junk) then null else email end as email,
    case when phone in (select junk_value from junk) then null else phone end as phone,
    case when address in (select junk_value from junk) then null else address end as address,
    postcode,
    city
from records
order by unique_id
"""

# A profile record's node key, from intermediate.int_profiles_deduplicated as `d`.
_PROFILE_UNIQUE_ID = "'record_id|' || coalesce(d.source_system, '') || '|' || d.record_id"

# One record per current profile version (same file and line as the version dbt kept).
PROFILE_PLAIN_SQL = f"""
    select
        {_PROFILE_UNIQUE_ID} as unique_id,
        p.first_name,
        p.last_name,
        d.birth_date,
        p.birth_date is not null and trim(p.birth_date) <> '' and d.birth_date is null
            as is_birth_date_nulled,
        p.email,
        p.phone,
        p.address,
        coalesce(p.postcode, d.postcode) as postcode,
        coalesce(p.city, d.city) as city
    from intermediate.int_profiles_deduplicated as d
    left join pii.main.profiles as p
        on p._file = d._file and p._line = d._line
    """
PROFILE_RECORDS_SQL = _RECORDS_SQL.format(plain=PROFILE_PLAIN_SQL)
# What PROFILE_RECORDS_SQL reads, in full: the same rows of these (and the same SQL) give the
# same records (`dagster_project.identity.rescoring.records_digest`).
PROFILE_RECORDS_INPUTS = (PROFILE_PLAIN_SQL, "select value from config.identity_junk_values")

# The erasure evidence (records purged for an erasure since the last identity run), one record
# per distinct delivered version: `<record node key>#<n>` (see `evidence_node_key`).
ERASURE_EVIDENCE_SQL = _RECORDS_SQL.format(
    plain="""
    select
        'record_id|' || coalesce(source_system, '') || '|' || record_id || '#'
            || row_number() over (
                partition by source_system, record_id
                order by first_name, last_name, birth_date, email, phone, address, postcode,
                    city
            ) as unique_id,
        first_name,
        last_name,
        cast(try_strptime(trim(birth_date), '%Y-%m-%d') as date) as birth_date,
        false as is_birth_date_nulled,
        email,
        phone,
        address,
        postcode,
        city
    from (
        select distinct
            record_id, source_system, first_name, last_name, birth_date, email, phone,
            address, postcode, city
        from pii.main.erasure_evidence
    )
    """
)


def read_profile_records(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The records to match (needs `pii` attached on `con`); plaintext stays in memory."""
    return read_frame(con, PROFILE_RECORDS_SQL)


def read_profile_record_ids(con: duckdb.DuckDBPyConnection) -> pd.Series:
    """The unique_id of every record `read_profile_records` reads, and nothing else."""
    sql = f"select {_PROFILE_UNIQUE_ID} as unique_id from intermediate.int_profiles_deduplicated d"
    return read_frame(con, sql)["unique_id"]


def read_erasure_evidence(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The erased records kept as linking evidence, shaped like `read_profile_records`."""
    return read_frame(con, ERASURE_EVIDENCE_SQL)


def evidence_node_key(unique_id: pd.Series) -> pd.Series:
    """The record node key of an evidence record's `unique_id` (drops the `#<n>` version)."""
    return unique_id.str.replace(r"#\d+$", "", regex=True)


# The trained model (Splink's settings with its m and u values: no record, no value) of the
# last training, so runs in between score with it instead of training again.
MODEL_TABLE = "ml.identity_splink_model"


@dataclass(frozen=True)
class StoredModel:
    trained_at: datetime
    fingerprint: str
    model: dict


def model_fingerprint(settings: dict, fields: list[str]) -> str:
    """What a trained model depends on: the fields compared and every matching setting but
    those about when and where to train."""
    kept = {k: v for k, v in settings.items() if k not in _NOT_IN_FINGERPRINT}
    payload = json.dumps({"settings": kept, "fields": fields}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


_NOT_IN_FINGERPRINT = ("retrain_every_days", "subprocess_min_records", "records_per_predict_chunk")


def predict_chunks(records: int, settings: dict) -> int:
    """Chunks per side of Splink's prediction: one per `records_per_predict_chunk` records
    (identity.yaml; null: one). Splink then scores chunk x chunk in turn, not all pairs at
    once: at 1.36 M records, 2 per side took the process's peak from 4.9 GB to 2.6 GB, with
    the same links."""
    per_chunk = settings.get("records_per_predict_chunk")
    return max(1, -(-records // int(per_chunk))) if per_chunk else 1


def read_model(con: duckdb.DuckDBPyConnection) -> StoredModel | None:
    try:
        rows = con.execute(
            f"select trained_at, fingerprint, model_json from {MODEL_TABLE} "
            "order by trained_at desc limit 1"
        ).fetchall()
    except duckdb.CatalogException:
        return None
    if not rows:
        return None
    return StoredModel(rows[0][0], rows[0][1], json.loads(rows[0][2]))


def save_model(con: duckdb.DuckDBPyConnection, trained_at: datetime, info: dict) -> None:
    """Keep the model `predict_links_and_matches` trained (in `info`), replacing the last."""
    con.execute("create schema if not exists ml")
    con.execute(
        f"create or replace table {MODEL_TABLE} (trained_at timestamp, fingerprint varchar, "
        "records bigint, model_json varchar)"
    )
    con.execute(
        f"insert into {MODEL_TABLE} values ($at, $fingerprint, $records, $model)",
        {
            "at": trained_at,
            "fingerprint": info["fingerprint"],
            "records": info["records"],
            "model": json.dumps(info["model"]),
        },
    )


def usable_model(stored: StoredModel | None, settings: dict, now: datetime) -> dict | None:
    """`stored`, unless it is `retrain_every_days` (identity.yaml; 0: every run) old.
    (`predict_links_and_matches` checks its fingerprint against tonight's fields.)"""
    days = int(settings.get("retrain_every_days") or 0)
    if stored is None or days <= 0 or now - stored.trained_at >= timedelta(days=days):
        return None
    return {
        "fingerprint": stored.fingerprint,
        "model": stored.model,
        "trained_at": stored.trained_at,
    }


def compared_fields(records: pd.DataFrame, settings: dict) -> list[str]:
    """The fields of `settings` that `records` has, less those filled in fewer than
    MIN_FIELD_COMPLETENESS of the records."""
    wanted = [f for f in settings.get("fields", MATCH_FIELDS) if f in records.columns]
    return [f for f in wanted if records[f].notna().mean() >= MIN_FIELD_COMPLETENESS]


def fits(model: dict | None, records: pd.DataFrame, settings: dict) -> bool:
    """Whether the stored `model` scores `records` as it is (same fields and settings)."""
    fields = compared_fields(records, settings)
    return model is not None and model["fingerprint"] == model_fingerprint(settings, fields)


def _bounded_levenshtein_level(field: str, distance: int):
    """Splink's `LevenshteinLevel` (same label, same pairs) with a length check first: two
    strings whose lengths differ by more than `distance` are further apart than that, and
    DuckDB evaluates the Levenshtein distance (quadratic in the lengths) only for the pairs
    the cheap check lets through. At L (12.2M scored pairs), the address comparison took
    7.3 s without the check and 4.5 s with it; phones, mostly of one length, gain nothing."""
    import splink.comparison_level_library as cll

    left, right = f'"{field}_l"', f'"{field}_r"'
    return cll.CustomLevel(
        f"abs(length({left}) - length({right})) <= {distance} "
        f"AND levenshtein({left}, {right}) <= {distance}",
        label_for_charts=f"Levenshtein distance of {field} <= {distance}",
    )


def _email_comparison(field: str):
    """Email: exact (term-frequency adjusted), same username, a typo (<= 2 edits), else.

    Not Splink's `EmailComparison`, whose Jaro-Winkler levels (>= 0.88 on the address or the
    username) also hold for two different people of the same name: usernames are mostly
    built from the name (`maurice.fabre1043179` / `mauricefabre2217345`). Those levels' u
    comes from random pairs, which rarely share a name, so they count the name agreement a
    second time; and in an EM pass blocked on the name (whose pairs are mostly different
    people once a million people share the names) they pull every same-name pair into the
    match class, which drove the birth date / phone / address disagreement weights to about
    zero. On the L bench tier (1.36M records) that made 1.8M false links. An edit distance of
    at most 2 still catches a typo but not a different person's digits.

    The username is the text before the first `@` (`split_part`; empty counts as none), which
    is what the regular expression `^[^@]+` extracts, at a fraction of the cost: at L this
    comparison took 12.5 s of the prediction by regular expression and unbounded Levenshtein
    distance, 4.7 s this way, with the same level for every one of the 12.2M pairs.
    """
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    left, right = f'"{field}_l"', f'"{field}_r"'
    return cl.CustomComparison(
        output_column_name=field,
        comparison_levels=[
            cll.NullLevel(field),
            cll.ExactMatchLevel(field).configure(tf_adjustment_column=field),
            cll.CustomLevel(
                f"NULLIF(split_part({left}, '@', 1), '') = NULLIF(split_part({right}, '@', 1), '')",
                label_for_charts="Exact match on username",
            ),
            _bounded_levenshtein_level(field, 2),
            cll.ElseLevel(),
        ],
    )


def _levenshtein_comparison(field: str, distances: tuple[int, ...] = (1, 3)):
    """Splink's `LevenshteinAtThresholds(field, distances)`, level for level, with the length
    check of `_bounded_levenshtein_level`."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    return cl.CustomComparison(
        output_column_name=field,
        comparison_levels=[
            cll.NullLevel(field),
            cll.ExactMatchLevel(field),
            *(_bounded_levenshtein_level(field, d) for d in distances),
            cll.ElseLevel(),
        ],
    )


def _comparison(field: str):
    import splink.comparison_library as cl

    if field in ("first_name", "last_name"):
        return cl.NameComparison(field).configure(term_frequency_adjustments=True)
    if field == "birth_date":
        return cl.DateOfBirthComparison(field, input_is_string=False)
    if field == "email":
        return _email_comparison(field)
    if field in ("phone", "address"):
        return _levenshtein_comparison(field)
    return cl.ExactMatch(field).configure(term_frequency_adjustments=True)


def training_sample(frame: pd.DataFrame, settings: dict) -> pd.DataFrame | None:
    """The records a model is trained on when there are more than `training_max_records`
    (identity.yaml), in unique_id order; None when it trains on them all.

    A record is in it by its own unique_id alone: the `training_max_records` records of the
    smallest keyed hash of it (the key from `random_seed`). Removing records outside the sample
    leaves it as it was, so a model trained on it is the one a run without them trains: after
    an erasure, the model need not be trained again (`sample_digest`)."""
    limit = settings.get("training_max_records")
    if not limit or len(frame) <= int(limit):
        return None
    seed = int(settings.get("random_seed", 42))
    hashes = pd.util.hash_pandas_object(
        frame["unique_id"], index=False, hash_key=f"{seed:016d}"[-16:]
    ).to_numpy()
    chosen = np.argpartition(hashes, int(limit) - 1)[: int(limit)]
    return frame.iloc[chosen].sort_values("unique_id", ignore_index=True)


def sample_digest(records: pd.DataFrame, settings: dict) -> str | None:
    """A digest of the training sample `records` give (their compared fields included), or
    None when the model trains on every record: two equal digests, one model."""
    fields = compared_fields(records, settings)
    sample = training_sample(records[["unique_id", *fields]], settings)
    if sample is None:
        return None
    rows = pd.util.hash_pandas_object(sample, index=False).to_numpy()
    return hashlib.sha256(rows.tobytes() + ",".join(sample.columns).encode()).hexdigest()


def _fields_of(rule: list[str]) -> set[str]:
    """The fields a blocking rule reads; an entry is a field or an expression over fields."""
    return {token for entry in rule for token in re.findall(r"[a-z_]+", entry)} & set(MATCH_FIELDS)


_FIELD = re.compile(r"\b(" + "|".join(MATCH_FIELDS) + r")\b")


def blocking_condition(rule: list[str], left: str, right: str) -> str:
    """SQL that is true for two records (aliases `left`, `right`) a blocking rule pairs, as
    Splink's `block_on(*rule)` does: every entry (a field, or an expression over fields) equal
    on both, and not null."""

    def side(entry: str, alias: str) -> str:
        return _FIELD.sub(lambda match: f'{alias}."{match.group(1)}"', entry)

    return " and ".join(f"({side(entry, left)}) = ({side(entry, right)})" for entry in rule)


def _empty_links() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "node_key_a": pd.Series(dtype=object),
            "node_key_b": pd.Series(dtype=object),
            "method": pd.Series(dtype=object),
            "match_probability": pd.Series(dtype=float),
        }
    )


def predict_links(records: pd.DataFrame, settings: dict) -> tuple[pd.DataFrame, dict]:
    """Train a Splink model on `records` and return the links at or above the threshold.

    Args:
        records: unique_id plus any of MATCH_FIELDS (plaintext, normalized; null = unknown).
        settings: the `probabilistic` section of identity.yaml.

    Returns:
        (links: node_key_a, node_key_b, method, match_probability; info for run metadata)
    """
    links, _, info = predict_links_and_matches(records, settings, None)
    return links, info


def predict_links_and_matches(
    records: pd.DataFrame,
    settings: dict,
    new_records: pd.DataFrame | None,
    model: dict | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """`predict_links`, plus the links from each of `new_records` to `records`.

    `model` (`usable_model`: a fingerprint and Splink's model) scores without training when
    its fingerprint is that of tonight's fields and settings; otherwise the model is trained,
    and returned in `info["model"]` (with `info["fingerprint"]`) for `save_model`.

    The model is trained on `records` only and scores the new records against them afterwards
    (Splink's `predict_between`), so the links within `records` are the same with or without
    new records.

    Returns:
        (links within records; links from new records: node_key_a = the new record's
        unique_id, node_key_b = the record's; info for run metadata)
    """
    with SplinkScorer(records, settings, model) as scorer:
        links = scorer.predict()
        new_links = _empty_links()
        if new_records is not None and len(new_records):
            new_links = scorer.links_from(new_records=new_records)
        return links, new_links, scorer.info


class SplinkScorer:
    """A Splink model over `records`, kept open to score them in parts or whole.

    Opening it trains the model on `records` (or loads `model`, see
    `predict_links_and_matches`). Then `links_from` scores some records (new ones, or some of
    `records` by id) against all of `records`, and `predict` scores every pair of `records`.
    Erasure uses the first to find an erased person's records without scoring everyone.

    From `subprocess_min_records` records on (identity.yaml), Splink runs in a child process
    (spawned, so it shares nothing with this one) that lives until `close`: its peak, 7 GB at
    1.36 M records, is then not added to the pipeline's, and all of it goes back to the system
    when the child exits (memory freed inside a process is mostly kept by the allocator). The
    records go to the child, and the links come back, through a pipe: plaintext never touches
    a file.
    """

    def __init__(self, records: pd.DataFrame, settings: dict, model: dict | None = None) -> None:
        self._records = len(records)
        self._pool = None
        self._local: _LinkerSession | None = None
        threshold = settings.get("subprocess_min_records")
        self._started = time.monotonic()
        if threshold is None or len(records) < int(threshold):
            self._local = _LinkerSession(records, settings, model)
            self.info = self._local.info
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=context)
        try:
            self.info = self._in_child(_open_session, records, settings, model)
        except BaseException:
            self.close()
            raise
        self.info["subprocess"] = True

    def reopen(self, records: pd.DataFrame, settings: dict, model: dict | None = None) -> None:
        """Score `records` from now on, with `model` (or one trained on them), in place of the
        records it was opened on: in the same child process, which need not start again."""
        self._records = len(records)
        if self._pool is None:
            if self._local is not None:
                self._local.close()
            self._local = _LinkerSession(records, settings, model)
            self.info = self._local.info
            return
        self.info = self._in_child(_open_session, records, settings, model)
        self.info["subprocess"] = True

    def reopen_without(self, ids: list[str], settings: dict, model: dict | None = None) -> None:
        """`reopen` on the records it holds less those of `ids`: after an erasure, none of the
        remaining records is read or sent to the child process again (at L, 1.36M records:
        reading them took 3.4 s, pickling them there and back 1.1 s). The caller checks that
        the fields compared stay the same (`compared_fields` of the remaining records)."""
        if self._pool is None:
            self._local = _without(self._local, ids, settings, model)
            self._records = len(self._local.frame)
            self.info = self._local.info
            return
        self.info = self._in_child(_reopen_child_without, ids, settings, model)
        self._records = self.info["records"]
        self.info["subprocess"] = True

    def links_from(
        self, *, new_records: pd.DataFrame | None = None, ids: list[str] | None = None
    ) -> pd.DataFrame:
        """Links at or above the threshold from `new_records` (shaped like the records), or
        from the records whose unique_id is in `ids` (other ids are ignored), to every record:
        node_key_a = the scored record's unique_id. A record's pair with itself is left out."""
        if self._local is not None:
            return self._local.links_from(new_records, ids)
        links, scored, peak = self._in_child(_session_links_from, new_records, ids)
        self.info["records_scored_against_all"] = scored
        self.info["process_peak_rss_mb"] = max(self.info.get("process_peak_rss_mb", 0), peak)
        return links

    def predict(self) -> pd.DataFrame:
        """Every link among the records at or above the threshold (each pair once)."""
        if self._local is not None:
            return self._local.predict()
        links, info = self._in_child(_session_predict)
        self.info.update(info)
        self.info["seconds_with_subprocess"] = round(time.monotonic() - self._started, 1)
        return links

    def close(self) -> None:
        """Close Splink's database (and end its process): its memory goes back at once."""
        if self._local is not None:
            self._local.close()
            self._local = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> SplinkScorer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _in_child(self, function, *args):
        from concurrent.futures.process import BrokenProcessPool

        if self._pool is None:
            raise RuntimeError("the Splink scorer is closed")
        try:
            return self._pool.submit(function, *args).result()
        except BrokenProcessPool as error:
            self._pool = None
            raise RuntimeError(
                f"the Splink process on {self._records:,} records died before it returned "
                "(most likely killed for lack of memory: see identity.yaml, blocking_rules, "
                "for the pairs each rule makes)"
            ) from error


# The session of a `SplinkScorer` that runs in a child process: one per child.
_CHILD_SESSION: _LinkerSession | None = None


def _open_session(records, settings, model) -> dict:
    global _CHILD_SESSION
    if _CHILD_SESSION is not None:
        _CHILD_SESSION.close()
    _CHILD_SESSION = _LinkerSession(records, settings, model)
    return _CHILD_SESSION.info


def _reopen_child_without(ids, settings, model) -> dict:
    global _CHILD_SESSION
    _CHILD_SESSION = _without(_CHILD_SESSION, ids, settings, model)
    return _CHILD_SESSION.info


def _without(session: _LinkerSession, ids, settings, model) -> _LinkerSession:
    """A new session on the records of `session` less those of `ids` (`session` closed)."""
    frame = session.frame
    session.close()
    return _LinkerSession(
        frame[~isin(frame["unique_id"], ids)].reset_index(drop=True), settings, model
    )


def _session_links_from(new_records, ids) -> tuple[pd.DataFrame, int, int]:
    links = _CHILD_SESSION.links_from(new_records, ids)
    return links, _CHILD_SESSION.info.get("records_scored_against_all", 0), _peak_rss_mb()


def _session_predict() -> tuple[pd.DataFrame, dict]:
    links = _CHILD_SESSION.predict()
    return links, _CHILD_SESSION.info


class _LinkerSession:
    """Splink in its own in-memory database, trained (or loaded) on `records`, until `close`,
    which closes the database and gives its memory back at once: the linker and its caches
    refer to each other, so without a collection the database (GBs at a million records)
    outlives the step. Plaintext never touches a file: DuckDB would spill an in-memory
    database under memory pressure to `./.tmp`, so spilling is turned off (a linkage that
    outgrows memory fails with DuckDB's out-of-memory error instead)."""

    def __init__(self, records: pd.DataFrame, settings: dict, model: dict | None) -> None:
        self.settings = settings
        self.connection = duckdb.connect(":memory:")
        self.connection.execute("set temp_directory = ''")
        self.linker = None
        try:
            self._open(records, settings, model)
        except BaseException:
            self.close()
            raise

    def _open(self, records: pd.DataFrame, settings: dict, model: dict | None) -> None:
        from splink import DuckDBAPI, Linker

        started = time.monotonic()
        fields = compared_fields(records, settings)
        self.fields = fields
        self.info: dict = {"records": int(len(records)), "fields_compared": fields}
        rules = [r for r in settings["blocking_rules"] if _fields_of(r) <= set(fields)]
        self.threshold = float(settings["match_threshold"])
        self.info["threshold"] = self.threshold
        self.frame = records[["unique_id", *fields]].copy()
        if len(records) < 2 or len(fields) < 2 or not rules:
            self.info.update(pairs_scored=0, links=0, seconds=round(time.monotonic() - started, 1))
            return
        self.db = DuckDBAPI(self.connection)
        # As Arrow: DuckDB scans it as it is, where a pandas frame of Arrow-backed text
        # (what `read_frame` gives) is converted column by column on every scan: at 1.36M
        # records, 6 of the 9 s it took to open a session, for the term-frequency tables alone.
        self.records = arrow_for_duckdb(self.frame)
        self.registered = self.db.register(self.records)
        self.rules = rules
        fingerprint = model_fingerprint(settings, fields)
        if model is not None and model["fingerprint"] == fingerprint:
            self.linker = Linker(self.registered, model["model"], log_level=logging.WARNING)
            self.info.update(
                model_trained=False, seconds_setup=round(time.monotonic() - started, 1)
            )
        else:
            self.linker = self._train(fields, rules, settings, started)
            self.info.update(
                model_trained=True,
                fingerprint=fingerprint,
                model=self.linker.misc.save_model_to_json(out_path=None),
            )
        # Records are scored with the term frequencies of `records` alone: scoring others
        # against them changes no model input.
        for field in fields:
            if field in TERM_FREQUENCY_FIELDS:
                self.linker.table_management.compute_tf_table(field)
        self.info["seconds_model"] = round(time.monotonic() - started, 1)
        self.info["process_peak_rss_mb"] = _peak_rss_mb()

    def _train(self, fields, rules, settings, started):
        """A linker on every record, with a model trained on them all, or on a seeded sample
        of `training_max_records` of them (identity.yaml) when there are more. The sample is
        trained in a database of its own: Splink caches its tables (term frequencies among
        them) per database, and the sample's must not stand in for everyone's."""
        from splink import DuckDBAPI, Linker

        sample = training_sample(self.frame, settings)
        if sample is None:
            return _trained_linker(self.registered, fields, rules, settings, self.info, started)
        limit = len(sample)
        connection = duckdb.connect(":memory:")
        try:
            connection.execute("set temp_directory = ''")
            registered = DuckDBAPI(connection).register(arrow_for_duckdb(sample))
            trained = _trained_linker(registered, fields, rules, settings, self.info, started)
            model = trained.misc.save_model_to_json(out_path=None)
            del trained, registered, sample
        finally:
            connection.close()
            gc.collect()
        self.info["records_trained_on"] = int(limit)
        return Linker(self.registered, model, log_level=logging.WARNING)

    def links_from(self, new_records: pd.DataFrame | None, ids: list[str] | None) -> pd.DataFrame:
        if self.linker is None:
            return _empty_links()
        if new_records is not None:
            part = new_records[["unique_id", *self.fields]]
        else:
            part = self.frame[isin(self.frame["unique_id"], ids or [])]
        if not len(part):
            return _empty_links()
        part = pa.Table.from_pandas(
            part,
            schema=pa.Schema.from_pandas(self.frame, preserve_index=False),
            preserve_index=False,
        )
        candidates = self._candidates(part)
        self.info["records_scored_against_all"] = self.info.get(
            "records_scored_against_all", 0
        ) + int(len(part))
        self.info["candidate_records"] = self.info.get("candidate_records", 0) + len(candidates)
        if not len(candidates):
            return _empty_links()
        left, right = self.db.register(part), self.db.register(candidates)
        try:
            links = _links(
                self.linker.inference.predict_between(
                    left,
                    right,
                    threshold_match_probability=self.threshold,
                    warning_mode="never",
                )
            )
        finally:
            for table in (left, right):
                table.drop_table_from_database_and_remove_from_cache(force_non_splink_table=True)
        return links[links["node_key_a"] != links["node_key_b"]].reset_index(drop=True)

    def _candidates(self, part: pa.Table) -> pa.Table:
        """The records sharing a blocking key with a record of `part`: the only ones Splink
        can pair it with. Scored against these instead of every record, `part` gets the same
        links with the same probabilities (the term frequencies stay those of every record,
        computed when the session opened), and Splink's joins read a few rows, not all: at
        1.36M records, 4 records were scored in 0.6 s instead of 2.4, 2,000 in 1.4 s instead
        of 2.6 (50,000: 5.5 s instead of 5.9)."""
        self.connection.register("_pz_part", part)
        self.connection.register("_pz_records", self.records)
        try:
            sharing = " union all ".join(
                "select r.unique_id from _pz_records as r "
                f"semi join _pz_part as p on {blocking_condition(rule, 'r', 'p')}"
                for rule in self.rules
            )
            return self.connection.execute(
                f"select * from _pz_records where unique_id in ({sharing})"
            ).fetch_arrow_table()
        finally:
            self.connection.unregister("_pz_part")
            self.connection.unregister("_pz_records")

    def predict(self) -> pd.DataFrame:
        if self.linker is None:
            return _empty_links()
        started = time.monotonic()
        chunks = predict_chunks(len(self.frame), self.settings)
        links = _links(
            self.linker.inference.predict(
                threshold_match_probability=self.threshold,
                num_chunks_left=chunks,
                num_chunks_right=chunks,
            )
        )
        self.info.update(
            predict_chunks=chunks * chunks,
            links=int(len(links)),
            seconds_predict=round(time.monotonic() - started, 1),
            seconds=round(self.info["seconds_model"] + time.monotonic() - started, 1),
            process_peak_rss_mb=_peak_rss_mb(),
        )
        return links

    def close(self) -> None:
        self.linker = self.registered = self.db = self.frame = self.records = None
        self.connection.close()
        gc.collect()


def _peak_rss_mb() -> int:
    """This process's peak resident memory so far, for the run metadata. Linux's VmHWM, not
    `ru_maxrss`: a spawned child's `ru_maxrss` starts from the peak of the process it was forked
    from (the pipeline's), VmHWM from its own."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # KB on Linux


def _trained_linker(registered, fields, rules, settings, info, started):
    """A Splink linker on `registered`, trained on it: the prior, u by random sampling, then
    m by expectation maximisation on each of `training_blocking_rules`."""
    from splink import Linker, SettingsCreator, block_on

    linker = Linker(
        registered,
        SettingsCreator(
            link_type="dedupe_only",
            comparisons=[_comparison(f) for f in fields],
            blocking_rules_to_generate_predictions=[block_on(*r) for r in rules],
            retain_intermediate_calculation_columns=False,
            retain_matching_columns=False,
            max_iterations=int(settings.get("em_max_iterations", 25)),
        ),
        log_level=logging.WARNING,
    )
    deterministic = [
        block_on(*r)
        for r in (["first_name", "last_name", "birth_date"], ["email"])
        if set(r) <= set(fields)
    ] or [block_on(*rules[0])]
    linker.training.estimate_probability_two_random_records_match(deterministic, recall=0.7)
    info["seconds_setup"] = round(time.monotonic() - started, 1)
    linker.training.estimate_u_using_random_sampling(
        max_pairs=float(settings.get("u_sampling_max_pairs", 1e6)),
        seed=int(settings.get("random_seed", 42)),
    )
    info["seconds_u"] = round(time.monotonic() - started, 1)
    trained = []
    for rule in settings.get("training_blocking_rules", []):
        if _fields_of(rule) <= set(fields):
            try:
                linker.training.estimate_parameters_using_expectation_maximisation(
                    block_on(*rule), max_pairs=settings.get("training_max_pairs")
                )
                trained.append("+".join(rule))
            except Exception as error:  # noqa: BLE001 - too few pairs on tiny inputs
                logging.getLogger(__name__).warning("EM on %s skipped: %s", rule, error)
    info["seconds_em"] = round(time.monotonic() - started, 1)
    info["em_passes"] = trained
    return linker


def _links(scored) -> pd.DataFrame:
    """Splink's scored pairs as link rows (and the scored table dropped from its database)."""
    predicted = scored.as_pandas_dataframe()
    scored.drop_table_from_database_and_remove_from_cache()
    return pd.DataFrame(
        {
            "node_key_a": predicted["unique_id_l"].astype(str),
            "node_key_b": predicted["unique_id_r"].astype(str),
            "method": SPLINK_METHOD,
            "match_probability": predicted["match_probability"].astype(float),
        }
    ).sort_values(["node_key_a", "node_key_b"], ignore_index=True)
