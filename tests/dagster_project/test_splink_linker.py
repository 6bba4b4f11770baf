"""Splink linkage on its own: what it links, and where the plaintext it compares lives."""

import shutil

import duckdb
import pandas as pd
import pytest
import yaml
from faker import Faker

from dagster_project.identity import splink_linker
from dagster_project.tunables import CONFIG_DIR, TunablesError, load_identity_tunables


def _records(people: int = 300, duplicated: int = 60) -> tuple[pd.DataFrame, set]:
    """`people` distinct people, the first `duplicated` of them twice: a second record with a
    typo in the first name and no phone."""
    fake = Faker("en_US")
    fake.seed_instance(7)
    rows = [
        {
            "unique_id": f"record_id|crm_a|{i}",
            "first_name": fake.first_name(),
            "last_name": fake.last_name(),
            "birth_date": fake.date_of_birth(minimum_age=18, maximum_age=90),
            "email": f"person{i}@example.com",
            "phone": fake.numerify("+1##########"),
            "address": fake.street_address(),
            "postcode": fake.postcode(),
            "city": fake.city(),
        }
        for i in range(people)
    ]
    copies = [
        {
            **row,
            "unique_id": row["unique_id"].replace("crm_a", "crm_b"),
            "first_name": row["first_name"][:-1] + "x",
            "phone": None,
        }
        for row in rows[:duplicated]
    ]
    records = pd.DataFrame(rows + copies)
    records["birth_date"] = pd.to_datetime(records["birth_date"])
    truth = {
        tuple(sorted((r["unique_id"], c["unique_id"])))
        for r, c in zip(rows[:duplicated], copies, strict=True)
    }
    return records, truth


def test_splink_finds_the_duplicates_in_a_database_that_cannot_spill_and_is_closed(monkeypatch):
    seen = {}
    real = splink_linker._LinkerSession._open

    def spy(self, records, settings, model):
        setting = "select current_setting('temp_directory')"
        seen["temp_directory"] = self.connection.execute(setting).fetchall()[0][0]
        seen["connection"] = self.connection
        return real(self, records, settings, model)

    monkeypatch.setattr(splink_linker._LinkerSession, "_open", spy)
    records, truth = _records()
    links, info = splink_linker.predict_links(records, load_identity_tunables()["probabilistic"])

    found = set(zip(links["node_key_a"], links["node_key_b"], strict=True))
    found = {tuple(sorted(pair)) for pair in found}
    assert len(found & truth) >= 0.95 * len(truth), info
    assert len(found - truth) <= 2, sorted(found - truth)
    assert (links["match_probability"] >= 0.9).all()
    # plaintext never spills to a file, and the database is gone once linking returns
    assert seen["temp_directory"] == ""
    try:
        seen["connection"].execute("select 1")
        raise AssertionError("Splink's connection is still open")
    except duckdb.ConnectionException:
        pass


def test_splink_in_a_child_process_links_the_same_pairs():
    """Above `subprocess_min_records`, Splink runs in a spawned process (its memory is its
    own and all returned when it exits); the links are those of a run in this process."""
    records, _ = _records(people=200, duplicated=40)
    settings = load_identity_tunables()["probabilistic"]
    here, _, info_here = splink_linker.predict_links_and_matches(
        records, {**settings, "subprocess_min_records": None}, None
    )
    child, _, info_child = splink_linker.predict_links_and_matches(
        records, {**settings, "subprocess_min_records": len(records)}, None
    )
    assert "subprocess" not in info_here and info_child["subprocess"] is True
    assert info_child["process_peak_rss_mb"] > 0
    assert len(here) >= 30
    pd.testing.assert_frame_equal(
        child[["node_key_a", "node_key_b", "method"]], here[["node_key_a", "node_key_b", "method"]]
    )
    assert (child["match_probability"] - here["match_probability"]).abs().max() < 1e-9


