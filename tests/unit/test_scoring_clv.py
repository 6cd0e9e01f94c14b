"""BG/NBD and Gamma-Gamma: formulas checked independently, fits recover simulated parameters."""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, special

from crm_knowledge.scoring.clv import (
    FittedCLV,
    backtest,
    bgnbd_expected_purchases,
    bgnbd_log_likelihood,
    bgnbd_p_alive,
    fit_bgnbd,
    fit_clv,
    fit_gamma_gamma,
    gamma_gamma_expected_spend,
    score_clv,
)

# Fader, Hardie & Lee (2005), CDNOW sample, weeks.
CDNOW = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
R, ALPHA, A, B = CDNOW.values()


def _hyp2f1_series(a: float, b: float, c: float, z: float, terms: int = 2000) -> float:
    """Gauss hypergeometric function by its power series (|z| < 1), written out independently of scipy."""
    total, term = 1.0, 1.0
    for j in range(terms):
        term *= (a + j) * (b + j) / ((c + j) * (j + 1)) * z
        total += term
        if abs(term) < 1e-15 * abs(total):
            break
    return total


def _expected_by_hand(t: float, x: int, t_x: float, T: float) -> float:
    """FHL (2005) eq. 10 typed in again from the paper, with the series above for 2F1."""
    hyp = _hyp2f1_series(R + x, B + x, A + B + x - 1, t / (ALPHA + T + t))
    num = (A + B + x - 1) / (A - 1) * (1 - ((ALPHA + T) / (ALPHA + T + t)) ** (R + x) * hyp)
    den = 1 + (x > 0) * A / (B + x - 1) * ((ALPHA + T) / (ALPHA + t_x)) ** (R + x)
    return num / den


def _individual_integrals(x: int, t_x: float, T: float) -> tuple[float, float]:
    """(likelihood, P(alive) numerator) by integrating the individual-level model over the Gamma(r, alpha)
    and Beta(a, b) mixing distributions -- no closed-form algebra shared with the code under test."""

    def mixing(lam: float, p: float) -> float:
        g = ALPHA**R * lam ** (R - 1) * math.exp(-ALPHA * lam) / math.gamma(R)
        return g * p ** (A - 1) * (1 - p) ** (B - 1) / special.beta(A, B)

    def alive(p: float, lam: float) -> float:
        return (1 - p) ** x * lam**x * math.exp(-lam * T) * mixing(lam, p)

    def dead(p: float, lam: float) -> float:
        return p * (1 - p) ** (x - 1) * lam**x * math.exp(-lam * t_x) * mixing(lam, p)

    opts = {"epsabs": 1e-13, "epsrel": 1e-9}
    i_alive = integrate.dblquad(alive, 0, np.inf, 0, 1, **opts)[0]
    i_dead = integrate.dblquad(dead, 0, np.inf, 0, 1, **opts)[0]
    return i_alive + i_dead, i_alive


def test_cdnow_published_example() -> None:
    # FHL (2005) section 5: x=2, t_x=30.43, T=38.86 -> 1.226 expected purchases in the next 39 weeks.
    assert bgnbd_expected_purchases(R, ALPHA, A, B, 39, 2, 30.43, 38.86) == pytest.approx(1.226, abs=5e-4)


@pytest.mark.parametrize(("x", "t_x", "T"), [(2, 30.43, 38.86), (0, 0.0, 38.86), (7, 35.0, 38.0), (1, 2.0, 30.0)])
def test_cdnow_expected_purchases_match_formula(x: int, t_x: float, T: float) -> None:
    for t in (1.0, 39.0, 78.0):
        got = float(bgnbd_expected_purchases(R, ALPHA, A, B, t, x, t_x, T))
        assert got == pytest.approx(_expected_by_hand(t, x, t_x, T), rel=1e-9)


@pytest.mark.parametrize(("x", "t_x", "T"), [(2, 30.43, 38.86), (1, 2.0, 30.0), (4, 10.0, 38.0)])
def test_cdnow_likelihood_and_p_alive_match_integration(x: int, t_x: float, T: float) -> None:
    likelihood, alive_part = _individual_integrals(x, t_x, T)
    ll = float(bgnbd_log_likelihood(R, ALPHA, A, B, np.array([x]), np.array([t_x]), np.array([T]))[0])
    assert ll == pytest.approx(math.log(likelihood), rel=1e-6)
    assert float(bgnbd_p_alive(R, ALPHA, A, B, x, t_x, T)) == pytest.approx(alive_part / likelihood, rel=1e-6)


