"""Survivorship rules from identity.yaml, through real dbt on a real DuckDB file.

A tiny warehouse of hand-made profile records whose person_ids are written straight into
`ml.identity_assignments` (no identity step), a copy of the repo's config with these rules,
and one `dbt run` of user_profiles and everything upstream of it:

    default: {rule: source_priority, sources: [crm_b]}
    fields:
      city: most_recent
      gender: most_frequent
      country: {rule: source_priority, sources: [crm_b, CRM_A]}

(The repo's own rules, most_recent everywhere, are asserted in test_dbt_build.py; tie-breaks
in detail by the dbt unit test `test_survivorship_rules_pick_each_field`.)
"""

from __future__ import annotations

import shutil
from datetime import datetime

import dbt_warehouse_fixture as wf
import duckdb
import pytest
import yaml

from dagster_project.tunables import SURVIVORSHIP_FIELDS

SURVIVORSHIP = {
    "default": {"rule": "source_priority", "sources": ["crm_b"]},
    "fields": {
        "city": "most_recent",
        "gender": "most_frequent",
        "country": {"rule": "source_priority", "sources": ["crm_b", "CRM_A"]},
    },
}

# p-all: three records, each field different in each; crm_b is the oldest, shop the newest.
RECORDS = [
    {
        "record_id": "b1",
        "source_system": "crm_b",
        "user_id": "u-b",
        "email_token": wf.token("b@example.org"),
        "phone_token": wf.token("+33100000002"),
        "first_name_token": wf.token("bea"),
        "last_name_token": wf.token("bauer"),
        "address_token": wf.token("2 rue b"),
        "birth_date": "1980-01-01",
        "age": "44",
        "gender": "F",
        "city": "Brest",
        "region": "Bretagne",
        "_updated_at": datetime(2024, 1, 1),
    },
    {
        "record_id": "a1",
        "source_system": "CRM_A",
        "user_id": "u-a",
        "email_token": wf.token("a@example.org"),
        "phone_token": wf.token("+33100000001"),
        "first_name_token": wf.token("ada"),
        "last_name_token": wf.token("arnaud"),
        "address_token": wf.token("1 rue a"),
        "birth_date": "1970-01-01",
        "age": "54",
        "gender": "female",
        "city": "Paris",
        "postcode": "75001",
        "region": "Ile-de-France",
        "country": "FR",
        "_updated_at": datetime(2024, 2, 1),
    },
    {
        "record_id": "c1",
        "source_system": "shop",
        "user_id": "u-c",
        "birth_date": "1990-01-01",
        "gender": "M",
        "city": "Nice",
        "postcode": "06000",
        "country": "DE",
        "_updated_at": datetime(2024, 3, 1),
    },
    # p-age: no birth dates, so the reported age (field `age`) is the profile's age
    {"record_id": "a2", "source_system": "crm_a", "age": "30", "_updated_at": datetime(2024, 2, 1)},
    {"record_id": "b2", "source_system": "crm_b", "age": "40", "_updated_at": datetime(2024, 1, 1)},
]
PERSON_OF_RECORD = {"b1": "p-all", "a1": "p-all", "c1": "p-all", "a2": "p-age", "b2": "p-age"}

# every survivorship field (the contract the YAML validates against), and the record count
COLUMNS = [*SURVIVORSHIP_FIELDS, "n_source_records"]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    work_dir = tmp_path_factory.mktemp("dbt_survivorship")
    config_dir = work_dir / "config"
    shutil.copytree(wf.CONFIG_DIR, config_dir)
    identity = yaml.safe_load((config_dir / "identity.yaml").read_text())
    identity["survivorship"] = SURVIVORSHIP
    (config_dir / "identity.yaml").write_text(yaml.safe_dump(identity))

    warehouse = work_dir / "warehouse.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        wf.create_raw_tables(con)
        wf.load_config(con, config_dir)
        con.execute("update config.run_settings set as_of = '2024-03-10'")
        wf.insert_raw(con, "profiles", RECORDS)
        wf.create_empty_ml_tables(con)
        con.executemany(
            "insert into ml.identity_assignments values ('record_id', ?, ?, ?, 'test', 1.0)",
            [
                (r["record_id"], r["source_system"], PERSON_OF_RECORD[r["record_id"]])
                for r in RECORDS
            ],
        )
        con.execute(
            "insert into ml.identity_assignments "
            "values ('user_id', 'u-none', null, 'p-none', 'test', 1.0)"
        )
    result = wf.run_dbt(["run", "--select", "+user_profiles"], warehouse, work_dir)
    assert result.returncode == 0, result.stdout[-6000:]
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute(
            f"select person_id, {', '.join(COLUMNS)} from marts.user_profiles"
        ).fetchall()
        staged_rules = con.execute(
            "select field, rule, source_system, priority "
            "from staging.stg_config__survivorship_rules"
        ).fetchall()
    return {
        "profiles": {row[0]: dict(zip(COLUMNS, row[1:], strict=True)) for row in rows},
        "rules": staged_rules,
    }


@pytest.fixture(scope="module")
def profiles(built) -> dict[str, dict]:
    return built["profiles"]


def test_the_yaml_rules_are_staged_for_dbt(built):
    rules = built["rules"]
    assert len(rules) == 13 + 1  # one row per field, two for country
    assert ("city", "most_recent", None, None) in rules
    assert ("gender", "most_frequent", None, None) in rules
    assert ("email_token", "source_priority", "crm_b", 1) in rules
    assert ("country", "source_priority", "crm_a", 2) in rules  # lowercased


def test_every_person_of_the_identity_map_has_one_profile(profiles):
    assert set(profiles) == {"p-all", "p-age", "p-none"}


def test_source_priority_default_takes_every_field_from_the_trusted_source(profiles):
    # crm_b's record is the oldest, and wins every field under the default rule
    person = profiles["p-all"]
    trusted = RECORDS[0]
    # every field under the default rule, but age (from the birth date) and postcode (below)
    defaulted = set(SURVIVORSHIP_FIELDS) - set(SURVIVORSHIP["fields"]) - {"age", "postcode"}
    assert len(defaulted) == 8
    for column in sorted(defaulted):
        assert str(person[column]) == trusted[column], column
    assert person["age"] == 44  # from crm_b's birth date on the as-of date
    assert person["n_source_records"] == 3


def test_source_priority_of_the_reported_age(profiles):
    assert profiles["p-age"]["age"] == 40


def test_source_priority_falls_back_to_recency_when_no_listed_source_has_a_value(profiles):
    # postcode: crm_b has none; CRM_A (unlisted for postcode) and shop follow by recency
    assert profiles["p-all"]["postcode"] == "06000"


def test_source_priority_skips_nulls_and_matches_sources_case_insensitively(profiles):
    # country [crm_b, CRM_A]: crm_b's record has none, CRM_A's FR beats shop's newer DE
    assert profiles["p-all"]["country"] == "FR"


def test_most_recent_takes_the_newest_record(profiles):
    assert profiles["p-all"]["city"] == "Nice"


def test_most_frequent_takes_the_value_most_records_carry(profiles):
    # F and female are both `female` after staging; the newest record says M
    assert profiles["p-all"]["gender"] == "female"


def test_a_person_without_records_has_no_survived_values(profiles):
    person = profiles["p-none"]
    assert person["n_source_records"] == 0
    assert {person[column] for column in COLUMNS[:-1]} == {None}
