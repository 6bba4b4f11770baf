"""The sample-data generator: deterministic, messy in the promised ways, and true to its truth.

The checks read the generated *files* back with independent code (json, csv, pandas), the way
the pipeline will, and compare them with `truth/`: if a test here fails, tests of the pipeline
built on this data would be measuring the generator instead of the pipeline.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from dagster_project.sample_data import generate

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "dagster_project" / "config"
SOURCES = ("events", "context", "profiles", "catalog", "consent", "erasure")
SESSION_GAP = pd.Timedelta(minutes=30)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sample")
    generate(out)
    return out


@pytest.fixture(scope="module")
def manifest(data_dir: Path) -> dict:
    return json.loads((data_dir / "truth" / "manifest.json").read_text())


@pytest.fixture(scope="module")
def users(data_dir: Path) -> pd.DataFrame:
    return pd.read_csv(data_dir / "truth" / "users.csv", dtype={"user_id": str})


def _normalized(value: str) -> str:
    return re.sub(r"[^a-z0-9]", "", value.lower())


def _config_map(field: str) -> dict[str, str]:
    if field == "event_type":
        spec = yaml.safe_load((CONFIG_DIR / "event_types.yaml").read_text())["event_types"]
    else:
        spec = yaml.safe_load((CONFIG_DIR / "categorical_values.yaml").read_text())[field]
    return {_normalized(raw): canonical for canonical, raws in spec.items() for raw in raws}


def _read_lines(path: Path) -> list[str]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return handle.read().splitlines()


def _broken_lines(manifest: dict, relative_path: str) -> dict[int, str]:
    return {
        row["file_line"]: row["reason"]
        for row in manifest["sources"]["events"]["broken_rows"]
        if row["file"] == relative_path
    }


def _parse_utc(frame: pd.DataFrame, encoding: str) -> pd.Series:
    """The timestamp column of one events file as UTC instants, by that file's encoding."""
    stamps = frame["timestamp"]
    if encoding.startswith("iso8601"):
        return pd.to_datetime(stamps, utc=True, format="ISO8601")
    if encoding == "epoch_milliseconds_int64":
        return pd.to_datetime(stamps.astype("int64"), unit="ms", utc=True)
    if encoding == "epoch_seconds_string":
        return pd.to_datetime(stamps.astype("int64"), unit="s", utc=True)
    assert encoding == "naive_local_plus_timezone_column"
    parsed = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[s, UTC]")
    for zone, rows in frame.groupby("timezone").groups.items():
        local = pd.to_datetime(frame.loc[rows, "timestamp"], format="%Y-%m-%d %H:%M:%S")
        # ambiguous="raise": a naive local time inside a DST fall-back hour would be a bug.
        parsed[rows] = local.dt.tz_localize(zone, ambiguous="raise").dt.tz_convert("UTC")
    return parsed


@pytest.fixture(scope="module")
def event_rows(data_dir: Path, manifest: dict) -> pd.DataFrame:
    """Every good event row of every events file (re-delivered copies included), parsed to UTC."""
    frames = []
    for spec in manifest["sources"]["events"]["files"]:
        path = data_dir / "raw" / spec["path"]
        broken = _broken_lines(manifest, spec["path"])
        if spec["format"] == "parquet":
            frame = pd.read_parquet(path)
        elif spec["format"] == "csv":
            lines = _read_lines(path)
            good = [line for number, line in enumerate(lines, 1) if number not in broken]
            frame = pd.read_csv(io.StringIO("\n".join(good)), dtype=str, keep_default_na=False)
            frame = frame.replace("", None)
        else:
            lines = _read_lines(path)
            records = [json.loads(x) for n, x in enumerate(lines, 1) if n not in broken]
            frame = pd.DataFrame.from_records(records)
        frame["occurred_at"] = _parse_utc(frame, spec["timestamp_encoding"])
        frame["file"] = spec["path"]
        for column in ("user_id", "anonymous_id", "session_id", "item_id", "event_type"):
            if column not in frame:
                frame[column] = None
            frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
        frames.append(frame)
    rows = pd.concat(frames, ignore_index=True)
    event_map = _config_map("event_type")
    rows["canonical_type"] = rows["event_type"].map(
        lambda t: event_map.get(_normalized(t), "unknown")
    )
    return rows


