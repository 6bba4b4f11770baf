"""Benchmark the recommenders on MovieLens-format data with Microsoft Recommenders' protocol.

    .venv/bin/python bench/movielens.py --path /work/shared/datasets/movielens-latest-small

Protocol of the published table (recommenders/benchmarks/movielens.ipynb): a per-user random
75/25 split with seed 42, k = 10, items seen in training removed, every test rating relevant.
The loader reads `ratings.csv` (ml-latest-*, ml-25m), `ratings.dat` (ml-1m / ml-10m, `::`) or
`u.data` (ml-100k, tabs) from the folder given. The data is read from its folder, never copied.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models_ml.evaluation import ranking_metrics  # noqa: E402
from models_ml.recommenders import (  # noqa: E402
    ALSRecommender,
    ContentRecommender,
    EASERecommender,
    ItemCooccurrenceRecommender,
    PopularityRecommender,
)

# Microsoft Recommenders' published MovieLens-100k nDCG@10 (the figures this project tracks;
# the other columns are left empty rather than quoted from memory).
NA = float("nan")
PUBLISHED = pd.DataFrame(
    [
        ("published ML-100k: SAR", NA, 0.382, NA, NA),
        ("published ML-100k: BPR", NA, 0.442, NA, NA),
        ("published ML-100k: LightGCN", NA, 0.420, NA, NA),
        ("published ML-100k: BiVAE", NA, 0.475, NA, NA),
    ],
    columns=["algorithm", "map", "ndcg@10", "precision@10", "recall@10"],
)


def load_movielens(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ratings: person_id, item_id, weight, occurred_at; items: item_id, title, category, tags)."""
    folder = Path(path)
    names = ["person_id", "item_id", "weight", "timestamp"]
    if (folder / "ratings.csv").exists():
        ratings = pd.read_csv(folder / "ratings.csv", header=0, names=names)
    elif (folder / "ratings.dat").exists():
        ratings = pd.read_csv(folder / "ratings.dat", sep="::", names=names, engine="python")
    elif (folder / "u.data").exists():
        ratings = pd.read_csv(folder / "u.data", sep="\t", names=names)
    else:
        raise FileNotFoundError(f"no ratings.csv, ratings.dat or u.data in {folder}")
    ratings["occurred_at"] = pd.to_datetime(ratings.pop("timestamp"), unit="s")
    items = pd.DataFrame({"item_id": ratings["item_id"].unique()})
    if (folder / "movies.csv").exists():
        movies = pd.read_csv(folder / "movies.csv")
        movies.columns = ["item_id", "title", "genres"]
        items = items.merge(movies, on="item_id", how="left")
        genres = items["genres"].fillna("").str.split("|")
        items["category"] = genres.str[0]
        items["tags"] = genres.str.join(",")
    return ratings, items


def per_user_random_split(
    ratings: pd.DataFrame, ratio: float = 0.75, seed: int = 42
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each person's ratings shuffled (seed), the first round(ratio * n) into train."""
    rng = np.random.default_rng(seed)
    key = rng.random(len(ratings))
    order = np.lexsort((key, ratings["person_id"].to_numpy()))
    shuffled = ratings.iloc[order].reset_index(drop=True)
    position = shuffled.groupby("person_id").cumcount()
    size = shuffled.groupby("person_id")["item_id"].transform("size")
    in_train = position < np.round(size * ratio)
    return shuffled[in_train].reset_index(drop=True), shuffled[~in_train].reset_index(drop=True)


def candidates(items: pd.DataFrame) -> dict[str, tuple]:
    """name -> (estimator, fit keyword arguments)."""
    return {
        "popularity": (PopularityRecommender(col_weight=None), {}),
        "item_cooccurrence (SAR jaccard)": (ItemCooccurrenceRecommender(col_weight=None), {}),
        "content (TF-IDF genres)": (ContentRecommender(col_weight=None), {"items": items}),
        "als (implicit, 2 threads)": (
            ALSRecommender(factors=64, regularization=0.05, alpha=10, iterations=15),
            {},
        ),
        "ease (l2=500)": (EASERecommender(l2=500.0), {}),
    }


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", required=True, help="folder of a MovieLens data set")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--only", nargs="*", help="substrings of algorithm names to run")
    args = parser.parse_args(argv)

    ratings, items = load_movielens(args.path)
    train, test = per_user_random_split(ratings, 0.75, args.seed)
    print(
        f"{args.path}: {len(ratings)} ratings, {ratings.person_id.nunique()} people, "
        f"{ratings.item_id.nunique()} items; train {len(train)}, test {len(test)}"
    )
    people = test["person_id"].unique()
    rows = []
    for name, (model, fit_kwargs) in candidates(items).items():
        if args.only and not any(s in name for s in args.only):
            continue
        started = time.perf_counter()
        model.fit(train, **fit_kwargs)
        fit_seconds = time.perf_counter() - started
        recs = model.recommend_k_items(people, k=args.k, remove_seen=True)
        metrics = ranking_metrics(test, recs, k=args.k)
        rows.append(
            (
                name,
                metrics["map_at_k"],
                metrics["ndcg_at_k"],
                metrics["precision_at_k"],
                metrics["recall_at_k"],
                fit_seconds,
                time.perf_counter() - started - fit_seconds,
            )
        )
        print(f"  {name}: nDCG@{args.k} {metrics['ndcg_at_k']:.3f} ({fit_seconds:.1f} s fit)")
    columns = [*PUBLISHED.columns, "fit_s", "recommend_s"]
    table = pd.concat([pd.DataFrame(rows, columns=columns), PUBLISHED], ignore_index=True)
    print()
    print(table.to_markdown(index=False, floatfmt=".3f"))
    return table


if __name__ == "__main__":
    main()
