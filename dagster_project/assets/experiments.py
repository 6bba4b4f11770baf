"""A/B experiments of experiments.yaml: stable variant assignment and per-variant results.

People with personalization consent are assigned (they see the variants); the results count
only those of them whose analytics consent lets their data into aggregates.
"""

import pandas as pd
from dagster import AssetExecutionContext, AssetKey, AssetSpec, MaterializeResult, multi_asset

from dagster_project.assets._metadata import markdown_table
from dagster_project.resources import WarehouseResource
from dagster_project.tunables import load_tunables
from dagster_project.warehouse_io import read_frame, write_frame
from models_ml.experiments import Experiment, assign_variants, experiment_results

PEOPLE_SQL = "select person_id from marts.user_profiles where has_personalization_consent"
COUNTED_SQL = (
    "select person_id from intermediate.int_analytics_consents_resolved where has_analytics_consent"
)
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


def _outcomes(assigned: pd.DataFrame, per_person: pd.DataFrame) -> pd.DataFrame:
    merged = assigned.merge(per_person, on="person_id", how="left")
    flags = ["is_exposed", "has_clicked", "has_converted"]
    merged[flags] = merged[flags].fillna(False).astype(bool)
    return merged


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
    assignments, results = [], []
    with warehouse.connect() as con:
        people = read_frame(con, PEOPLE_SQL)["person_id"]
        counted = read_frame(con, COUNTED_SQL)["person_id"]
        outcomes_by_window: dict[tuple, pd.DataFrame] = {}  # one scan of the events per window
        for experiment in defined:
            assigned = assign_variants(experiment, people)
            window = (experiment.start_date, experiment.end_date)
            if window not in outcomes_by_window:
                outcomes_by_window[window] = read_frame(
                    con, OUTCOMES_SQL, {"start": window[0], "end": window[1]}
                )
            per_person = outcomes_by_window[window]
            assignments.append(assigned)
            in_results = assigned[assigned["person_id"].isin(counted)]
            results.append(experiment_results(experiment, _outcomes(in_results, per_person)))
        assignment_frame = pd.concat(assignments, ignore_index=True) if assignments else None
        result_frame = pd.concat(results, ignore_index=True) if results else None
        if assignment_frame is None:
            assignment_frame = assign_variants(
                Experiment("none", {"a": 1.0, "b": 1.0}, None, None), []
            )
            result_frame = experiment_results(
                Experiment("none", {"a": 1.0, "b": 1.0}, None, None),
                pd.DataFrame(
                    columns=["person_id", "variant", "is_exposed", "has_clicked", "has_converted"]
                ),
            ).iloc[:0]
        write_frame(con, "ml.experiment_assignments", assignment_frame)
        write_frame(con, "ml.experiment_results", result_frame)
    context.log.info(f"{len(defined)} experiments, {len(assignment_frame)} assignments")
    yield MaterializeResult(
        asset_key=AssetKey(["ml", "experiment_assignments"]),
        metadata={"rows": len(assignment_frame), "experiments": len(defined)},
    )
    yield MaterializeResult(
        asset_key=AssetKey(["ml", "experiment_results"]),
        metadata={"rows": len(result_frame), "results": markdown_table(result_frame.round(4))},
    )
