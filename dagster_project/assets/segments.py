"""Segments: clusters and propensity for consenting people, drift against the previous run.

Trigger segments are not here: dbt compiles them from segments.yaml (int_segment_triggers).
Each asset reads the warehouse, calls `models_ml`, writes `ml.*` and reports metrics and plots.
History tables (segment_quality, cluster_centroids, segment_drift, segment_drift_baselines) are
appended per run: the next run matches its clusters to, and measures drift against, the last one.

Model selection (clustering: every k from k_min to k_max; propensity: both model families fitted
on one window and compared on the next) runs again only when it is due (model_selection.py:
`reselect_every_days` of segments.yaml, changed settings, a backfill, a full refresh). Other runs
assign tonight's people to the clusters the selection fitted, and score tonight's propensity
features with the model it fitted (both kept in ml.fitted_models, dagster_project/model_store.py;
fitted again when they cannot serve, e.g. after an erasure or, for the clusters, when the
features changed: the chosen k on tonight's data, the chosen family on the latest labelled
window); ml.propensity_evaluation gets rows only from runs that selected.
"""

import base64
from datetime import UTC, datetime

import duckdb
import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    MaterializeResult,
    MetadataValue,
    asset_check,
    multi_asset,
)

from dagster_project import incremental, model_selection, model_store
from dagster_project.assets._metadata import markdown_table
from dagster_project.ingest.sql import quote_identifier, quote_literal
from dagster_project.resources import WarehouseResource
from dagster_project.tunables import load_tunables
from dagster_project.warehouse_io import append_frame, read_frame, write_frame
from models_ml.clustering import KMeansSegmenter, cluster_segments
from models_ml.drift import feature_bins, feature_drift, segment_share_drift, segment_shares
from models_ml.features import clustering_matrix_sql
from models_ml.plots import pca_scatter_png, silhouette_by_k_png
from models_ml.propensity import (
    MODEL_FAMILIES,
    PropensityModel,
    fit_propensity_model,
    propensity_segments,
    select_propensity_model,
)