@pytest.fixture(scope="module")
def events(event_rows: pd.DataFrame, data_dir: Path) -> pd.DataFrame:
    """Deduplicated events (one row per event_id) with the true person behind each."""
    deduplicated = event_rows.sort_values(["event_id", "file"]).drop_duplicates("event_id").copy()
    anonymous = pd.read_csv(data_dir / "truth" / "anonymous_ids.csv", dtype=str)
    owner_of_anonymous = dict(
        zip(anonymous["anonymous_id"], anonymous["true_user_id"], strict=True)
    )
    person = deduplicated["user_id"].copy()
    from_anonymous = deduplicated["anonymous_id"].map(owner_of_anonymous)
    person = person.fillna(from_anonymous).fillna(deduplicated["anonymous_id"])
    deduplicated["person"] = person
    return deduplicated


def _sessionize(events: pd.DataFrame) -> pd.DataFrame:
    """Sessions the way the pipeline builds them: a new one after 30 minutes of silence."""
    ordered = events.sort_values(["person", "occurred_at", "event_id"]).copy()
    new_person = ordered["person"].ne(ordered["person"].shift())
    gap = ordered["occurred_at"].diff() > SESSION_GAP
    ordered["gap_session"] = (new_person | gap).cumsum()
    return ordered


# --- determinism and layout ---


def _digest_tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_arguments_give_byte_identical_files(data_dir: Path, tmp_path: Path):
    counts = generate(tmp_path / "again")
    assert _digest_tree(tmp_path / "again") == _digest_tree(data_dir)
    assert set(counts) == set(SOURCES)
    other = tmp_path / "other_seed"
    generate(other, seed=7)
    first = (data_dir / "raw/events/store_export.csv").read_bytes()
    assert (other / "raw/events/store_export.csv").read_bytes() != first


def test_every_source_is_written_and_the_manifest_counts_rows(data_dir: Path, manifest: dict):
    formats = {}
    for source in SOURCES:
        listed = manifest["sources"][source]["files"]
        on_disk = sorted(
            str(p.relative_to(data_dir / "raw")) for p in (data_dir / "raw" / source).iterdir()
        )
        assert sorted(f["path"] for f in listed) == on_disk
        for spec in listed:
            path = data_dir / "raw" / spec["path"]
            if spec["format"] == "parquet":
                rows = len(pd.read_parquet(path))
            else:
                rows = len(_read_lines(path)) - (1 if spec["format"] == "csv" else 0)
            assert rows == spec["rows"], spec["path"]
        formats[source] = {f["format"] for f in listed}
    assert formats["events"] == {"jsonl", "jsonl.gz", "csv", "parquet"}
    assert formats["context"] == {"csv", "parquet"}
    assert formats["profiles"] == {"csv", "jsonl"}
    assert formats["catalog"] == {"csv", "parquet"}
    assert formats["consent"] == {"jsonl", "jsonl.gz"}
    assert set().union(*formats.values()) == {"jsonl", "jsonl.gz", "csv", "parquet"}


def test_default_size_is_small_but_not_trivial(manifest: dict, users: pd.DataFrame):
    assert len(users) == 300
    assert 3_000 < manifest["sources"]["events"]["distinct_event_ids"] < 10_000


# --- broken rows ---


def test_planted_broken_rows_are_exactly_where_the_manifest_says(data_dir: Path, manifest: dict):
    broken = manifest["sources"]["events"]["broken_rows"]
    reasons = sorted(row["reason"].split(":")[0] for row in broken)
    assert reasons == sorted(
        ["malformed_json", "malformed_json", "missing_event_id", "unparseable_timestamp"]
        + ["wrong_number_of_fields"]
    )
    for spec in manifest["sources"]["events"]["files"]:
        expected = _broken_lines(manifest, spec["path"])
        if spec["format"] == "parquet":
            assert not expected
            continue
        lines = _read_lines(data_dir / "raw" / spec["path"])
        found = {}
        if spec["format"] == "csv":
            header_width = len(next(csv.reader([lines[0]])))
            for number, fields in enumerate(csv.reader(lines), 1):
                if len(fields) != header_width:
                    found[number] = "wrong_number_of_fields"
        else:
            for number, line in enumerate(lines, 1):
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    found[number] = "malformed_json"
                    continue
                if not record.get("event_id"):
                    found[number] = "missing_event_id"
                elif record["timestamp"] == "not-a-time":
                    found[number] = "unparseable_timestamp"
        assert found == {n: reason.split(":")[0] for n, reason in expected.items()}, spec["path"]


