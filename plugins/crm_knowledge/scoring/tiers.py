"""Value tiers (platinum / gold / silver / bronze) from predicted CLV.

Tiers are relative -- cut points are quantiles of the current base -- so they keep their meaning (and the
budget they imply) as the currency or the business size changes. A customer's position is the share of
customers with a *strictly lower* CLV, so customers with equal CLV always share a tier (ties resolve
downwards: a tier is earned by beating the required share) and the result does not depend on row order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from crm_knowledge.scoring.config import Tier


def assign_tiers(clv: pd.Series, tiers: Sequence[Tier]) -> pd.Series:
    """Tier name per customer; NaN CLV gives a missing tier (the customer is not ranked).

    ``tiers`` run from highest to lowest with strictly decreasing ``min_quantile``, the last one 0 (as the
    config loader guarantees). With 100 distinct values and cut points 0.95/0.80/0.50/0: top 5 platinum,
    next 15 gold, next 30 silver, bottom 50 bronze.
    """
    known = clv.dropna().astype(float)
    out = pd.Series(pd.NA, index=clv.index, dtype="string", name="value_tier")
    if known.empty:
        return out
    below_share = (known.rank(method="min") - 1) / len(known)
    names = np.full(len(known), tiers[-1].name, dtype=object)
    for tier in reversed(tiers[:-1]):  # ascending cut points; a higher tier overwrites a lower one
        names[(below_share >= tier.min_quantile - 1e-12).to_numpy()] = tier.name
    out.loc[known.index] = names
    return out