def test_prediction_in_chunks_links_the_same_pairs():
    """`records_per_predict_chunk` splits the scoring into chunk x chunk parts, scored in
    turn: the same links as one pass, with the same probabilities."""
    records, _ = _records(people=200, duplicated=40)
    settings = {**load_identity_tunables()["probabilistic"], "subprocess_min_records": None}
    whole, _, info = splink_linker.predict_links_and_matches(
        records, {**settings, "records_per_predict_chunk": None}, None
    )
    model = {"fingerprint": info["fingerprint"], "model": info["model"]}
    per_chunk = len(records) // 3 + 1
    chunked, _, info_chunked = splink_linker.predict_links_and_matches(
        records, {**settings, "records_per_predict_chunk": per_chunk}, None, model
    )
    assert info["predict_chunks"] == 1 and info_chunked["predict_chunks"] == 9
    assert info_chunked["model_trained"] is False and len(whole) >= 30
    pd.testing.assert_frame_equal(
        chunked[["node_key_a", "node_key_b", "method"]],
        whole[["node_key_a", "node_key_b", "method"]],
    )
    assert (chunked["match_probability"] - whole["match_probability"]).abs().max() < 1e-9


def test_chunks_per_side_follow_the_record_count(tmp_path):
    assert splink_linker.predict_chunks(1_364_715, {"records_per_predict_chunk": 700_000}) == 2
    assert splink_linker.predict_chunks(136_000, {"records_per_predict_chunk": 700_000}) == 1
    assert splink_linker.predict_chunks(1_364_715, {"records_per_predict_chunk": None}) == 1
    config = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, config)
    identity = yaml.safe_load((config / "identity.yaml").read_text())
    identity["probabilistic"]["records_per_predict_chunk"] = 0
    (config / "identity.yaml").write_text(yaml.safe_dump(identity))
    with pytest.raises(TunablesError, match="records_per_predict_chunk must be >= 1"):
        load_identity_tunables(config)


def test_a_stored_model_scores_without_training_until_it_is_due():
    """The trained model goes back in `info`; given again (fresh, same fields and settings)
    it scores the same pairs without training; an old one, or one for other settings, is
    not used."""
    from datetime import datetime, timedelta

    records, _ = _records(people=200, duplicated=40)
    settings = load_identity_tunables()["probabilistic"]
    links, _, info = splink_linker.predict_links_and_matches(records, settings, None)
    assert info["model_trained"] and info["model"]["comparisons"]
    stored = splink_linker.StoredModel(datetime(2026, 11, 1), info["fingerprint"], info["model"])
    model = splink_linker.usable_model(stored, settings, datetime(2026, 11, 2))
    again, _, info_again = splink_linker.predict_links_and_matches(records, settings, None, model)
    assert info_again["model_trained"] is False and "seconds_em" not in info_again
    pd.testing.assert_frame_equal(again, links)

    days = settings["retrain_every_days"]
    later = datetime(2026, 11, 1) + timedelta(days=days)
    assert splink_linker.usable_model(stored, settings, later) is None
    assert splink_linker.usable_model(stored, {**settings, "retrain_every_days": 0}, later) is None
    other = {**settings, "match_threshold": 0.95}
    _, _, info_other = splink_linker.predict_links_and_matches(records, other, None, model)
    assert info_other["model_trained"] is True