# The clustering matrix's inputs: the consenting people's features and category affinities.
# `clustering_matrix_sql` computes the matrix from them in DuckDB, ordered by person (k-means
# depends on row order, and DuckDB does not keep one between builds).
CONSENTING_FEATURES_SQL = "select * from marts.user_features where has_personalization_consent"
CONSENTING_AFFINITY_SQL = """
    select a.person_id, a.category, a.affinity
    from marts.user_category_affinity as a
    inner join marts.user_features as f using (person_id)
    where f.has_personalization_consent
"""
# The same rows for `models_ml.features.clustering_matrix` (pandas): the reference the test
# compares the query with.
FEATURES_SQL = f"{CONSENTING_FEATURES_SQL} order by person_id"
AFFINITY_SQL = f"{CONSENTING_AFFINITY_SQL} order by a.person_id, a.category"
FEATURE_COLUMNS_SQL = """
    select column_name, data_type from information_schema.columns
    where table_schema = 'marts' and table_name = 'user_features'
    order by ordinal_position
"""
LATEST_CENTROIDS_SQL = """
    select cluster, feature, value from ml.cluster_centroids
    where run_at = (select max(run_at) from ml.cluster_centroids)
"""
AS_OF_SQL = "select max(as_of) from intermediate.int_run_settings_resolved"
# The end of both propensity frames: the label (the target event in ($cutoff, $cutoff +
# $horizon days]) and the ratios, from `features`.
_LABELLED_FRAME_SQL = """
    labelled as (
        select distinct person_id
        from marts.events
        where event_type = $target
            and occurred_at > $cutoff
            and occurred_at <= $cutoff + to_days($horizon)
    )
    select
        f.*,
        f.n_sessions / greatest(f.tenure_days, 1.0) as sessions_per_day,
        f.n_target_events / greatest(f.n_sessions, 1) as target_per_session,
        l.person_id is not null as label
    from features as f
    left join labelled as l using (person_id)
    order by f.person_id
"""
# Features of consenting people from their events up to $cutoff, and whether the target event
# happens in ($cutoff, $cutoff + $horizon days]. Nothing after the cutoff enters a feature.
PROPENSITY_FRAME_SQL = (
    """
    with people as (
        select person_id from marts.user_features where has_personalization_consent
    ),
    history as (
        select e.person_id, e.event_type, e.occurred_at, e.session_id, e.value
        from marts.events as e
        inner join people using (person_id)
        where e.occurred_at <= $cutoff
    ),
    features as (
        select
            person_id,
            date_diff('second', max(occurred_at), $cutoff) / 86400.0 as recency_days,
            date_diff('second', min(occurred_at), $cutoff) / 86400.0 as tenure_days,
            date_diff('second', max(occurred_at) filter (where event_type = $target), $cutoff)
                / 86400.0 as days_since_target,
            count(*) as n_events,
            count(distinct session_id) as n_sessions,
            count(distinct session_id) filter (where occurred_at > $cutoff - to_days($horizon))
                as n_recent_sessions,
            count(*) filter (where event_type = 'view_product') as n_product_views,
            count(*) filter (where event_type = 'add_to_cart') as n_cart_adds,
            count(*) filter (where event_type = 'add_to_cart'
                and occurred_at > $cutoff - to_days($horizon)) as n_recent_cart_adds,
            count(*) filter (where event_type = $target) as n_target_events,
            coalesce(sum(value) filter (where event_type = 'purchase'), 0) as monetary
        from history
        group by person_id
    ),
"""
    + _LABELLED_FRAME_SQL
)
# The score window's frame (cutoff = the run's as-of time) of PROPENSITY_FRAME_SQL for the
# purchase target, from int_person_activity: its columns are the sums of each person's events
# up to the as-of time, kept per person by dbt, so only the events of the last `horizon` days
# are read (the recent sessions and cart adds), not all 17M at L. The same rows; the monetary
# sum may differ in its last bits (summed per session first). Used when int_person_activity
# was last built with this as-of time (`_score_frame_sql`).
PROPENSITY_SCORE_FROM_ACTIVITY_SQL = (
    """
    with people as (
        select person_id from marts.user_features where has_personalization_consent
    ),
    activity as (
        select a.*
        from intermediate.int_person_activity as a
        inner join people using (person_id)
        where a.n_events > 0
    ),
    recent as (
        select
            e.person_id,
            count(distinct e.session_id) as n_recent_sessions,
            count(*) filter (where e.event_type = 'add_to_cart') as n_recent_cart_adds
        from marts.events as e
        inner join people using (person_id)
        where e.occurred_at <= $cutoff
            and e.occurred_at > $cutoff - to_days($horizon)
        group by e.person_id
    ),
    features as (
        select
            a.person_id,
            date_diff('second', a.last_event_at, $cutoff) / 86400.0 as recency_days,
            date_diff('second', a.first_event_at, $cutoff) / 86400.0 as tenure_days,
            date_diff('second', a.last_purchase_at, $cutoff) / 86400.0 as days_since_target,
            a.n_events,
            a.n_sessions,
            coalesce(r.n_recent_sessions, 0) as n_recent_sessions,
            a.n_product_views,
            a.n_cart_adds,
            coalesce(r.n_recent_cart_adds, 0) as n_recent_cart_adds,
            a.n_purchases as n_target_events,
            coalesce(a.purchase_value, 0) as monetary
        from activity as a
        left join recent as r using (person_id)
    ),
"""
    + _LABELLED_FRAME_SQL
)
LABEL = "label"
CLUSTERING_STEP, PROPENSITY_STEP = "clustering", "propensity"  # rows of audit.model_selection
SEGMENTER_MODEL = "segmenter"  # the clustering step's model in ml.fitted_models


def _segment_spec(name: str, description: str, deps: list[AssetKey]) -> AssetSpec:
    return AssetSpec(
        AssetKey(["ml", name]),
        deps=deps,
        description=description,
        group_name="segments",
        kinds={"python", "scikit-learn"},
        owners=["team:data-science"],
    )


def _now() -> pd.Timestamp:
    return pd.Timestamp(datetime.now(UTC).replace(tzinfo=None))


def _as_of(con: duckdb.DuckDBPyConnection) -> datetime:
    return con.execute(AS_OF_SQL).fetchall()[0][0]


def _full_refresh(context: AssetExecutionContext) -> bool:
    return incremental.full_refresh_requested(context.run.tags if context.run else None)