def test_broken_rows_are_not_real_events(data_dir: Path, manifest: dict, event_rows: pd.DataFrame):
    truth = pd.read_parquet(data_dir / "truth" / "events.parquet", columns=["event_id"])
    planted_ids = {r["event_id"] for r in manifest["sources"]["events"]["broken_rows"]} - {None}
    assert len(planted_ids) == 4
    assert not planted_ids & set(truth["event_id"])
    assert not planted_ids & set(event_rows["event_id"])


# --- events: timestamps, re-deliveries, spellings, sessions ---


def test_every_format_denotes_the_true_utc_instant(data_dir: Path, event_rows: pd.DataFrame):
    truth = pd.read_parquet(data_dir / "truth" / "events.parquet")
    truth_at = truth.set_index("event_id")["occurred_at"].dt.tz_localize("UTC")
    joined = event_rows.join(truth_at.rename("true_at"), on="event_id")
    assert joined["true_at"].notna().all()
    assert (joined["occurred_at"] == joined["true_at"]).all()
    assert event_rows["file"].nunique() == 5
    web = event_rows.loc[event_rows["file"] == "events/web_clickstream.jsonl", "timestamp"]
    suffixes = set(web.str.extract(r"(Z|[+-]\d\d:\d\d)$")[0])
    assert "Z" in suffixes and "+05:30" in suffixes and len(suffixes) >= 6
    assert {"+02:00", "+01:00"} <= suffixes  # Berlin and Paris before and after summer time


def test_redelivered_events_agree_across_formats(manifest: dict, event_rows: pd.DataFrame):
    copies = event_rows[event_rows.duplicated("event_id", keep=False)]
    summary = manifest["sources"]["events"]
    assert len(event_rows) - event_rows["event_id"].nunique() == summary["duplicate_deliveries"]
    assert event_rows["event_id"].nunique() == summary["distinct_event_ids"]
    assert 0.01 < summary["duplicate_deliveries"] / summary["distinct_event_ids"] < 0.03
    assert copies.groupby("event_id")["file"].nunique().eq(2).all()  # always another file
    copies = copies.assign(
        value=pd.to_numeric(copies["value"]), quantity=pd.to_numeric(copies["quantity"])
    )
    same = ["occurred_at", "event_type", "user_id", "anonymous_id", "session_id", "item_id"]
    same += ["value", "quantity", "page_url", "referrer"]
    assert (copies.groupby("event_id")[same].nunique(dropna=False) == 1).all().all()
    formats = copies.groupby("event_id")["file"].agg(lambda f: "+".join(sorted(f)))
    assert formats.nunique() >= 5  # pairs of many different formats


def test_event_types_use_config_spellings_except_planted_unknowns(
    manifest: dict, event_rows: pd.DataFrame
):
    unknown = event_rows.loc[event_rows["canonical_type"] == "unknown", "event_type"]
    assert set(unknown) <= set(manifest["sources"]["events"]["unmapped_event_type_spellings"])
    assert 0.005 < len(unknown) / len(event_rows) < 0.02
    spellings = event_rows.groupby("canonical_type")["event_type"].nunique()
    assert (spellings.drop("unknown") >= 3).all()  # several spellings of every canonical type
    expected = {"page_view", "view_product", "search", "add_to_cart", "remove_from_cart"}
    expected |= {"begin_checkout", "purchase", "rate", "click_recommendation", "login"}
    assert expected <= set(spellings.index)


