"""The daily identity run's kept-state helpers (identity/daily.py) that need no database."""

from __future__ import annotations

import os
import subprocess
import sys

from crm_knowledge.identity import daily
from crm_knowledge.identity.config import BlockingRule, config_from_dict, load_config


def test_the_fingerprint_follows_the_configuration_not_the_process():
    config = load_config()
    assert daily.config_fingerprint(config) == daily.config_fingerprint(load_config())
    other = config_from_dict({"full_resolution_weekday": "monday"})
    assert daily.config_fingerprint(other) != daily.config_fingerprint(config_from_dict({}))
    assert daily.config_fingerprint(config_from_dict({"probabilistic": {"match_threshold": 0.9}})) \
        != daily.config_fingerprint(config_from_dict({}))
    # how resolution runs is not what it decides: a new memory limit or Spark master keeps the prepared state
    runtime = config_from_dict({"probabilistic": {"duckdb_memory_limit": "512MB", "splink_log_level": "ERROR"},
                                "spark": {"master": "local[4]", "driver_memory": "3g"}})
    assert daily.config_fingerprint(runtime) == daily.config_fingerprint(config_from_dict({}))
    # sets inside the configuration must not make it depend on the interpreter's hash seed
    code = "from crm_knowledge.identity import daily, config; print(daily.config_fingerprint(config.load_config()))"
    prints = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": seed}).stdout.strip() for seed in ("1", "2")}
    assert prints == {daily.config_fingerprint(config)}


def test_blocking_rules_become_indexable_column_lists_and_joins():
    config = load_config()
    cols = daily.blocking_columns(config)
    assert ("postcode",) in cols and ("birth_date", "first_key") in cols
    # the swapped-name SQL rule: the columns it compares on the left, in order, once
    assert ("first_key", "last_key", "birth_year") in cols
    assert len(cols) == len(set(cols))
    swapped = BlockingRule(sql="l.first_key = r.last_key and l.last_key = r.first_key")
    assert daily._rule_condition(swapped, "p", "s") == "p.first_key = s.last_key and p.last_key = s.first_key"
    assert daily._rule_condition(swapped, "s", "p") == "s.first_key = p.last_key and s.last_key = p.first_key"
    assert daily._rule_condition(BlockingRule(columns=("postcode", "city_key")), "p", "s") == \
        "p.postcode = s.postcode and p.city_key = s.city_key"
