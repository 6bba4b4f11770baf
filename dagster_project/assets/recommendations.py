"""Recommendations: model selection on a holdout, the best algorithm served, rules on top.

Consent: recommendations are made only for people with personalization consent, from their own
history; a person's interactions count in anything computed over people (popularity,
co-occurrence, model training, the evaluation, curated-item order) only with analytics consent.
"""

import base64
import io
from datetime import UTC, datetime

import duckdb
import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    MaterializeResult,
    MetadataValue,
    multi_asset,
)

from dagster_project import incremental, model_selection
from dagster_project import recommendation_refresh as refresh
from dagster_project.assets._metadata import markdown_table
from dagster_project.resources import WarehouseResource
from dagster_project.tunables import load_tunables
from dagster_project.warehouse_io import read_frame, write_frame, write_frames
from models_ml.recommenders.selection import chosen_algorithm
from models_ml.recommenders.serving import fit_serving_chain, serve
from models_ml.rules import RecommendationRules

# Every read is ordered: ties in scores are broken by input order, which DuckDB does not keep
# between builds, and the same input must publish the same recommendations.
# A person's interactions serve their own recommendations (personalization consent) and the
# aggregates (analytics consent); with neither they are not read at all.
INTERACTIONS_ROWS_SQL = """
    select
        interactions.person_id,
        interactions.item_id,
        interactions.weight,
        interactions.occurred_at,
        coalesce(analytics.has_analytics_consent, false) as has_analytics_consent
    from intermediate.int_interactions_weighted as interactions
    left join intermediate.int_analytics_consents_resolved as analytics
        on interactions.person_id = analytics.person_id
    left join marts.user_profiles as profiles
        on interactions.person_id = profiles.person_id
    where interactions.item_id is not null
        and (analytics.has_analytics_consent or profiles.has_personalization_consent)
"""
# The nightly step reads these rows coded (`read_interactions`), in this order.
INTERACTIONS_SQL = (
    f"select * from ({INTERACTIONS_ROWS_SQL}) order by person_id, item_id, occurred_at, weight"
)
SEGMENTS_SQL = """
    select person_id, segment_id from ml.user_segments
    where segment_type = 'cluster'
    order by person_id, segment_id
"""
ITEMS_SQL = "select item_id, title, category, tags from marts.items order by item_id"
PEOPLE_SQL = (
    "select person_id from marts.user_profiles where has_personalization_consent order by person_id"
)
PURCHASED_SQL = """
    select distinct person_id, item_id from marts.events
    where event_type = 'purchase' and person_id is not null and item_id is not null
    order by person_id, item_id
"""
OUT_OF_STOCK_SQL = "select item_id from marts.items where is_in_stock = false order by item_id"
NO_ITEMS_SQL = "select null::varchar as item_id where false"
# Only the curated items' events are counted (at L 0.6 s, against 1.8-2.1 s counting every
# item's events and keeping the curated ones after).
CURATED_SQL = """
    select i.item_id from marts.items as i
    left join (
        select events.item_id, count(*) as n
        from marts.events as events
        inner join intermediate.int_analytics_consents_resolved as analytics
            on events.person_id = analytics.person_id
        where analytics.has_analytics_consent
            and events.item_id in (select item_id from marts.items where is_curated)
        group by events.item_id
    ) as e
        using (item_id)
    where i.is_curated and coalesce(i.is_in_stock, true)
    order by coalesce(e.n, 0) desc, i.item_id
"""
# An open checkout: the person's latest begin_checkout (within the window before the as-of,
# $as_of: AS_OF_SQL) has no purchase at or after it. Only the window's events can decide that
# (a purchase before it is before the checkout too), so only they are read: at L the window
# holds 7 of the 27 days of events, and grouping all 17M by person took 1.6-2.2 s (0.25).
OPEN_CHECKOUT_SQL = """
    select person_id from marts.events
    where person_id is not null
        and occurred_at <= $as_of
        and occurred_at >= $as_of - to_days($days)
    group by person_id
    having max(occurred_at) filter (where event_type = 'begin_checkout') is not null
        and coalesce(
            max(occurred_at) filter (where event_type = 'purchase'), timestamp '1900-01-01'
        ) < max(occurred_at) filter (where event_type = 'begin_checkout')
"""
AS_OF_SQL = (
    "select coalesce(max(as_of), (select max(occurred_at) from marts.events)) "
    "from config.run_settings"
)

