"""The versioned YAML tunables in `dagster_project/config/`: loaded and validated in one place.

Python assets receive these objects; dbt sees them as `config.*` tables written at the start of
every run, so SQL and Python share one mapping of event types, categories and weights.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import yaml

CONFIG_DIR = Path(__file__).parent / "config"


class TunablesError(ValueError):
    """A tunables file is missing, malformed or inconsistent."""


def raw_key(value: str) -> str:
    """The matching key of a raw spelling: lowercase letters and digits only (as in SQL)."""
    return re.sub(r"[^a-z0-9]", "", str(value).lower())


@dataclass(frozen=True)
class Tunables:
    event_types: dict[str, list[str]]
    categorical: dict[str, dict[str, list[str]]]
    interaction_weights: dict[str, float]
    rating_weight: float
    pipeline: dict[str, Any]
    segments: dict[str, Any] = field(default_factory=dict)  # segments.yaml
    # identity.yaml `survivorship`, resolved: every master-record field -> (rule, sources)
    survivorship: dict[str, SurvivorshipRule] = field(default_factory=dict)

    @property
    def canonical_event_types(self) -> list[str]:
        return list(self.event_types)

    @property
    def session_gap_minutes(self) -> int:
        return int(self.pipeline["sessions"]["inactivity_gap_minutes"])

    @property
    def identity_junk_values(self) -> list[str]:
        return [str(v) for v in self.pipeline["identity"]["junk_values"]]

    @property
    def clustering(self) -> dict[str, Any]:
        # segments.yaml holds the clustering settings; pipeline.yaml's are the old fallback.
        return dict(self.segments.get("clustering") or self.pipeline["segments"]["clustering"])

    @property
    def trigger_rules(self) -> pd.DataFrame:
        """`config.segment_trigger_rules`: one row per trigger segment and condition."""
        rows = [
            (
                segment_id,
                str(spec["name"]),
                str(spec.get("description", "")),
                spec.get("score_metric"),
                position,
                str(condition["metric"]),
                str(condition["op"]),
                float(condition["value"]),
            )
            for segment_id, spec in (self.segments.get("triggers") or {}).items()
            for position, condition in enumerate(spec["conditions"])
        ]
        columns = [
            "segment_id",
            "segment_name",
            "description",
            "score_metric",
            "condition_number",
            "metric",
            "operator",
            "threshold",
        ]
        return pd.DataFrame(rows, columns=columns).astype(
            {"segment_id": str, "segment_name": str, "description": str, "score_metric": object}
        )

    @property
    def survivorship_rules(self) -> pd.DataFrame:
        """`config.survivorship_rules`: one row per field, or per field and source for
        `source_priority` (`priority` 1 = most trusted)."""
        return survivorship_rules_frame(self.survivorship or resolve_survivorship(None))

    def segment_settings(self, section: str) -> dict[str, Any]:
        """A section of segments.yaml (`clustering`, `propensity`, `drift`)."""
        return dict(self.segments.get(section) or {})

    @property
    def recommendations(self) -> dict[str, Any]:
        return dict(self.pipeline["recommendations"])

    @property
    def recommendation_rules(self) -> dict[str, Any]:
        """`recommendation_rules.yaml` (validated by models_ml.rules.RecommendationRules)."""
        return _read_yaml(CONFIG_DIR / "recommendation_rules.yaml")

    @property
    def experiments(self) -> list[dict[str, Any]]:
        """`experiments.yaml` entries (validated by models_ml.experiments.Experiment)."""
        return list(_read_yaml(CONFIG_DIR / "experiments.yaml").get("experiments") or [])


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise TunablesError(f"tunables file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise TunablesError(f"{path.name} is not valid YAML: {error}") from error
    if not isinstance(data, dict) or data.get("version") != 1:
        raise TunablesError(f"{path.name}: expected a mapping with `version: 1`")
    return data


def _check_aliases(name: str, mapping: Any) -> dict[str, list[str]]:
    if not isinstance(mapping, dict) or not mapping:
        raise TunablesError(f"{name}: expected a non-empty mapping of canonical value -> spellings")
    seen: dict[str, str] = {}
    for canonical, spellings in mapping.items():
        if not isinstance(spellings, list):
            raise TunablesError(f"{name}.{canonical}: expected a list of spellings")
        for spelling in [canonical, *spellings]:
            key = raw_key(spelling)
            if key in seen and seen[key] != canonical:
                raise TunablesError(
                    f"{name}: spelling {spelling!r} maps to both {seen[key]!r} and {canonical!r}"
                )
            seen[key] = canonical
    return {str(k): [str(s) for s in v] for k, v in mapping.items()}


def load_tunables(config_dir: Path = CONFIG_DIR) -> Tunables:
    events = _read_yaml(config_dir / "event_types.yaml")
    categorical = _read_yaml(config_dir / "categorical_values.yaml")
    weights = _read_yaml(config_dir / "interaction_weights.yaml")
    pipeline = _read_yaml(config_dir / "pipeline.yaml")

    event_types = _check_aliases("event_types", events.get("event_types"))
    fields = {
        field: _check_aliases(f"categorical_values.{field}", categorical.get(field))
        for field in ("device_type", "os", "category")
    }
    raw_weights = weights.get("weights") or {}
    unknown = sorted(set(raw_weights) - set(event_types))
    if unknown:
        raise TunablesError(f"interaction_weights: unknown event types {unknown}")
    for section in ("sessions", "identity", "segments", "recommendations"):
        if section not in pipeline:
            raise TunablesError(f"pipeline.yaml: missing section `{section}`")
    serve_changed = pipeline["recommendations"].get("serve_changed_people_only", True)
    if not isinstance(serve_changed, bool):
        raise TunablesError(
            "pipeline.yaml: recommendations.serve_changed_people_only must be true or false, "
            f"got {serve_changed!r}"
        )
    segments = _check_segments(_read_yaml(config_dir / "segments.yaml"))
    survivorship = resolve_survivorship(
        _read_yaml(config_dir / "identity.yaml").get("survivorship")
    )
    return Tunables(
        event_types=event_types,
        categorical=fields,
        interaction_weights={k: float(v) for k, v in raw_weights.items()},
        rating_weight=float(weights.get("rating_weight", 1.0)),
        pipeline=pipeline,
        segments=segments,
        survivorship=survivorship,
    )


TRIGGER_OPERATORS = (">", ">=", "<", "<=", "=", "!=")


def _check_segments(segments: dict[str, Any]) -> dict[str, Any]:
    triggers = segments.get("triggers")
    if not isinstance(triggers, dict) or not triggers:
        raise TunablesError("segments.yaml: expected a non-empty mapping `triggers`")
    for segment_id, spec in triggers.items():
        where = f"segments.yaml: trigger {segment_id!r}"
        if not re.fullmatch(r"[a-z][a-z0-9_]*", str(segment_id)):
            raise TunablesError(f"{where}: id must be lowercase letters, digits, underscores")
        if not isinstance(spec, dict) or not spec.get("name") or not spec.get("conditions"):
            raise TunablesError(f"{where}: needs `name` and a non-empty list `conditions`")
        for condition in spec["conditions"]:
            if not isinstance(condition, dict) or set(condition) != {"metric", "op", "value"}:
                raise TunablesError(f"{where}: a condition is {{metric, op, value}}")
            if condition["op"] not in TRIGGER_OPERATORS:
                raise TunablesError(
                    f"{where}: operator {condition['op']!r} not in {TRIGGER_OPERATORS}"
                )
            if not isinstance(condition["value"], int | float):
                raise TunablesError(f"{where}: value must be a number")
    algorithm = (segments.get("clustering") or {}).get("algorithm", "kmeans")
    if algorithm not in ("kmeans", "minibatch_kmeans", "dbscan", "agglomerative"):
        raise TunablesError(f"segments.yaml: unknown clustering algorithm {algorithm!r}")
    for section in ("clustering", "propensity"):
        days = (segments.get(section) or {}).get("reselect_every_days", 0)
        if isinstance(days, bool) or not isinstance(days, int) or days < 0:
            raise TunablesError(
                f"segments.yaml: {section}.reselect_every_days must be a whole number >= 0"
            )
    limit = (segments.get("propensity") or {}).get("max_fit_people")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise TunablesError("segments.yaml: propensity.max_fit_people must be >= 1 or null")
    return segments


def config_frames(tunables: Tunables, as_of: datetime | None) -> dict[str, pd.DataFrame]:
    """The `config.*` tables dbt reads, as DataFrames."""
    event_rows = [
        (raw_key(spelling), canonical)
        for canonical, spellings in tunables.event_types.items()
        for spelling in [canonical, *spellings]
    ]
    categorical_rows = [
        (field, raw_key(spelling), canonical)
        for field, mapping in tunables.categorical.items()
        for canonical, spellings in mapping.items()
        for spelling in [canonical, *spellings]
    ]
    weights = dict(tunables.interaction_weights)
    weights["rate"] = tunables.rating_weight
    return {
        "event_type_map": pd.DataFrame(event_rows, columns=["raw_key", "event_type"])
        .drop_duplicates()
        .reset_index(drop=True),
        "categorical_map": pd.DataFrame(categorical_rows, columns=["field", "raw_key", "value"])
        .drop_duplicates()
        .reset_index(drop=True),
        "interaction_weights": pd.DataFrame(
            sorted(weights.items()), columns=["event_type", "weight"]
        ),
        "run_settings": pd.DataFrame(
            {
                "as_of": pd.Series([as_of], dtype="datetime64[us]"),
                "session_gap_minutes": [tunables.session_gap_minutes],
            }
        ),
        "identity_junk_values": pd.DataFrame(
            {"value": sorted({v.strip().lower() for v in tunables.identity_junk_values})}
        ),
        "segment_trigger_rules": tunables.trigger_rules,
        "survivorship_rules": tunables.survivorship_rules,
    }


def write_config_tables(
    con: duckdb.DuckDBPyConnection, tunables: Tunables, as_of: datetime | None
) -> dict[str, int]:
    """Replace every `config.*` table; return their row counts.

    Needs the ingest macros on `con` (`pz_token`): dbt only ever sees PII tokens, so the junk
    list also holds each junk value's email, phone and name tokens.
    """
    con.execute("create schema if not exists config")
    counts = {}
    for name, frame in config_frames(tunables, as_of).items():
        con.register("_pz_config_frame", frame)
        con.execute(f"create or replace table config.{name} as select * from _pz_config_frame")
        con.unregister("_pz_config_frame")
        counts[name] = len(frame)
    con.execute(
        """
        insert into config.identity_junk_values
        select distinct token from (
            select unnest([pz_token('email', value), pz_token('phone', value),
                           pz_token('name', value)]) as token
            from config.identity_junk_values
        ) where token is not null
        """
    )
    counts["identity_junk_values"] = con.execute(
        "select count(*) from config.identity_junk_values"
    ).fetchall()[0][0]
    return counts


def load_identity_tunables(config_dir: Path = CONFIG_DIR) -> dict[str, Any]:
    """`identity.yaml`: probabilistic matching, guardrails and evaluation settings, validated."""
    data = _read_yaml(config_dir / "identity.yaml")
    for section in ("probabilistic", "guardrails", "evaluation"):
        if not isinstance(data.get(section), dict):
            raise TunablesError(f"identity.yaml: missing section `{section}`")
    threshold = data["probabilistic"].get("match_threshold")
    if not isinstance(threshold, int | float) or not 0 < threshold < 1:
        raise TunablesError("identity.yaml: probabilistic.match_threshold must be in (0, 1)")
    rules = data["probabilistic"].get("blocking_rules")
    if not rules or not all(isinstance(r, list) and r for r in rules):
        raise TunablesError("identity.yaml: blocking_rules must be non-empty lists of fields")
    for name in ("subprocess_min_records", "retrain_every_days"):
        value = data["probabilistic"].get(name)
        if value is not None and (not isinstance(value, int) or value < 0):
            raise TunablesError(f"identity.yaml: probabilistic.{name} must be >= 0 or null")
    for name in ("records_per_predict_chunk", "training_max_records"):
        value = data["probabilistic"].get(name)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise TunablesError(f"identity.yaml: probabilistic.{name} must be >= 1 or null")
    for name in ("max_user_ids_per_person", "max_records_per_person"):
        value = data["guardrails"].get(name)
        if not isinstance(value, int) or value < 1:
            raise TunablesError(f"identity.yaml: guardrails.{name} must be a positive integer")
    resolve_survivorship(data.get("survivorship"))
    return data


# --- survivorship of the master record (identity.yaml `survivorship`) ---------------------------

# The user_profiles columns chosen among a person's profile records (`age`: the reported age,
# used when the birth date gives none). dbt_project/models/intermediate/int_profiles_survived.sql
# picks exactly these; signup_at (earliest) and updated_at (latest) are aggregates, not chosen.
SURVIVORSHIP_FIELDS = (
    "user_id",
    "email_token",
    "phone_token",
    "first_name_token",
    "last_name_token",
    "address_token",
    "birth_date",
    "age",
    "gender",
    "city",
    "postcode",
    "region",
    "country",
)
SURVIVORSHIP_RULES = ("most_recent", "most_frequent", "source_priority")
DEFAULT_SURVIVORSHIP_RULE = "most_recent"


@dataclass(frozen=True)
class SurvivorshipRule:
    rule: str
    sources: tuple[str, ...] = ()  # source systems, most trusted first (source_priority only)


def _check_survivorship_rule(where: str, spec: Any) -> SurvivorshipRule:
    """A rule is its name, or a mapping `{rule: ..., sources: [...]}`."""
    if isinstance(spec, str):
        spec = {"rule": spec}
    if not isinstance(spec, dict):
        raise TunablesError(f"{where}: expected a rule name or a mapping {{rule, sources}}")
    unknown_keys = sorted(set(spec) - {"rule", "sources"})
    if unknown_keys:
        raise TunablesError(f"{where}: unknown keys {unknown_keys} (expected `rule`, `sources`)")
    rule = spec.get("rule")
    if rule not in SURVIVORSHIP_RULES:
        raise TunablesError(f"{where}: unknown rule {rule!r}; expected one of {SURVIVORSHIP_RULES}")
    sources = spec.get("sources")
    if rule != "source_priority":
        if sources is not None:
            raise TunablesError(f"{where}: `sources` applies only to rule `source_priority`")
        return SurvivorshipRule(rule)
    if (
        not isinstance(sources, list)
        or not sources
        or not all(isinstance(s, str) and s.strip() for s in sources)
    ):
        raise TunablesError(
            f"{where}: rule `source_priority` needs `sources`, a non-empty list of source "
            "systems, most trusted first"
        )
    normalized = [s.strip().lower() for s in sources]
    if len(set(normalized)) != len(normalized):
        raise TunablesError(f"{where}: a source system is listed twice in {sources}")
    return SurvivorshipRule(rule, tuple(normalized))


def resolve_survivorship(section: Any) -> dict[str, SurvivorshipRule]:
    """Validate identity.yaml's `survivorship` section; return the rule of every field.

    `{default: <rule>, fields: {<field>: <rule>}}`; a missing section, default or field means
    `most_recent`.
    """
    if section is None:
        section = {}
    if not isinstance(section, dict):
        raise TunablesError("identity.yaml: `survivorship` must be a mapping {default, fields}")
    unknown_keys = sorted(set(section) - {"default", "fields"})
    if unknown_keys:
        raise TunablesError(
            f"identity.yaml: survivorship has unknown keys {unknown_keys} "
            "(expected `default`, `fields`)"
        )
    default = _check_survivorship_rule(
        "identity.yaml: survivorship.default",
        section.get("default") or DEFAULT_SURVIVORSHIP_RULE,
    )
    fields = section.get("fields") or {}
    if not isinstance(fields, dict):
        raise TunablesError("identity.yaml: survivorship.fields must map field -> rule")
    unknown_fields = sorted(set(fields) - set(SURVIVORSHIP_FIELDS))
    if unknown_fields:
        raise TunablesError(
            f"identity.yaml: survivorship.fields: unknown fields {unknown_fields}; "
            f"expected some of {list(SURVIVORSHIP_FIELDS)}"
        )
    return {
        name: (
            _check_survivorship_rule(f"identity.yaml: survivorship.fields.{name}", fields[name])
            if name in fields
            else default
        )
        for name in SURVIVORSHIP_FIELDS
    }


def survivorship_rules_frame(rules: dict[str, SurvivorshipRule]) -> pd.DataFrame:
    """The `config.survivorship_rules` rows of resolved rules."""
    rows = [
        (name, spec.rule, source, priority)
        for name, spec in rules.items()
        for priority, source in (
            enumerate(spec.sources, start=1) if spec.sources else [(None, None)]
        )
    ]
    frame = pd.DataFrame(rows, columns=["field", "rule", "source_system", "priority"])
    return frame.astype(
        {"field": "string", "rule": "string", "source_system": "string", "priority": "Int64"}
    )
