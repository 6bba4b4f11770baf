"""A/B experiments of experiments.yaml: stable variant assignment and per-variant results.

People with personalization consent are assigned (they see the variants); the results count
only those of them whose analytics consent lets their data into aggregates.
"""

import json
from dataclasses import dataclass

import duckdb
import pandas as pd
from dagster import AssetExecutionContext, AssetKey, AssetSpec, MaterializeResult, multi_asset

from dagster_project import incremental
from dagster_project.assets._metadata import markdown_table
from dagster_project.resources import WarehouseResource
from dagster_project.tunables import load_tunables
from dagster_project.warehouse_io import read_frame, register_frame, table_exists, write_frame
from models_ml.experiments import COUNT_COLUMNS, Experiment, assign_variants, variant_results

PEOPLE_SQL = "select person_id from marts.user_profiles where has_personalization_consent"
# One row per person: active (exposed), clicked a recommendation, purchased within the window.
OUTCOMES_SQL = """
    select
        person_id,
        true as is_exposed,
        bool_or(event_type = 'click_recommendation') as has_clicked,
        bool_or(event_type = 'purchase') as has_converted
    from marts.events
    where person_id is not null
        and ($start::timestamp is null or occurred_at >= $start::timestamp)
        and ($end::timestamp is null or occurred_at < $end::timestamp + interval 1 day)
    group by person_id
"""
COUNTED_SQL = """
    select person_id from intermediate.int_analytics_consents_resolved where has_analytics_consent
"""
# Per variant of one experiment: its assigned people with analytics consent (only they count;
# {counted}: COUNTED_SQL) and, of them, those exposed, clicking and converting in the window
# ({outcomes}: OUTCOMES_SQL).
VARIANT_COUNTS_SQL = """
    with assigned as (
        select person_id, variant from ml.experiment_assignments where experiment = $experiment
    ),
    counted as (
        select person_id from {counted}
    ),
    outcomes as (
        select person_id, is_exposed, has_clicked, has_converted from {outcomes}
    ),
    assigned_counted as (
        select assigned.person_id, assigned.variant
        from assigned
        semi join counted on assigned.person_id = counted.person_id
    ),
    flagged as (
        select
            assigned_counted.variant,
            coalesce(outcomes.is_exposed, false) as is_exposed,
            coalesce(outcomes.is_exposed and outcomes.has_clicked, false) as has_clicked,
            coalesce(outcomes.is_exposed and outcomes.has_converted, false) as has_converted
        from assigned_counted
        left join outcomes on assigned_counted.person_id = outcomes.person_id
    )
    select
        variant,
        count(*) as users,
        count(*) filter (where is_exposed) as exposed_users,
        count(*) filter (where has_clicked) as clickers,
        count(*) filter (where has_converted) as converters
    from flagged
    group by variant
"""
NO_EXPERIMENT = Experiment("none", {"a": 1.0, "b": 1.0}, None, None)  # the empty tables' shape
ASSIGNMENTS_TABLE = "ml.experiment_assignments"
# Per experiment, the definition its stored assignments were made with (not published).
DEFINITIONS_TABLE = "ml.experiment_definitions"


def assignment_definition(experiment: Experiment) -> str:
    """What a person's variant depends on besides the person: the name and the variants with
    their weights, in order (the first is the control; the order places the hash's cuts)."""
    return json.dumps([experiment.name, list(experiment.variants.items())])


@dataclass(frozen=True)
class Assigned:
    rows: int  # assignment rows written tonight
    why: str


def update_assignments(
    con: duckdb.DuckDBPyConnection, defined: list[Experiment], *, forced: bool = False
) -> Assigned:
    """Make `ASSIGNMENTS_TABLE` hold, per experiment of `defined`, the variant of every person
    of PEOPLE_SQL (personalization consent).

    A person's variant is a hash of the experiment and the person, so it never changes while
    the experiment's definition (`assignment_definition`) does not: an experiment defined as
    when its rows were written keeps them, loses the rows of people no longer eligible and
    gains the new people's. At L (1M people, two experiments) hashing and writing all 2.2M
    rows took 6.0 s, a night's update 0.6-0.7 s (both beside a CI run). A changed,
    new or removed experiment, a missing table or `forced` (a full refresh) assigns everyone.
    """
    con.execute("create schema if not exists ml")
    people = _temp_table(con, "_pz_eligible", PEOPLE_SQL)
    stored = {}
    if table_exists(con, ASSIGNMENTS_TABLE) and table_exists(con, DEFINITIONS_TABLE):
        stored = dict(
            con.execute(f"select experiment, definition from {DEFINITIONS_TABLE}").fetchall()
        )
    current = {e.name: assignment_definition(e) for e in defined}
    if forced or not stored or stored != current:
        eligible = read_frame(con, f"select person_id from {people}")["person_id"]
        frames = [assign_variants(e, eligible) for e in defined]
        frame = (
            pd.concat(frames, ignore_index=True) if frames else assign_variants(NO_EXPERIMENT, [])
        )
        write_frame(con, ASSIGNMENTS_TABLE, frame)
        why = "full refresh" if forced else "every person (an experiment is new or changed)"
    else:
        frames = [
            assign_variants(
                e,
                read_frame(
                    con,
                    f"select person_id from {people} anti join ("
                    f"select person_id from {ASSIGNMENTS_TABLE} where experiment = $e"
                    ") as assigned using (person_id)",
                    {"e": e.name},
                )["person_id"],
            )
            for e in defined
        ]
        frame = pd.concat(frames, ignore_index=True)
        con.execute("begin")
        try:
            con.execute(
                f"delete from {ASSIGNMENTS_TABLE} as a where not exists "
                f"(select 1 from {people} as p where p.person_id = a.person_id)"
            )
            register_frame(con, "_pz_assigned_in", frame)
            con.execute(f"insert into {ASSIGNMENTS_TABLE} by name select * from _pz_assigned_in")
            con.unregister("_pz_assigned_in")
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
        why = "the new people only"
    definitions = pd.DataFrame(
        {"experiment": list(current), "definition": list(current.values())}, dtype=object
    )
    write_frame(con, DEFINITIONS_TABLE, definitions)
    return Assigned(len(frame), why)


