"""Clusters: connected components over deterministic + probabilistic edges, with a size guard.

A cluster larger than `clusters.max_size` is almost always a chain of weak links (or an undetected
junk value); it is reported and split back into its deterministic-only components.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

log = logging.getLogger(__name__)


def components(n: int, *edge_frames: pd.DataFrame) -> np.ndarray:
    """Component label (0..k-1, ordered by smallest member) of each of n nodes."""
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    frames = [e for e in edge_frames if e is not None and len(e)]
    if frames:
        lo = np.concatenate([e["rid_l"].to_numpy(dtype=np.int64) for e in frames])
        hi = np.concatenate([e["rid_r"].to_numpy(dtype=np.int64) for e in frames])
    else:
        lo = hi = np.zeros(0, dtype=np.int64)
    graph = coo_matrix((np.ones(len(lo), dtype=np.int8), (lo, hi)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return _canonical(labels)


def _canonical(labels: np.ndarray) -> np.ndarray:
    """Relabel so that labels are numbered by their smallest member (deterministic)."""
    _, first_idx, inverse = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first_idx))
    return order[inverse].astype(np.int64)


@dataclass
class ClusterResult:
    labels: np.ndarray                     # cluster label per rid
    oversized: list[dict] = field(default_factory=list)  # one entry per split cluster (no PII)
    removed_edges: int = 0                 # probabilistic edges dropped by the guard


def build_clusters(n: int, deterministic: pd.DataFrame, probabilistic: pd.DataFrame, max_size: int,
                   extra: pd.DataFrame | None = None) -> ClusterResult:
    """Cluster n records. `extra` are additional hard edges (incremental mode: previous clusters),
    treated like deterministic edges by the guard."""
    hard = [e for e in (deterministic, extra) if e is not None and len(e)]
    labels = components(n, *hard, probabilistic)
    if n == 0 or not (np.bincount(labels) > max_size).any():
        return ClusterResult(labels)
    rid_l = probabilistic["rid_l"].to_numpy(dtype=np.int64) if probabilistic is not None and len(probabilistic) \
        else np.zeros(0, dtype=np.int64)
    return guard_clusters(labels, components(n, *hard), rid_l, max_size)


def guard_clusters(labels: np.ndarray, det_labels: np.ndarray, probabilistic_rid_l: np.ndarray,
                   max_size: int) -> ClusterResult:
    """The size guard, given the canonical component labels over all edges (`labels`) and over the hard
    (deterministic, previous-cluster) edges only (`det_labels`): clusters above `max_size` fall back to their
    deterministic components. Shared by both backends (the Spark one computes the labels as Spark jobs)."""
    n = len(labels)
    sizes = np.bincount(labels) if n else np.zeros(0, dtype=np.int64)
    big = np.flatnonzero(sizes > max_size)
    if len(big) == 0:
        return ClusterResult(labels)
    in_big = np.isin(labels, big)
    # inside oversized clusters use the deterministic components; elsewhere keep the full ones
    combined = np.where(in_big, det_labels + n, labels)
    report = []
    for b in big:
        members = labels == b
        parts = np.unique(det_labels[members])
        part_sizes = np.bincount(det_labels[members])
        part_sizes = part_sizes[part_sizes > 0]
        report.append({"size": int(sizes[b]), "split_into": int(len(parts)),
                       "largest_part": int(part_sizes.max()),
                       "still_oversized": bool(part_sizes.max() > max_size)})
    removed = int(in_big[probabilistic_rid_l].sum()) if len(probabilistic_rid_l) else 0
    log.warning("identity: %d cluster(s) above max size %d split into deterministic components: %s",
                len(big), max_size, report)
    return ClusterResult(_canonical(combined), report, removed)