# Model selections are recorded in audit.model_selection (dagster_project/model_selection.py).
SELECTION_STEP = "recommendations"
# Settings that change what is served but not which algorithm wins.
SERVING_ONLY_SETTINGS = (
    "top_k",
    "exclude_purchased",
    "serve_batch_people",
    "score_threads",
    "reselect_every_days",
    refresh.SERVE_CHANGED_KEY,
)
# The rows served tonight, before they replace their people's lists in ml.recommendations.
TONIGHT_ROWS = "ml._pz_recommendations_tonight"


# Per person of the consent tables, and per item with interactions: its rank among them (the
# categorical code). Per person also whether their rows are read at all and count in aggregates
# (INTERACTIONS_SQL: a person in neither table is not read). The people come from the consent
# tables (1.2M rows at L), not from a `distinct` over the 11.7M interactions (2.0 s).
_PEOPLE_CODES_SQL = """
create or replace temp table _pz_person_codes as
select
    people.person_id,
    (row_number() over (order by people.person_id) - 1)::integer as code,
    coalesce(analytics.has_analytics_consent, false) as has_analytics_consent,
    coalesce(analytics.has_analytics_consent, false)
        or coalesce(profiles.has_personalization_consent, false) as is_read
from (
    select person_id from intermediate.int_analytics_consents_resolved
    union
    select person_id from marts.user_profiles
) as people
left join intermediate.int_analytics_consents_resolved as analytics
    on people.person_id = analytics.person_id
left join marts.user_profiles as profiles
    on people.person_id = profiles.person_id
where people.person_id is not null
"""
_ITEM_CODES_SQL = """
create or replace temp table _pz_item_codes as
select item_id, (row_number() over (order by item_id) - 1)::integer as code
from (select distinct item_id from intermediate.int_interactions_weighted where item_id is not null)
"""
_CODED_INTERACTIONS_SQL = """
select
    people.code as person_code,
    items.code as item_code,
    interactions.weight,
    interactions.occurred_at,
    people.has_analytics_consent
from intermediate.int_interactions_weighted as interactions
inner join _pz_person_codes as people on interactions.person_id = people.person_id
inner join _pz_item_codes as items on interactions.item_id = items.item_id
where people.is_read
order by person_code, item_code, interactions.occurred_at, interactions.weight
"""


