"""Holdout shares in destinations.yml and the keyed-hash arm (pure functions, no database)."""

from __future__ import annotations

import pytest

from crm_knowledge.export.config import DestinationConfigError, parse_destination
from crm_knowledge.export.holdout import arm_for, bucket

KEY = b"k" * 32


def _doc(**audience):
    return {
        "name": "mkt", "kind": "file", "enabled": True, "purpose": "marketing", "consent": "marketing",
        "mode": "mirror", "id_space": "customer_id",
        "audiences": [{"name": "champions", "filter": {"rfm_segment": ["champions"]}, **audience},
                      {"name": "loyal", "filter": {}}],
        "fields": [], "file": {"format": "csv", "dir": "m"},
    }


def test_holdout_share_is_parsed_per_audience():
    dest = parse_destination(_doc(holdout=0.1), "destinations.yml")
    assert dest.measured_audiences == {"champions": 0.1}
    assert dest.audiences[1].holdout is None


@pytest.mark.parametrize("value, message", [
    (1, "must be below 1"), (1.5, "must be within [0.0, 1.0]"), (-0.1, "must be within"),
    ("10%", "must be a number"),
])
def test_a_bad_holdout_share_names_the_file_and_key(value, message):
    with pytest.raises(DestinationConfigError) as err:
        parse_destination(_doc(holdout=value), "destinations.yml")
    assert "destinations.yml" in str(err.value) and "audiences[0].holdout" in str(err.value)
    assert message in str(err.value)


def test_bucket_is_stable_keyed_and_uniform():
    ids = [f"c{i}" for i in range(20_000)]
    first = [bucket(KEY, "mkt", "champions", c) for c in ids]
    assert first == [bucket(KEY, "mkt", "champions", c) for c in ids]  # deterministic
    assert all(0 <= b < 1 for b in first)
    held = sum(arm_for(b, 0.1) == "holdout" for b in first) / len(ids)
    assert 0.09 < held < 0.11
    # another key, audience or destination gives unrelated arms
    for other in ([bucket(b"x" * 32, "mkt", "champions", c) for c in ids],
                  [bucket(KEY, "mkt", "loyal", c) for c in ids],
                  [bucket(KEY, "crm", "champions", c) for c in ids]):
        both = sum(a < 0.1 and b < 0.1 for a, b in zip(first, other, strict=True)) / len(ids)
        assert 0.005 < both < 0.015  # independent: about 0.1 * 0.1
