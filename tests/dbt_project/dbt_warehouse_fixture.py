"""A tiny warehouse for running the dbt project for real.

Builds the `raw` and `config` schemas the ingest assets would write (docs/warehouse_layout.md),
stands in for the Python ML steps between dbt phases (`ml.*` tables), and runs dbt through its
CLI with every artifact under a temporary directory.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path

import duckdb
import yaml

from dagster_project.ingest.loader import raw_table_ddl
from dagster_project.ingest.sources import SOURCES

REPO_ROOT = Path(__file__).resolve().parents[2]
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
CONFIG_DIR = REPO_ROOT / "dagster_project" / "config"
# the venv's dbt, next to the interpreter running the tests; else whatever is on PATH
DBT_EXECUTABLE = Path(sys.executable).with_name("dbt")
if not DBT_EXECUTABLE.exists():
    DBT_EXECUTABLE = Path(shutil.which("dbt") or "dbt")

PII_TEST_KEY = b"dbt-project-test-key"

LOADED_AT = datetime(2024, 3, 2)


def token(value: str) -> str:
    """PII token as ingest makes it: HMAC-SHA256 of the normalized value, lowercase hex."""
    return hmac.new(PII_TEST_KEY, value.strip().lower().encode(), hashlib.sha256).hexdigest()


def create_raw_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Every raw table exists, empty, with all its columns (as ingest guarantees)."""
    # The very DDL ingest uses, so the fixture cannot drift from the contract.
    con.execute("create schema if not exists raw")
    for spec in SOURCES.values():
        con.execute(f"drop table if exists raw.{spec.name}")
        con.execute(raw_table_ddl(spec))


def insert_raw(
    con: duckdb.DuckDBPyConnection,
    table: str,
    rows: Iterable[Mapping[str, object]],
    file: str | None = None,
    loaded_at: datetime = LOADED_AT,
) -> None:
    """Append rows; metadata (`_file`, `_line`, `_loaded_at`) is filled in unless given."""
    file = file or f"{table}/part-1.jsonl"
    for line, row in enumerate(rows, start=1):
        record = {"_file": file, "_line": line, "_file_sha256": "0" * 64, "_loaded_at": loaded_at}
        record.update(row)
        names = ", ".join(f'"{name}"' for name in record)
        marks = ", ".join("?" for _ in record)
        con.execute(f"insert into raw.{table} ({names}) values ({marks})", list(record.values()))


def load_config(con: duckdb.DuckDBPyConnection, config_dir: Path = CONFIG_DIR) -> None:
    """The `config.*` tables, from the repo's YAML (as the pipeline writes them)."""

    def raw_key(value: str) -> str:
        return "".join(ch for ch in value if ch.isalnum()).lower()

    def read(name: str) -> dict:
        return yaml.safe_load((config_dir / name).read_text())

    event_types = read("event_types.yaml")["event_types"]
    categorical = read("categorical_values.yaml")
    weights = read("interaction_weights.yaml")
    pipeline = read("pipeline.yaml")

    con.execute("create schema if not exists config")
    con.execute(
        "create or replace table config.event_type_map (raw_key varchar, event_type varchar)"
    )
    con.executemany(
        "insert into config.event_type_map values (?, ?)",
        [
            (raw_key(s), canonical)
            for canonical, spellings in event_types.items()
            for s in spellings
        ],
    )
    con.execute(
        "create or replace table config.categorical_map "
        "(field varchar, raw_key varchar, value varchar)"
    )
    con.executemany(
        "insert into config.categorical_map values (?, ?, ?)",
        [
            (field, raw_key(spelling), value)
            for field in ("device_type", "os", "category")
            for value, spellings in categorical[field].items()
            for spelling in spellings
        ],
    )
    con.execute(
        "create or replace table config.interaction_weights (event_type varchar, weight double)"
    )
    con.executemany(
        "insert into config.interaction_weights values (?, ?)",
        [*weights["weights"].items(), ("rate", weights["rating_weight"])],
    )
    con.execute(
        "create or replace table config.run_settings (as_of timestamp, session_gap_minutes integer)"
    )
    con.execute(
        "insert into config.run_settings values (null, ?)",
        [pipeline["sessions"]["inactivity_gap_minutes"]],
    )
    # dbt never sees the PII key: the pipeline lists junk values both plain and tokenized.
    junk = pipeline["identity"]["junk_values"]
    con.execute("create or replace table config.identity_junk_values (value varchar)")
    con.executemany(
        "insert into config.identity_junk_values values (?)",
        [(value,) for value in junk] + [(token(value),) for value in junk if value],
    )
    # Trigger segment rules (segments.yaml) and survivorship rules (identity.yaml), in the
    # shape the pipeline writes them.
    from dagster_project.tunables import load_tunables

    tunables = load_tunables(config_dir)
    write_config_frame(con, "segment_trigger_rules", tunables.trigger_rules)
    write_config_frame(con, "survivorship_rules", tunables.survivorship_rules)


