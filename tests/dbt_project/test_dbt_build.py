"""The dbt project built for real, in its three phases, on the tiny sample warehouse.

Every rule asserted here has its rows in `dbt_warehouse_fixture.populate_sample`. The dbt
data tests and unit tests themselves ran inside the phase builds (a failure fails the fixture).
"""

from __future__ import annotations

import shutil

import duckdb
from dbt_warehouse_fixture import ALICE, JUNK_EMAIL

RUNNABLE_TYPES = {"model", "test", "unit_test", "snapshot"}


def person_of(built, identifier_type: str, identifier: str) -> str | None:
    rows = built.query(
        "select person_id from marts.identity_map where identifier_type = ? and identifier = ?",
        [identifier_type, identifier],
    )
    return rows[0][0] if rows else None


# --- the phases -------------------------------------------------------------------------------


def test_the_three_phases_build_every_node_exactly_once(built_warehouse):
    runnable = {
        unique_id
        for unique_id, node in {
            **built_warehouse.manifest["nodes"],
            **built_warehouse.manifest.get("unit_tests", {}),
        }.items()
        if node["resource_type"] in RUNNABLE_TYPES
    }
    phases = [set(results) for results in built_warehouse.phase_results.values()]
    assert set().union(*phases) == runnable
    assert sum(len(phase) for phase in phases) == len(runnable)


def test_phase_one_does_not_need_the_ml_outputs(built_warehouse):
    pre_identity = built_warehouse.phase_results["pre_identity"]
    post_identity = built_warehouse.phase_results["post_identity"]
    for model in ["int_identity_nodes", "int_identity_edges", "int_events_deduplicated", "items"]:
        assert f"model.personalization.{model}" in pre_identity
    for model in [
        "identity_map",
        "int_events_identified",
        "events",
        "sessions",
        "user_profiles",
        "user_features",
        "user_category_affinity",
        "int_interactions_weighted",
    ]:
        assert f"model.personalization.{model}" in post_identity


def test_every_phase_passed_its_tests(built_warehouse):
    statuses = {
        status for results in built_warehouse.phase_results.values() for status in results.values()
    }
    assert statuses <= {"success", "pass"}


def test_no_view_materializes_a_cte(built_warehouse):
    """A CTE a view reads twice is materialized by DuckDB unless marked `not materialized`, and
    then every reader computes every column of every row: `count(*)` of the contexts' staging
    view took 7 s instead of 0.8 at L, and so did int_events_identified's few filtered contexts."""
    views = built_warehouse.query(
        "select schema_name || '.' || view_name from duckdb_views() "
        "where not internal and database_name = current_database()"
    )
    assert len(views) > 5
    materializing = [
        view
        for (view,) in views
        if "CTE_SCAN" in "".join(row[1] for row in built_warehouse.query(f"explain from {view}"))
    ]
    assert materializing == []


def test_unique_combination_of_columns_finds_a_repeated_combination(built_warehouse, tmp_path):
    """The generic test as compiled for (person_id, item_id) of marts.recommendations: none on
    the built rows; a row repeated in a copy of the warehouse comes back, counted twice."""
    (test,) = [
        node
        for node in built_warehouse.manifest["nodes"].values()
        if node["resource_type"] == "test"
        and node.get("test_metadata", {}).get("name") == "unique_combination_of_columns"
        and node["test_metadata"]["kwargs"]["combination_of_columns"] == ["person_id", "item_id"]
        and "recommendations" in node["unique_id"]
    ]
    copy = tmp_path / "warehouse.duckdb"
    shutil.copyfile(built_warehouse.path, copy)
    with duckdb.connect(str(copy)) as con:
        assert con.execute(test["compiled_code"]).fetchall() == []
        person, item = con.execute(
            "select person_id, item_id from ml.recommendations order by all limit 1"
        ).fetchone()
        con.execute(
            "insert into ml.recommendations select * from ml.recommendations "
            "where person_id = ? and item_id = ?",
            [person, item],
        )
        found = con.execute(test["compiled_code"]).fetchall()
    assert found == [(person, item, 2)]


