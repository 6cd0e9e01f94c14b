"""The Welch t-interval pieces of dbt_project/macros/campaign_statistics.sql against scipy.

The macros render SQL arithmetic; rendered with numbers in place of columns it is also valid Python once
Postgres' power() is spelled pow(), so the formulas are checked without a database.
"""

from __future__ import annotations

import jinja2
import numpy as np
import pytest
from scipy import stats

from crm_knowledge.settings import PROJECT_ROOT

MACROS = PROJECT_ROOT / "dbt_project" / "macros" / "campaign_statistics.sql"


@pytest.fixture(scope="module")
def macros():
    return jinja2.Environment().from_string(MACROS.read_text(encoding="utf-8")).module


def _eval(sql: str) -> float | None:
    sql = " ".join(sql.split()).replace("power(", "pow(")
    if sql.startswith("( case when"):  # welch_df: case when <cond> then <expr> end
        cond, expr = sql[len("( case when"):-len("end )")].split(" then ", 1)
        return eval(expr) if eval(cond) else None  # noqa: S307 -- our own rendered arithmetic
    return eval(sql)  # noqa: S307


@pytest.mark.parametrize("df", [5, 8, 12, 29, 58, 100, 1000, 50_000])
def test_t_critical_matches_students_t(macros, df):
    assert _eval(macros.t_critical_975(str(df))) == pytest.approx(stats.t.ppf(0.975, df), abs=1e-3)


def test_welch_interval_matches_scipy(macros):
    rng = np.random.default_rng(16)
    treated, holdout = rng.poisson(1.4, 120), rng.poisson(0.6, 45)
    va, vb = treated.var(ddof=1), holdout.var(ddof=1)
    df = _eval(macros.welch_df(str(va), str(len(treated)), str(vb), str(len(holdout))))
    res = stats.ttest_ind(treated, holdout, equal_var=False)
    assert df == pytest.approx(res.df, rel=1e-9)
    low, high = res.confidence_interval(0.95)
    margin = _eval(macros.t_critical_975(str(df))) * np.sqrt(va / len(treated) + vb / len(holdout))
    lift = treated.mean() - holdout.mean()
    assert (lift - margin, lift + margin) == pytest.approx((low, high), abs=1e-4)


def test_welch_df_is_null_without_variance_or_sample(macros):
    assert _eval(macros.welch_df("0", "40", "0", "40")) is None
    assert _eval(macros.welch_df("1.0", "1", "1.0", "40")) is None
