"""The day a DAG run is about, from what Airflow gives a task: never the wall clock.

A scheduled or `airflow dags test` run has a logical date (`ds`). In Airflow 3 a run triggered by an
Asset has none; the time it was queued for (`dag_run.run_after`) stands in, so results are still keyed
by a day and scoring still has an as-of date.
"""

from __future__ import annotations

import datetime as dt


def run_day(ds: str | None, run_after: dt.datetime | None = None) -> dt.date:
    """The run's day: its logical date, else the (UTC) day it was scheduled for."""
    if ds:
        return dt.date.fromisoformat(ds)
    if run_after is not None:
        return run_after.astimezone(dt.UTC).date() if run_after.tzinfo else run_after.date()
    raise ValueError("the DAG run has neither a logical date nor run_after: cannot tell which day it is for")


def run_key(ds: str | None, run_after: dt.datetime | None = None) -> str:
    """``day-<YYYY-MM-DD>``: how every quality result, report and dbt test result of the run is keyed."""
    return f"day-{run_day(ds, run_after).isoformat()}"