def _selection_metadata(last, why: str) -> str:
    return why if last is not None else f"ran ({why})"


def _exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    schema, name = table.split(".")
    sql = (
        "select count(*) from information_schema.tables where table_schema = $s and table_name = $n"
    )
    return con.execute(sql, {"s": schema, "n": name}).fetchall()[0][0] > 0


def previous_centroids(con: duckdb.DuckDBPyConnection) -> pd.DataFrame | None:
    """The last run's centroids as cluster id x feature (None on the first run)."""
    if not _exists(con, "ml.cluster_centroids"):
        return None
    long = read_frame(con, LATEST_CENTROIDS_SQL)
    if long.empty:
        return None
    return long.pivot(index="cluster", columns="feature", values="value")


def centroid_rows(segmenter: KMeansSegmenter, run_at: pd.Timestamp) -> pd.DataFrame:
    centers = segmenter.cluster_centers_.rename_axis(index="cluster", columns="feature")
    long = centers.stack().rename("value").reset_index()
    long.insert(0, "run_at", run_at)
    long["segment_name"] = long["cluster"].map(segmenter.cluster_names_)
    return long


def image_markdown(title: str, png: bytes) -> str:
    return f"![{title}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


def segmenter_from_settings(settings: dict, previous: pd.DataFrame | None) -> KMeansSegmenter:
    keys = (
        "algorithm",
        "k_min",
        "k_max",
        "random_state",
        "pca_variance",
        "minibatch_above",
        "dbscan_eps",
        "dbscan_min_samples",
        "agglomerative_max_people",
    )
    return KMeansSegmenter(
        **{k: settings[k] for k in keys if k in settings}, previous_centroids=previous
    )


@multi_asset(
    specs=[
        _segment_spec(
            "user_segments",
            "Cluster segment per consenting person (segment_type = cluster); cluster ids "
            "stay stable across runs.",
            [AssetKey(["marts", "user_features"]), AssetKey(["marts", "user_category_affinity"])],
        ),
        _segment_spec(
            "segment_quality",
            "Per run and k tried: silhouette, Davies-Bouldin, chosen k (appended per run).",
            [AssetKey(["marts", "user_features"])],
        ),
        _segment_spec(
            "cluster_centroids",
            "Per run: each cluster's feature means; the next run matches its clusters to these.",
            [AssetKey(["marts", "user_features"])],
        ),
    ],
    name="cluster_segments",
)
def cluster_segments_asset(context: AssetExecutionContext, warehouse: WarehouseResource):
    settings = load_tunables().clustering
    run_at = _now()
    with warehouse.connect() as con:
        con.execute(f"drop table if exists {_OLD_CLUSTERING_MATRIX_TABLE}")
        matrix = read_clustering_matrix(con)
        as_of = _as_of(con)
        selection, why = clustering_selection(con, settings, as_of, forced=_full_refresh(context))
        k = int(selection.chosen) if selection is not None else None
        context.log.info(
            f"clustering {matrix.shape[0]} people on {matrix.shape[1]} features; "
            f"model selection: {_selection_metadata(k, why)}"
        )
        segmenter, fitted = None, "fitted by tonight's model selection"
        if selection is not None:
            segmenter, fitted = stored_segmenter(con, selection, matrix)
        if segmenter is not None:  # the selection's clusters: tonight's people assigned
            segments = cluster_segments(matrix, segmenter, refresh=True)
        else:
            fit_on = settings if k is None else {**settings, "k_min": k, "k_max": k}
            segmenter = segmenter_from_settings(fit_on, previous_centroids(con))
            segments = cluster_segments(matrix, segmenter)  # fits the segmenter
            if selection is None:
                selected_at = model_selection.record_selection(
                    con, CLUSTERING_STEP, settings, as_of, str(int(segmenter.k_))
                )
            else:
                selected_at = selection.selected_at
                fitted = f"the chosen k fitted again ({fitted})"
            model_store.store_model(
                con, CLUSTERING_STEP, SEGMENTER_MODEL, selected_at, segmenter.without_rows(), _now()
            )
        context.log.info(f"clusters: {fitted}")
        quality = segmenter.quality_.copy()
        quality.insert(0, "run_at", run_at)
        write_frame(con, "ml.user_segments", segments)
        append_frame(con, "ml.segment_quality", quality)
        append_frame(con, "ml.cluster_centroids", centroid_rows(segmenter, run_at))
    pictures = {
        "segments_pca.png": pca_scatter_png(
            segmenter.embedding_, segmenter.labels_, segmenter.cluster_names_
        ),
        "segments_silhouette_by_k.png": silhouette_by_k_png(segmenter.quality_),
    }
    reports = warehouse.settings().reports_dir
    reports.mkdir(parents=True, exist_ok=True)
    for file_name, png in pictures.items():
        (reports / file_name).write_bytes(png)
    context.log.info(f"chosen k={segmenter.k_}: {segmenter.cluster_names_}")
    yield MaterializeResult(
        asset_key=AssetKey(["ml", "user_segments"]),
        metadata={
            "rows": len(segments),
            "k": int(segmenter.k_),
            "algorithm": segmenter.algorithm_used_,
            "model_selection": _selection_metadata(k, why),
            "model_fitted": fitted,
            "clusters": markdown_table(segmenter.cluster_profiles_),
            "pca_scatter": MetadataValue.md(
                image_markdown("PCA scatter", pictures["segments_pca.png"])
            ),
            "report_dir": MetadataValue.path(str(reports)),
        },
    )
    chosen = quality[quality["is_chosen"]]
    yield MaterializeResult(
        asset_key=AssetKey(["ml", "segment_quality"]),
        metadata={
            "k": int(segmenter.k_),
            "model_selection": _selection_metadata(k, why),
            "silhouette": float(chosen["silhouette"].iloc[0]) if len(chosen) else float("nan"),
            "quality_by_k": markdown_table(quality),
            "silhouette_by_k": MetadataValue.md(
                image_markdown("silhouette by k", pictures["segments_silhouette_by_k.png"])
            ),
        },
    )
    yield MaterializeResult(
        asset_key=AssetKey(["ml", "cluster_centroids"]),
        metadata={"clusters": int(segmenter.k_), "features": int(matrix.shape[1])},
    )


