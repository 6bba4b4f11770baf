"""Benchmark: segment assignment (fit with k chosen over 2..8, then assign) for N people.

Synthetic features shaped like `clustering_matrix` output (RFM counts, device / daypart shares,
category affinities) with planted groups; prints timings and the adjusted Rand index against
the planted groups. `kmeans` switches to MiniBatchKMeans (partial_fit) above
`minibatch_above` people, as in the pipeline.

    .venv/bin/python bench/segments_assign_1m.py --people 1000000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score

from models_ml.clustering import KMeansSegmenter, cluster_segments

FEATURES = (
    ["recency_days", "frequency", "monetary", "n_events", "n_sessions", "n_product_views"]
    + [f"share_device_{d}" for d in ("mobile", "desktop", "tablet")]
    + [f"share_daypart_{d}" for d in ("morning", "afternoon", "evening", "night")]
    + [f"affinity_{c}" for c in ("electronics", "fashion", "home", "books", "sports", "toys")]
)


def synthetic_features(n: int, groups: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, groups, n)
    centers = rng.random((groups, len(FEATURES)))
    centers[:, 6:9] = np.eye(3)[np.arange(groups) % 3] * 0.7 + 0.1
    centers[:, 9:13] = np.eye(4)[np.arange(groups) % 4] * 0.6 + 0.1
    centers[:, 13:] = np.eye(6)[np.arange(groups) % 6] * 0.8
    values = centers[truth] + rng.normal(0, 0.08, (n, len(FEATURES)))
    index = pd.Index(np.char.add("p", np.arange(n).astype(str)), name="person_id")
    return pd.DataFrame(values, columns=FEATURES, index=index), truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--groups", type=int, default=6)
    parser.add_argument("--algorithm", default="kmeans")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    features, truth = synthetic_features(args.people, args.groups, args.seed)
    started = time.perf_counter()
    segmenter = KMeansSegmenter(algorithm=args.algorithm, random_state=args.seed).fit(features)
    fitted = time.perf_counter()
    segments = cluster_segments(features, segmenter)
    assigned = time.perf_counter()
    ari = adjusted_rand_score(truth, segmenter.labels_)
    print(
        f"people={args.people:,} features={features.shape[1]} algorithm={segmenter.algorithm_used_}"
    )
    print(f"chosen k={segmenter.k_} (tried {segmenter.k_min}..{segmenter.k_max})")
    print(
        f"fit (k selection) {fitted - started:.1f} s; assignment {assigned - fitted:.1f} s; "
        f"total {assigned - started:.1f} s"
    )
    print(f"rows assigned={len(segments):,}; ARI vs planted groups={ari:.3f}")


if __name__ == "__main__":
    main()
