"""What the scoring DAG's delivery step calls (``crm_knowledge.<stage>.tasks``, see identity/tasks.py)."""

from __future__ import annotations

import datetime as dt

from crm_knowledge.export.deliver import deliver_all


def deliver_segments(as_of: str) -> list[dict]:
    """Every enabled destination of destinations.yml receives its audience's delta as of the run's day."""
    return deliver_all(as_of=dt.date.fromisoformat(as_of))


def campaign_report(as_of: str) -> str:
    """The campaign report (holdout vs treated, lift, deciles) as of the run's day; returns its path."""
    from crm_knowledge.export.campaign_report import build_campaign_report

    return str(build_campaign_report(dt.date.fromisoformat(as_of)))
