"""The quality gate's scope views (quality/scope_views.py): names carry their creation time, and only views of
the gate's own naming older than STALE_AFTER count as leftovers."""

from __future__ import annotations

import datetime as dt

from crm_knowledge.quality import scope_views


def test_a_view_is_stale_only_after_a_day_and_only_if_the_gate_named_it():
    now = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
    fresh = scope_views.new_name(now - dt.timedelta(hours=23))
    old = scope_views.new_name(now - dt.timedelta(hours=25))
    assert fresh != scope_views.new_name(now - dt.timedelta(hours=23))  # unique per call
    assert scope_views.stale_names([fresh, old, "scope_by_hand", "customer_360", "scope_2026_x"], now) == [old]
    assert old.startswith("scope_20261206") and len(old) <= 63  # a PostgreSQL identifier