def previous_k(
    con: duckdb.DuckDBPyConnection, settings: dict, as_of: datetime, *, forced: bool = False
) -> tuple[int | None, str]:
    """The k of the last clustering model selection when tonight may reuse it; else None
    (choose k again). And why."""
    last, why = clustering_selection(con, settings, as_of, forced=forced)
    return (int(last.chosen) if last is not None else None), why


def clustering_selection(
    con: duckdb.DuckDBPyConnection, settings: dict, as_of: datetime, *, forced: bool = False
) -> tuple[model_selection.Selection | None, str]:
    """The last clustering model selection when tonight may reuse it (its k, and the
    segmenter it fitted: `stored_segmenter`); else None (choose k again). And why."""
    if settings.get("algorithm") == "dbscan":
        return None, "dbscan finds its clusters every run"
    last, why = model_selection.reusable_selection(
        con, CLUSTERING_STEP, settings, as_of, forced=forced
    )
    if last is None:
        return None, why
    if int(last.chosen) < 2:
        return None, "the last model selection found no clusters"
    return last, why


def stored_segmenter(
    con: duckdb.DuckDBPyConnection, selection: model_selection.Selection, matrix: pd.DataFrame
) -> tuple[KMeansSegmenter | None, str]:
    """The segmenter `selection` fitted, when it can assign tonight's `matrix` (the same
    features: a new category is a new column, and is fitted again); else None. And what it
    is, or why not. Between model selections people are assigned to the selection's clusters,
    as propensity scores with its model: the clusters, their ids and names stay those of the
    week. At L, assigning and describing the 1.09M people took 1.9-3.5 s where fitting the
    chosen k on them took 3.5-5.5 s (timed alternately), with the same segments."""
    segmenter, why = model_store.load_model(
        con, CLUSTERING_STEP, SEGMENTER_MODEL, selection.selected_at
    )
    if segmenter is None:
        return None, why
    if list(segmenter.feature_names_in_) != list(matrix.columns):
        return None, "the features changed since the stored segmenter was fitted"
    return segmenter, why


