"""What the warehouse DAG's identity step calls: one function, given the run's as-of date.

Every stage package has a ``tasks`` module like this one (``crm_knowledge.<stage>.tasks``): the DAG files
import only these, so what a DAG task does is one call, and the logic behind it is tested without Airflow.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from crm_knowledge.identity.store import decide_mode, run
from crm_knowledge.settings import get_settings


def resolve_identities(as_of: str, *, force_full: bool = False) -> dict[str, Any]:
    """Incremental resolution, or full on the configured weekday (or when `force_full`): decided on the run's
    as-of date (ISO ``YYYY-MM-DD``), never on the wall clock. Returns the run's summary."""
    url = get_settings().warehouse_url
    day = dt.date.fromisoformat(as_of)
    return run(url, mode=decide_mode(url, day, force_full=force_full), day=day)


def run_mode(as_of: str, *, force_full: bool = False) -> dict[str, Any]:
    """Daily or weekly (:mod:`crm_knowledge.run_mode`): decided once per warehouse run, before dbt staging, on
    identity's schedule; the run's dbt tests, quality gates and identity resolution follow it."""
    from crm_knowledge.run_mode import decide

    return decide(get_settings().warehouse_url, dt.date.fromisoformat(as_of), force_full=force_full).as_dict()