def test_purchase_value_is_price_times_quantity(data_dir: Path, events: pd.DataFrame):
    items = pd.concat(
        [
            pd.read_csv(data_dir / "raw/catalog/items.csv", dtype={"item_id": str}),
            pd.read_parquet(data_dir / "raw/catalog/items_new_arrivals.parquet"),
        ]
    ).set_index("item_id")
    purchases = events[events["canonical_type"] == "purchase"]
    assert len(purchases) > 20
    price = purchases["item_id"].map(items["price"])
    expected = (price * purchases["quantity"].astype(float)).round(2)
    assert np.allclose(purchases["value"].astype(float), expected)
    ratings = events.loc[events["canonical_type"] == "rate", "value"].astype(float)
    assert set(ratings) <= {1, 2, 3, 4, 5} and len(ratings) > 0


def test_sessions_are_separated_by_more_than_30_minutes(
    data_dir: Path, events: pd.DataFrame, users: pd.DataFrame
):
    sessions = _sessionize(events)
    per_user = sessions.groupby("person")["gap_session"].nunique()
    truth = users.set_index("user_id")["n_sessions"]
    assert per_user.reindex(truth.index).eq(truth).all()
    with_id = sessions.dropna(subset=["session_id"])
    assert with_id.groupby("session_id")["gap_session"].nunique().eq(1).all()
    parquet = pd.read_parquet(data_dir / "raw/events/warehouse_export.parquet")
    assert "session_id" not in parquet.columns  # the pipeline must sessionize these itself


def test_anonymous_browsing_then_login_links_ids(
    data_dir: Path, events: pd.DataFrame, users: pd.DataFrame
):
    anonymous = pd.read_csv(data_dir / "truth/anonymous_ids.csv", dtype=str)
    assert (events["user_id"].notna() | events["anonymous_id"].notna()).all()
    logins = events[(events["canonical_type"] == "login")]
    assert logins["anonymous_id"].notna().all() and logins["user_id"].notna().all()
    linked = logins.drop_duplicates("anonymous_id").set_index("anonymous_id")["user_id"]
    truth = anonymous.set_index("anonymous_id")
    assert (linked == truth.loc[linked.index, "true_user_id"]).all()
    assert set(truth.index[truth["logs_in"] == "true"]) == set(linked.index)
    never = truth[truth["true_user_id"].isna()]
    assert len(never) > 0 and not set(never.index) & set(linked.index)
    share = users["is_anonymous_browser"].mean()
    assert 0.2 < share < 0.4
    # before the login only the anonymous id, after it only the user id
    both = events[events["anonymous_id"].notna() & events["user_id"].notna()]
    assert set(both["canonical_type"]) == {"login"}


# --- engaged shoppers ---


def test_engaged_shoppers_and_nobody_else_view_one_item_more_than_3_times(
    data_dir: Path, events: pd.DataFrame, users: pd.DataFrame
):
    views = _sessionize(events)
    views = views[views["canonical_type"] == "view_product"]
    most = views.groupby(["person", "gap_session", "item_id"]).size().groupby("person").max()
    engaged = set(users.loc[users["is_engaged_shopper"], "user_id"])
    assert 0.05 < len(engaged) / len(users) < 0.11
    assert set(most[most > 3].index) == engaged
    assert most[list(engaged)].between(4, 6).all()

    planted = pd.read_csv(data_dir / "truth/engaged_sessions.csv", dtype={"user_id": str})
    assert set(planted["user_id"]) == engaged
    carried = planted[planted["session_id_in_data"]]
    assert len(carried) > 0
    counted = views.groupby(["session_id", "item_id"]).size()
    keys = list(zip(carried["session_key"], carried["item_id"], strict=True))
    assert counted.loc[keys].to_numpy().tolist() == carried["n_views"].tolist()


# --- personas ---