def previous_propensity_evaluation(
    con: duckdb.DuckDBPyConnection,
    settings: dict,
    segment: str,
    as_of: datetime,
    *,
    forced: bool = False,
) -> tuple[pd.DataFrame | None, str]:
    """The evaluation rows of the last propensity model selection when tonight may refit its
    chosen family; else None (select again). And why."""
    last, why = model_selection.reusable_selection(
        con, PROPENSITY_STEP, settings, as_of, forced=forced
    )
    if last is None:
        return None, why
    if not _exists(con, "ml.propensity_evaluation"):
        return None, "the last evaluation is not in the warehouse"
    evaluation = read_frame(con, LATEST_PROPENSITY_EVALUATION_SQL, {"segment": segment})
    chosen = evaluation.loc[evaluation["is_chosen"], "model"].tolist()
    if chosen != [last.chosen] or last.chosen not in MODEL_FAMILIES:
        return None, "the last evaluation does not name the selected model"
    return evaluation, why


LATEST_PROPENSITY_EVALUATION_SQL = """
    select * from ml.propensity_evaluation
    where segment_id = $segment and run_at = (
        select max(run_at) from ml.propensity_evaluation where segment_id = $segment
    )
    order by model
"""
# The windows' cutoffs, in horizons before the as-of time: train and test select the model
# family; the chosen one is refitted on test (the latest labelled window), and scores `score`
# every night until the next selection.
PROPENSITY_WINDOWS = {"train": 2, "test": 1, "score": 0}


def propensity_frames(
    con: duckdb.DuckDBPyConnection,
    target: str,
    horizon_days: int,
    as_of: datetime | None = None,
    windows: tuple[str, ...] = tuple(PROPENSITY_WINDOWS),
) -> dict[str, pd.DataFrame]:
    """train (cutoff as_of - 2N), test (as_of - N) and score (as_of, unlabelled) frames (those
    named in `windows`; as_of: the run's, by default)."""
    as_of = _as_of(con) if as_of is None else as_of
    frames = {}
    for name in windows:
        back = PROPENSITY_WINDOWS[name]
        cutoff = pd.Timestamp(as_of) - pd.Timedelta(days=back * horizon_days)
        params = {"cutoff": cutoff.to_pydatetime(), "target": target, "horizon": horizon_days}
        sql = _frame_sql(con, target, cutoff.to_pydatetime())
        frames[name] = read_frame(con, sql, params).set_index("person_id")
    return frames


def _frame_sql(con: duckdb.DuckDBPyConnection, target: str, cutoff: datetime) -> str:
    """PROPENSITY_SCORE_FROM_ACTIVITY_SQL for the purchase target at the as-of time
    int_person_activity was last built with (the nightly score window); else
    PROPENSITY_FRAME_SQL, from the events."""
    if target != "purchase" or not _exists(con, "intermediate.int_person_activity"):
        return PROPENSITY_FRAME_SQL
    built_as_of = con.execute(
        "select max(_as_of) from intermediate.int_person_activity"
    ).fetchall()[0][0]
    if built_as_of is None or pd.Timestamp(built_as_of) != pd.Timestamp(cutoff):
        return PROPENSITY_FRAME_SQL
    return PROPENSITY_SCORE_FROM_ACTIVITY_SQL


