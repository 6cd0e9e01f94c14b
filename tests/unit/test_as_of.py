"""The day a DAG run is about (crm_knowledge.as_of.as_of_date), for every kind of run; never the wall clock."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from crm_knowledge.as_of import as_of_date, check_logical_date, run_key

QUEUED = SimpleNamespace(run_after=dt.datetime(2026, 11, 25, 3, 0, tzinfo=dt.UTC))


def _events(*days: str | None) -> dict:
    """triggering_asset_events as Airflow hands them over: asset -> events with an `extra`."""
    return {"warehouse.raw.orders": [SimpleNamespace(extra={"as_of_date": d} if d else {}) for d in days]}


def test_manual_run_with_a_date_uses_its_logical_date():
    ctx = {"logical_date": dt.datetime(2026, 11, 20, tzinfo=dt.UTC), "dag_run": QUEUED, "params": {}}
    assert as_of_date(ctx) == dt.date(2026, 11, 20)
    assert run_key(as_of_date(ctx)) == "day-2026-11-20"


def test_asset_triggered_run_takes_the_day_from_the_events():
    """No logical date; the events carry the day the upstream run built: the latest one wins."""
    ctx = {"logical_date": None, "dag_run": QUEUED,
           "triggering_asset_events": _events("2026-11-19", "2026-11-20", None)}
    assert as_of_date(ctx) == dt.date(2026, 11, 20)


def test_manual_run_without_a_date_uses_the_utc_day_it_was_queued_for():
    # 02:00 in Tehran on the 25th is still the 24th in UTC
    tehran = dt.timezone(dt.timedelta(hours=3, minutes=30))
    ctx = {"logical_date": None, "dag_run": SimpleNamespace(run_after=dt.datetime(2026, 11, 25, 2, 0, tzinfo=tehran)),
           "triggering_asset_events": _events(None)}
    assert as_of_date(ctx) == dt.date(2026, 11, 24)


def test_the_as_of_date_param_wins_however_early():
    ctx = {"params": {"as_of_date": "2019-03-01"}, "logical_date": dt.datetime(2026, 11, 20, tzinfo=dt.UTC),
           "dag_run": QUEUED, "triggering_asset_events": _events("2026-11-20")}
    assert as_of_date(ctx) == dt.date(2019, 3, 1)
    # an empty param (the default) means: the run's day
    assert as_of_date({**ctx, "params": {"as_of_date": None}}) == dt.date(2026, 11, 20)


def test_no_day_at_all_is_an_error():
    with pytest.raises(ValueError, match="cannot tell which day"):
        as_of_date({"logical_date": None, "dag_run": None})


def test_a_run_dated_before_the_start_date_is_refused_with_the_reason():
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    check_logical_date(None, start)
    check_logical_date(start, start)
    with pytest.raises(ValueError, match="before the DAG's start_date 2026-01-01.*none of its tasks"):
        check_logical_date(dt.datetime(2025, 6, 1, tzinfo=dt.UTC), start)


def test_run_key_takes_the_as_of_task_result_as_it_is():
    assert run_key("2026-11-20") == run_key(dt.date(2026, 11, 20)) == "day-2026-11-20"
