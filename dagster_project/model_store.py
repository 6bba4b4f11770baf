"""Fitted models kept in the warehouse between model selections.

A step that selects its model only every `reselect_every_days` (dagster_project/model_selection.py)
stores the model its selection fitted, and the nights in between score with it instead of
fitting it again. At L the propensity step spent about half of a night refitting the chosen
family (reading a labelled window of 17M events and fitting three calibrated boosted models);
retraining weekly and scoring nightly is the usual practice for such a model.

The model is pickled into `ml.fitted_models`, inside the warehouse: it is encrypted at rest
with it, and only the pipeline writes it. A stored model serves only while it is the current
selection's, was fitted with this scikit-learn version, and no erasure was registered after it
was fitted (an erased person's history must not keep shaping scores for days); otherwise the
step fits the model again and stores that.
"""

from __future__ import annotations

import pickle
from datetime import datetime

import duckdb
import sklearn

from dagster_project.warehouse_io import table_exists

MODELS_TABLE = "ml.fitted_models"
_DDL = f"""
create table if not exists {MODELS_TABLE} (
    step varchar, name varchar, selection_run_at timestamp, sklearn_version varchar,
    fitted_at timestamp, model blob
)
"""
ERASURES = "audit.erasure_registry"


def store_model(
    con: duckdb.DuckDBPyConnection,
    step: str,
    name: str,
    selection_run_at: datetime,
    model: object,
    fitted_at: datetime,
) -> None:
    """Keep `model` as the one of `step`'s `name` fitted for the selection of
    `selection_run_at` (replacing the one stored before)."""
    con.execute("create schema if not exists ml")
    con.execute(_DDL)
    con.execute("begin transaction")
    try:
        con.execute(
            f"delete from {MODELS_TABLE} where step = $step and name = $name",
            {"step": step, "name": name},
        )
        con.execute(
            f"insert into {MODELS_TABLE} values ($step, $name, $selection, $version, $at, $model)",
            {
                "step": step,
                "name": name,
                "selection": selection_run_at,
                "version": sklearn.__version__,
                "at": fitted_at,
                "model": pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL),
            },
        )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise


def load_model(
    con: duckdb.DuckDBPyConnection, step: str, name: str, selection_run_at: datetime
) -> tuple[object | None, str]:
    """The model stored for `step`'s `name` and the selection of `selection_run_at`, when it
    may serve tonight (module docstring), and what it is; else (None, why not)."""
    if not table_exists(con, MODELS_TABLE):
        return None, "no model stored yet"
    rows = con.execute(
        f"select selection_run_at, sklearn_version, fitted_at, model from {MODELS_TABLE} "
        "where step = $step and name = $name",
        {"step": step, "name": name},
    ).fetchall()
    if not rows:
        return None, "no model stored yet"
    selection, version, fitted_at, blob = rows[0]
    if selection != selection_run_at:
        return None, "the stored model is of another model selection"
    if version != sklearn.__version__:
        return None, f"the stored model was fitted with scikit-learn {version}"
    if table_exists(con, ERASURES):
        erased = con.execute(
            f"select count(*) from {ERASURES} where registered_at >= $at", {"at": fitted_at}
        ).fetchall()[0][0]
        if erased:
            return None, "an erasure was registered after the stored model was fitted"
    return pickle.loads(blob), f"stored model fitted {fitted_at:%Y-%m-%d %H:%M}"