def read_interactions(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The rows of INTERACTIONS_SQL, in its order, with person_id and item_id as categoricals
    over the sorted people of the consent tables and items of int_interactions_weighted (some
    may have no row here).

    DuckDB codes the ids (a join with each id's rank) and sorts the rows by the codes, so each
    id's text is read once and the models take the codes as they are
    (`models_ml.recommenders._base.factorized`). At L: about 6 s against 12 s for reading the
    11.7M rows with their string ids (sorted by the strings) and factorizing them.
    """
    try:
        con.execute(_PEOPLE_CODES_SQL)
        con.execute(_ITEM_CODES_SQL)
        ids = {
            column: pd.Index(
                read_frame(con, f"select {column} from _pz_{table} order by code")[column]
            )
            for column, table in (("person_id", "person_codes"), ("item_id", "item_codes"))
        }
        rows = read_frame(con, _CODED_INTERACTIONS_SQL)
    finally:
        con.execute("drop table if exists temp._pz_person_codes")
        con.execute("drop table if exists temp._pz_item_codes")
    # Columns inserted, not a new frame: that would copy the 11.7M rows into new blocks (2.5 s).
    for position, column in enumerate(("person_id", "item_id")):
        codes = rows[column.replace("_id", "_code")].to_numpy()
        rows.insert(position, column, pd.Categorical.from_codes(codes, ids[column]))
    return rows.drop(columns=["person_code", "item_code"])


def selection_fingerprint(settings: dict) -> str:
    """What a model selection depends on: every recommendation setting but the serving ones."""
    return model_selection.settings_sha256(settings, ignore=SERVING_ONLY_SETTINGS)


def previous_selection(
    con, settings: dict, as_of, *, forced: bool = False
) -> tuple[pd.DataFrame | None, str]:
    """The last model selection's evaluation rows, when tonight may serve by them; else None.

    Model selection fits and scores every candidate on a holdout, the larger part of the
    step's time. Its winner rarely changes from one day of data to the next, so it runs again
    only when `reselect_every_days` (pipeline.yaml; 0: every run) days of data have passed
    since the last one, when a setting it depends on changed, or on a full refresh. Other
    runs refit the chosen chain on tonight's interactions and serve the people whose list may
    have changed (`dagster_project.recommendation_refresh`).
    """
    last, why = model_selection.reusable_selection(
        con, SELECTION_STEP, settings, as_of, forced=forced, ignore=SERVING_ONLY_SETTINGS
    )
    if last is None:
        return None, why
    try:
        evaluation = read_frame(
            con,
            "select * exclude (run_at, as_of) from ml.recommendation_evaluation order by algorithm",
        )
    except duckdb.CatalogException:
        return None, "the last evaluation is not in the warehouse"
    if not evaluation["is_chosen"].any():
        return None, "the last evaluation names no winner"
    days = int(settings["reselect_every_days"])
    return evaluation, (
        f"model selection of {last.as_of:%Y-%m-%d} reused (reselect_every_days: {days})"
    )


def evaluation_plot(evaluation: pd.DataFrame) -> MetadataValue:
    """nDCG / precision / recall / MAP per algorithm as a PNG embedded in Markdown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = ["ndcg_at_k", "map_at_k", "precision_at_k", "recall_at_k", "catalog_coverage"]
    figure, axis = plt.subplots(figsize=(7, 3.2), dpi=90)
    evaluation.set_index("algorithm")[metrics].plot.bar(ax=axis, rot=0)
    axis.set_title(f"Holdout of each person's latest item (k = {evaluation['k'].iloc[0]})")
    axis.legend(fontsize=7, ncol=3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return MetadataValue.md(f"![evaluation](data:image/png;base64,{encoded})")


@multi_asset(
    specs=[
        AssetSpec(
            AssetKey(["ml", "recommendations"]),
            deps=[
                AssetKey(["intermediate", "int_interactions_weighted"]),
                AssetKey(["intermediate", "int_analytics_consents_resolved"]),
                AssetKey(["marts", "user_profiles"]),
                AssetKey(["marts", "events"]),
                AssetKey(["marts", "items"]),
                AssetKey(["ml", "user_segments"]),
            ],
            description=(
                "Top-k items per person with personalization consent: the algorithm that won "
                "tonight's holdout evaluation, content-based and (per-segment or overall) "
                "popularity to fill, then the rules of recommendation_rules.yaml (exclusions, "
                "pins, context, boosts). Only interactions of people with analytics consent "
                "count in popularity and model training. Between model selections only the "
                "people whose history, segment, context or out-of-stock items changed are "
                "served again (ml.recommendations_served says when each list was served)."
            ),
            group_name="recommendations",
            kinds={"python", "scipy"},
            owners=["team:data-science"],
        ),
        AssetSpec(
            AssetKey(["ml", "recommendation_evaluation"]),
            deps=[
                AssetKey(["intermediate", "int_interactions_weighted"]),
                AssetKey(["intermediate", "int_analytics_consents_resolved"]),
                AssetKey(["ml", "user_segments"]),
            ],
            description=(
                "Per run and algorithm: precision, recall, nDCG, MAP at k, catalog coverage and "
                "novelty on a holdout of each person's latest item (people with analytics "
                "consent only); is_chosen marks the winner."
            ),
            group_name="recommendations",
            kinds={"python", "scipy"},
            owners=["team:data-science"],
        ),
    ],
    name="recommendations",
)
def recommendations(context: AssetExecutionContext, warehouse: WarehouseResource):
    tunables = load_tunables()
    settings = tunables.recommendations
    rule_config = tunables.recommendation_rules
    rules = RecommendationRules.from_dict(rule_config)
    # Everything is read first and the connection closed before any model is fitted: DuckDB's
    # buffers (the blocks and sorts of these reads) would otherwise stay on top of the models.
    with warehouse.connect() as con:
        interactions = read_interactions(con)
        items = read_frame(con, ITEMS_SQL)
        people = read_frame(con, PEOPLE_SQL)["person_id"]
        segments = read_frame(con, SEGMENTS_SQL)
        as_of = con.execute(AS_OF_SQL).fetchall()[0][0]
        days = int(rule_config.get("open_checkout_days", 7))
        forced = incremental.full_refresh_requested(context.run.tags if context.run else None)
        previous, why = previous_selection(con, settings, as_of, forced=forced)
        open_checkout = read_frame(con, OPEN_CHECKOUT_SQL, {"days": days, "as_of": as_of})[
            "person_id"
        ]
        curated_items = read_frame(con, CURATED_SQL)["item_id"]
        exclude_pairs = read_frame(con, PURCHASED_SQL) if rules.exclude_purchased else None
        exclude_items = (
            read_frame(con, OUT_OF_STOCK_SQL)["item_id"] if rules.exclude_out_of_stock else ()
        )
        refresh.prepare_tonight(
            con,
            people_sql=PEOPLE_SQL,
            segments_sql=SEGMENTS_SQL,
            contexts=open_checkout if rules.context_rules else open_checkout.iloc[:0],
        )
        plan = refresh.plan_serving(
            con,
            settings=settings,
            digest=refresh.served_with(
                settings, rule_config, chosen_algorithm(previous, default="popularity")
            )
            if previous is not None
            else "",
            selection_reused=previous is not None,
            out_of_stock_sql=OUT_OF_STOCK_SQL if rules.exclude_out_of_stock else NO_ITEMS_SQL,
            catalog_sql=ITEMS_SQL,
        )
    context.log.info(
        f"model selection: {why}" if previous is not None else f"model selection runs: {why}"
    )
    context.log.info(f"serving {plan.why}")
    if not plan.everyone:
        people = plan.people
    serving = fit_serving_chain(
        interactions, items, settings, segments=segments, as_of=as_of, evaluation=previous
    )
    del interactions, segments  # each fitted model keeps what it needs
    context.log.info(
        f"chosen algorithm: {serving.chosen}; serving {len(people):,} people, "
        f"{serving.batch_people:,} at a time"
    )
    batches = serve(
        serving,
        people,
        rules,
        items=items,
        contexts={"open_checkout": open_checkout},
        curated_items=curated_items,
        exclude_pairs=exclude_pairs,
        exclude_items=exclude_items,
    )
    with warehouse.connect() as con:
        served_rows = write_frames(
            con, TONIGHT_ROWS, _logged(context, batches, len(people), serving.batch_people)
        )
        digest = refresh.served_with(settings, rule_config, serving.chosen)
        rows = refresh.store_served(con, plan, TONIGHT_ROWS, digest)
        if previous is None:
            evaluation = serving.evaluation.copy()
            evaluation.insert(0, "run_at", pd.Timestamp(datetime.now(UTC).replace(tzinfo=None)))
            evaluation.insert(1, "as_of", pd.Timestamp(as_of) if as_of is not None else pd.NaT)
            write_frame(con, "ml.recommendation_evaluation", evaluation)
            model_selection.record_selection(
                con, SELECTION_STEP, settings, as_of, serving.chosen, ignore=SERVING_ONLY_SETTINGS
            )
        else:  # the table keeps the rows of the selection that served tonight
            evaluation = read_frame(con, "select * from ml.recommendation_evaluation")
        served = con.execute("select count(distinct person_id) from ml.recommendations")
        served_people = served.fetchall()[0][0]
        by_reason = read_frame(
            con,
            "select reason, count(*) as rows from ml.recommendations group by reason "
            "order by rows desc, reason",
        )
        preview = read_frame(
            con, "select * from ml.recommendations order by person_id, rank limit 20"
        )
    context.log.info(f"chosen algorithm: {serving.chosen}; {rows} recommendations")
    yield MaterializeResult(
        asset_key=AssetKey(["ml", "recommendations"]),
        metadata={
            "rows": rows,
            "people": int(served_people),
            "people_served_tonight": len(people),
            "rows_served_tonight": served_rows,
            "served": plan.why,
            "chosen_algorithm": serving.chosen,
            "by_reason": markdown_table(by_reason),
            "preview": markdown_table(preview),
        },
    )
    yield MaterializeResult(
        asset_key=AssetKey(["ml", "recommendation_evaluation"]),
        metadata={
            "chosen_algorithm": serving.chosen,
            "model_selection": why if previous is not None else f"ran ({why})",
            "evaluation": markdown_table(evaluation.drop(columns=["run_at", "as_of"]).round(4)),
            "plot": evaluation_plot(evaluation),
        },
    )


def _logged(context: AssetExecutionContext, batches, people: int, batch_people: int):
    """`batches` as they are, with a progress line per batch."""
    rows = 0
    for number, batch in enumerate(batches, start=1):
        rows += len(batch)
        done = min(number * batch_people, people)
        context.log.info(f"recommendations: {done:,} of {people:,} people served ({rows:,} rows)")
        yield batch
