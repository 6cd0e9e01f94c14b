"""Value tiers (platinum / gold / silver / bronze) from predicted CLV.

Tiers are relative -- cut points are quantiles of the current base -- so they keep their meaning (and the
budget they imply) as the currency or the business size changes. A customer's position is the share of
customers with a *strictly lower* CLV, so customers with equal CLV always share a tier (ties resolve
downwards: a tier is earned by beating the required share) and the result does not depend on row order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from crm_knowledge.scoring.config import Tier


def tier_thresholds(clv: pd.Series, tiers: Sequence[Tier]) -> list[float | None]:
    """Per tier above the floor (highest first), the CLV a customer must exceed to reach it, from the
    population `clv`: a tier needs at least ``ceil(min_quantile * n)`` customers strictly below, i.e. a CLV
    above the value of that rank (None: every customer qualifies). Stored with the fitted CLV model, so
    applying it to a few customers gives the tiers of the whole population it was fitted on."""
    known = np.sort(clv.dropna().astype(float).to_numpy())
    n = len(known)
    out: list[float | None] = []
    for tier in tiers[:-1]:
        needed = math.ceil((tier.min_quantile - 1e-12) * n)
        out.append(float(known[needed - 1]) if needed >= 1 and n else None)
    return out


def tiers_by_thresholds(clv: pd.Series, tiers: Sequence[Tier], thresholds: Sequence[float | None]) -> pd.Series:
    """Tier name per customer from :func:`tier_thresholds`; NaN CLV gives a missing tier."""
    out = pd.Series(pd.NA, index=clv.index, dtype="string", name="value_tier")
    known = clv.dropna().astype(float)
    if known.empty:
        return out
    names = np.full(len(known), tiers[-1].name, dtype=object)
    values = known.to_numpy()
    for tier, threshold in reversed(list(zip(tiers[:-1], thresholds, strict=True))):  # higher tiers overwrite
        names[values > threshold if threshold is not None else np.ones(len(values), dtype=bool)] = tier.name
    out.loc[known.index] = names
    return out


def assign_tiers(clv: pd.Series, tiers: Sequence[Tier]) -> pd.Series:
    """Tier name per customer; NaN CLV gives a missing tier (the customer is not ranked).

    ``tiers`` run from highest to lowest with strictly decreasing ``min_quantile``, the last one 0 (as the
    config loader guarantees). With 100 distinct values and cut points 0.95/0.80/0.50/0: top 5 platinum,
    next 15 gold, next 30 silver, bottom 50 bronze.
    """
    return tiers_by_thresholds(clv, tiers, tier_thresholds(clv, tiers))
