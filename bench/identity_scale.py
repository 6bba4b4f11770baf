"""Time identity resolution of ~100,000 profile records (Splink + graph + guardrails).

    .venv/bin/python bench/identity_scale.py DATA_DIR

DATA_DIR holds generated sample data (`dagster_project.sample_data.generate(DATA_DIR,
users=73000, days=1)` gives ~100k profile records). The profile files are read with DuckDB and
normalized as the pipeline does; the timed part is exactly what the identity assets run:
Splink training + prediction, the deterministic edges, guardrails and connected components.
Prints the timing and the pairwise scores against the generator's truth.
"""

import logging
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd

from dagster_project.identity.splink_linker import predict_links
from dagster_project.tunables import load_identity_tunables, load_tunables
from models_ml.identity import resolve_identities
from models_ml.linkage import apply_guardrails, pairwise_scores

logging.basicConfig(level=logging.WARNING)
DATA = Path(sys.argv[1])
RAW = DATA / "raw/profiles"

SQL = f"""
with raw as (
    select * from read_csv('{RAW}/*.csv', all_varchar = true)
    union all by name
    select * from read_json('{RAW}/*.jsonl', format = 'newline_delimited',
                            columns = {{record_id: 'varchar', source_system: 'varchar',
                            user_id: 'varchar', email: 'varchar', phone: 'varchar',
                            first_name: 'varchar', last_name: 'varchar', address: 'varchar',
                            birth_date: 'varchar', postcode: 'varchar', city: 'varchar'}})
)
select
    'record_id|' || coalesce(source_system, '') || '|' || record_id as unique_id,
    user_id,
    nullif(lower(trim(first_name)), '') as first_name,
    nullif(lower(trim(last_name)), '') as last_name,
    try_cast(birth_date as date) as birth_date,
    case when lower(trim(email)) in (select unnest($junk)) then null
         else nullif(lower(trim(email)), '') end as email,
    nullif(regexp_replace(phone, '[^0-9]', '', 'g'), '') as phone,
    nullif(lower(trim(address)), '') as address,
    nullif(upper(replace(trim(postcode), ' ', '')), '') as postcode,
    nullif(lower(trim(city)), '') as city
from raw
"""


def main() -> None:
    junk = [v.strip().lower() for v in load_tunables().identity_junk_values]
    settings = load_identity_tunables()
    records = duckdb.execute(SQL, {"junk": junk}).df()
    print(f"profile records: {len(records)}")
    started = time.monotonic()
    links, info = predict_links(records.drop(columns=["user_id"]), settings["probabilistic"])
    splink_seconds = time.monotonic() - started
    print(f"splink: {info}", flush=True)
    deterministic = pd.concat(
        [
            pd.DataFrame(
                {
                    "node_key_a": records["unique_id"],
                    "node_key_b": prefix + records[column],
                    "method": method,
                    "match_probability": 1.0,
                }
            ).dropna()
            for column, prefix, method in (
                ("user_id", "user_id||", "profile_user_id"),
                ("email", "email_token||", "email"),
            )
        ],
        ignore_index=True,
    )
    edges = pd.concat([deterministic, links], ignore_index=True)
    keys = pd.concat([records["unique_id"], edges["node_key_b"]]).unique()
    nodes = pd.DataFrame({"node_key": keys})
    nodes["identifier_type"] = nodes["node_key"].str.split("|").str[0]
    nodes["source_system"] = nodes["node_key"].str.split("|").str[1]
    nodes["identifier"] = nodes["node_key"].str.split("|").str[2]
    guardrails = settings["guardrails"]
    kept, firings = apply_guardrails(
        nodes,
        edges,
        max_user_ids=guardrails["max_user_ids_per_person"],
        max_records=guardrails["max_records_per_person"],
        breakable_methods=tuple(guardrails["breakable_methods"]),
    )
    assignments = resolve_identities(nodes, kept)
    total = time.monotonic() - started
    truth = pd.read_csv(DATA / "truth/profile_records.csv", dtype=str)
    truth["unique_id"] = "record_id|" + truth["source_system"] + "|" + truth["record_id"]
    scored = truth.merge(
        assignments.assign(
            unique_id="record_id|"
            + assignments["source_system"].fillna("")
            + "|"
            + assignments["identifier"]
        ),
        on="unique_id",
        how="left",
    )
    print(f"guardrail firings: {len(firings)}, edges cut: {int(firings['edges_cut'].sum())}")
    print(f"resolved {len(records)} records in {total:.1f} s (splink {splink_seconds:.1f} s)")
    print(f"pairwise vs truth: {pairwise_scores(scored['person_id'], scored['true_user_id'])}")


if __name__ == "__main__":
    main()
