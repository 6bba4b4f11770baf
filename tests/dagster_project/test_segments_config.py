"""segments.yaml: loaded, validated and turned into the `config.segment_trigger_rules` table."""

import shutil
from pathlib import Path

import pytest
import yaml

from dagster_project.tunables import CONFIG_DIR, TunablesError, config_frames, load_tunables


def test_trigger_rules_table_from_the_repo_yaml():
    rules = config_frames(load_tunables(), None)["segment_trigger_rules"]
    required = {"engaged_shoppers", "cart_abandoners", "new_visitors", "lapsed_customers"}
    assert required <= set(rules["segment_id"])
    assert rules["segment_id"].str.startswith("rfm_").sum() >= 4
    engaged = rules[rules["segment_id"] == "engaged_shoppers"]
    assert engaged[["metric", "operator", "threshold"]].to_dict("records") == [
        {"metric": "max_same_product_views_in_session", "operator": ">", "threshold": 3.0}
    ]
    assert not rules.duplicated(["segment_id", "condition_number"]).any()


def _with_segments(tmp_path: Path, change) -> Path:
    config = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, config)
    segments = yaml.safe_load((config / "segments.yaml").read_text())
    change(segments)
    (config / "segments.yaml").write_text(yaml.safe_dump(segments))
    return config


def test_segment_model_selection_is_reused_for_a_week_by_default():
    tunables = load_tunables()
    assert tunables.clustering["reselect_every_days"] == 7
    assert tunables.segment_settings("propensity")["reselect_every_days"] == 7


def test_a_new_trigger_is_configuration_only(tmp_path):
    def add(segments):
        segments["triggers"]["window_shoppers"] = {
            "name": "window shoppers",
            "description": "Many product views, nothing bought.",
            "conditions": [
                {"metric": "n_product_views", "op": ">=", "value": 10},
                {"metric": "frequency", "op": "=", "value": 0},
            ],
        }

    rules = load_tunables(_with_segments(tmp_path, add)).trigger_rules
    added = rules[rules["segment_id"] == "window_shoppers"]
    assert added["condition_number"].tolist() == [0, 1]
    assert added["score_metric"].isna().all()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s["triggers"]["engaged_shoppers"]["conditions"][0].update(op="=>"), "operator"),
        (lambda s: s["triggers"]["engaged_shoppers"].pop("conditions"), "conditions"),
        (lambda s: s["triggers"].update({"Bad Id": s["triggers"]["new_visitors"]}), "id"),
        (lambda s: s["clustering"].update(algorithm="spectral"), "algorithm"),
        (lambda s: s["clustering"].update(reselect_every_days=-1), "reselect_every_days"),
        (lambda s: s["propensity"].update(reselect_every_days="weekly"), "reselect_every_days"),
    ],
    ids=[
        "bad_operator",
        "no_conditions",
        "bad_id",
        "unknown_algorithm",
        "negative_reselect_days",
        "reselect_days_not_a_number",
    ],
)
def test_invalid_segments_yaml_is_rejected(tmp_path, change, message):
    with pytest.raises(TunablesError, match=message):
        load_tunables(_with_segments(tmp_path, change))
