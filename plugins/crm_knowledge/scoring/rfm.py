"""RFM scoring: recency, frequency and monetary quintile scores and the named segments.

Scores are relative (quintiles of the current customer base) so they stay meaningful as the business grows or
shrinks. Ranks are made unique before binning -- ties broken by ``customer_id`` -- because quantile edges on
tied values are unstable (``qcut`` fails or yields fewer than 5 bins) and because the same data must always
give the same scores. The segment comes from the R-score x FM-score grid in ``config/scoring.yml``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crm_knowledge.scoring.config import RFMConfig

N_BINS = 5


def quintile_scores(values: pd.Series, higher_is_better: bool = True) -> pd.Series:
    """Scores 1..5 from equal-count bins of the unique ranks of ``values``.

    The score of rank k (1..n) is ``floor((k - 0.5) * 5 / n) + 1``: the bin that holds the rank's mid-point.
    This equals ``qcut`` on ranks when n is a multiple of 5, and for small n still spreads customers
    symmetrically over 1..5 (one customer scores 3; three customers score 1, 3, 5). Ties are broken by the
    index (customer_id) in ascending order, so the result does not depend on row order.
    """
    if values.empty:
        return pd.Series(dtype=int, index=values.index)
    ordered = values.sort_index(kind="stable")
    key = ordered if higher_is_better else -ordered
    ranks = key.rank(method="first", ascending=True).to_numpy()
    n = len(ranks)
    scores = np.floor((ranks - 0.5) * N_BINS / n).astype(int) + 1
    return pd.Series(np.clip(scores, 1, N_BINS), index=ordered.index).reindex(values.index)


def fm_score(f_score: pd.Series, m_score: pd.Series) -> pd.Series:
    """Combined frequency-monetary score: mean of F and M, rounded half up (so F=4, M=5 gives 5)."""
    return np.floor((f_score + m_score) / 2 + 0.5).astype(int)


def segment_for(r_score: int, fm: int, config: RFMConfig) -> str:
    """Look up the segment of one (R, FM) cell of the configured grid."""
    return config.grid[int(r_score)][int(fm) - 1]


def score_rfm(summary: pd.DataFrame, config: RFMConfig) -> pd.DataFrame:
    """R, F, M scores, the 3-digit ``rfm_score`` cell (e.g. "545") and ``rfm_segment`` per customer.

    ``summary`` is :func:`crm_knowledge.scoring.features.customer_summary` output (needs ``recency_days``,
    ``frequency``, ``monetary``). R is scored on recency with fewer days = higher score.
    """
    out = pd.DataFrame(index=summary.index)
    out["r_score"] = quintile_scores(summary["recency_days"].astype(float), higher_is_better=False)
    out["f_score"] = quintile_scores(summary["frequency"].astype(float), higher_is_better=True)
    out["m_score"] = quintile_scores(summary["monetary"].astype(float), higher_is_better=True)
    out = out.astype({"r_score": int, "f_score": int, "m_score": int})
    out["rfm_score"] = (
        out["r_score"].astype(str) + out["f_score"].astype(str) + out["m_score"].astype(str)
    )
    fm = fm_score(out["f_score"], out["m_score"])
    out["rfm_segment"] = [segment_for(r, f, config) for r, f in zip(out["r_score"], fm, strict=True)]
    return out