def _temp_table(con: duckdb.DuckDBPyConnection, name: str, sql: str, params=None) -> str:
    con.execute(f"create or replace temp table {name} as {sql}", params or {})
    return name


def variant_counts(con: duckdb.DuckDBPyConnection, defined: list[Experiment]) -> list[pd.DataFrame]:
    """Per experiment of `defined` (assigned in ml.experiment_assignments): its counts per
    variant, joined and counted in DuckDB with one scan of the events per distinct window."""
    counted = _temp_table(con, "_pz_counted", COUNTED_SQL)
    outcomes: dict[tuple, str] = {}
    counts = []
    for experiment in defined:
        window = (experiment.start_date, experiment.end_date)
        if window not in outcomes:
            params = {"start": window[0], "end": window[1]}
            outcomes[window] = _temp_table(
                con, f"_pz_outcomes_{len(outcomes)}", OUTCOMES_SQL, params
            )
        sql = VARIANT_COUNTS_SQL.format(counted=counted, outcomes=outcomes[window])
        counts.append(read_frame(con, sql, {"experiment": experiment.name}).set_index("variant"))
    return counts


@multi_asset(
    specs=[
        AssetSpec(
            AssetKey(["ml", "experiment_assignments"]),
            deps=[AssetKey(["marts", "user_profiles"])],
            description="Variant per experiment and consenting person (hash of both: stable).",
            group_name="experiments",
            kinds={"python", "scipy"},
            owners=["team:data-science"],
        ),
        AssetSpec(
            AssetKey(["ml", "experiment_results"]),
            deps=[
                AssetKey(["marts", "events"]),
                AssetKey(["marts", "user_profiles"]),
                AssetKey(["intermediate", "int_analytics_consents_resolved"]),
            ],
            description=(
                "Per experiment and variant: users, CTR, conversion, lift vs control with a 95% "
                "interval, two-proportion z-test p-value, sample-ratio-mismatch check. Only "
                "assigned people with analytics consent are counted."
            ),
            group_name="experiments",
            kinds={"python", "scipy"},
            owners=["team:data-science"],
        ),
    ],
    name="experiments",
)
def experiments(context: AssetExecutionContext, warehouse: WarehouseResource):
    defined = [Experiment.from_dict(entry) for entry in load_tunables().experiments]
    forced = incremental.full_refresh_requested(context.run.tags if context.run else None)
    with warehouse.connect() as con:
        assigned = update_assignments(con, defined, forced=forced)
        rows = con.execute(f"select count(*) from {ASSIGNMENTS_TABLE}").fetchall()[0][0]
        results = [
            variant_results(experiment, counts)
            for experiment, counts in zip(defined, variant_counts(con, defined), strict=True)
        ]
        result_frame = (
            pd.concat(results, ignore_index=True)
            if results
            else variant_results(NO_EXPERIMENT, pd.DataFrame(columns=list(COUNT_COLUMNS))).iloc[:0]
        )
        write_frame(con, "ml.experiment_results", result_frame)
    context.log.info(
        f"{len(defined)} experiments, {rows} assignments ({assigned.why}: {assigned.rows} "
        "assigned tonight)"
    )
    yield MaterializeResult(
        asset_key=AssetKey(["ml", "experiment_assignments"]),
        metadata={
            "rows": rows,
            "experiments": len(defined),
            "assigned_tonight": assigned.rows,
            "assigned": assigned.why,
        },
    )
    yield MaterializeResult(
        asset_key=AssetKey(["ml", "experiment_results"]),
        metadata={"rows": len(result_frame), "results": markdown_table(result_frame.round(4))},
    )