@multi_asset(
    specs=[
        _segment_spec(
            "propensity_segments",
            "Calibrated probability of the target event in the next N days per consenting "
            "person (segment_type = propensity).",
            [AssetKey(["marts", "events"]), AssetKey(["marts", "user_features"])],
        ),
        _segment_spec(
            "propensity_evaluation",
            "Per run and model family: held-out AUC, Brier score, calibration error.",
            [AssetKey(["marts", "events"])],
        ),
    ],
    name="propensity_segments",
)
def propensity_segments_asset(context: AssetExecutionContext, warehouse: WarehouseResource):
    settings = load_tunables().segment_settings("propensity")
    target, horizon = settings["target_event"], int(settings["horizon_days"])
    segment = f"propensity_{target}_{horizon}d"
    with warehouse.connect() as con:
        as_of = _as_of(con)
        previous, why = previous_propensity_evaluation(
            con, settings, segment, as_of, forced=_full_refresh(context)
        )
        context.log.info(f"model selection: {_selection_metadata(previous, why)}")
        if previous is None:
            model, evaluation, calibration = _select_propensity(con, settings, as_of)
            evaluation.insert(0, "run_at", _now())
            evaluation.insert(1, "segment_id", segment)
            append_frame(con, "ml.propensity_evaluation", evaluation)
            model_selection.record_selection(con, PROPENSITY_STEP, settings, as_of, model.family)
            fitted = "fitted by tonight's model selection"
        else:
            evaluation, calibration = previous, None
            # Between selections the selection's model scores (dagster_project/model_store.py).
            model, fitted = model_store.load_model(
                con, PROPENSITY_STEP, segment, _selection_run_at(evaluation)
            )
            if model is None:
                model = _refit_propensity(con, settings, as_of, previous)
                fitted = f"refitted on the latest labelled window ({fitted})"
        if not fitted.startswith("stored model"):
            model_store.store_model(
                con, PROPENSITY_STEP, segment, _selection_run_at(evaluation), model, _now()
            )
        context.log.info(f"model: {fitted}")
        score = propensity_frames(con, target, horizon, as_of, ("score",))["score"]
        segments = propensity_segments(
            model, score.drop(columns=LABEL), segment, f"{target} within {horizon} days"
        )
        write_frame(con, "ml.propensity_segments", segments)
    chosen = evaluation[evaluation["is_chosen"]].iloc[0]
    context.log.info(f"{segment}: {chosen['model']} held-out AUC {chosen['auc']:.3f}")
    yield MaterializeResult(
        asset_key=AssetKey(["ml", "propensity_segments"]),
        metadata={
            "rows": len(segments),
            "model": str(chosen["model"]),
            "model_selection": _selection_metadata(previous, why),
            "auc": float(chosen["auc"]),
            "people_fitted": int(model.n_rows_fitted_),
            # 0: calibrated on out-of-fold predictions (or a model stored before this was kept)
            "people_calibrated": int(getattr(model, "n_rows_calibrated_", 0)),
            "model_fitted": fitted,
            "mean_score": float(segments["score"].mean()) if len(segments) else float("nan"),
        },
    )
    yield MaterializeResult(
        asset_key=AssetKey(["ml", "propensity_evaluation"]),
        metadata={
            "auc": float(chosen["auc"]),
            "brier": float(chosen["brier"]),
            "ece": float(chosen["ece"]),
            "model_selection": _selection_metadata(previous, why),
            "models": markdown_table(evaluation),
            **({"calibration": markdown_table(calibration)} if calibration is not None else {}),
        },
    )


def _selection_run_at(evaluation: pd.DataFrame) -> datetime:
    """Which model selection `evaluation` (its rows of ml.propensity_evaluation) is."""
    return pd.Timestamp(evaluation["run_at"].max()).to_pydatetime()


def _select_propensity(
    con: duckdb.DuckDBPyConnection, settings: dict, as_of: datetime
) -> tuple[PropensityModel, pd.DataFrame, pd.DataFrame]:
    """Model selection: every family fitted on train and scored on test; the chosen one
    refitted on test."""
    target, horizon = settings["target_event"], int(settings["horizon_days"])
    frames = propensity_frames(con, target, horizon, as_of, ("train", "test"))
    train, test = frames["train"], frames["test"]
    return select_propensity_model(
        train.drop(columns=LABEL),
        train[LABEL],
        test.drop(columns=LABEL),
        test[LABEL],
        random_state=settings.get("random_state", 42),
        max_rows=settings.get("max_fit_people"),
    )


def _refit_propensity(
    con: duckdb.DuckDBPyConnection, settings: dict, as_of: datetime, evaluation: pd.DataFrame
) -> PropensityModel:
    """The family `evaluation` chose, refitted on the latest labelled window (as selection
    refits it)."""
    target, horizon = settings["target_event"], int(settings["horizon_days"])
    test = propensity_frames(con, target, horizon, as_of, ("test",))["test"]
    family = str(evaluation.loc[evaluation["is_chosen"], "model"].iloc[0])
    return fit_propensity_model(
        family,
        test.drop(columns=LABEL),
        test[LABEL],
        random_state=settings.get("random_state", 42),
        max_rows=settings.get("max_fit_people"),
    )


