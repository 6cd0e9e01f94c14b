"""What the scoring DAG's scoring step calls (``crm_knowledge.<stage>.tasks``, see identity/tasks.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from crm_knowledge.scoring.run import score_day


def score_customers(as_of: str) -> dict[str, Any]:
    """Score as of the run's day (ISO ``YYYY-MM-DD``; only data on or before it is used): the last fitted models
    applied to the customers the day changed, or a refit and a full re-score when due (scoring.run.score_day)."""
    return score_day(as_of=dt.date.fromisoformat(as_of))