def test_a_model_trained_on_a_sample_of_records_scores_them_all():
    """Above `training_max_records`, the model is trained on a seeded sample of the records and
    scores every record, with the term frequencies of all of them: its links are those of the
    same model given as a stored one to a linker on every record (the sample's own tables do
    not stand in), and it still finds the duplicates."""
    records, truth = _records()
    settings = {
        **load_identity_tunables()["probabilistic"],
        "subprocess_min_records": None,
        "training_max_records": 250,
    }
    links, _, info = splink_linker.predict_links_and_matches(records, settings, None)
    assert info["model_trained"] and info["records_trained_on"] == 250 < len(records)
    found = {tuple(sorted(p)) for p in zip(links["node_key_a"], links["node_key_b"], strict=True)}
    assert len(found & truth) >= 0.9 * len(truth) and len(found - truth) <= 2, info

    model = {"fingerprint": info["fingerprint"], "model": info["model"]}
    stored, _, info_stored = splink_linker.predict_links_and_matches(records, settings, None, model)
    assert info_stored["model_trained"] is False and "records_trained_on" not in info_stored
    pd.testing.assert_frame_equal(stored, links, check_exact=True)
    session = splink_linker._LinkerSession(records, settings, None)
    try:
        assert session.info["records_trained_on"] == 250
        for field in splink_linker.TERM_FREQUENCY_FIELDS:
            table = session.linker.table_management.compute_tf_table(field).physical_name
            distinct = session.connection.execute(f"select count(*) from {table}").fetchone()[0]
            assert distinct == records[field].nunique(), field
    finally:
        session.close()

    everyone = {**settings, "training_max_records": None}
    _, _, info_all = splink_linker.predict_links_and_matches(records, everyone, None, model)
    assert info_all["model_trained"] is True and "records_trained_on" not in info_all
    assert info_all["fingerprint"] != info["fingerprint"]  # a new limit trains again


def _level_sql(comparison) -> str:
    """The level index each pair falls in, as one SQL CASE over `<field>_l` / `<field>_r`."""
    levels = comparison.get_comparison("duckdb").comparison_levels
    whens = [
        f"WHEN {level.sql_condition} THEN {i}"
        for i, level in enumerate(levels)
        if level.sql_condition != "ELSE"
    ]
    return f"CASE {' '.join(whens)} ELSE {len(levels) - 1} END"


def test_the_cheaper_comparisons_put_every_pair_in_splinks_level():
    """Email, phone and address check lengths before the Levenshtein distance and take the
    username by `split_part`: every pair lands in the level Splink's own levels (regular
    expression, unbounded distance) give it, edge cases included."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl
    from splink import ColumnExpression

    splinks_email = cl.CustomComparison(
        output_column_name="email",
        comparison_levels=[
            cll.NullLevel("email"),
            cll.ExactMatchLevel("email"),
            cll.ExactMatchLevel(ColumnExpression("email").regex_extract("^[^@]+")),
            cll.LevenshteinLevel("email", 2),
            cll.ElseLevel(),
        ],
    )
    values = [
        None, "", "@", "@x.com", "a@x.com", "a@y.com", "ab@x.com", "abc@x.com", "abcd@x.com",
        "abcde@x.com", "abc", "abd", "abc@", "b@c@d", "b@c@e", "b@x.com", "ba@x.com",
        "ana.lee@x.com", "ana.lee1@x.com", "anna.lee@x.org", "+1 555 0100", "+1 555 0101",
        "+1 555 01", "+1 555 010", "1 Main St", "1 Main Street", "12 Main St", "1 Maine St",
    ]  # fmt: skip
    with duckdb.connect() as con:
        for field, reference in [
            ("email", splinks_email),
            ("phone", cl.LevenshteinAtThresholds("phone", [1, 3])),
            ("address", cl.LevenshteinAtThresholds("address", [1, 3])),
        ]:
            ours = splink_linker._comparison(field)
            con.execute(
                f"create or replace table pairs as select l.v as {field}_l, r.v as {field}_r "
                "from unnest($v) as l(v), unnest($v) as r(v)",
                {"v": values},
            )
            levels = con.execute(
                f"select {_level_sql(ours)} as ours, {_level_sql(reference)} as theirs from pairs"
            ).fetchall()
            assert len(levels) == len(values) ** 2
            assert [pair for pair in levels if pair[0] != pair[1]] == [], field
            assert len({theirs for _, theirs in levels}) == len(
                reference.get_comparison("duckdb").comparison_levels
            ), f"every {field} level is reached"