SEGMENT_MEMBERS_SQL = """
    with members as (
        select segment_type || ':' || segment_id as subject from ml.user_segments
        union all
        select 'trigger:' || segment_id from intermediate.int_segment_triggers
    )
    select subject, count(*) as members from members where subject is not null group by subject
"""
PROPENSITY_SCORES_SQL = """
    select person_id, 'propensity:' || segment_id as subject, score from ml.propensity_segments
"""
PEOPLE_COUNT_SQL = "select count(*) from marts.user_features"


# Until session 42 the clustering step stored its matrix here for the drift step of its run.
# The matrix is now one query, cheaper to run again than to store (1.3-1.6 s at L) and read
# back: the clustering step drops a table left by an earlier version.
_OLD_CLUSTERING_MATRIX_TABLE = "ml._pz_clustering_matrix"


def clustering_matrix_query(con: duckdb.DuckDBPyConnection) -> str:
    """The query of `clustering_matrix` over the consenting people's features and affinities
    (`models_ml.features.clustering_matrix_sql`)."""
    categories = con.execute(
        f"select distinct category from ({CONSENTING_AFFINITY_SQL}) "
        "where category is not null order by category"
    ).fetchall()
    return clustering_matrix_sql(
        con.execute(FEATURE_COLUMNS_SQL).fetchall(),
        [category for (category,) in categories],
        people_sql=CONSENTING_FEATURES_SQL,
        affinity_sql=CONSENTING_AFFINITY_SQL,
    )