def test_unique_finds_a_repeated_value_and_ignores_nulls(built_warehouse, tmp_path):
    """The project's `unique` (macros/generic_tests/unique.sql: distinct hashes first) as
    compiled for marts.sessions.session_id: none on the built rows, and none with rows of a
    null session added; a repeated session comes back counted twice, as dbt's own test
    returns it."""
    (test,) = [
        node
        for node in built_warehouse.manifest["nodes"].values()
        if node["resource_type"] == "test"
        and node.get("test_metadata", {}).get("name") == "unique"
        and node["test_metadata"]["kwargs"]["column_name"] == "session_id"
        and node["attached_node"] == "model.personalization.sessions"
    ]
    # compiled by the post-identity phase (the manifest kept is the last phase's)
    compiled = (
        built_warehouse.path.parent
        / "target"
        / "compiled"
        / "personalization"
        / test["original_file_path"]
        / test["path"]
    ).read_text()
    assert "count(distinct hash(session_id))" in compiled
    dbt_own = (
        "select session_id as unique_field, count(*) as n_records from marts.sessions "
        "where session_id is not null group by session_id having count(*) > 1"
    )
    copy = tmp_path / "warehouse.duckdb"
    shutil.copyfile(built_warehouse.path, copy)
    with duckdb.connect(str(copy)) as con:
        assert con.execute(compiled).fetchall() == []
        # marts.sessions is a view of intermediate.int_sessions
        con.execute(
            "insert into intermediate.int_sessions select * replace (null as session_id) "
            "from intermediate.int_sessions limit 2"
        )
        assert con.execute(compiled).fetchall() == []
        (session,) = con.execute(
            "select session_id from marts.sessions where session_id is not null "
            "order by all limit 1"
        ).fetchone()
        con.execute(
            "insert into intermediate.int_sessions select * from intermediate.int_sessions "
            "where session_id = ?",
            [session],
        )
        found = con.execute(compiled).fetchall()
        assert found == con.execute(dbt_own).fetchall() == [(session, 2)]


# --- events -----------------------------------------------------------------------------------


def test_a_redelivered_event_appears_once_as_first_delivered(built_warehouse):
    rows = built_warehouse.query(
        "select event_type, n_deliveries from marts.events where event_id = 'ev-01'"
    )
    assert rows == [("view_product", 2)]


def test_event_types_are_canonical(built_warehouse):
    rows = dict(built_warehouse.query("select event_id, event_type from marts.events"))
    assert rows["ev-02"] == "view_product"  # product-view
    assert rows["ev-03"] == "add_to_cart"  # Add To Cart
    assert rows["ev-04"] == "purchase"  # order_completed
    assert rows["ev-06"] == "unknown"  # weird_event
    assert rows["ev-08"] == "rate"  # rating


def test_bad_value_is_nulled_not_fatal(built_warehouse):
    assert built_warehouse.query("select value from marts.events where event_id = 'ev-11'") == [
        (None,)
    ]


def test_derived_sessions_split_at_the_inactivity_gap(built_warehouse):
    sessions = built_warehouse.query(
        """
        select list(event_id order by occurred_at)
        from marts.events
        where user_id = 'u1'
        group by session_id
        order by min(occurred_at)
        """
    )
    # 09:55, 10:00, 10:10 | 40 minutes | 10:50, 11:15 (25 minutes stay together)
    assert sessions == [(["ev-login", "ev-01", "ev-02"],), (["ev-03", "ev-04"],)]


def test_a_given_session_is_never_split(built_warehouse):
    rows = built_warehouse.query(
        "select n_events, duration_seconds, is_session_derived, device_type "
        "from marts.sessions where session_id = 's-given'"
    )
    assert rows == [(2, 7200, False, "desktop")]


def test_sessions_summarize_their_events(built_warehouse):
    rows = built_warehouse.query(
        """
        select sessions.n_events, sessions.has_purchase, sessions.revenue, sessions.device_type
        from marts.sessions
        inner join marts.events on sessions.session_id = events.session_id
        where events.event_id = 'ev-04'
        """
    )
    assert rows == [(2, True, 50.0, "other")]  # Smart TV is not a known device type


