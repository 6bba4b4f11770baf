"""identity.yaml `survivorship`: validated and turned into the `config.survivorship_rules` table."""

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from dagster_project.tunables import (
    CONFIG_DIR,
    SURVIVORSHIP_FIELDS,
    TunablesError,
    config_frames,
    load_identity_tunables,
    load_tunables,
    resolve_survivorship,
    survivorship_rules_frame,
)


def _rows(section) -> list[tuple]:
    frame = survivorship_rules_frame(resolve_survivorship(section)).astype(object)
    return [
        tuple(None if pd.isna(value) else value for value in row)
        for row in frame.itertuples(index=False)
    ]


def test_repo_yaml_gives_every_field_one_rule():
    rules = config_frames(load_tunables(), None)["survivorship_rules"]
    assert list(rules.columns) == ["field", "rule", "source_system", "priority"]
    assert rules["field"].tolist() == list(SURVIVORSHIP_FIELDS)
    assert set(rules["rule"]) <= {"most_recent", "most_frequent", "source_priority"}
    non_priority = rules[rules["rule"] != "source_priority"]
    assert non_priority["source_system"].isna().all() and non_priority["priority"].isna().all()


def test_no_section_means_most_recent_everywhere():
    assert resolve_survivorship(None) == resolve_survivorship({"default": "most_recent"})
    assert {spec.rule for spec in resolve_survivorship({}).values()} == {"most_recent"}


def test_default_and_overrides_become_one_row_per_field_or_source():
    rows = _rows(
        {
            "default": "most_frequent",
            "fields": {
                "city": "most_recent",
                "gender": {"rule": "most_frequent"},
                "country": {"rule": "source_priority", "sources": ["CRM_B", " crm_a "]},
            },
        }
    )
    assert len(rows) == len(SURVIVORSHIP_FIELDS) + 1
    assert ("city", "most_recent", None, None) in rows
    assert ("gender", "most_frequent", None, None) in rows
    assert ("email_token", "most_frequent", None, None) in rows  # the default
    assert [row for row in rows if row[0] == "country"] == [
        ("country", "source_priority", "crm_b", 1),
        ("country", "source_priority", "crm_a", 2),
    ]


def test_a_source_priority_default_lists_its_sources_for_every_field():
    rows = _rows({"default": {"rule": "source_priority", "sources": ["crm_a"]}})
    assert rows == [(field, "source_priority", "crm_a", 1) for field in SURVIVORSHIP_FIELDS]


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"fields": {"shoe_size": "most_recent"}}, r"unknown fields \['shoe_size'\]"),
        ({"fields": {"city": "newest"}}, r"survivorship.fields.city: unknown rule 'newest'"),
        ({"default": "random"}, r"survivorship.default: unknown rule 'random'"),
        ({"fields": {"city": {"rule": None}}}, r"survivorship.fields.city: unknown rule None"),
        (
            {"fields": {"city": "source_priority"}},
            r"fields.city: rule `source_priority` needs `sources`, a non-empty list",
        ),
        (
            {"fields": {"city": {"rule": "source_priority", "sources": "crm_a"}}},
            r"fields.city: rule `source_priority` needs `sources`, a non-empty list",
        ),
        (
            {"fields": {"city": {"rule": "source_priority", "sources": []}}},
            r"fields.city: rule `source_priority` needs `sources`, a non-empty list",
        ),
        (
            {"fields": {"city": {"rule": "source_priority", "sources": ["crm_a", "CRM_A"]}}},
            r"fields.city: a source system is listed twice",
        ),
        (
            {"fields": {"city": {"rule": "most_recent", "sources": ["crm_a"]}}},
            r"fields.city: `sources` applies only to rule `source_priority`",
        ),
        (
            {"fields": {"city": {"rule": "most_recent", "order": "desc"}}},
            r"fields.city: unknown keys \['order'\]",
        ),
        ({"fields": {"city": ["most_recent"]}}, r"fields.city: expected a rule name or a mapping"),
        ({"fields": ["city"]}, r"survivorship.fields must map field -> rule"),
        ({"rules": {}}, r"survivorship has unknown keys \['rules'\]"),
        ("most_recent", r"`survivorship` must be a mapping"),
    ],
    ids=[
        "unknown_field",
        "unknown_rule",
        "unknown_default_rule",
        "missing_rule",
        "source_priority_without_sources",
        "sources_not_a_list",
        "sources_empty",
        "source_listed_twice",
        "sources_on_another_rule",
        "unknown_rule_key",
        "rule_not_a_name_or_mapping",
        "fields_not_a_mapping",
        "unknown_section_key",
        "section_not_a_mapping",
    ],
)
def test_invalid_survivorship_is_rejected_with_a_clear_error(section, message):
    with pytest.raises(TunablesError, match=message):
        resolve_survivorship(section)


def _with_survivorship(tmp_path: Path, section) -> Path:
    config = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, config)
    identity = yaml.safe_load((config / "identity.yaml").read_text())
    identity["survivorship"] = section
    (config / "identity.yaml").write_text(yaml.safe_dump(identity))
    return config


def test_both_loaders_of_identity_yaml_reject_a_bad_section(tmp_path):
    config = _with_survivorship(tmp_path, {"fields": {"city": "source_priority"}})
    for load in (load_tunables, load_identity_tunables):
        with pytest.raises(TunablesError, match="identity.yaml: survivorship.fields.city"):
            load(config)


def test_the_yaml_reaches_the_config_table(tmp_path):
    config = _with_survivorship(
        tmp_path, {"fields": {"postcode": {"rule": "source_priority", "sources": ["shop"]}}}
    )
    rules = config_frames(load_tunables(config), None)["survivorship_rules"]
    postcode = rules[rules["field"] == "postcode"]
    assert postcode[["rule", "source_system", "priority"]].values.tolist() == [
        ["source_priority", "shop", 1]
    ]
