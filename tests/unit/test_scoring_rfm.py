"""RFM scores and segments on twelve hand-made customers, one (or two) per segment of the grid."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crm_knowledge.scoring.config import load_scoring_config
from crm_knowledge.scoring.rfm import quintile_scores, score_rfm

# With 12 customers the rank -> score bins hold 2, 3, 2, 3, 2 customers (ranks 1-2, 3-5, 6-7, 8-10, 11-12).
# id: (recency_days, frequency, monetary, expected R, F, M, expected segment)
CUSTOMERS = {
    "c01": (2, 1, 50, 5, 1, 1, "new"),
    "c02": (5, 15, 900, 5, 5, 4, "champions"),
    "c03": (10, 1, 40, 4, 1, 1, "promising"),  # frequency ties with c01; both in bin 1 anyway
    "c04": (20, 4, 300, 4, 3, 3, "potential_loyalists"),
    "c05": (30, 7, 2000, 4, 4, 5, "loyal"),
    "c06": (60, 2, 100, 3, 2, 2, "about_to_sleep"),
    "c07": (75, 5, 350, 3, 3, 3, "need_attention"),
    "c08": (120, 2, 120, 2, 2, 2, "hibernating"),
    "c09": (150, 8, 800, 2, 4, 4, "at_risk"),
    "c10": (180, 20, 3000, 2, 5, 5, "cannot_lose"),
    "c11": (300, 2, 110, 1, 2, 2, "lost"),
    "c12": (400, 9, 700, 1, 4, 4, "at_risk"),
}


def _summary() -> pd.DataFrame:
    frame = pd.DataFrame.from_dict(
        {k: v[:3] for k, v in CUSTOMERS.items()}, orient="index", columns=["recency_days", "frequency", "monetary"]
    )
    frame.index.name = "customer_id"
    return frame


def test_scores_and_segments_known_answers() -> None:
    result = score_rfm(_summary(), load_scoring_config().rfm)
    for cid, (_, _, _, r, f, m, segment) in CUSTOMERS.items():
        row = result.loc[cid]
        assert (row["r_score"], row["f_score"], row["m_score"]) == (r, f, m), cid
        assert row["rfm_score"] == f"{r}{f}{m}"
        assert row["rfm_segment"] == segment, cid
    assert set(result["rfm_segment"]) == {
        "champions", "loyal", "potential_loyalists", "new", "promising", "need_attention",
        "about_to_sleep", "at_risk", "cannot_lose", "hibernating", "lost",
    }


def test_row_order_does_not_matter() -> None:
    cfg = load_scoring_config().rfm
    a = score_rfm(_summary(), cfg)
    b = score_rfm(_summary().sample(frac=1.0, random_state=7), cfg).loc[a.index]
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize(
    ("n", "expected"),
    [(1, [3]), (2, [2, 4]), (3, [1, 3, 5]), (5, [1, 2, 3, 4, 5]), (10, [1, 1, 2, 2, 3, 3, 4, 4, 5, 5])],
)
def test_small_counts_give_valid_scores(n: int, expected: list[int]) -> None:
    values = pd.Series(range(n), index=[f"c{i:02d}" for i in range(n)], dtype=float)
    assert quintile_scores(values).tolist() == expected


def test_ties_broken_by_customer_id() -> None:
    values = pd.Series([7.0] * 5, index=["e", "c", "a", "d", "b"])
    assert quintile_scores(values).to_dict() == {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}
    # For recency (lower is better) the tie order is the same: the smaller id scores lower.
    assert quintile_scores(values, higher_is_better=False).to_dict() == {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}


def test_empty_summary() -> None:
    empty = _summary().iloc[:0]
    result = score_rfm(empty, load_scoring_config().rfm)
    assert result.empty and list(result.columns) == ["r_score", "f_score", "m_score", "rfm_score", "rfm_segment"]


def test_a_few_customers_scored_against_everyones_edges_score_as_in_the_whole() -> None:
    """What daily scoring relies on: a customer's R/F/M depends on their own values and the population's
    four edges only, so scoring any subset against the population's edges gives the population's scores."""
    from crm_knowledge.scoring.rfm import edges_of, rfm_keys

    rng = np.random.default_rng(4)
    n = 503
    summary = pd.DataFrame({"recency_days": rng.integers(0, 400, n), "frequency": rng.integers(1, 12, n),
                            "monetary": rng.integers(1, 5000, n) / 4.0},
                           index=pd.Index([f"C{i:05d}" for i in rng.permutation(n)], name="customer_id"))
    cfg = load_scoring_config().rfm
    everyone = score_rfm(summary, cfg)
    keys = rfm_keys(summary)
    edges = {dim: edges_of(keys[dim]) for dim in ("r", "f", "m")}
    few = summary.sample(40, random_state=1)
    pd.testing.assert_frame_equal(score_rfm(few, cfg, edges), everyone.loc[few.index])
    # equal-count bins: 503 customers give 100 or 101 per score
    assert set(everyone["r_score"].value_counts()) <= {100, 101} and set(everyone["r_score"]) == {1, 2, 3, 4, 5}
