"""The quality gate's scope views (quality/scope_views.py): names carry their creation time and are the gate's
own, so that only the gate's views are ever taken for leftovers; each has its own advisory-lock key."""

from __future__ import annotations

import datetime as dt

from crm_knowledge.quality import scope_views


def test_only_views_of_the_gate_s_naming_count_and_each_has_its_own_lock():
    now = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
    name = scope_views.new_name(now)
    other = scope_views.new_name(now)
    assert name != other and scope_views.lock_key(name) != scope_views.lock_key(other)  # unique per call
    assert name.startswith("scope_20261207120000_") and len(name) <= 63  # a PostgreSQL identifier
    assert [n for n in [name, "scope_by_hand", "customer_360", "scope_2026_x"] if scope_views.is_gate_view(n)] == [
        name]