def test_daypart_follows_the_local_time(built_warehouse):
    rows = dict(
        built_warehouse.query(
            "select event_id, local_timezone || ' ' || daypart from marts.events "
            "where event_id in ('ev-01', 'ev-05', 'ev-06')"
        )
    )
    assert rows == {
        "ev-01": "Asia/Tokyo evening",  # context time zone: 10:00 UTC is 19:00 in Tokyo
        "ev-05": "America/New_York night",  # no context, the event's own zone: 03:00
        "ev-06": "UTC afternoon",  # session context with an invalid zone: UTC
    }


def test_anonymous_events_belong_to_the_person_who_logged_in(built_warehouse):
    rows = built_warehouse.query(
        "select distinct person_id from marts.events where event_id in ('ev-05', 'ev-01')"
    )
    assert rows == [(person_of(built_warehouse, "user_id", "u1"),)]


# --- identity ---------------------------------------------------------------------------------


def test_a_junk_email_links_nothing(built_warehouse):
    edges = built_warehouse.query(
        "select count(*) from intermediate.int_identity_edges where node_key_b like ?",
        [f"%{JUNK_EMAIL}"],
    )
    assert edges == [(0,)]
    assert person_of(built_warehouse, "record_id", "r3") != person_of(
        built_warehouse, "record_id", "r4"
    )
    junk_nodes = built_warehouse.query(
        "select identifier from intermediate.int_identity_nodes where is_junk order by 1"
    )
    assert junk_nodes == [(JUNK_EMAIL,), ("test",)]


def test_a_junk_user_id_does_not_stitch_a_device(built_warehouse):
    assert built_warehouse.query(
        "select count(*) from intermediate.int_identity_edges where node_key_a = 'anonymous_id||a5'"
    ) == [(0,)]


def test_records_sharing_an_email_are_one_person(built_warehouse):
    alice = person_of(built_warehouse, "user_id", "u1")
    assert alice is not None
    assert person_of(built_warehouse, "record_id", "r1") == alice
    assert person_of(built_warehouse, "record_id", "r2") == alice
    assert person_of(built_warehouse, "anonymous_id", "a1") == alice


# --- profiles ---------------------------------------------------------------------------------


def test_survivorship_takes_the_newest_value_of_each_field(built_warehouse):
    alice = person_of(built_warehouse, "user_id", "u1")
    rows = built_warehouse.query(
        """
        select city, gender, birth_date::varchar, age, email_token, n_source_records,
            n_source_systems, is_identified
        from marts.user_profiles where person_id = ?
        """,
        [alice],
    )
    # r2 (newer) wins the city; r1 alone knows gender and birth date; 33 on 2024-03-01
    assert rows == [("Paris", "female", "1990-05-01", 33, ALICE, 2, 2, True)]


def test_invalid_birth_date_and_age_are_nulled_and_flagged(built_warehouse):
    staged = built_warehouse.query(
        "select birth_date, is_birth_date_invalid, age, is_age_invalid "
        "from staging.stg_profiles__profiles where record_id = 'r3'"
    )
    assert staged == [(None, True, None, True)]
    profile = built_warehouse.query(
        "select birth_date, age, gender, email_token from marts.user_profiles where person_id = ?",
        [person_of(built_warehouse, "record_id", "r3")],
    )
    assert profile == [(None, None, "male", None)]  # the junk email is nobody's email


def test_consent_is_the_latest_decision_else_the_default(built_warehouse):
    consents = dict(
        built_warehouse.query(
            "select person_id, has_personalization_consent from marts.user_features"
        )
    )
    assert consents.pop(person_of(built_warehouse, "user_id", "u1")) is False  # withdrawn later
    assert set(consents.values()) == {True}  # nobody else recorded a decision


