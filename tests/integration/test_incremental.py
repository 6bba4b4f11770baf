"""Incremental nightly runs equal a full rebuild, really run with `python -m dagster_project.cli`.

1. A base sample is run (the first build is a full one).
2. One more day of events and context lands, plus a file re-delivering events already loaded;
   the next run builds the event models incrementally (its log says so).
3. The same files, all at once, in a fresh data dir: a full build.
The published data tables of 2 and 3 are identical. (Cluster labels follow the previous run's
centroids by design and model-selection tables carry per-run figures, so the ML outputs are
compared by the idempotence test of test_operations.py, not here.)
Then a replaced file and an explicit `--full-refresh` both make the next run a full refresh.
"""

import csv
import json
import shutil
from datetime import date
from pathlib import Path

import duckdb
import pytest

from dagster_project.cli import prepare_dbt_manifest
from dagster_project.sample_data import generate
from dagster_project.sample_data.next_day import land_next_day
from tests.integration.test_operations import (
    finish_run,
    keep_copy,
    published_path,
    start_run,
    table_differences,
)

pytestmark = pytest.mark.integration

END = date(2026, 10, 20)
ONLY_REDELIVERED = "only-in-the-redelivered-file"
DATA_TABLES = {
    "events",
    "sessions",
    "items",
    "identity_map",
    "user_profiles",
    "user_features",
    "user_category_affinity",
}


