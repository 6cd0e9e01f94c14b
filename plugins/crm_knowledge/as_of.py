"""The day a DAG run is about (its as-of date), from what Airflow gives a task: never the wall clock.

One function, :func:`as_of_date`, decides it for every kind of run, in this order:

1. the run's ``as_of_date`` param (``customer_scoring`` has one: score any past day on request);
2. the run's logical date (scheduled runs, backfills, manual runs given a date);
3. the ``as_of_date`` carried in the ``extra`` of the Asset events that triggered the run (Asset-triggered
   runs have no logical date; every task publishing a pipeline Asset writes its run's as-of date there, so
   the warehouse builds the day the ingests loaded and scoring scores the day the warehouse built, not the
   day either run was queued). Several events of different days: the latest day;
4. the (UTC) day the run was queued for (``run_after``): a manual run without a date.

In a DAG the ``as_of_date`` task calls it once and every other task (and cosmos' dbt ``vars``) reads that
task's result, so Jinja templates never need ``ds`` (which Asset-triggered runs do not have).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

#: The key of the as-of date in an Asset event's ``extra`` and in a DAG's params.
AS_OF_KEY = "as_of_date"


def _to_date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).date() if value.tzinfo else value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def _event_days(triggering_asset_events: Mapping[Any, Iterable[Any]] | None) -> list[dt.date]:
    days = []
    for events in (triggering_asset_events or {}).values():
        for event in events:
            extra = getattr(event, "extra", None) or {}
            if extra.get(AS_OF_KEY):
                days.append(_to_date(extra[AS_OF_KEY]))
    return days


def as_of_date(context: Mapping[str, Any]) -> dt.date:
    """The as-of date of the DAG run a task `context` belongs to (see the module docstring for the order)."""
    params = context.get("params") or {}
    if params.get(AS_OF_KEY):
        return _to_date(params[AS_OF_KEY])
    if context.get("logical_date") is not None:
        return _to_date(context["logical_date"])
    if context.get("ds"):  # the same date as a string (only present when there is a logical date)
        return _to_date(context["ds"])
    days = _event_days(context.get("triggering_asset_events"))
    if days:
        return max(days)
    dag_run = context.get("dag_run")
    run_after = getattr(dag_run, "run_after", None)
    if run_after is not None:
        return _to_date(run_after)
    raise ValueError("the DAG run has no as_of_date param, no logical date, no as-of date in its triggering "
                     "Asset events and no run_after: cannot tell which day it is for")


def run_key(day: dt.date | str) -> str:
    """``day-<YYYY-MM-DD>``: how every quality result, report and dbt test result of a day is keyed (`day`: a
    date, or the ISO date the ``as_of_date`` task returns)."""
    return f"day-{_to_date(day).isoformat()}"


def check_logical_date(logical_date: dt.datetime | None, start_date: dt.datetime) -> None:
    """Refuse a run whose logical date is before the DAG's `start_date`.

    Airflow creates no task instance for such a run except those without a start date, and marks the
    empty run successful: a backfill or a manual run of an earlier day would silently do nothing. The
    ``as_of_date`` task has no start date, so it exists in every run and fails it here, saying why.
    """
    if logical_date is not None and logical_date < start_date:
        raise ValueError(
            f"this run's logical date {logical_date.isoformat()} is before the DAG's start_date "
            f"{start_date.isoformat()}: Airflow would run none of its tasks, so the run fails instead of "
            "succeeding empty. Trigger it without a logical date (customer_scoring: with the as_of_date "
            "param), or score a past day with `ckp score --as-of DATE`.")
