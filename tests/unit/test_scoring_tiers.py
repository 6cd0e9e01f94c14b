"""Value tiers from CLV by quantile cut points, with deterministic ties."""

from __future__ import annotations

import numpy as np
import pandas as pd

from crm_knowledge.scoring.config import load_scoring_config
from crm_knowledge.scoring.tiers import assign_tiers

TIERS = load_scoring_config().tiers  # 0.95 / 0.80 / 0.50 / 0


def test_hundred_distinct_values() -> None:
    clv = pd.Series(np.arange(1.0, 101.0), index=[f"c{i:03d}" for i in range(100)])
    tiers = assign_tiers(clv, TIERS)
    assert tiers.value_counts().to_dict() == {"bronze": 50, "silver": 30, "gold": 15, "platinum": 5}
    assert tiers["c099"] == "platinum" and tiers["c095"] == "platinum" and tiers["c094"] == "gold"
    assert tiers["c049"] == "bronze" and tiers["c050"] == "silver"


def test_ties_share_a_tier_and_nan_is_unranked() -> None:
    clv = pd.Series([5.0, 5.0, 5.0, 5.0, np.nan], index=list("abcde"))
    tiers = assign_tiers(clv, TIERS)
    assert tiers[list("abcd")].tolist() == ["bronze"] * 4
    assert pd.isna(tiers["e"])
    # Four customers: 0, 0.25, 0.5, 0.75 of the others below -> bronze, bronze, silver, silver.
    clv = pd.Series([1.0, 2.0, 3.0, 4.0], index=list("wxyz"))
    assert assign_tiers(clv, TIERS).tolist() == ["bronze", "bronze", "silver", "silver"]


def test_row_order_does_not_matter() -> None:
    rng = np.random.default_rng(0)
    clv = pd.Series(rng.integers(0, 20, 200).astype(float), index=[f"c{i:03d}" for i in range(200)])
    a = assign_tiers(clv, TIERS)
    b = assign_tiers(clv.sample(frac=1.0, random_state=1), TIERS).loc[a.index]
    pd.testing.assert_series_equal(a, b)


def test_thresholds_of_the_fit_give_its_tiers_to_any_subset() -> None:
    """Daily scoring gives a few customers the tiers the fitted population's CLV thresholds say: the same
    tiers assign_tiers gives them within the whole population (ties included)."""
    import numpy as np
    import pandas as pd

    from crm_knowledge.scoring.config import load_scoring_config
    from crm_knowledge.scoring.tiers import assign_tiers, tier_thresholds, tiers_by_thresholds

    tiers = load_scoring_config().tiers
    rng = np.random.default_rng(9)
    clv = pd.Series(np.round(rng.gamma(2.0, 50.0, 997), 0), index=[f"C{i}" for i in range(997)])
    clv.iloc[::50] = np.nan
    everyone = assign_tiers(clv, tiers)
    thresholds = tier_thresholds(clv, tiers)
    few = clv.sample(120, random_state=2)
    assert tiers_by_thresholds(few, tiers, thresholds).equals(everyone.loc[few.index])
    assert everyone.value_counts().to_dict()["platinum"] < everyone.value_counts().to_dict()["bronze"]
