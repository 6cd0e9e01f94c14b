"""What the scoring DAG's scoring step calls (``crm_knowledge.<stage>.tasks``, see identity/tasks.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from crm_knowledge.scoring.run import score_day


def score_customers(as_of: str) -> dict[str, Any]:
    """Score as of the run's day (ISO ``YYYY-MM-DD``; only data on or before it is used): the last fitted models
    applied to the customers the day changed, or a refit and a full re-score when due (scoring.run.score_day)."""
    return score_day(as_of=dt.date.fromisoformat(as_of))


def run_mode() -> dict[str, Any]:
    """Daily or full for the post-scoring models (:func:`crm_knowledge.run_mode.post_scoring`): decided before
    scoring writes, handed to dbt as ``dbt_tests_since`` and to the post-scoring gate, which marks it."""
    from crm_knowledge.run_mode import post_scoring
    from crm_knowledge.settings import get_settings

    return post_scoring(get_settings().warehouse_url).as_dict()
