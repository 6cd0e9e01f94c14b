"""Per-customer order summary: the shared input of RFM, churn and CLV.

Everything is computed "as of" a date: only orders on or before the end of that day (UTC) count, so a backfill
reproduces exactly what was knowable then. Purchases are counted per UTC calendar day for the BG/NBD inputs
(several orders on one day are one purchase occasion), the convention of Fader, Hardie & Lee, which keeps a
split basket from looking like loyal repeat behaviour.

Time unit of the BG/NBD inputs (``x``, ``t_x``, ``T``): **weeks** (days / 7), the unit of the published models.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

ORDER_COLUMNS = ("customer_id", "order_id", "ordered_at", "amount")

#: The time unit of ``t_x`` and ``T`` (and of every fitted CLV parameter derived from them).
TIME_UNIT = "weeks"
DAYS_PER_UNIT = 7.0

SUMMARY_COLUMNS = (
    "recency_days",
    "frequency",
    "monetary",
    "avg_order_value",
    "first_order_at",
    "last_order_at",
    "tenure_days",
    "x",
    "t_x",
    "T",
    "mean_repeat_value",
)


def as_date(as_of: dt.date) -> dt.date:
    """``as_of`` as a plain date: a datetime's time of day is dropped so "as of" always means the whole day."""
    return as_of.date() if isinstance(as_of, dt.datetime) else as_of


def end_of_day_utc(as_of: dt.date) -> pd.Timestamp:
    """The first instant *after* ``as_of`` in UTC; orders strictly before it are known at ``as_of``."""
    return pd.Timestamp(as_date(as_of)).tz_localize("UTC") + pd.Timedelta(days=1)


def orders_as_of(orders: pd.DataFrame, as_of: dt.date) -> pd.DataFrame:
    """Validated copy of ``orders`` restricted to orders placed on or before ``as_of`` (UTC), sorted.

    Naive timestamps are refused rather than assumed to be UTC: a wrong guess would shift orders across the
    cut-off by hours and make backfills disagree with what was known at the time.
    """
    missing = [c for c in ORDER_COLUMNS if c not in orders.columns]
    if missing:
        raise KeyError(f"orders frame lacks column(s) {missing}; expected {list(ORDER_COLUMNS)}")
    ordered_at = orders["ordered_at"]
    if not isinstance(ordered_at.dtype, pd.DatetimeTZDtype):
        raise ValueError("orders.ordered_at must be a tz-aware timestamp (UTC); got dtype " f"{ordered_at.dtype}")
    out = orders.loc[:, list(ORDER_COLUMNS)].copy()
    out["ordered_at"] = ordered_at.dt.tz_convert("UTC")
    out["customer_id"] = out["customer_id"].astype(str)
    out["amount"] = out["amount"].astype(float)
    out = out.loc[out["ordered_at"] < end_of_day_utc(as_of)]
    # Canonical row order: floating-point sums depend on summation order, and an optimiser downstream can
    # amplify a last-bit difference, so the same orders in another order must give bit-identical inputs.
    return out.sort_values(["customer_id", "ordered_at", "order_id"], kind="stable", ignore_index=True)


def purchase_days(orders: pd.DataFrame) -> pd.DataFrame:
    """One row per (customer, UTC purchase day) with the day's total amount, sorted by customer and day."""
    day = orders["ordered_at"].dt.tz_convert("UTC").dt.tz_localize(None).dt.normalize()
    daily = (
        orders.assign(purchase_day=day)
        .groupby(["customer_id", "purchase_day"], sort=True, observed=True)["amount"]
        .sum()
        .reset_index()
    )
    return daily


def _empty_summary() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype=float) for c in SUMMARY_COLUMNS})
    frame["first_order_at"] = pd.Series(dtype="datetime64[us, UTC]")
    frame["last_order_at"] = pd.Series(dtype="datetime64[us, UTC]")
    frame.index = pd.Index([], name="customer_id", dtype=str)
    return frame


def customer_summary(orders: pd.DataFrame, as_of: dt.date) -> pd.DataFrame:
    """Summarise each customer's orders known at ``as_of``; index ``customer_id``, sorted.

    Columns: ``recency_days`` (as_of minus the date of the last order), ``frequency`` (number of orders),
    ``monetary`` (total amount), ``avg_order_value``, ``first_order_at``, ``last_order_at``, ``tenure_days``
    (as_of minus the date of the first order), and the BG/NBD / Gamma-Gamma inputs in weeks:
    ``x`` = distinct purchase days - 1 (repeat purchases), ``t_x`` = weeks from first to last purchase day,
    ``T`` = weeks from first purchase day to as_of, ``mean_repeat_value`` = mean daily amount over the repeat
    purchase days (NaN when x == 0, because a customer without repeats has no observed repeat spend).
    """
    known = orders_as_of(orders, as_of)
    if known.empty:
        return _empty_summary()

    as_of_ts = pd.Timestamp(as_date(as_of))
    per_order = known.groupby("customer_id", sort=True).agg(
        frequency=("order_id", "size"),
        monetary=("amount", "sum"),
        first_order_at=("ordered_at", "min"),
        last_order_at=("ordered_at", "max"),
    )

    daily = purchase_days(known)
    grouped = daily.groupby("customer_id", sort=True)
    first_day = grouped["purchase_day"].min()
    last_day = grouped["purchase_day"].max()
    n_days = grouped.size()
    # Repeat spend: everything but the first purchase day.
    is_first = daily["purchase_day"].eq(daily["customer_id"].map(first_day))
    repeat_mean = daily.loc[~is_first].groupby("customer_id")["amount"].mean()

    summary = per_order
    summary["frequency"] = summary["frequency"].astype(int)
    summary["avg_order_value"] = summary["monetary"] / summary["frequency"]
    summary["recency_days"] = (as_of_ts - last_day).dt.days.astype(int)
    summary["tenure_days"] = (as_of_ts - first_day).dt.days.astype(int)
    summary["x"] = (n_days - 1).astype(int)
    summary["t_x"] = (last_day - first_day).dt.days / DAYS_PER_UNIT
    summary["T"] = (as_of_ts - first_day).dt.days / DAYS_PER_UNIT
    summary["mean_repeat_value"] = repeat_mean.reindex(summary.index).astype(float)
    summary.loc[summary["x"] == 0, "mean_repeat_value"] = np.nan
    summary.index = summary.index.astype(str)
    summary.index.name = "customer_id"
    return summary.loc[:, list(SUMMARY_COLUMNS)]
