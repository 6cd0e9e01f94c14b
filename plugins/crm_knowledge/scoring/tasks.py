"""What the scoring DAG's scoring step calls (``crm_knowledge.<stage>.tasks``, see identity/tasks.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from crm_knowledge.scoring.run import score_all


def score_customers(as_of: str) -> dict[str, Any]:
    """Score every customer as of the run's day (ISO ``YYYY-MM-DD``): only data on or before it is used."""
    return score_all(as_of=dt.date.fromisoformat(as_of))
