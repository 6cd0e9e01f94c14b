"""Delta computation by mode: added / changed / removed, and removals forced by privacy."""

from __future__ import annotations

import datetime as dt

import pytest

from crm_knowledge.export.audience import Member
from crm_knowledge.export.config import parse_destination
from crm_knowledge.export.delta import PriorState, RemovalGuardTripped, compute_delta, payload_hash


def dest(mode, consent="marketing", purpose="marketing", **extra):
    return parse_destination({
        "name": "d", "kind": "file", "enabled": True, "purpose": purpose, "consent": consent, "mode": mode,
        "id_space": "customer_id", "audiences": [{"name": "a", "filter": {}}], "fields": ["rfm_segment"],
        "file": {"format": "csv", "dir": "x"}, **extra}, "t")


def member(cid, seg):
    return Member(cid, cid, "a", {"customer_id": cid, "audience": "a", "rfm_segment": seg})


def prior_of(*members):
    return {m.key: PriorState(m.customer_id, payload_hash(m.payload), m.payload) for m in members}


OK = {"is_forgotten": False, "has_marketing_consent": True, "has_profiling_opt_out": False}


@pytest.mark.parametrize(("mode", "expected"), [
    ("mirror", (["c3"], ["c2"], ["c4"], 0, 0)),
    ("upsert", (["c3"], ["c2"], [], 0, 1)),
    ("insert_only", (["c3"], [], [], 1, 1)),
])
def test_modes(mode, expected):
    prior = prior_of(member("c1", "loyal"), member("c2", "loyal"), member("c4", "loyal"))
    current = {m.key: m for m in [member("c1", "loyal"), member("c2", "champions"), member("c3", "new")]}
    delta = compute_delta(dest(mode), current, prior, {"c4": OK})
    got = ([c.key for c in delta.added], [c.key for c in delta.changed], [c.key for c in delta.removed],
           delta.not_sent_changed, delta.not_sent_removed)
    assert got == expected


@pytest.mark.parametrize(("status", "reason"), [
    ({"c4": {**OK, "is_forgotten": True}}, "forgotten"),
    ({"c4": {**OK, "has_marketing_consent": False}}, "consent_withdrawn"),
    ({"c4": {**OK, "has_profiling_opt_out": True}}, "consent_withdrawn"),
    ({}, "customer_unknown"),
])
def test_privacy_removals_are_sent_in_every_mode(status, reason):
    prior = prior_of(member("c4", "loyal"))
    for mode in ("insert_only", "upsert", "mirror"):
        delta = compute_delta(dest(mode), {}, prior, status)
        assert [(c.key, c.reason) for c in delta.removed] == [("c4", reason)]
        assert delta.removed[0].record["change_type"] == "removed"


def test_unchanged_is_empty_and_hash_is_stable():
    m = member("c1", "loyal")
    delta = compute_delta(dest("mirror"), {"c1": m}, prior_of(m), {})
    assert delta.is_empty()
    assert delta.content_hash("d", __import__("datetime").date(2026, 1, 1)) == \
        compute_delta(dest("mirror"), {"c1": m}, prior_of(m), {}).content_hash(
            "d", __import__("datetime").date(2026, 1, 1))


def test_mirror_refuses_mass_removal():
    prior = prior_of(*[member(f"c{i:02d}", "loyal") for i in range(20)])
    current = {k: v for k, v in list({m.key: m for m in [member(f"c{i:02d}", "loyal") for i in range(5)]}.items())}
    with pytest.raises(RemovalGuardTripped, match="15 of 20"):
        compute_delta(dest("mirror"), current, prior, {f"c{i:02d}": OK for i in range(20)})
    delta = compute_delta(dest("mirror", max_removed_fraction=1.0), current, prior,
                          {f"c{i:02d}": OK for i in range(20)})
    assert len(delta.removed) == 15


def test_removal_delta_sends_the_same_records_as_a_computed_removal():
    """Erasure's removals (removal_delta) look to a destination exactly like removals compute_delta makes."""
    from crm_knowledge.export.delta import removal_delta

    d = dest("mirror")
    computed = compute_delta(d, {}, prior_of(member("c1", "loyal")),
                             {"c1": {**OK, "is_forgotten": True}})
    made = removal_delta(d, [("c1", "c1", "a")], "forgotten")
    assert [c.record for c in made.removed] == [c.record for c in computed.removed]
    assert made.removed[0].record == {"change_type": "removed", "customer_id": "c1", "audience": "a",
                                      "rfm_segment": None, "removal_reason": "forgotten"}
    assert (made.counts, made.members, made.is_empty()) == ({"added": 0, "changed": 0, "removed": 1}, 0, False)
    day = dt.date(2026, 11, 20)
    assert made.content_hash("d", day) == computed.content_hash("d", day)  # a retry is recognised the same way
