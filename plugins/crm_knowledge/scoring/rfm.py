"""RFM scoring: recency, frequency and monetary quintile scores and the named segments.

Scores are relative (quintiles of the current customer base) so they stay meaningful as the business grows or
shrinks. Ranks are made unique before binning -- ties broken by ``customer_id`` -- because quantile edges on
tied values are unstable (``qcut`` fails or yields fewer than 5 bins) and because the same data must always
give the same scores. The bins are held by four edges (the customers at the boundary ranks): the pipeline
computes them in SQL over every scored customer, and a customer's score is where they fall among them, so
a daily run scores the customers it covers exactly as a full re-score would. The segment comes from the
R-score x FM-score grid in ``config/scoring.yml``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from crm_knowledge.scoring.config import RFMConfig

N_BINS = 5


def boundary_ranks(n: int) -> list[int]:
    """The last rank (1-based) scoring 1, 2, 3 and 4 among `n` ranks (0: no rank scores that low).

    The score of rank k (1..n) is ``floor((k - 0.5) * 5 / n) + 1``: the bin that holds the rank's mid-point.
    This equals ``qcut`` on ranks when n is a multiple of 5, and for small n still spreads customers
    symmetrically over 1..5 (one customer scores 3; three customers score 1, 3, 5). Rank k scores at most j
    exactly when k < j * n / 5 + 0.5.
    """
    return [math.ceil(j * n / N_BINS + 0.5) - 1 for j in range(1, N_BINS)]


#: A quintile edge: the (key, customer_id) of the customer at a boundary rank, or None when no rank is
#: that low (fewer than 5 customers). Keys order customers best-last: higher is better for F and M,
#: recency enters negated.
Edge = tuple[float, str] | None


def edges_of(keys: pd.Series) -> list[Edge]:
    """The four quintile edges of `keys` (index customer_id): ranks by (key, customer_id), ties broken by the
    id so the result does not depend on row order. The pipeline computes the same edges in SQL over every
    scored customer (:data:`crm_knowledge.scoring.run.RFM_EDGES_SQL`); this is that rule for a frame."""
    ordered = sorted(zip(keys.to_numpy(dtype=float), keys.index.astype(str), strict=True))
    return [ordered[r - 1] if r >= 1 else None for r in boundary_ranks(len(ordered))]


def scores_from_edges(keys: pd.Series, edges: list[Edge]) -> pd.Series:
    """Score 1..5 of each key: 1 + the number of edges it lies above (by (key, customer_id)). A customer's
    score depends only on their own key and the day's edges, so scoring a few customers against the edges
    of all gives what scoring all of them would."""
    ids = keys.index.astype(str)
    values = keys.to_numpy(dtype=float)
    scores = np.ones(len(values), dtype=int)
    for edge in edges:
        if edge is None:
            scores += 1
            continue
        key, cid = float(edge[0]), str(edge[1])
        scores += (values > key) | ((values == key) & (ids > cid))
    return pd.Series(scores, index=keys.index)


def rfm_keys(summary: pd.DataFrame) -> pd.DataFrame:
    """The keys R, F and M are ranked by (best last): negated recency, frequency, monetary to the cent (the
    amount the warehouse sums exactly: float sums may differ in the last bit with the order of addition)."""
    return pd.DataFrame({"r": -summary["recency_days"].astype(float),
                         "f": summary["frequency"].astype(float),
                         "m": summary["monetary"].astype(float).round(2)}, index=summary.index)


def quintile_scores(values: pd.Series, higher_is_better: bool = True) -> pd.Series:
    """Scores 1..5 from equal-count bins of the unique ranks of ``values`` (:func:`boundary_ranks`). Ties are
    broken by the index (customer_id) in ascending order, so the result does not depend on row order."""
    if values.empty:
        return pd.Series(dtype=int, index=values.index)
    keys = values.astype(float) if higher_is_better else -values.astype(float)
    return scores_from_edges(keys, edges_of(keys))


def fm_score(f_score: pd.Series, m_score: pd.Series) -> pd.Series:
    """Combined frequency-monetary score: mean of F and M, rounded half up (so F=4, M=5 gives 5)."""
    return np.floor((f_score + m_score) / 2 + 0.5).astype(int)


def segment_for(r_score: int, fm: int, config: RFMConfig) -> str:
    """Look up the segment of one (R, FM) cell of the configured grid."""
    return config.grid[int(r_score)][int(fm) - 1]


def score_rfm(summary: pd.DataFrame, config: RFMConfig,
              edges: dict[str, list[Edge]] | None = None) -> pd.DataFrame:
    """R, F, M scores, the 3-digit ``rfm_score`` cell (e.g. "545") and ``rfm_segment`` per customer.

    ``summary`` is :func:`crm_knowledge.scoring.features.customer_summary` output (needs ``recency_days``,
    ``frequency``, ``monetary``). R is scored on recency with fewer days = higher score. `edges` (``r``, ``f``,
    ``m``: the day's quintile edges over every scored customer, computed in SQL) lets a few customers be
    scored as scoring all would; without them the edges are those of `summary` itself.
    """
    out = pd.DataFrame(index=summary.index)
    keys = rfm_keys(summary)
    for dim in ("r", "f", "m"):
        dim_edges = edges[dim] if edges is not None else edges_of(keys[dim])
        out[f"{dim}_score"] = scores_from_edges(keys[dim], dim_edges) if len(keys) else pd.Series(dtype=int)
    out = out.astype({"r_score": int, "f_score": int, "m_score": int})
    out["rfm_score"] = (
        out["r_score"].astype(str) + out["f_score"].astype(str) + out["m_score"].astype(str)
    )
    fm = fm_score(out["f_score"], out["m_score"])
    out["rfm_segment"] = [segment_for(r, f, config) for r, f in zip(out["r_score"], fm, strict=True)]
    return out
