"""config/identity.yml loads; invalid values give errors naming the file and key."""

from __future__ import annotations

import pytest

from crm_knowledge.identity.config import IdentityConfigError, config_from_dict, load_config


def test_repository_config_loads():
    cfg = load_config()
    assert cfg.probabilistic.backend == "duckdb"
    assert 0 < cfg.probabilistic.match_threshold < 1
    assert {k: cfg.junk.share_limits[k] for k in ("email", "phone", "national_id")} == {
        "email": 3, "phone": 3, "national_id": 2}
    # declared kinds get the default limit of their uniqueness: 2 for one-per-person kinds, else 3
    assert cfg.junk.share_limits["foreign_national_id"] == 2 and cfg.junk.share_limits["loyalty_card"] == 3
    assert "test@test.com" in cfg.junk.deny["email"]
    assert cfg.max_cluster_size >= 2
    assert cfg.probabilistic.blocking_rules
    assert set(cfg.probabilistic.require_agreement_on) == {"birth_date", "postcode", "address"}
    assert cfg.probabilistic.birth_date_conflict_requires == ("first_name", "last_name")
    assert cfg.probabilistic.name_text_edit_distance == 1 and cfg.probabilistic.name_swapped_jaro_winkler == 0.88
    assert cfg.deterministic.weak_name_similarity <= cfg.deterministic.name_similarity
    assert ("mamad", "mohammad") in cfg.deterministic.nicknames


@pytest.mark.parametrize("raw, key", [
    ({"probabilistic": {"match_threshold": 1.5}}, "probabilistic.match_threshold"),
    ({"probabilistic": {"backend": "oracle"}}, "probabilistic.backend"),
    ({"junk": {"share_limits": {"fax": 3}}}, "junk.share_limits.fax"),
    ({"junk": {"deny_patterns": {"email": ["("]}}}, "junk.deny_patterns.email[0]"),
    ({"probabilistic": {"blocking_rules": [["shoe_size"]]}}, "probabilistic.blocking_rules[0]"),
    ({"clusters": {"max_size": "big"}}, "clusters.max_size"),
    ({"deterministic": {"nicknames": [["mamad"]]}}, "deterministic.nicknames"),
    ({"deterministic": {"name_similarity": 0.8, "weak_name_similarity": 0.9}}, "deterministic.weak_name_similarity"),
    ({"probabilistic": {"require_agreement_on": ["shoe_size"]}}, "probabilistic.require_agreement_on"),
    ({"probabilistic": {"comparisons": {"name": {"key_edit_distance": 5}}}},
     "probabilistic.comparisons.name.key_edit_distance"),
    ({"probabilistic": {"comparisons": {"name": {"text_edit_distance": 4}}}},
     "probabilistic.comparisons.name.text_edit_distance"),
    ({"probabilistic": {"comparisons": {"name": {"swapped_jaro_winkler": 1.5}}}},
     "probabilistic.comparisons.name.swapped_jaro_winkler"),
    ({"probabilistic": {"birth_date_conflict_requires": ["shoe_size"]}}, "probabilistic.birth_date_conflict_requires"),
])
def test_errors_name_file_and_key(raw, key):
    with pytest.raises(IdentityConfigError) as e:
        config_from_dict(raw, source="config/identity.yml")
    assert str(e.value).startswith(f"config/identity.yml: {key} ")


def test_missing_file(tmp_path):
    with pytest.raises(IdentityConfigError, match="not found"):
        load_config(tmp_path / "nope.yml")


def test_full_resolution_weekday():
    assert load_config().full_resolution_weekdays == frozenset({6})  # config/identity.yml: sunday
    assert config_from_dict({}).full_resolution_weekdays == frozenset({6})
    assert config_from_dict({"full_resolution_weekday": "Wednesday"}).full_resolution_weekdays == frozenset({2})
    assert config_from_dict({"full_resolution_weekday": "daily"}).full_resolution_weekdays == frozenset(range(7))
    assert config_from_dict({"full_resolution_weekday": "never"}).full_resolution_weekdays == frozenset()
    for bad in ("sundays", 7, None):
        with pytest.raises(IdentityConfigError) as e:
            config_from_dict({"full_resolution_weekday": bad}, source="config/identity.yml")
        assert str(e.value).startswith("config/identity.yml: full_resolution_weekday must be a day name")
