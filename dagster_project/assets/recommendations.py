"""Recommendations: item co-occurrence for people with history, popularity for the rest."""

from dagster import AssetExecutionContext, AssetKey, MaterializeResult, asset

from dagster_project.assets._metadata import markdown_table
from dagster_project.resources import WarehouseResource
from dagster_project.tunables import load_tunables
from dagster_project.warehouse_io import read_frame, write_frame
from models_ml.recommenders.cooccurrence import ItemCooccurrenceRecommender
from models_ml.recommenders.hybrid import recommend_with_fallback
from models_ml.recommenders.popularity import PopularityRecommender

INTERACTIONS_SQL = """
    select person_id, item_id, weight, occurred_at
    from intermediate.int_interactions_weighted
    where item_id is not null
"""
PEOPLE_SQL = "select person_id from marts.user_profiles where has_personalization_consent"
PURCHASED_SQL = """
    select distinct person_id, item_id from marts.events
    where event_type = 'purchase' and person_id is not null and item_id is not null
"""
OUT_OF_STOCK_SQL = "select item_id from marts.items where is_in_stock = false"
AS_OF_SQL = (
    "select coalesce(max(as_of), (select max(occurred_at) from marts.events)) "
    "from config.run_settings"
)


@asset(
    key=AssetKey(["ml", "recommendations"]),
    deps=[
        AssetKey(["intermediate", "int_interactions_weighted"]),
        AssetKey(["marts", "user_profiles"]),
        AssetKey(["marts", "events"]),
        AssetKey(["marts", "items"]),
    ],
    group_name="recommendations",
    kinds={"python", "scipy"},
    owners=["team:data-science"],
    description=(
        "Top-k items per person with personalization consent: item co-occurrence (SAR-style) "
        "for people with history, popularity to fill; purchased and out-of-stock items excluded."
    ),
)
def recommendations(
    context: AssetExecutionContext, warehouse: WarehouseResource
) -> MaterializeResult:
    settings = load_tunables().recommendations
    with warehouse.connect() as con:
        interactions = read_frame(con, INTERACTIONS_SQL)
        people = read_frame(con, PEOPLE_SQL)["person_id"]
        purchased = read_frame(con, PURCHASED_SQL) if settings["exclude_purchased"] else None
        out_of_stock = read_frame(con, OUT_OF_STOCK_SQL)["item_id"]
        as_of = con.execute(AS_OF_SQL).fetchall()[0][0]
        context.log.info(
            f"recommending for {len(people)} people from {len(interactions)} interactions "
            f"(as of {as_of}; {len(out_of_stock)} items out of stock)"
        )
        recs = recommend_with_fallback(
            interactions,
            people,
            int(settings["top_k"]),
            ItemCooccurrenceRecommender(),
            PopularityRecommender(),
            exclude_pairs=purchased,
            exclude_items=out_of_stock,
            as_of=as_of,
        )
        rows = write_frame(con, "ml.recommendations", recs)
    by_algorithm = recs.groupby("algorithm").size().rename("rows").reset_index()
    return MaterializeResult(
        metadata={
            "rows": rows,
            "people": int(recs["person_id"].nunique()) if rows else 0,
            "by_algorithm": markdown_table(by_algorithm),
            "preview": markdown_table(recs.head(20)),
        }
    )
