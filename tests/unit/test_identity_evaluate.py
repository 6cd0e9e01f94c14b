"""Pairwise evaluation metrics on a hand-made clustering."""

from __future__ import annotations

import pandas as pd
import pytest

from crm_knowledge.identity.evaluate import evaluate, format_report


def _frame(rows, col):
    return pd.DataFrame([("s", r, v) for r, v in rows], columns=["source_system", "source_record_id", col])


def test_metrics_by_hand():
    truth = _frame([("1", "P1"), ("2", "P1"), ("3", "P1"), ("4", "P2"), ("5", "P2"), ("6", "P3"), ("7", "P3")],
                   "person_id")
    clusters = _frame([("1", "C1"), ("2", "C1"), ("3", "C2"), ("4", "C2"), ("5", "C2"), ("6", "C3")], "customer_id")
    # true pairs: P1 3 + P2 1 + P3 1 = 5; predicted: C1 1 + C2 3 = 4 (record 7 unresolved, a singleton)
    # true positives: (1,2) and (4,5) = 2
    m = evaluate(clusters, truth)
    assert (m["true_pairs"], m["predicted_pairs"], m["true_positive_pairs"]) == (5, 4, 2)
    assert m["precision"] == pytest.approx(0.5)
    assert m["recall"] == pytest.approx(0.4)
    assert m["f1"] == pytest.approx(2 * 0.5 * 0.4 / 0.9)
    assert m["persons_split"] == 2           # P1 over C1/C2, P3 over C3/unresolved
    assert m["customers_merging_persons"] == 1   # C2 holds P1 and P2
    assert m["unresolved_records"] == 1

    m2 = evaluate(clusters, truth, unresolved_as_singletons=False)
    assert (m2["true_pairs"], m2["recall"]) == (4, pytest.approx(0.5))
    assert m2["persons_split"] == 1

    text = format_report(m)
    assert "precision" in text and "0.5000" in text and "0.4000" in text


def test_perfect_clustering():
    truth = _frame([("1", "P1"), ("2", "P1"), ("3", "P2")], "person_id")
    m = evaluate(_frame([("1", "A"), ("2", "A"), ("3", "B")], "customer_id"), truth)
    assert (m["precision"], m["recall"], m["f1"]) == (1.0, 1.0, 1.0)
    assert m["persons_split"] == m["customers_merging_persons"] == 0