def test_an_erased_user_is_nowhere(built_warehouse):
    for sql in [
        "select count(*) from marts.events where user_id = 'u9' or anonymous_id = 'a9'",
        "select count(*) from marts.identity_map where identifier in ('u9', 'a9', 'r9', 'r10')",
        "select count(*) from intermediate.int_identity_nodes "
        "where identifier in ('u9', 'a9', 'r9', 'r10')",
        "select count(*) from intermediate.int_consent_current where subject_id = 'u9'",
        "select count(*) from intermediate.int_profiles_deduplicated "
        "where record_id in ('r9', 'r10')",
    ]:
        assert built_warehouse.query(sql) == [(0,)], sql


# --- features ---------------------------------------------------------------------------------


def test_user_features_has_one_row_per_person(built_warehouse):
    assert built_warehouse.query(
        "select count(*), count(distinct person_id) from marts.user_features"
    ) == built_warehouse.query(
        "select count(distinct person_id), count(distinct person_id) from marts.identity_map"
    )


def test_rfm_and_shares(built_warehouse):
    rows = built_warehouse.query(
        """
        select recency_days, frequency, monetary, n_events, n_sessions, n_product_views,
            n_cart_adds, share_device_mobile, share_daypart_night, age
        from marts.user_features where person_id = ?
        """,
        [person_of(built_warehouse, "user_id", "u1")],
    )
    # last event 11:15, as-of = newest event 20:00; ev-05 (night, New York) counts via a1
    [(recency, frequency, monetary, n_events, n_sessions, views, carts, mobile, night, age)] = rows
    assert abs(recency - 8.75 / 24) < 1e-9
    assert (frequency, monetary, n_events, n_sessions, views, carts) == (1, 50.0, 6, 3, 2, 1)
    assert abs(mobile - 1 / 6) < 1e-9 and abs(night - 1 / 6) < 1e-9
    assert age == 33


def test_category_affinity_is_a_weighted_share(built_warehouse):
    rows = built_warehouse.query(
        "select category, interactions, affinity from marts.user_category_affinity "
        "where person_id = ? order by category",
        [person_of(built_warehouse, "user_id", "u1")],
    )
    # i1 electronics: view 1 + cart 3 + purchase 5; i2 home_garden: view 1
    assert [(c, n, round(a, 9)) for c, n, a in rows] == [
        ("electronics", 3, 0.9),
        ("home_garden", 1, 0.1),
    ]


def test_items_are_cleaned(built_warehouse):
    rows = built_warehouse.query(
        "select item_id, category, price, tags, is_in_stock, is_curated from marts.items "
        "order by item_id"
    )
    assert rows == [
        ("i1", "electronics", None, "new,sale", True, False),
        ("i2", "home_garden", 49.9, "garden,outdoor", None, None),
        ("i3", "weird_cat", 12.0, None, None, None),
    ]


# --- ML marts ---------------------------------------------------------------------------------


def test_ml_marts_mirror_the_ml_outputs(built_warehouse):
    # user_segments also unions dbt trigger and ml propensity rows: compare the cluster rows.
    for mart, source in [
        ("user_segments where segment_type = 'cluster'", "user_segments"),
        ("segment_quality", "segment_quality"),
        ("recommendations", "recommendations"),
    ]:
        assert built_warehouse.query(f"select count(*) from marts.{mart}") == (
            built_warehouse.query(f"select count(*) from ml.{source}")
        )
    assert built_warehouse.query("select min(rank) from marts.recommendations") == [(1,)]


# --- only events delivered ----------------------------------------------------------------------


def test_a_warehouse_with_only_events_builds(events_only_warehouse):
    assert events_only_warehouse.query("select count(*) from marts.events") == [(2,)]
    assert events_only_warehouse.query("select count(*) from marts.sessions") == [(2,)]
    for mart in ["items", "user_profiles", "user_features", "recommendations"]:
        assert events_only_warehouse.query(f"select count(*) from marts.{mart}") == [(0,)]
    assert events_only_warehouse.query(
        "select identifier_type, identifier from intermediate.int_identity_nodes order by 1, 2"
    ) == [("anonymous_id", "a1"), ("user_id", "u1")]
