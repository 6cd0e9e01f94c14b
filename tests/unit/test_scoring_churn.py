"""Churn model: learns a planted signal, refuses pure noise, never reads past as_of, reproducible."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest

from crm_knowledge.scoring.churn import ChurnModel, ModelBelowFloor, labelled_snapshot
from crm_knowledge.scoring.config import ChurnConfig
from crm_knowledge.scoring.features import customer_summary

AS_OF = dt.date(2025, 12, 31)
START = pd.Timestamp("2023-01-01", tz="UTC")
HISTORY_DAYS = (pd.Timestamp(AS_OF, tz="UTC") - START).days + 1

CONFIG = ChurnConfig(
    horizon_days=90,
    training_cutoff_offsets_days=(180, 240, 300),
    evaluation_cutoff_offset_days=90,
    classifier="hist_gradient_boosting",
    calibration="isotonic",
    calibration_folds=3,
    auc_floor=0.6,
    random_state=42,
)


def _orders(n: int, seed: int, planted: bool) -> pd.DataFrame:
    """Poisson order streams. planted: customers differ in rate and stop buying at a random "death" date,
    so recency and frequency predict the next 90 days. noise: one common rate and nobody stops, so by the
    memorylessness of the Poisson process the future is independent of every feature."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        join = rng.uniform(0, HISTORY_DAYS - 100)
        if planted:
            rate = rng.gamma(2.0, 1 / 60)  # mean one order a month
            end = min(join + rng.exponential(300.0), HISTORY_DAYS)
        else:
            rate, end = np.log(2) / 90, HISTORY_DAYS  # P(no order in 90 days) = 1/2 for everyone
        t, k = join, 0
        while t < end:
            rows.append((f"c{i:05d}", f"o{i:05d}_{k}", t, float(rng.gamma(2.0, 25.0)) + 1.0))
            t += rng.exponential(1 / rate)
            k += 1
    frame = pd.DataFrame(rows, columns=["customer_id", "order_id", "day", "amount"])
    frame["ordered_at"] = START + pd.to_timedelta(frame.pop("day"), unit="D")
    return frame


@pytest.fixture(scope="module")
def planted() -> pd.DataFrame:
    return _orders(1200, seed=1, planted=True)


@pytest.fixture(scope="module")
def fitted(planted: pd.DataFrame) -> ChurnModel:
    return ChurnModel(CONFIG).fit(planted, AS_OF)


def test_labels_known_answers() -> None:
    orders = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b", "c"],
            "order_id": ["1", "2", "3", "4"],
            "ordered_at": pd.to_datetime(
                ["2025-01-01T10:00Z", "2025-03-31T23:00Z", "2024-12-20T10:00Z", "2025-02-01T00:00Z"], utc=True
            ),
            "amount": [10.0, 10.0, 10.0, 10.0],
        }
    )
    snap = labelled_snapshot(orders, dt.date(2025, 1, 1), horizon_days=89)
    # a buys again 89 days after the cut-off (inside the window), b never; c was not a customer at the cut-off.
    assert snap["churned"].to_dict() == {"a": 0, "b": 1}
    snap = labelled_snapshot(orders, dt.date(2025, 1, 1), horizon_days=88)
    assert snap.loc["a", "churned"] == 1


def test_planted_signal_is_learned(fitted: ChurnModel, planted: pd.DataFrame) -> None:
    ev = fitted.evaluation
    assert ev is not None and ev.cutoff == dt.date(2025, 10, 2)
    assert fitted.is_usable and ev.roc_auc > 0.75
    assert ev.precision_at_top_decile > ev.base_rate
    assert 0.0 < ev.brier < 0.25
    assert ev.reliability["n"].sum() == ev.n
    proba = fitted.predict_proba(customer_summary(planted, AS_OF))
    assert proba.between(0, 1).all() and proba.index.is_unique


def test_pure_noise_is_refused() -> None:
    noise = _orders(1200, seed=2, planted=False)
    model = ChurnModel(CONFIG).fit(noise, AS_OF)
    assert not model.is_usable
    with pytest.raises(ModelBelowFloor, match=r"roc_auc.*below the floor 0.6|below the floor 0.6.*roc_auc"):
        model.predict_proba(customer_summary(noise, AS_OF))
    # Diagnostics may still look at the numbers, explicitly.
    assert len(model.predict_proba(customer_summary(noise, AS_OF), allow_below_floor=True)) > 0


def test_reproducible_and_blind_to_the_future(fitted: ChurnModel, planted: pd.DataFrame) -> None:
    future = planted.copy()
    future["ordered_at"] = future["ordered_at"] + pd.Timedelta(days=400)  # shifts orders past as_of
    with_future = pd.concat([planted, future.loc[future["ordered_at"] > pd.Timestamp("2026-01-01", tz="UTC")]])
    again = ChurnModel(CONFIG).fit(with_future.sample(frac=1.0, random_state=3), AS_OF)
    assert again.evaluation is not None and fitted.evaluation is not None
    assert again.evaluation.metrics() == fitted.evaluation.metrics()
    summary = customer_summary(planted, AS_OF)
    pd.testing.assert_series_equal(fitted.predict_proba(summary), again.predict_proba(summary))


def test_logistic_regression_option(planted: pd.DataFrame) -> None:
    cfg = dataclasses.replace(CONFIG, classifier="logistic_regression", calibration="sigmoid")
    model = ChurnModel(cfg).fit(planted, AS_OF)
    assert model.is_usable


def test_training_on_a_bounded_sample_is_reproducible_and_still_learns(planted: pd.DataFrame) -> None:
    """max_training_rows caps the training snapshots (a fixed-seed sample): the same data give the same model,
    the cap holds, and the planted signal is still learned."""
    from crm_knowledge.scoring.churn import bounded_sample, training_set

    orders = planted
    model = ChurnModel(CONFIG)
    full = training_set(orders, model.training_cutoffs(AS_OF), CONFIG.horizon_days)
    cap = len(full) // 3
    sample = bounded_sample(full, cap, 42)
    assert len(sample) == cap and sample.equals(bounded_sample(full, cap, 42))
    assert set(sample["cutoff"]) == set(full["cutoff"])  # every cut-off represented
    assert bounded_sample(full, 0, 42) is full and bounded_sample(full, len(full), 42) is full

    bounded = dataclasses.replace(CONFIG, max_training_rows=cap)
    a = ChurnModel(bounded).fit(orders, AS_OF)
    b = ChurnModel(bounded).fit(orders, AS_OF)
    assert a.training_rows_available == len(full)
    assert a.is_usable and a.evaluation.roc_auc == b.evaluation.roc_auc
    summary = customer_summary(orders, AS_OF)
    assert np.array_equal(a.predict_proba(summary).to_numpy(), b.predict_proba(summary).to_numpy())