def test_cdnow_zero_repeat_customer() -> None:
    # x = 0: the likelihood is P(no purchase in (0, T]) of an NBD, (alpha/(alpha+T))^r, and p_alive is 1.
    ll = bgnbd_log_likelihood(R, ALPHA, A, B, np.array([0]), np.array([0.0]), np.array([38.86]))[0]
    assert ll == pytest.approx(R * math.log(ALPHA / (ALPHA + 38.86)), rel=1e-12)
    assert bgnbd_p_alive(R, ALPHA, A, B, 0, 0.0, 38.86) == 1.0


def _simulate_bgnbd(r: float, alpha: float, a: float, b: float, n: int, seed: int):
    """Draw (x, t_x, T) from the BG/NBD story: buy at rate lambda, drop out after each repeat with prob p."""
    rng = np.random.default_rng(seed)
    lam, p = rng.gamma(r, 1 / alpha, n), rng.beta(a, b, n)
    T = rng.uniform(26.0, 52.0, n)
    x, t_x, t = np.zeros(n), np.zeros(n), np.zeros(n)
    alive = np.ones(n, dtype=bool)
    while alive.any():
        idx = np.flatnonzero(alive)
        t[idx] += rng.exponential(1 / lam[idx])
        beyond = t[idx] > T[idx]
        alive[idx[beyond]] = False
        buy = idx[~beyond]
        x[buy] += 1
        t_x[buy] = t[buy]
        alive[buy[rng.random(len(buy)) < p[buy]]] = False
    return x, t_x, T


def test_bgnbd_fit_recovers_simulated_parameters() -> None:
    truth = {"r": 0.8, "alpha": 4.0, "a": 0.6, "b": 2.5}
    x, t_x, T = _simulate_bgnbd(*truth.values(), n=3000, seed=0)
    fit = fit_bgnbd(x, t_x, T)
    assert fit.converged
    assert fit.params["r"] == pytest.approx(truth["r"], rel=0.10)
    assert fit.params["alpha"] == pytest.approx(truth["alpha"], rel=0.10)
    # Dropout parameters are less precisely identified from 3000 customers.
    assert fit.params["a"] == pytest.approx(truth["a"], rel=0.25)
    assert fit.params["b"] == pytest.approx(truth["b"], rel=0.25)
    # The MLE beats the true parameters on the data it was fitted to.
    assert fit.log_likelihood >= bgnbd_log_likelihood(*truth.values(), x, t_x, T).sum()


def test_gamma_gamma_fit_recovers_simulated_parameters() -> None:
    p, q, v, n = 2.0, 4.0, 15.0, 5000
    rng = np.random.default_rng(0)
    nu = rng.gamma(q, 1 / v, n)  # customer-level scale of spend
    x = rng.integers(1, 11, n)
    mean_value = rng.gamma(p * x, 1 / nu) / x  # mean of x Gamma(p, nu) transaction values
    fit = fit_gamma_gamma(x, mean_value)
    assert fit.converged
    assert fit.params["p"] == pytest.approx(p, rel=0.15)
    assert fit.params["q"] == pytest.approx(q, rel=0.15)
    assert fit.params["v"] == pytest.approx(v, rel=0.15)
    # Population mean spend p v / (q - 1) is pinned down much better than the parameters themselves.
    fp, fq, fv = fit.params.values()
    assert fp * fv / (fq - 1) == pytest.approx(p * v / (q - 1), rel=0.05)


def test_expected_spend_shrinks_towards_population_mean() -> None:
    p, q, v = 6.25, 3.74, 15.44  # Fader & Hardie (2013) CDNOW values
    population = p * v / (q - 1)
    assert gamma_gamma_expected_spend(p, q, v, 0, np.nan) == pytest.approx(population)
    one, many = gamma_gamma_expected_spend(p, q, v, np.array([1, 50]), np.array([100.0, 100.0]))
    assert population < one < many < 100.0