def write_config_frame(con: duckdb.DuckDBPyConnection, table: str, frame) -> None:
    """Replace `config.<table>` with the rows of a DataFrame."""
    con.register("_config_frame", frame)
    con.execute(f"create or replace table config.{table} as select * from _config_frame")
    con.unregister("_config_frame")


def create_empty_ml_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create schema if not exists ml")
    con.execute(
        """
        create or replace table ml.identity_assignments (
            identifier_type varchar, identifier varchar, source_system varchar,
            person_id varchar, method varchar, match_probability double
        )
        """
    )
    con.execute(
        """
        create or replace table ml.user_segments (
            person_id varchar, segment_type varchar, segment_id varchar,
            segment_name varchar, score double
        )
        """
    )
    con.execute(
        """
        create or replace table ml.segment_quality (
            run_at timestamp, algorithm varchar, k integer, silhouette double,
            davies_bouldin double, n_people bigint, is_chosen boolean
        )
        """
    )
    con.execute(
        """
        create or replace table ml.recommendations (
            person_id varchar, rank integer, item_id varchar, score double,
            algorithm varchar, reason varchar
        )
        """
    )
    con.execute(
        """
        create or replace table ml.propensity_segments (
            person_id varchar, segment_type varchar, segment_id varchar,
            segment_name varchar, score double
        )
        """
    )
    con.execute(
        """
        create or replace table ml.segment_drift (
            run_at timestamp, previous_run_at timestamp, drift_kind varchar, subject varchar,
            previous_share double, current_share double, psi double, is_above_threshold boolean
        )
        """
    )
    # Recommendation evaluation and experiments (models_ml.recommenders.selection,
    # models_ml.experiments): empty is enough for their marts to build.
    con.execute(
        """
        create or replace table ml.recommendation_evaluation (
            run_at timestamp, as_of timestamp, algorithm varchar, k integer, n_users bigint,
            precision_at_k double, recall_at_k double, ndcg_at_k double, map_at_k double,
            catalog_coverage double, novelty double, fit_seconds double, is_chosen boolean
        )
        """
    )
    con.execute(
        """
        create or replace table ml.experiment_assignments (
            experiment varchar, person_id varchar, variant varchar, bucket double
        )
        """
    )
    con.execute(
        """
        create or replace table ml.experiment_results (
            experiment varchar, variant varchar, is_control boolean, metric varchar,
            users bigint, exposed_users bigint, clickers bigint, converters bigint, ctr double,
            conversion_rate double, lift double, lift_ci_low double, lift_ci_high double,
            p_value double, is_significant boolean, srm_p_value double, has_srm boolean
        )
        """
    )


def assign_identities(con: duckdb.DuckDBPyConnection) -> None:
    """Stand-in for the identity step: connected components of the deterministic edges.

    Reads `intermediate.int_identity_nodes` / `int_identity_edges` exactly as the Python asset
    does and writes `ml.identity_assignments` for the person-level identifier types.
    """
    nodes = con.sql(
        "select node_key, identifier_type, identifier, source_system "
        "from intermediate.int_identity_nodes"
    ).fetchall()
    edges = con.sql("select node_key_a, node_key_b from intermediate.int_identity_edges").fetchall()
    parent = {node[0]: node[0] for node in nodes}

    def find(key: str) -> str:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for a, b in edges:
        root_a, root_b = find(a), find(b)
        if root_a != root_b:
            parent[max(root_a, root_b)] = min(root_a, root_b)

    rows = [
        (
            identifier_type,
            identifier,
            source_system,
            "p-" + hashlib.md5(find(node_key).encode()).hexdigest()[:10],
            "deterministic",
            1.0,
        )
        for node_key, identifier_type, identifier, source_system in nodes
        if identifier_type in ("record_id", "user_id", "anonymous_id")
    ]
    create_empty_ml_tables(con)
    if rows:
        con.executemany("insert into ml.identity_assignments values (?, ?, ?, ?, ?, ?)", rows)


