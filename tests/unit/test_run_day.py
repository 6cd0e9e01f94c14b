"""The day a DAG run is about: its logical date, else when it was queued; never the wall clock."""

from __future__ import annotations

import datetime as dt

import pytest

from crm_knowledge.run_day import run_day, run_key


def test_logical_date_wins():
    queued = dt.datetime(2026, 11, 25, 3, 0, tzinfo=dt.UTC)
    assert run_day("2026-11-20", queued) == dt.date(2026, 11, 20)
    assert run_key("2026-11-20", queued) == "day-2026-11-20"


def test_asset_triggered_run_uses_run_after_in_utc():
    # 23:30 in Tehran on the 24th is 20:00 UTC on the 24th; 02:00 Tehran on the 25th is still the 24th in UTC
    tehran = dt.timezone(dt.timedelta(hours=3, minutes=30))
    assert run_day(None, dt.datetime(2026, 11, 25, 2, 0, tzinfo=tehran)) == dt.date(2026, 11, 24)
    assert run_key(None, dt.datetime(2026, 11, 24, 20, 0, tzinfo=dt.UTC)) == "day-2026-11-24"


def test_no_day_at_all_is_an_error():
    with pytest.raises(ValueError, match="neither a logical date nor run_after"):
        run_day(None, None)