def _orders_from_bgnbd(n: int, seed: int) -> pd.DataFrame:
    """Orders (one per purchase day) of customers joining in the first 26 weeks of 2024 and following the
    BG/NBD story for 78 weeks."""
    rng = np.random.default_rng(seed)
    lam, p = rng.gamma(0.8, 1 / 4.0, n), rng.beta(0.6, 2.5, n)
    nu = rng.gamma(4.0, 1 / 15.0, n)
    start = pd.Timestamp("2024-01-01", tz="UTC")
    rows = []
    for i in range(n):
        t = rng.uniform(0, 26.0)
        k = 0
        while t < 78.0:
            rows.append((f"c{i:05d}", f"o{i}_{k}", start + pd.Timedelta(weeks=float(t)), rng.gamma(2.0, 1 / nu[i])))
            k += 1
            if k > 1 and rng.random() < p[i]:
                break
            t += rng.exponential(1 / lam[i])
    return pd.DataFrame(rows, columns=["customer_id", "order_id", "ordered_at", "amount"])


def test_backtest_totals_and_clv() -> None:
    orders = _orders_from_bgnbd(2000, seed=4)
    calibration_end, holdout_end = dt.date(2024, 12, 29), dt.date(2025, 6, 29)
    result = backtest(orders, calibration_end, holdout_end)
    assert result.holdout_weeks == pytest.approx(26.0)
    assert result.total_predicted == pytest.approx(result.total_actual, rel=0.15)
    assert result.mae < result.per_customer["actual"].mean() + 1.0
    assert len(result.by_calibration_frequency()) >= 5

    summary = customer_summary_for(orders, calibration_end)
    fitted = result.fitted
    # Without discounting the weekly increments telescope to E[Y(H)] x expected spend.
    undiscounted = fitted.clv(summary, 26, 0.0)
    direct = fitted.expected_purchases(26.0, summary["x"], summary["t_x"], summary["T"]) * fitted.expected_spend(
        summary["x"], summary["mean_repeat_value"]
    )
    np.testing.assert_allclose(undiscounted.to_numpy(), direct, rtol=1e-10)
    discounted = fitted.clv(summary, 26, 0.10)
    assert (discounted < undiscounted).all() and (discounted > 0.95 * undiscounted).all()
    scores = score_clv(summary, fitted, 52, 0.1)
    assert scores["p_alive"].between(0, 1).all() and (scores["clv"] >= 0).all()


def customer_summary_for(orders: pd.DataFrame, as_of: dt.date) -> pd.DataFrame:
    from crm_knowledge.scoring.features import customer_summary

    return customer_summary(orders, as_of)


def test_fitted_json_round_trip_and_reproducible() -> None:
    orders = _orders_from_bgnbd(500, seed=5)
    as_of = dt.date(2024, 12, 29)
    a = fit_clv(customer_summary_for(orders, as_of), as_of)
    b = fit_clv(customer_summary_for(orders.sample(frac=1.0, random_state=2), as_of), as_of)
    assert a.to_json() == b.to_json()
    data = json.loads(a.to_json())
    assert data["time_unit"] == "weeks" and data["as_of"] == "2024-12-29"
    assert set(data["params"]) == {"r", "alpha", "a", "b", "p", "q", "v"}
    assert FittedCLV.from_json(a.to_json()) == a


def test_heavy_tailed_spend_falls_back_to_credibility_mean():
    """q <= 1 (no finite population mean spend) must still give finite, ordered CLVs."""
    import numpy as np
    import pandas as pd

    from crm_knowledge.scoring.clv import FittedCLV

    fitted = FittedCLV(params={"r": 0.25, "alpha": 4.4, "a": 0.8, "b": 2.4, "p": 2.0, "q": 0.7, "v": 10.0},
                       extra={"population_median_spend": 100.0})
    assert fitted.spend_model == "credibility_mean"
    spend = fitted.expected_spend(np.array([0.0, 1.0, 3.0]), np.array([np.nan, 300.0, 300.0]))
    assert spend.tolist() == [100.0, 200.0, 250.0]  # (x*m + 100) / (x + 1)
    summary = pd.DataFrame({"x": [0.0, 3.0], "t_x": [0.0, 20.0], "T": [30.0, 30.0],
                            "mean_repeat_value": [np.nan, 300.0]})
    clv = fitted.clv(summary, 52, 0.1)
    assert np.isfinite(clv).all() and clv.iloc[1] > clv.iloc[0] > 0