def test_personas_are_recoverable_by_clustering(
    data_dir: Path, events: pd.DataFrame, users: pd.DataFrame
):
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    items = pd.concat(
        [
            pd.read_csv(data_dir / "raw/catalog/items.csv", dtype=str),
            pd.read_parquet(data_dir / "raw/catalog/items_new_arrivals.parquet"),
        ]
    )
    category_map = _config_map("category")
    items["category"] = items["category"].map(
        lambda c: category_map.get(_normalized(c), _normalized(c))
    )
    product_types = {"view_product", "add_to_cart", "purchase", "rate", "click_recommendation"}
    product = events[
        events["canonical_type"].isin(product_types) & events["person"].str.startswith("U")
    ]
    product = product.join(items.set_index("item_id")["category"], on="item_id")
    category_share = pd.crosstab(product["person"], product["category"], normalize="index")

    context = pd.concat(
        [
            pd.read_csv(data_dir / "raw/context/web_sessions.csv", dtype=str),
            pd.read_parquet(data_dir / "raw/context/app_sessions.parquet"),
        ]
    )
    device_map = _config_map("device_type")
    context["device"] = context["device_type"].map(
        lambda d: device_map.get(_normalized(d), "other")
    )
    sessions = events.dropna(subset=["session_id"]).drop_duplicates("session_id")
    sessions = sessions.drop(columns="timezone").join(
        context.set_index("session_id")[["device", "timezone"]], on="session_id"
    )
    sessions = sessions[sessions["person"].str.startswith("U")].dropna(subset=["timezone"])
    local_hour = [
        at.tz_convert(zone).hour
        for at, zone in zip(sessions["occurred_at"], sessions["timezone"], strict=True)
    ]
    sessions["time_of_day"] = pd.cut(
        (np.array(local_hour) - 6) % 24, bins=[-1, 5, 11, 16, 23], labels=["m", "a", "e", "n"]
    )
    device_share = pd.crosstab(sessions["person"], sessions["device"], normalize="index")
    time_share = pd.crosstab(sessions["person"], sessions["time_of_day"], normalize="index")

    persona = users.set_index("user_id")["persona"]

    def recovered(features: pd.DataFrame) -> float:
        features = features.dropna()
        labels = KMeans(n_clusters=6, n_init=10, random_state=0).fit_predict(features.to_numpy())
        return adjusted_rand_score(persona.loc[features.index], labels)

    everything = pd.concat(
        [category_share.add_prefix("category_"), device_share.add_prefix("device_")]
        + [time_share.add_prefix("time_")],
        axis=1,
        join="inner",
    )
    assert recovered(category_share) > 0.85
    assert recovered(everything) > 0.6
    # where a persona clearly prefers a device / time of day (>= 60%), its users show it most
    personas = pd.read_csv(data_dir / "truth/personas.csv").set_index("persona")
    by_persona = everything.groupby(persona.loc[everything.index]).mean()
    for prefix, column, initial in (("device_", "device", False), ("time_", "time_of_day", True)):
        mixes = personas[f"{column}_mix"].str.extractall(r"(\w+)=([\d.]+)")
        clear = mixes[1].astype(float).groupby(level=0).max() >= 0.6
        shown = by_persona.filter(like=prefix).idxmax(axis=1).str.removeprefix(prefix)
        planted = personas[column].str[0] if initial else personas[column]
        assert clear.sum() >= 4
        assert (shown[clear[clear].index] == planted[clear[clear].index]).all(), column

    preferred = users.set_index("user_id")["preferred_categories"].str.split("|")
    in_preferred = [
        c in preferred[p] for p, c in zip(product["person"], product["category"], strict=True)
    ]
    assert 0.8 < np.mean(in_preferred) < 0.9


# --- buying behaviour ---


