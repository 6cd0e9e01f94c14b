"""Clusters: connected components over deterministic + probabilistic edges, with two guards.

* Conflict guard: a person has one value of a `unique_per_person` identifier kind (a national id, the
  overseas units' social-security number). Probabilistic edges are transitive, so a chain of them through
  records carrying no such value can join two people whose numbers differ, though no single pair compares
  them. Inside clusters holding more than one value of such a kind, probabilistic edges are added
  strongest first, and one that would join two groups whose values of a kind all differ (by more than
  `TYPO_EDITS` edits, for kinds compared with a typo level: a mistyped number) is left out.
* Size guard: a cluster larger than `clusters.max_size` is almost always a chain of weak links (or an
  undetected junk value); it is reported and split back into its deterministic-only components.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

log = logging.getLogger(__name__)

#: The oversized-cluster warning lists this many splits (all of them: ClusterResult.oversized, the resolution
#: stats' `oversized_detail`): at 1M customers a synthetic set had 102, one log line of 13 KB.
LOGGED_SPLITS = 10


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
    removed_edges: int = 0                 # probabilistic edges dropped by the size guard
    conflicting_edges: int = 0             # probabilistic edges left out by the conflict guard


#: values of a typo-tolerant kind at most this many edits apart may be one person's (a mistyped number)
TYPO_EDITS = 2


def edit_distance(a: str, b: str, limit: int = TYPO_EDITS) -> int:
    """Damerau-Levenshtein (optimal string alignment) distance of two short values, or limit + 1 when it is
    larger than `limit`."""
    if a == b:
        return 0
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return min(prev[-1], limit + 1)


@dataclass(frozen=True)
class UniqueValues:
    """Values of one identifier kind a person has one of, per record (None: the record has none)."""

    kind: str
    values: np.ndarray        # object array, one entry per rid
    typo_tolerant: bool       # values TYPO_EDITS edits apart may be the same person's (compared with a typo level)


def unique_values(frame: pd.DataFrame, config) -> list[UniqueValues]:
    """The conflict guard's input from a prepared frame in rid order: the values of each identifier kind a
    person has one of (`unique_per_person`); kinds Splink also compares (with a one-typo level) tolerate a
    typo. Both backends build it here."""
    return [UniqueValues(k.name, frame[k.column].to_numpy(dtype=object), k.probabilistic)
            for k in config.identifiers if k.unique_per_person and k.column in frame.columns]


def _compatible(a: set[str], b: set[str], tolerant: bool) -> bool:
    if not a or not b or a & b:
        return True
    return tolerant and any(edit_distance(x, y) <= TYPO_EDITS for x in a for y in b)


def conflict_guard(n: int, hard: list[pd.DataFrame], probabilistic: pd.DataFrame,
                   unique_values: list[UniqueValues]) -> tuple[pd.DataFrame, int]:
    """`probabilistic` without the edges that would put two different values of a unique-per-person kind
    into one cluster (see the module docstring), and how many were left out. Only clusters holding two or
    more values of a kind are looked at, edge by edge; the rest stay as they are."""
    if probabilistic is None or not len(probabilistic) or not unique_values:
        return probabilistic, 0
    labels = components(n, *hard, probabilistic)
    suspect = np.zeros(0, dtype=np.int64)
    for uv in unique_values:
        has = np.flatnonzero(pd.notna(uv.values))
        if not len(has):
            continue
        per_cluster = pd.DataFrame({"c": labels[has], "v": uv.values[has]}).groupby("c")["v"].nunique()
        suspect = np.union1d(suspect, per_cluster.index[per_cluster > 1].to_numpy(dtype=np.int64))
    if not len(suspect):
        return probabilistic, 0
    lo = probabilistic["rid_l"].to_numpy(dtype=np.int64)
    hi = probabilistic["rid_r"].to_numpy(dtype=np.int64)
    in_suspect = np.isin(labels[lo], suspect)
    hard_labels = components(n, *hard)
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(x, x) != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    # values per hard component (the nodes merged here), for the records of suspect clusters
    members = np.flatnonzero(np.isin(labels, suspect))
    held: dict[int, list[set[str]]] = {}
    for r in members:
        node = int(hard_labels[r])
        sets = held.setdefault(node, [set() for _ in unique_values])
        for i, uv in enumerate(unique_values):
            v = uv.values[r]
            if v is not None and not (isinstance(v, float) and np.isnan(v)):
                sets[i].add(str(v))
    idx = np.flatnonzero(in_suspect)
    prob = probabilistic["match_probability"].to_numpy(dtype=float)[idx]
    order = idx[np.lexsort((hi[idx], lo[idx], -prob))]  # strongest first; ties by record (deterministic)
    dropped = []
    for e in order:
        a, b = find(int(hard_labels[lo[e]])), find(int(hard_labels[hi[e]]))
        if a == b:
            continue
        sa, sb = held[a], held[b]
        if all(_compatible(x, y, uv.typo_tolerant) for x, y, uv in zip(sa, sb, unique_values, strict=True)):
            parent[b] = a
            held[a] = [x | y for x, y in zip(sa, sb, strict=True)]
        else:
            dropped.append(e)
    if not dropped:
        return probabilistic, 0
    keep = np.ones(len(probabilistic), dtype=bool)
    keep[dropped] = False
    log.info("identity: %d probabilistic edge(s) left out: they would join different values of %s",
             len(dropped), ", ".join(uv.kind for uv in unique_values))
    return probabilistic[keep].reset_index(drop=True), len(dropped)


def build_clusters(n: int, deterministic: pd.DataFrame, probabilistic: pd.DataFrame, max_size: int,
                   extra: pd.DataFrame | None = None,
                   unique_values: list[UniqueValues] | None = None) -> ClusterResult:
    """Cluster n records. `extra` are additional hard edges (incremental mode: previous clusters),
    treated like deterministic edges by the guards. `unique_values`: values of the kinds a person has one
    of, for the conflict guard (none: no conflict guard)."""
    hard = [e for e in (deterministic, extra) if e is not None and len(e)]
    probabilistic, conflicting = conflict_guard(n, hard, probabilistic, unique_values or [])
    labels = components(n, *hard, probabilistic)
    if n == 0 or not (np.bincount(labels) > max_size).any():
        return ClusterResult(labels, conflicting_edges=conflicting)
    rid_l = probabilistic["rid_l"].to_numpy(dtype=np.int64) if probabilistic is not None and len(probabilistic) \
        else np.zeros(0, dtype=np.int64)
    return guard_clusters(labels, components(n, *hard), rid_l, max_size, conflicting)


def guard_clusters(labels: np.ndarray, det_labels: np.ndarray, probabilistic_rid_l: np.ndarray,
                   max_size: int, conflicting: int = 0) -> ClusterResult:
    """The size guard, given the canonical component labels over all edges (`labels`) and over the hard
    (deterministic, previous-cluster) edges only (`det_labels`): clusters above `max_size` fall back to their
    deterministic components. Shared by both backends (the Spark one computes the labels as Spark jobs).
    `conflicting`: probabilistic edges the conflict guard left out before the labels were computed."""
    n = len(labels)
    sizes = np.bincount(labels) if n else np.zeros(0, dtype=np.int64)
    big = np.flatnonzero(sizes > max_size)
    if len(big) == 0:
        return ClusterResult(labels, conflicting_edges=conflicting)
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
    still = sum(r["still_oversized"] for r in report)
    log.warning("identity: %d cluster(s) above max size %d split into deterministic components "
                "(largest %d records; %d still above it)%s: %s", len(big), max_size,
                max(r["size"] for r in report), still,
                f", the first {LOGGED_SPLITS} of them" if len(report) > LOGGED_SPLITS else "",
                report[:LOGGED_SPLITS])
    return ClusterResult(_canonical(combined), report, removed, conflicting)