def write_ml_outputs(con: duckdb.DuckDBPyConnection) -> None:
    """Stand-in for the segment and recommendation steps: a few rows per person."""
    con.execute(
        """
        insert into ml.user_segments
        select
            person_id,
            'cluster',
            'c' || (row_number() over (order by person_id) % 2),
            'cluster ' || (row_number() over (order by person_id) % 2),
            1.0
        from marts.user_features
        """
    )
    con.execute(
        """
        insert into ml.segment_quality
        select '2024-03-02 00:00:00', 'kmeans', k, silhouette, davies_bouldin, n, k = 2
        from (values (2, 0.41, 0.9), (3, 0.22, 1.4)) as runs (k, silhouette, davies_bouldin)
        cross join (select count(*) as n from marts.user_features)
        """
    )
    con.execute(
        """
        insert into ml.recommendations
        select person_id, rank, item_id, 1.0 / rank, 'popularity', 'popular'
        from (
            select
                people.person_id,
                items.item_id,
                row_number() over (partition by people.person_id order by items.item_id) as rank
            from marts.user_features as people
            cross join marts.items as items
        )
        where rank <= 10
        """
    )


def run_dbt(args: list[str], warehouse: Path, work_dir: Path) -> subprocess.CompletedProcess:
    """One dbt CLI call against `warehouse`, with target/ and logs/ under `work_dir`."""
    env = {
        **os.environ,
        "PZ_WAREHOUSE_PATH": str(warehouse),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    command = [
        str(DBT_EXECUTABLE),
        *args,
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
        "--target-path",
        str(work_dir / "target"),
        "--log-path",
        str(work_dir / "logs"),
    ]
    return subprocess.run(command, env=env, capture_output=True, text=True, check=False)


# dbt's first phase, as far as the event and identity models go (what the identity step and
# int_events_identified, after it, read)
PRE_IDENTITY_RUN = [
    "run",
    "--select",
    "+int_events_deduplicated",
    "+int_zone_hour_offsets",
    "+stg_context__contexts",
    "+stg_config__run_settings",
    "+stg_config__identity_junk_values",
    "+int_identity_nodes",
    "+int_identity_edges",
]


def dbt_ok(args: list[str], warehouse: Path, work_dir: Path) -> None:
    """`run_dbt`, asserting it succeeded (with the end of dbt's output when it did not)."""
    result = run_dbt(args, warehouse, work_dir)
    assert result.returncode == 0, result.stdout[-4000:]


def rows_by_key(warehouse: Path, table: str) -> dict[str, dict]:
    """Every row of `table` as a dict of its columns, by its first column."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute(f"select * from {table} order by 1").fetchall()
        names = [row[0] for row in con.execute(f"describe {table}").fetchall()]
    return {row[0]: dict(zip(names, row, strict=True)) for row in rows}


def make_event(event_id, event_type, timestamp, **fields) -> dict:
    occurred_at = datetime.fromisoformat(timestamp)
    return {
        "event_id": event_id,
        "event_type": event_type,
        "timestamp": timestamp + "Z",
        "_occurred_at": occurred_at,
        **fields,
    }


ALICE = token("alice@example.org")
BOB = token("bob@example.org")
JUNK_EMAIL = token("test@example.com")


def populate_sample(con: duckdb.DuckDBPyConnection) -> None:
    """A handful of rows per source, each there to exercise one rule (see test_dbt_build.py)."""
    insert_raw(
        con,
        "events",
        [
            # u1 browses anonymously on device a1, logs in, then two derived sessions (40-min gap)
            make_event(
                "ev-05",
                "page_view",
                "2024-03-01 08:00:00",
                anonymous_id="a1",
                timezone="America/New_York",
            ),
            make_event("ev-login", "Login", "2024-03-01 09:55:00", user_id="u1", anonymous_id="a1"),
            make_event("ev-01", "ViewProduct", "2024-03-01 10:00:00", user_id="u1", item_id="i1"),
            make_event("ev-02", "product-view", "2024-03-01 10:10:00", user_id="u1", item_id="i2"),
            make_event("ev-03", "Add To Cart", "2024-03-01 10:50:00", user_id="u1", item_id="i1"),
            make_event(
                "ev-04",
                "order_completed",
                "2024-03-01 11:15:00",
                user_id="u1",
                item_id="i1",
                value="50.0",
                quantity="1",
            ),
            # u2: a given session is never split, however long
            make_event(
                "ev-06", "weird_event", "2024-03-01 12:00:00", user_id="u2", session_id="s-given"
            ),
            make_event(
                "ev-07",
                "view_item",
                "2024-03-01 14:00:00",
                user_id="u2",
                item_id="i3",
                session_id="s-given",
            ),
            make_event(
                "ev-08", "rating", "2024-03-01 15:00:00", user_id="u2", item_id="i3", value="4"
            ),
            # u9 asked to be erased; a9 is their device (seen logged in)
            make_event(
                "ev-09",
                "view_product",
                "2024-03-01 10:00:00",
                user_id="u9",
                anonymous_id="a9",
                item_id="i1",
            ),
            make_event(
                "ev-10", "view_product", "2024-03-01 09:00:00", anonymous_id="a9", item_id="i2"
            ),
            # a bad value is nulled, not fatal
            make_event("ev-11", "page_view", "2024-03-01 11:00:00", user_id="u3", value="abc"),
            # a junk user id never stitches a device
            make_event(
                "ev-12",
                "view_product",
                "2024-03-01 20:00:00",
                user_id="test",
                anonymous_id="a5",
                item_id="i2",
            ),
        ],
        file="events/day1.jsonl",
    )
    # the same event delivered again later (another file): the first delivery wins
    insert_raw(
        con,
        "events",
        [make_event("ev-01", "purchase", "2024-03-01 10:00:00", user_id="u1", item_id="i1")],
        file="events/day1-resent.jsonl",
        loaded_at=datetime(2024, 3, 3),
    )
    insert_raw(
        con,
        "profiles",
        [
            # r1 and r2 share an email: one person; r2 is newer and wins city, r1 fills the rest
            {
                "record_id": "r1",
                "source_system": "crm",
                "user_id": "u1",
                "email_token": ALICE,
                "birth_date": "1990-05-01",
                "gender": "F",
                "city": "Lyon",
                "_updated_at": datetime(2024, 1, 1),
            },
            {
                "record_id": "r2",
                "source_system": "shop",
                "email_token": ALICE,
                "city": "Paris",
                "_updated_at": datetime(2024, 2, 1),
            },
            # r3 and r4 share only a junk email: two people
            {
                "record_id": "r3",
                "source_system": "crm",
                "user_id": "u2",
                "email_token": JUNK_EMAIL,
                "birth_date": "1999-02-31",
                "age": "150",
                "gender": "Male",
                "_updated_at": datetime(2024, 1, 1),
            },
            {
                "record_id": "r4",
                "source_system": "crm",
                "user_id": "u3",
                "email_token": JUNK_EMAIL,
                "age": "41",
                "_updated_at": datetime(2024, 1, 1),
            },
            # r9 (user u9) and r10 (same email) are erased
            {"record_id": "r9", "source_system": "crm", "user_id": "u9", "email_token": BOB},
            {"record_id": "r10", "source_system": "shop", "email_token": BOB},
        ],
    )
    insert_raw(
        con,
        "context",
        [
            {"event_id": "ev-01", "device_type": "iPhone", "os": "IOS", "timezone": "Asia/Tokyo"},
            {"session_id": "s-given", "device_type": "PC", "os": "Win10", "timezone": "Bad/Zone"},
            {"event_id": "ev-03", "device_type": "Smart TV"},
        ],
    )
    insert_raw(
        con,
        "catalog",
        [
            {
                "item_id": "i1",
                "title": "Phone",
                "category": "Electronic",
                "price": "-5",
                "tags": '["New", "Sale"]',
                "in_stock": "yes",
                "is_curated": "0",
            },
            {
                "item_id": "i2",
                "title": "Chair",
                "category": "Home & Garden",
                "price": "49.90",
                "tags": "garden; Outdoor",
                "in_stock": "maybe",
            },
            {"item_id": "i3", "title": "Novel", "category": "Weird Cat!", "price": "12"},
        ],
    )
    insert_raw(
        con,
        "consent",
        [
            {
                "user_id": "u1",
                "purpose": "personalization",
                "granted": "true",
                "_recorded_at": datetime(2024, 1, 1),
            },
            {
                "user_id": "u1",
                "purpose": "Personalisation",
                "granted": "no",
                "_recorded_at": datetime(2024, 2, 1),
            },
            {
                "email_token": ALICE,
                "purpose": "marketing",
                "granted": "yes",
                "_recorded_at": datetime(2024, 2, 1),
            },
            {
                "user_id": "u9",
                "purpose": "personalization",
                "granted": "yes",
                "_recorded_at": datetime(2024, 2, 1),
            },
        ],
    )
    insert_raw(
        con,
        "erasure",
        [{"user_id": "u9", "_requested_at": datetime(2024, 2, 15)}],
    )
