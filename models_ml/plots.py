"""Pictures of a segmentation as PNG bytes (matplotlib, Agg backend; no files written here)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

MAX_POINTS = 5000  # a scatter of more points shows nothing more and takes long


class _ByteSink:
    """A write-only in-memory target for savefig (the package stays free of file I/O)."""

    def __init__(self):
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass


def _png(figure) -> bytes:
    sink = _ByteSink()
    figure.savefig(sink, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return b"".join(sink.parts)


def pca_scatter_png(
    embedding: np.ndarray, labels: np.ndarray, names: dict[int, str], random_state: int = 0
) -> bytes:
    """The people on the first two principal components of `embedding`, coloured by cluster."""
    rows = np.arange(len(embedding))
    if len(rows) > MAX_POINTS:
        rows = np.sort(np.random.default_rng(random_state).choice(rows, MAX_POINTS, replace=False))
    points = embedding[rows]
    centered = points - points.mean(axis=0) if len(points) else points
    if centered.shape[1] >= 2 and len(centered) > 1:
        _, _, components = np.linalg.svd(centered, full_matrices=False)
        xy = centered @ components[:2].T
    else:
        xy = np.column_stack([centered[:, :1].ravel(), np.zeros(len(centered))])
    figure, axes = plt.subplots(figsize=(7, 5))
    for cluster in sorted(names):
        member = labels[rows] == cluster
        axes.scatter(xy[member, 0], xy[member, 1], s=6, alpha=0.6, label=names[cluster])
    axes.set_xlabel("PC 1")
    axes.set_ylabel("PC 2")
    axes.set_title("Clusters on the first two principal components")
    axes.legend(fontsize=7, markerscale=2, loc="best")
    return _png(figure)


def silhouette_by_k_png(quality: pd.DataFrame) -> bytes:
    """Silhouette (left axis) and Davies-Bouldin (right axis) per k tried; the chosen k marked."""
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot(quality["k"], quality["silhouette"], marker="o", color="tab:blue")
    axes.set_xlabel("k")
    axes.set_ylabel("silhouette (higher is better)", color="tab:blue")
    other = axes.twinx()
    other.plot(quality["k"], quality["davies_bouldin"], marker="s", color="tab:orange")
    other.set_ylabel("Davies-Bouldin (lower is better)", color="tab:orange")
    chosen = quality.loc[quality["is_chosen"], "k"]
    for k in chosen:
        axes.axvline(k, color="grey", linestyle="--")
    axes.set_title("Cluster quality by k")
    return _png(figure)
