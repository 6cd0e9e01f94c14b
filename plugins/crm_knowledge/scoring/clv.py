"""Customer lifetime value: BG/NBD purchase model plus Gamma-Gamma spend model.

BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way") models repeat purchases of a
non-contractual customer: while alive a customer buys at rate lambda ~ Gamma(r, alpha); after each repeat
purchase they drop out with probability p ~ Beta(a, b). Gamma-Gamma (Fader & Hardie 2013, "The Gamma-Gamma
model of monetary value") models the mean spend per repeat purchase: values ~ Gamma(p, nu), nu ~ Gamma(q, v).

Both are implemented here rather than taken from ``lifetimes`` (unmaintained, not installable with current
numpy/pandas). Time is measured in **weeks** throughout (see ``features.TIME_UNIT``): fitted parameters carry
that unit, and ``alpha`` is meaningless without it, so it is stored alongside them.

Fitting is maximum likelihood on log-parameters (positivity without constraints) with L-BFGS-B from a fixed
start, so the same data always gives the same parameters.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1

from crm_knowledge.scoring.features import (
    DAYS_PER_UNIT,
    TIME_UNIT,
    as_date,
    customer_summary,
    orders_as_of,
    purchase_days,
)

_LOG_BOUNDS = (-12.0, 12.0)  # keeps exp(log-param) finite; real fits sit far inside


# --- BG/NBD ----------------------------------------------------------------------------------------------------


def bgnbd_log_likelihood(
    r: float, alpha: float, a: float, b: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
) -> np.ndarray:
    """Per-customer BG/NBD log-likelihood (FHL 2005, eq. 6), computed in log space for stability.

    L = B(a, b+x)/B(a, b) * G(r+x) alpha^r / (G(r) (alpha+T)^(r+x))
        + [x > 0] B(a+1, b+x-1)/B(a, b) * G(r+x) alpha^r / (G(r) (alpha+t_x)^(r+x))
    """
    x = np.asarray(x, dtype=float)
    t_x = np.asarray(t_x, dtype=float)
    T = np.asarray(T, dtype=float)
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha) - betaln(a, b)
    alive_term = betaln(a, b + x) - (r + x) * np.log(alpha + T)
    has_repeat = x > 0
    # betaln(a+1, b+x-1) is undefined for x == 0; substitute x=1 there and mask the term out.
    x_safe = np.where(has_repeat, x, 1.0)
    dead_term = betaln(a + 1, b + x_safe - 1) - (r + x) * np.log(alpha + t_x)
    dead_term = np.where(has_repeat, dead_term, -np.inf)
    return common + np.logaddexp(alive_term, dead_term)


def _death_odds(
    r: float, alpha: float, a: float, b: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
) -> np.ndarray:
    """[x > 0] * a/(b+x-1) * ((alpha+T)/(alpha+t_x))^(r+x): the odds of "dropped out" versus "alive"."""
    x = np.asarray(x, dtype=float)
    has_repeat = x > 0
    x_safe = np.where(has_repeat, x, 1.0)
    log_odds = np.log(a) - np.log(b + x_safe - 1) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
    return np.where(has_repeat, np.exp(np.minimum(log_odds, 700.0)), 0.0)


def bgnbd_p_alive(r: float, alpha: float, a: float, b: float, x, t_x, T) -> np.ndarray:
    """P(customer still alive at T | x, t_x, T) (FHL 2005, eq. 11). Always 1 for x == 0 by the model."""
    return 1.0 / (1.0 + _death_odds(r, alpha, a, b, x, t_x, T))


def bgnbd_expected_purchases(r: float, alpha: float, a: float, b: float, t, x, t_x, T) -> np.ndarray:
    """E[purchases in (T, T+t] | x, t_x, T] (FHL 2005, eq. 10); ``t`` in the same unit as T (weeks)."""
    x = np.asarray(x, dtype=float)
    t = np.asarray(t, dtype=float)
    T = np.asarray(T, dtype=float)
    z = t / (alpha + T + t)
    hyp = hyp2f1(r + x, b + x, a + b + x - 1, z)
    numer = (a + b + x - 1) / (a - 1) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp)
    return numer / (1.0 + _death_odds(r, alpha, a, b, x, t_x, T))


def bgnbd_unconditional_expected(r: float, alpha: float, a: float, b: float, t) -> np.ndarray:
    """E[X(t)]: expected repeat purchases of a new customer in t weeks (FHL 2005, eq. 9)."""
    t = np.asarray(t, dtype=float)
    hyp = hyp2f1(r, b, a + b - 1, t / (alpha + t))
    return (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + t)) ** r * hyp)


@dataclass(frozen=True)
class FitResult:
    params: dict[str, float]
    log_likelihood: float
    converged: bool
    n: int


def _fit(neg_ll, names: list[str], start: np.ndarray, n: int) -> FitResult:
    result = minimize(neg_ll, start, method="L-BFGS-B", bounds=[_LOG_BOUNDS] * len(start))
    params = dict(zip(names, (float(v) for v in np.exp(result.x)), strict=True))
    return FitResult(params=params, log_likelihood=float(-result.fun * n), converged=bool(result.success), n=n)


def fit_bgnbd(x, t_x, T) -> FitResult:
    """Maximum-likelihood BG/NBD fit. Minimises the *mean* negative log-likelihood so the optimiser's
    tolerances do not depend on the number of customers; start at all parameters = 1."""
    x = np.asarray(x, dtype=float)
    t_x = np.asarray(t_x, dtype=float)
    T = np.asarray(T, dtype=float)
    if len(x) == 0:
        raise ValueError("cannot fit BG/NBD on zero customers")

    def neg_ll(log_params: np.ndarray) -> float:
        r, alpha, a, b = np.exp(log_params)
        value = -np.mean(bgnbd_log_likelihood(r, alpha, a, b, x, t_x, T))
        return float(value) if np.isfinite(value) else 1e300

    return _fit(neg_ll, ["r", "alpha", "a", "b"], np.zeros(4), len(x))


# --- Gamma-Gamma -----------------------------------------------------------------------------------------------


def gamma_gamma_log_likelihood(p: float, q: float, v: float, x, mean_value) -> np.ndarray:
    """Per-customer log density of the observed mean spend ``mean_value`` over ``x`` > 0 purchases
    (Fader & Hardie 2013): G(px+q)/(G(px)G(q)) v^q mbar^(px-1) x^(px) / (v + x mbar)^(px+q)."""
    x = np.asarray(x, dtype=float)
    m = np.asarray(mean_value, dtype=float)
    return (
        gammaln(p * x + q)
        - gammaln(p * x)
        - gammaln(q)
        + q * np.log(v)
        + (p * x - 1) * np.log(m)
        + p * x * np.log(x)
        - (p * x + q) * np.log(v + x * m)
    )


def fit_gamma_gamma(x, mean_value) -> FitResult:
    """Maximum-likelihood Gamma-Gamma fit on customers with at least one repeat purchase (x > 0)."""
    x = np.asarray(x, dtype=float)
    m = np.asarray(mean_value, dtype=float)
    keep = (x > 0) & np.isfinite(m) & (m > 0)
    x, m = x[keep], m[keep]
    if len(x) == 0:
        raise ValueError("cannot fit Gamma-Gamma: no customer has a repeat purchase")
    # Start near the data's scale (v ~ mean spend) so the optimiser does not wander at extreme ratios.
    start = np.log(np.array([1.0, 2.0, float(np.mean(m))]))

    def neg_ll(log_params: np.ndarray) -> float:
        p, q, v = np.exp(log_params)
        value = -np.mean(gamma_gamma_log_likelihood(p, q, v, x, m))
        return float(value) if np.isfinite(value) else 1e300

    return _fit(neg_ll, ["p", "q", "v"], start, len(x))


def gamma_gamma_expected_spend(p: float, q: float, v: float, x, mean_value) -> np.ndarray:
    """E[mean spend | x, mbar] = p (v + x mbar) / (p x + q - 1): a credibility-weighted blend of the
    population mean p v / (q - 1) and the customer's own mean; x == 0 (or missing mbar) gives the population
    mean. Requires q > 1 (otherwise the population mean is infinite)."""
    if q <= 1:
        raise ValueError(f"Gamma-Gamma q must be > 1 for a finite expected spend, got {q}")
    x = np.asarray(x, dtype=float)
    m = np.nan_to_num(np.asarray(mean_value, dtype=float), nan=0.0)
    x_m = np.where(x > 0, x * m, 0.0)
    return p * (v + x_m) / (p * x + q - 1)


# --- fitted model ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FittedCLV:
    """Fitted BG/NBD + Gamma-Gamma parameters with their time unit and fit diagnostics.

    ``params`` holds r, alpha, a, b (BG/NBD) and p, q, v (Gamma-Gamma). ``frequency_spend_corr`` is the
    Pearson correlation of x and mean repeat spend among repeat customers: Gamma-Gamma assumes the two are
    independent, so a large value (say |corr| > 0.3) is a warning that CLV is biased.
    """

    params: dict[str, float]
    time_unit: str = TIME_UNIT
    as_of: str | None = None
    n_customers: int = 0
    n_repeat_customers: int = 0
    log_likelihood_bgnbd: float = float("nan")
    log_likelihood_gamma_gamma: float = float("nan")
    converged: bool = True
    frequency_spend_corr: float = float("nan")
    extra: dict[str, float] = field(default_factory=dict)

    def _bg(self) -> tuple[float, float, float, float]:
        return self.params["r"], self.params["alpha"], self.params["a"], self.params["b"]

    def expected_purchases(self, t, x, t_x, T) -> np.ndarray:
        """Expected repeat purchases in the next ``t`` weeks."""
        return bgnbd_expected_purchases(*self._bg(), t, x, t_x, T)

    def p_alive(self, x, t_x, T) -> np.ndarray:
        return bgnbd_p_alive(*self._bg(), x, t_x, T)

    @property
    def spend_model(self) -> str:
        """`gamma_gamma`, or `credibility_mean` when the Gamma-Gamma fit has no finite mean (q <= 1).

        Heavy-tailed spend across customers drives q below 1; rather than publish no CLV at all, spend
        is then each customer's own mean repeat value blended with the population median by the same
        credibility form Gamma-Gamma uses, (x * mbar + k * median) / (x + k), with k = 1.
        """
        return "gamma_gamma" if self.params.get("q", 0.0) > 1 else "credibility_mean"

    def expected_spend(self, x, mean_value) -> np.ndarray:
        if self.spend_model == "gamma_gamma":
            return gamma_gamma_expected_spend(self.params["p"], self.params["q"], self.params["v"], x, mean_value)
        x = np.asarray(x, dtype=float)
        m = np.nan_to_num(np.asarray(mean_value, dtype=float), nan=0.0)
        population = self.extra.get("population_median_spend", float("nan"))
        return (np.where(x > 0, x * m, 0.0) + population) / (x + 1.0)

    def clv(self, summary: pd.DataFrame, horizon_weeks: int, annual_discount_rate: float) -> pd.Series:
        """Discounted expected value over ``horizon_weeks``, per customer of ``summary``.

        CLV = sum_{w=1..H} (E[Y(w)] - E[Y(w-1)]) * E[spend] / (1 + d)^(w/52), d the annual rate: each week's
        incremental expected purchases, valued at the expected spend, discounted to today at week end.
        """
        x = summary["x"].to_numpy(dtype=float)
        t_x = summary["t_x"].to_numpy(dtype=float)
        T = summary["T"].to_numpy(dtype=float)
        weeks = np.arange(0, horizon_weeks + 1, dtype=float)
        cumulative = np.column_stack([self.expected_purchases(w, x, t_x, T) for w in weeks])
        incremental = np.diff(cumulative, axis=1)
        discount = (1.0 + annual_discount_rate) ** (-weeks[1:] / 52.0)
        spend = self.expected_spend(x, summary["mean_repeat_value"].to_numpy(dtype=float))
        value = incremental @ discount * spend
        return pd.Series(value, index=summary.index, name="clv")

    def to_json(self) -> str:
        """Strict JSON (NaN written as null, since PostgreSQL jsonb rejects NaN), keys sorted."""
        data = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in asdict(self).items()}
        return json.dumps(data, sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> FittedCLV:
        data = json.loads(text)
        if data.get("time_unit") != TIME_UNIT:
            raise ValueError(f"fitted CLV is in {data.get('time_unit')!r}, this code works in {TIME_UNIT!r}")
        for key in ("log_likelihood_bgnbd", "log_likelihood_gamma_gamma", "frequency_spend_corr"):
            if data.get(key) is None:
                data[key] = float("nan")
        return cls(**data)


def fit_clv(summary: pd.DataFrame, as_of: dt.date | None = None) -> FittedCLV:
    """Fit BG/NBD on all customers and Gamma-Gamma on repeat customers of a :func:`customer_summary`."""
    bg = fit_bgnbd(summary["x"], summary["t_x"], summary["T"])
    repeat = summary.loc[(summary["x"] > 0) & summary["mean_repeat_value"].notna()]
    gg = fit_gamma_gamma(repeat["x"], repeat["mean_repeat_value"])
    corr = float(repeat["x"].corr(repeat["mean_repeat_value"])) if len(repeat) > 2 else float("nan")
    return FittedCLV(
        params={**bg.params, **gg.params},
        as_of=as_date(as_of).isoformat() if as_of is not None else None,
        n_customers=bg.n,
        n_repeat_customers=gg.n,
        log_likelihood_bgnbd=bg.log_likelihood,
        log_likelihood_gamma_gamma=gg.log_likelihood,
        converged=bg.converged and gg.converged,
        frequency_spend_corr=corr,
        extra={"population_median_spend": float(repeat["mean_repeat_value"].median())},
    )


def score_clv(
    summary: pd.DataFrame, fitted: FittedCLV, horizon_weeks: int, annual_discount_rate: float
) -> pd.DataFrame:
    """Per-customer p_alive, expected purchases over the horizon, expected spend and discounted CLV."""
    x, t_x, T = (summary[c].to_numpy(dtype=float) for c in ("x", "t_x", "T"))
    return pd.DataFrame(
        {
            "p_alive": fitted.p_alive(x, t_x, T),
            "expected_purchases": fitted.expected_purchases(float(horizon_weeks), x, t_x, T),
            "expected_spend": fitted.expected_spend(x, summary["mean_repeat_value"].to_numpy(dtype=float)),
            "clv": fitted.clv(summary, horizon_weeks, annual_discount_rate).to_numpy(),
        },
        index=summary.index,
    )


# --- backtest --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BacktestResult:
    """Predicted versus actual repeat purchases (distinct purchase days) in a holdout window."""

    fitted: FittedCLV
    holdout_weeks: float
    per_customer: pd.DataFrame  # predicted, actual, x (calibration)
    mae: float
    total_predicted: float
    total_actual: float

    def by_calibration_frequency(self, cap: int = 7) -> pd.DataFrame:
        """Mean predicted and actual holdout purchases grouped by calibration x (capped), the classic check."""
        group = self.per_customer["x"].clip(upper=cap)
        return self.per_customer.groupby(group)[["predicted", "actual"]].mean()


def backtest(orders: pd.DataFrame, calibration_end: dt.date, holdout_end: dt.date) -> BacktestResult:
    """Fit on orders up to ``calibration_end``; compare predictions for the customers known then with their
    actual purchase days in (calibration_end, holdout_end]."""
    calibration_end, holdout_end = as_date(calibration_end), as_date(holdout_end)
    if holdout_end <= calibration_end:
        raise ValueError("holdout_end must be after calibration_end")
    summary = customer_summary(orders, calibration_end)
    fitted = fit_clv(summary, calibration_end)
    holdout_weeks = (holdout_end - calibration_end).days / DAYS_PER_UNIT

    holdout_orders = orders_as_of(orders, holdout_end)
    daily = purchase_days(holdout_orders)
    in_holdout = daily["purchase_day"] > pd.Timestamp(calibration_end)
    actual = daily.loc[in_holdout].groupby("customer_id").size().reindex(summary.index, fill_value=0)

    predicted = fitted.expected_purchases(
        holdout_weeks, summary["x"].to_numpy(float), summary["t_x"].to_numpy(float), summary["T"].to_numpy(float)
    )
    per_customer = pd.DataFrame(
        {"x": summary["x"], "predicted": predicted, "actual": actual.astype(int)}, index=summary.index
    )
    return BacktestResult(
        fitted=fitted,
        holdout_weeks=holdout_weeks,
        per_customer=per_customer,
        mae=float(np.mean(np.abs(per_customer["predicted"] - per_customer["actual"]))),
        total_predicted=float(per_customer["predicted"].sum()),
        total_actual=float(per_customer["actual"].sum()),
    )