def land_next_day_and_redeliveries(data_dir: Path) -> None:
    """One more day (new file names, returning people and devices), a file that re-delivers
    events already loaded, and late context corrections for sessions and events loaded before
    (the newest delivery wins), whose people need not have any new event."""
    assert land_next_day(data_dir, users=60, items=30, last_day=END, seed=12)
    context = data_dir / "raw" / "context"
    for name in ("web_sessions.csv", "store_events_late.csv"):
        with (context / name).open(newline="") as source:
            rows = list(csv.DictReader(source))
        corrected = [
            {**row, "device_type": "tablet", "timezone": "Asia/Tokyo"} for row in rows[::5]
        ]
        # named to sort after the original: in one load (the full rebuild) the file decides
        with (context / name.replace(".csv", "_corrected.csv")).open("w", newline="") as target:
            writer = csv.DictWriter(target, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(corrected)
    clicks = (data_dir / "raw" / "events" / "web_clickstream.jsonl").read_text().splitlines()
    # and one event only this file holds (test 3 replaces the file without it)
    only_here = {**json.loads(clicks[5]), "event_id": ONLY_REDELIVERED}
    redelivered = "\n".join([*clicks[5:45], json.dumps(only_here)]) + "\n"
    (data_dir / "raw" / "events" / "redelivered_clicks.jsonl").write_text(redelivered)


def land_new_device_logins(data_dir: Path) -> dict[str, str]:
    """New logins on two devices whose earlier anonymous events have derived sessions: one
    never logged in, now as a known user (its events move from the device to the user), one
    logged in as exactly one user, now as a new one too (its events are the device's again).
    Their stored events change actor without being delivered again. Returns device -> the
    user who logs in.

    The known user's person has more identifiers than the device's, so it keeps its person_id
    when the device joins it, in a nightly run (which carries ids over) as in a full rebuild;
    a device joining a new user would keep the device's id only nightly."""
    warehouse = data_dir / "warehouse" / "warehouse.duckdb"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        devices = con.execute(
            """
            with logins as (
                select anonymous_id, count(distinct user_id) as users
                from intermediate.int_events_deduplicated
                where user_id is not null and anonymous_id is not null
                group by anonymous_id
            )
            select
                events.anonymous_id,
                coalesce(any_value(logins.users), 0) as users
            from intermediate.int_events_identified as events
            left join logins using (anonymous_id)
            where events.user_id is null
                and events.is_session_derived
                and coalesce(logins.users, 0) <= 1
            group by events.anonymous_id
            order by users, events.anonymous_id
            """
        ).fetchall()
        known_user = con.execute(
            """
            select min(identifier) from marts.identity_map
            where identifier_type = 'user_id'
                and person_id in (
                    select person_id from marts.identity_map group by person_id
                    having count(*) >= 3
                )
            """
        ).fetchone()[0]
    picked = {users: device for device, users in reversed(devices)}
    assert set(picked) == {0, 1}, f"the sample has no such devices: {devices}"
    assert known_user is not None
    logins = {picked[0]: known_user, picked[1]: "U-LOGIN-NEW"}
    lines = [
        json.dumps(
            {
                "event_id": f"login-on-a-known-device-{n}",
                "event_type": "page_view",
                "timestamp": "2026-10-21T09:00:00+00:00",
                "user_id": user,
                "anonymous_id": device,
                "session_id": None,
                "page_url": "https://shop.example.com/",
            }
        )
        for n, (device, user) in enumerate(sorted(logins.items()))
    ]
    (data_dir / "raw" / "events" / "new_device_logins.jsonl").write_text("\n".join(lines) + "\n")
    return logins


def device_actors(data_dir: Path, devices) -> dict[str, set[str]]:
    """The actors of each device's events that name no user."""
    with duckdb.connect(str(data_dir / "warehouse" / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute(
            """
            select anonymous_id, actor_key from intermediate.int_events_identified
            where user_id is null and list_contains(?, anonymous_id)
            """,
            [list(devices)],
        ).fetchall()
    actors: dict[str, set[str]] = {}
    for device, actor in rows:
        actors.setdefault(device, set()).add(actor)
    return actors


def mode_of(log: Path) -> str:
    lines = [line for line in log.read_text().splitlines() if "event models: " in line]
    assert lines, "the dbt step did not log its mode"
    return lines[-1].split("event models: ", 1)[1]


def full_parses(log: Path) -> int:
    """dbt invocations of a run that parsed the whole project again (the stored parse state was
    made with another profile, the warehouse path being part of it, or is missing)."""
    return log.read_text().count("Unable to do partial parsing")


def run(data_dir: Path, name: str, *extra: str) -> Path:
    log = data_dir / f"{name}.log"
    finish_run(start_run(data_dir, log, *extra), log)
    return log


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    prepare_dbt_manifest()
    root = tmp_path_factory.mktemp("incremental")
    nightly, rebuilt = root / "nightly", root / "rebuilt"
    generate(nightly, users=60, items=30, days=7, seed=11, end_date=END.isoformat())
    first = run(nightly, "run1")
    facts = {"first_mode": mode_of(first)}
    land_next_day_and_redeliveries(nightly)
    facts["new_logins"] = land_new_device_logins(nightly)
    second = run(nightly, "run2")
    facts["device_actors"] = device_actors(nightly, facts["new_logins"])
    facts["second_mode"] = mode_of(second)
    facts["full_parses"] = [full_parses(first), full_parses(second)]
    facts["incremental"] = keep_copy(nightly, "incremental")
    shutil.copytree(nightly / "raw", rebuilt / "raw")
    facts["full_mode"] = mode_of(run(rebuilt, "run1"))
    facts["full"] = keep_copy(rebuilt, "full")
    facts["graph"] = {
        name: identity_graph(data_dir)
        for name, data_dir in (("nightly", nightly), ("rebuilt", rebuilt))
    }
    facts["nightly"] = nightly
    return facts


def identity_graph(data_dir: Path) -> dict:
    """The identity graph's nodes and edges, without the build's bookkeeping, and per table
    and origin how many builds wrote its rows."""
    warehouse = data_dir / "warehouse" / "warehouse.duckdb"
    graph = {}
    with duckdb.connect(str(warehouse), read_only=True) as con:
        for table in ("int_identity_nodes", "int_identity_edges"):
            relation = f"intermediate.{table}"
            graph[table] = con.execute(
                f"select * exclude (_inputs_fingerprint, _events_watermark, _profiles_state, "
                f"_profiles_watermark, _built_at) from {relation} order by all"
            ).fetchall()
            graph[f"{table} builds"] = dict(
                con.execute(
                    f"select _origin, count(distinct _built_at) from {relation} group by 1"
                ).fetchall()
            )
    return graph


def test_first_build_is_full_and_the_next_one_incremental(runs: dict) -> None:
    assert runs["first_mode"].startswith("full refresh (first build")
    assert runs["second_mode"].startswith("incremental (append-only")
    assert runs["full_mode"].startswith("full refresh")


def test_dbt_parses_the_project_once_per_warehouse(runs: dict) -> None:
    """Each dbt invocation leaves its parse state for the next (`keep_partial_parse`): the
    first run parses the whole project at most once for this warehouse (the stored state is
    from `prepare` or another warehouse), not once per dbt phase; the next run not at all."""
    first, second = runs["full_parses"]
    assert first <= 1, f"{first} of the first run's 3 dbt invocations parsed everything"
    assert second == 0, f"{second} dbt invocations of the second run parsed everything"


def test_incremental_run_equals_a_full_rebuild(runs: dict) -> None:
    differences = table_differences(runs["incremental"], runs["full"])
    assert {t: d for t, d in differences.items() if t in DATA_TABLES} == {}
    assert "<tables>" not in differences


def test_the_identity_graph_of_the_nightly_run_equals_a_full_rebuild(runs: dict) -> None:
    """The identity graph is kept between builds by origin (macros/identity_graph.sql). Here
    the first run's identity step erased people after the graph was built (its sweep deleted
    their nodes and edges, and their profile records): the second run appended its events'
    rows to the first's and kept the profiles' (kept per record: no record was rebuilt, and
    the erased ones' rows had gone with the sweep). It holds the rows of building it from all
    the files at once, the new login among them."""
    nightly, rebuilt = runs["graph"]["nightly"], runs["graph"]["rebuilt"]
    for table in ("int_identity_nodes", "int_identity_edges"):
        assert nightly[table] == rebuilt[table], table
        assert nightly[f"{table} builds"] == {"events": 2, "profiles": 1}, table
    assert any("U-LOGIN-NEW" in row[0] for row in nightly["int_identity_nodes"])


def test_a_new_login_moves_the_earlier_events_of_its_device(runs: dict) -> None:
    """The stored anonymous events of a device that logs in for the first time belong to the
    new user from then on, those of a device that gains a second user to the device again,
    although none of them was delivered again (and the tables equal a full rebuild's)."""
    (new_device, new_user), (shared_device, _) = sorted(
        runs["new_logins"].items(), key=lambda login: login[1] == "U-LOGIN-NEW"
    )
    assert runs["device_actors"] == {
        new_device: {f"user_id:{new_user}"},
        shared_device: {f"anonymous_id:{shared_device}"},
    }


def published_events(snapshot: Path, event_id: str) -> int:
    with duckdb.connect(str(snapshot), read_only=True) as con:
        return con.execute("select count(*) from events where event_id = ?", [event_id]).fetchone()[
            0
        ]


def identified_mode_of(log: Path) -> str:
    lines = [line for line in log.read_text().splitlines() if "identified events: " in line]
    assert lines, "the post-identity dbt step did not log its mode"
    return lines[-1].split("identified events: ", 1)[1]


def test_a_replaced_file_or_an_explicit_request_rebuilds_in_full(runs: dict) -> None:
    nightly = runs["nightly"]
    assert identified_mode_of(nightly / "run2.log").startswith("incremental")
    assert published_events(runs["incremental"], ONLY_REDELIVERED) == 1
    redelivered = nightly / "raw" / "events" / "redelivered_clicks.jsonl"
    redelivered.write_text("\n".join(redelivered.read_text().splitlines()[:10]) + "\n")
    run3 = run(nightly, "run3")
    assert mode_of(run3).startswith("full refresh (1 previously built file")
    # the identified events (incremental downstream) were rebuilt too, exactly the chain's
    assert identified_mode_of(run3).startswith("full refresh")
    with duckdb.connect(str(nightly / "warehouse" / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute(
            "select count(*) from ("
            "(select event_id from marts.events except select event_id "
            "from intermediate.int_events_deduplicated) union all "
            "(select event_id from intermediate.int_events_deduplicated except select event_id "
            "from marts.events))"
        ).fetchone() == (0,)
    assert published_events(published_path(nightly), ONLY_REDELIVERED) == 0
    assert mode_of(run(nightly, "run4", "--full-refresh")).startswith(
        "full refresh (full refresh requested"
    )