def read_clustering_matrix(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The clustering matrix of the consenting people, computed by DuckDB. At L (1.09M
    people, 2.2M affinities) 1.2-1.4 s; reading the features and affinities into pandas and
    pivoting them there (`clustering_matrix`, the same values) took 5.5-7 s."""
    return _frame_by_person(read_frame(con, clustering_matrix_query(con)))


def drift_features_query(con: duckdb.DuckDBPyConnection) -> str:
    """The clustering matrix with one more column per propensity segment (`propensity:<id>`,
    sorted), each person's score, null without one: what the drift step bins. Pivoted in
    DuckDB: in pandas, pivoting the 1M scores and joining them took 2.2 s at L."""
    subjects = [
        subject
        for (subject,) in con.execute(
            f"select distinct subject from ({PROPENSITY_SCORES_SQL}) order by subject"
        ).fetchall()
    ]
    if not subjects:
        return clustering_matrix_query(con)
    pivot = ", ".join(
        f"max(score) filter (where subject = {quote_literal(subject)}) "
        f"as {quote_identifier(subject)}"
        for subject in subjects
    )
    return f"""
        select matrix.*, {", ".join(f"scores.{quote_identifier(s)}" for s in subjects)}
        from ({clustering_matrix_query(con)}) as matrix
        left join (
            select person_id, {pivot} from ({PROPENSITY_SCORES_SQL}) group by person_id
        ) as scores using (person_id)
        order by person_id
    """


def _frame_by_person(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.set_index("person_id")
    frame.columns.name = None
    return frame


def drift_inputs(con: duckdb.DuckDBPyConnection) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(segment shares of all people; numeric distributions: clustering features, scores)."""
    n_people = con.execute(PEOPLE_COUNT_SQL).fetchall()[0][0]
    members = read_frame(con, SEGMENT_MEMBERS_SQL).set_index("subject")["members"]
    shares = segment_shares(members, n_people)
    return shares, _frame_by_person(read_frame(con, drift_features_query(con)))


@multi_asset(
    specs=[
        _segment_spec(
            "segment_drift",
            "Per run: PSI of each segment's share and each feature's distribution against the "
            "previous run (appended per run).",
            [
                AssetKey(["ml", "user_segments"]),
                AssetKey(["ml", "propensity_segments"]),
                AssetKey(["intermediate", "int_segment_triggers"]),
            ],
        ),
        _segment_spec(
            "segment_drift_baselines",
            "Per run: segment shares and feature bins, the baseline of the next run's drift.",
            [AssetKey(["ml", "user_segments"]), AssetKey(["ml", "propensity_segments"])],
        ),
    ],
    name="segment_drift",
)
def segment_drift_asset(context: AssetExecutionContext, warehouse: WarehouseResource):
    settings = load_tunables().segment_settings("drift")
    threshold = float(settings.get("psi_warn_threshold", 0.2))
    run_at = _now()
    with warehouse.connect() as con:
        shares, distributions = drift_inputs(con)
        drift, previous_run_at = compare_with_previous(con, shares, distributions)
        drift.insert(0, "run_at", run_at)
        drift.insert(
            1, "previous_run_at", pd.Series(previous_run_at, drift.index, "datetime64[us]")
        )
        drift["is_above_threshold"] = drift["psi"] > threshold
        drift = drift.astype(DRIFT_TYPES)
        baseline = pd.concat(
            [
                shares.assign(kind="segment_share"),
                feature_bins(distributions, int(settings.get("feature_bins", 10)))
                .rename(columns={"feature": "subject"})
                .assign(kind="feature"),
            ],
            ignore_index=True,
        )
        baseline.insert(0, "run_at", run_at)
        append_frame(con, "ml.segment_drift", drift)
        append_frame(con, "ml.segment_drift_baselines", baseline)
    worst = drift.sort_values("psi", ascending=False).head(10)
    context.log.info(f"drift vs {previous_run_at}: {int(drift['is_above_threshold'].sum())} above")
    yield MaterializeResult(
        asset_key=AssetKey(["ml", "segment_drift"]),
        metadata={
            "rows": len(drift),
            "previous_run_at": str(previous_run_at),
            "max_psi": float(drift["psi"].max()) if len(drift) else 0.0,
            "above_threshold": int(drift["is_above_threshold"].sum()),
            "largest_drift": markdown_table(worst),
        },
    )
    yield MaterializeResult(
        asset_key=AssetKey(["ml", "segment_drift_baselines"]), metadata={"rows": len(baseline)}
    )


def compare_with_previous(
    con: duckdb.DuckDBPyConnection, shares: pd.DataFrame, distributions: pd.DataFrame
) -> tuple[pd.DataFrame, pd.Timestamp | None]:
    """Drift rows against the newest baseline (empty, with no previous run, on the first run)."""
    if not _exists(con, "ml.segment_drift_baselines"):
        return segment_share_drift(shares.iloc[:0], shares.iloc[:0]), None
    baseline = read_frame(
        con,
        "select * from ml.segment_drift_baselines "
        "where run_at = (select max(run_at) from ml.segment_drift_baselines)",
    )
    previous_run_at = baseline["run_at"].iloc[0] if len(baseline) else None
    previous_shares = baseline.loc[baseline["kind"] == "segment_share", ["subject", "share"]]
    previous_bins = baseline.loc[baseline["kind"] == "feature"].rename(
        columns={"subject": "feature"}
    )
    drift = pd.concat(
        [
            segment_share_drift(previous_shares, shares),
            feature_drift(previous_bins, distributions),
        ],
        ignore_index=True,
    )
    return drift, previous_run_at


# Explicit types: the first run's drift is empty and must still create a well-typed table.
DRIFT_TYPES = {
    "run_at": "datetime64[us]",
    "drift_kind": "string",
    "subject": "string",
    "previous_share": "float64",
    "current_share": "float64",
    "psi": "float64",
    "is_above_threshold": "bool",
}
LATEST_DRIFT_SQL = """
    select subject, drift_kind, psi from ml.segment_drift
    where run_at = (select max(run_at) from ml.segment_drift)
    order by psi desc
"""


@asset_check(
    asset=AssetKey(["ml", "segment_drift"]),
    name="segment_drift_below_threshold",
    description="Warns when a segment share or feature drifted (PSI) above "
    "`drift.psi_warn_threshold` of segments.yaml since the previous run.",
)
def segment_drift_check(warehouse: WarehouseResource) -> AssetCheckResult:
    threshold = float(load_tunables().segment_settings("drift").get("psi_warn_threshold", 0.2))
    with warehouse.connect() as con:
        drift = read_frame(con, LATEST_DRIFT_SQL)
    above = drift[drift["psi"] > threshold]
    return AssetCheckResult(
        passed=above.empty,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "threshold": threshold,
            "above_threshold": len(above),
            "max_psi": float(drift["psi"].max()) if len(drift) else 0.0,
            "drifted": markdown_table(above.head(20)),
        },
    )


segment_assets = [cluster_segments_asset, propensity_segments_asset, segment_drift_asset]
segment_checks = [segment_drift_check]
