"""customer_summary on hand-made orders with answers worked out by hand."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from crm_knowledge.scoring.features import customer_summary

AS_OF = dt.date(2024, 3, 1)


def _orders() -> pd.DataFrame:
    rows = [
        ("A", "a1", "2024-01-01T09:00:00Z", 100.0),
        ("A", "a2", "2024-01-01T18:00:00Z", 50.0),  # same day as a1: one purchase occasion
        ("A", "a3", "2024-01-15T10:00:00Z", 30.0),
        ("A", "a4", "2024-02-12T10:00:00Z", 70.0),
        ("B", "b1", "2024-03-01T23:59:59Z", 20.0),  # last second of as_of: known
        ("B", "b2", "2024-03-02T02:00:00+03:30", 10.0),  # = 2024-03-01 22:30 UTC: known
        ("B", "b3", "2024-03-02T00:00:00Z", 999.0),  # the day after as_of: not known
        ("C", "c1", "2024-03-05T00:00:00Z", 5.0),  # only future orders: not a customer yet
    ]
    frame = pd.DataFrame(rows, columns=["customer_id", "order_id", "ordered_at", "amount"])
    frame["ordered_at"] = pd.to_datetime(frame["ordered_at"], utc=True, format="ISO8601")
    return frame


def test_summary_known_answers() -> None:
    s = customer_summary(_orders(), AS_OF)
    assert list(s.index) == ["A", "B"]
    a = s.loc["A"]
    assert a["frequency"] == 4
    assert a["monetary"] == pytest.approx(250.0)
    assert a["avg_order_value"] == pytest.approx(62.5)
    assert a["recency_days"] == 18  # 2024-02-12 -> 2024-03-01 (leap year)
    assert a["tenure_days"] == 60
    assert a["x"] == 2  # three purchase days
    assert a["t_x"] == pytest.approx(42 / 7)
    assert a["T"] == pytest.approx(60 / 7)
    assert a["mean_repeat_value"] == pytest.approx(50.0)  # (30 + 70) / 2; first day excluded
    assert a["first_order_at"] == pd.Timestamp("2024-01-01T09:00:00Z")

    b = s.loc["B"]
    assert b["frequency"] == 2 and b["monetary"] == pytest.approx(30.0)
    assert b["recency_days"] == 0 and b["x"] == 0 and b["T"] == 0
    assert np.isnan(b["mean_repeat_value"])


def test_summary_ignores_row_order_and_datetime_as_of() -> None:
    orders = _orders()
    a = customer_summary(orders, AS_OF)
    b = customer_summary(orders.sample(frac=1.0, random_state=3), dt.datetime(2024, 3, 1, 5, 0))
    pd.testing.assert_frame_equal(a, b)


def test_naive_timestamps_are_refused() -> None:
    orders = _orders()
    orders["ordered_at"] = orders["ordered_at"].dt.tz_localize(None)
    with pytest.raises(ValueError, match="tz-aware"):
        customer_summary(orders, AS_OF)


def test_empty_before_first_order() -> None:
    s = customer_summary(_orders(), dt.date(2023, 12, 31))
    assert s.empty and "recency_days" in s.columns