def test_next_week_buyers_are_predictable_from_earlier_behaviour(tmp_path: Path):
    """Real shoppers are predictable: recency, visits, carts and past purchases before a cutoff
    tell who buys in the week after it (the propensity target of issue 5). Labels come only
    from after the cutoff, features only from before it."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    generate(tmp_path, users=2000, items=80, days=21, seed=3)
    events = pd.read_parquet(
        tmp_path / "truth/events.parquet",
        columns=["true_user_id", "event_type", "occurred_at", "session_key"],
    ).dropna(subset=["true_user_id"])
    events["event_type"] = events["event_type"].astype(str)
    end = events["occurred_at"].max()
    cutoff = end - pd.Timedelta(days=7)
    before = events[events["occurred_at"] <= cutoff]
    by_user = before.assign(
        is_purchase=before["event_type"] == "purchase",
        is_cart_add=before["event_type"] == "add_to_cart",
    ).groupby("true_user_id")
    features = pd.DataFrame(
        {
            "recency_days": (cutoff - by_user["occurred_at"].max()).dt.total_seconds() / 86400,
            "sessions": by_user["session_key"].nunique(),
            "purchases": by_user["is_purchase"].sum(),
            "cart_adds": by_user["is_cart_add"].sum(),
        }
    )
    after = events[(events["occurred_at"] > cutoff) & (events["event_type"] == "purchase")]
    label = features.index.isin(set(after["true_user_id"]))
    assert 0.02 < label.mean() < 0.2

    model = make_pipeline(StandardScaler(), LogisticRegression())
    score = cross_val_predict(model, np.log1p(features), label, cv=5, method="predict_proba")
    assert roc_auc_score(label, score[:, 1]) > 0.75


# --- profiles, catalog, context, consent, erasure ---


def test_every_profile_record_belongs_to_a_true_user(data_dir: Path, users: pd.DataFrame):
    crm_a = pd.read_csv(data_dir / "raw/profiles/crm_a_customers.csv", dtype=str)
    crm_b = pd.read_json(data_dir / "raw/profiles/crm_b_contacts.jsonl", lines=True, dtype=False)
    truth = pd.read_csv(data_dir / "truth/profile_records.csv", dtype=str)
    records = pd.concat([crm_a, crm_b], ignore_index=True)
    assert records["record_id"].is_unique
    assert set(records["record_id"]) == set(truth["record_id"])
    assert truth["true_user_id"].isin(users["user_id"]).all()
    assert set(crm_a["source_system"]) == {"crm_a"} and set(crm_b["source_system"]) == {"crm_b"}
    assert crm_a["user_id"].notna().mean() > 0.8
    assert 0.35 < crm_b["user_id"].notna().mean() < 0.65
    systems = truth.groupby("true_user_id")["source_system"].nunique()
    assert 0.3 < (systems == 2).sum() / len(users) < 0.5
    assert truth.groupby(["true_user_id", "source_system"]).size().max() >= 2
    # a user_id on a record always names its true user
    merged = records.merge(truth, on="record_id").dropna(subset=["user_id"])
    assert (merged["user_id"] == merged["true_user_id"]).all()


def test_profiles_carry_the_planted_mess(data_dir: Path, manifest: dict):
    crm_a = pd.read_csv(data_dir / "raw/profiles/crm_a_customers.csv", dtype=str)
    crm_b = pd.read_json(data_dir / "raw/profiles/crm_b_contacts.jsonl", lines=True, dtype=False)
    records = pd.concat([crm_a, crm_b], ignore_index=True).set_index("record_id")
    for planted in manifest["sources"]["profiles"]["impossible_values"]:
        value = records.loc[planted["record_id"], planted["field"]]
        if planted["field"] == "age":
            assert float(value) == planted["value"]
        else:
            assert value == planted["value"]
    assert "1999-02-31" in set(records["birth_date"])
    ages = pd.to_numeric(records["age"], errors="coerce")
    assert {150, -3} <= set(ages.dropna().astype(int))
    truth = pd.read_csv(data_dir / "truth/profile_records.csv", dtype=str).set_index("record_id")
    test_owners = truth.loc[records.index[records["email"] == "test@example.com"], "true_user_id"]
    assert test_owners.nunique() >= 2  # a junk email shared by different people
    assert records["email"].dropna().str.isupper().any()  # case changes
    phones = records["phone"].dropna()
    assert phones.str.contains(r"\(").any() and phones.str.fullmatch(r"\d+").any()
    digits = records.assign(
        digits=records["phone"].str.replace(r"\D", "", regex=True), user=truth["true_user_id"]
    ).dropna(subset=["digits"])
    assert digits.groupby("user")["digits"].nunique().max() == 1  # formats differ, digits agree


def test_catalog_has_spelling_variants_and_flags(data_dir: Path, manifest: dict):
    items = pd.read_csv(data_dir / "raw/catalog/items.csv", dtype=str, keep_default_na=False)
    spellings = items.groupby(items["category"].map(_normalized))["category"].nunique()
    assert len(set(items["category"])) >= 15 and (spellings >= 2).sum() >= 5
    unknown = set(manifest["sources"]["catalog"]["unmapped_category_spellings"])
    known = set(_config_map("category"))
    assert {_normalized(c) for c in items["category"]} - known <= {_normalized(c) for c in unknown}
    assert items["tags"].str.contains(r"\|").any() and items["tags"].str.contains(",").any()
    assert set(items["in_stock"]) <= {"true", "false"}
    assert items["in_stock"].eq("false").mean() < 0.15


def test_context_covers_every_session_or_event(
    data_dir: Path, manifest: dict, event_rows: pd.DataFrame
):
    raw = data_dir / "raw"
    by_session = pd.concat(
        [
            pd.read_csv(raw / "context/web_sessions.csv", dtype=str),
            pd.read_parquet(raw / "context/app_sessions.parquet"),
        ]
    )
    by_event = pd.concat(
        [
            pd.read_parquet(raw / "context/store_events.parquet"),
            pd.read_csv(raw / "context/store_events_late.csv", dtype=str),
        ]
    )
    assert by_session["session_id"].is_unique and by_event["event_id"].is_unique
    assert set(by_session["session_id"]) == set(event_rows["session_id"].dropna())
    parquet = event_rows[event_rows["file"] == "events/warehouse_export.parquet"]
    assert set(by_event["event_id"]) == set(parquet["event_id"])

    device_map = _config_map("device_type")
    spellings = set(by_session["device_type"]) | set(by_event["device_type"])
    assert len(spellings) >= 12
    devices = {device_map.get(_normalized(s), "other") for s in spellings}
    assert devices == {"mobile", "desktop", "tablet", "other"}
    unmapped = set(manifest["sources"]["context"]["unmapped_device_spellings"])
    assert {s for s in spellings if _normalized(s) not in device_map} <= unmapped

    web = pd.read_csv(raw / "context/web_sessions.csv", dtype=str)
    for planted in manifest["sources"]["context"]["invalid_values"]:
        row = web.iloc[planted["line"] - 1]
        assert row["session_id"] == planted["session_id"]
        assert float(row[planted["column"]]) == planted["value"]
    latitude = pd.to_numeric(by_session["latitude"])
    assert latitude.isna().any() and (latitude.abs() > 90).sum() == 2


def test_consent_revocations_follow_grants(data_dir: Path, manifest: dict, users: pd.DataFrame):
    raw = data_dir / "raw"
    consent = [json.loads(x) for x in _read_lines(raw / "consent/consent_log.jsonl")]
    updates = [json.loads(x) for x in _read_lines(raw / "consent/consent_updates.jsonl.gz")]
    assert {c["purpose"] for c in consent} == {"analytics", "personalization", "marketing"}
    assert any(c["user_id"] is None and c["email"] for c in consent)  # some keyed by email
    revoked = {
        u["user_id"] for u in updates if u["purpose"] == "personalization" and u.get("user_id")
    }
    revokers = set(manifest["consent_revoking_users"])
    assert revoked <= revokers and 0.01 < len(revokers) / len(users) < 0.1
    granted = {c["user_id"] for c in consent if c["purpose"] == "personalization" and c["granted"]}
    assert revoked <= granted
    first_grant = max(c["recorded_at"] for c in consent)
    assert all(u["recorded_at"] > first_grant for u in updates)  # revocations come later
    consenting = users.set_index("user_id")["has_personalization_consent"]
    assert not consenting[list(revokers)].any() and consenting.mean() > 0.8


def test_erasure_requests_name_real_users(data_dir: Path, manifest: dict, users: pd.DataFrame):
    erasure = pd.read_csv(data_dir / "raw/erasure/erasure_requests.csv", dtype=str)
    subjects = manifest["erasure_subjects"]
    assert 1 <= len(erasure) == len(subjects) <= 2
    assert {s["true_user_id"] for s in subjects} <= set(users["user_id"])
    identifiers = set(erasure["user_id"].dropna()) | set(erasure["email"].dropna())
    assert identifiers == {s["identifier"] for s in subjects}


def test_cli_prints_a_summary(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-m", "dagster_project.sample_data", "--out", str(tmp_path)]
        + ["--users", "40", "--items", "30", "--days", "5", "--seed", "3"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=True,
    )
    assert "events" in result.stdout and "truth" in result.stdout
    assert (tmp_path / "truth/manifest.json").exists()
    assert (tmp_path / "raw/events/web_clickstream.jsonl").exists()
