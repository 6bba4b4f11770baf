"""Time the nightly recommendation path at scale on synthetic data.

    .venv/bin/python bench/recommend_scale.py --people 1000000 --items 10000

Synthetic shoppers: `--clusters` taste groups (also their cluster segment), each person
~`--per-person` interactions, 80% in their group's items (Zipf-popular within it), the rest
anywhere; 2% of items out of stock, 1% curated, 2% of people with an open checkout, 1% who
revoked analytics consent (their interactions count in no aggregate), purchases excluded.
Timed: fitting the serving chain (the chosen algorithm, content-based, `--fallback`
popularity), the chain's top-k for every person, and the rules (exclusions, pins, context,
boosts). Printed at the end: wall and CPU time of the timed steps, peak RSS of the process,
and the load average (other processes on the machine stretch the wall time).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models_ml.recommenders import recommend_chain  # noqa: E402
from models_ml.recommenders.serving import build_candidates  # noqa: E402
from models_ml.rules import RecommendationRules, apply_rules  # noqa: E402


def synthetic(people: int, items: int, per_person: int, clusters: int, seed: int = 42):
    rng = np.random.default_rng(seed)
    n = people * per_person
    person = np.repeat(np.arange(people), per_person)
    group = person % clusters
    group_size = items // clusters
    zipf = np.minimum(rng.zipf(1.3, n) - 1, group_size - 1)
    in_group = group * group_size + zipf
    anywhere = rng.integers(0, items, n)
    item = np.where(rng.random(n) < 0.8, in_group, anywhere)
    kind = rng.choice([1.0, 3.0, 5.0], n, p=[0.8, 0.15, 0.05])  # view, cart, purchase
    person_ids = pd.Index([f"p{i}" for i in range(people)])
    interactions = pd.DataFrame(
        {
            "person_id": person_ids.take(person),
            "item_id": pd.Index([f"i{i}" for i in range(items)]).take(item),
            "weight": kind,
            "occurred_at": pd.Timestamp("2024-06-01")
            - pd.to_timedelta(rng.integers(0, 90 * 86400, n), unit="s"),
            "has_analytics_consent": (rng.random(people) >= 0.01)[person],
        }
    )
    ids = np.array([f"i{i}" for i in range(items)], dtype=object)
    catalog = pd.DataFrame(
        {
            "item_id": ids,
            "title": [f"Item {i % 97} model {i % 13}" for i in range(items)],
            "category": [f"cat{(i // group_size) % clusters}" for i in range(items)],
            "tags": [f"t{i % 31},t{i % 7}" for i in range(items)],
        }
    )
    purchased = interactions.loc[kind == 5.0, ["person_id", "item_id"]].drop_duplicates()
    out_of_stock = ids[rng.random(items) < 0.02]
    curated = ids[rng.random(items) < 0.01]
    open_checkout = np.array([f"p{i}" for i in np.flatnonzero(rng.random(people) < 0.02)])
    segments = pd.DataFrame(
        {"person_id": person_ids, "segment_id": pd.Index(np.arange(people) % clusters).astype(str)}
    )
    return interactions, catalog, purchased, out_of_stock, curated, open_checkout, segments


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--per-person", type=int, default=8)
    parser.add_argument("--clusters", type=int, default=50)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--algorithm", default="ease")
    parser.add_argument(
        "--fallback", default="segment_popularity", choices=["segment_popularity", "popularity"]
    )
    parser.add_argument("--n-jobs", type=int, default=2)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    data = synthetic(args.people, args.items, args.per_person, args.clusters)
    interactions, catalog, purchased, out_of_stock, curated, open_checkout, segments = data
    people = pd.Index(segments["person_id"])
    print(
        f"synthetic: {args.people:,} people x {args.items:,} items, "
        f"{len(interactions):,} interactions ({time.perf_counter() - started:.1f} s to make)",
        flush=True,
    )
    settings = {"candidates": [args.algorithm, "content", args.fallback], "half_life_days": 60}
    rules = RecommendationRules.from_dict(
        {
            "context_rules": [{"name": "open_checkout_curated", "when": "open_checkout"}],
            "pins": [{"name": "pinned", "item_ids": ["i1"]}],
            "boosts": [{"name": "boost_cat1", "factor": 2.0, "categories": ["cat1"]}],
        }
    )
    timings: dict[str, tuple[float, float]] = {}
    clock, cpu = time.perf_counter(), time.process_time()

    def lap(step: str) -> None:
        nonlocal clock, cpu
        timings[step] = (time.perf_counter() - clock, time.process_time() - cpu)
        print(
            f"  {step:<30} {timings[step][0]:8.1f} s wall {timings[step][1]:8.1f} s CPU", flush=True
        )
        clock, cpu = time.perf_counter(), time.process_time()

    chain = []
    for name, model in build_candidates(settings).items():
        model.set_params(**({"n_jobs": args.n_jobs} if "n_jobs" in model.get_params() else {}))
        fit_kwargs = {"content": {"items": catalog}, "segment_popularity": {"segments": segments}}
        chain.append(model.fit(interactions, **fit_kwargs.get(name, {})))
        lap(f"fit {name}")
    candidates = recommend_chain(
        chain,
        people,
        args.k + rules.extra_depth,
        min_history=[2, 0, 0],
        exclude_pairs=purchased,
        exclude_items=out_of_stock,
    )
    lap("top-k for everyone (chain)")
    final = apply_rules(
        candidates,
        rules,
        args.k,
        people=people,
        items=catalog,
        contexts={"open_checkout": open_checkout},
        curated_items=curated,
        exclude_pairs=purchased,
        exclude_items=out_of_stock,
    )
    lap("rules")
    wall = sum(t[0] for t in timings.values())
    cpu_total = sum(t[1] for t in timings.values())
    print(f"  {'total (excluding data making)':<30} {wall:8.1f} s wall {cpu_total:8.1f} s CPU")
    # Linux reports ru_maxrss in KiB.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"  peak RSS {peak:.2f} GiB; load average (1, 5, 15 min) at the end: {load}")
    per_person = final.groupby("person_id", sort=False).size()
    print(
        f"{len(final):,} rows for {len(per_person):,} people; "
        f"{(per_person == args.k).mean():.1%} have k={args.k}; "
        f"by algorithm: {final.algorithm.value_counts().to_dict()}"
    )


if __name__ == "__main__":
    main()
