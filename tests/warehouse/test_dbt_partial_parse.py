"""The dbt tasks of one day share one dbt parse.

A daily run hands dbt the run's start (crm_knowledge.run_mode) in the environment variable
`dbt_stages.TESTS_SINCE_ENV`, not in `--vars`: dbt parses the whole project again whenever its vars change
(seconds a task), but only the files that read a changed environment variable. This runs dbt the way the
tasks do (the same vars, the run's start in the environment, one target folder kept between them as cosmos
keeps dbt's partial-parse file) and checks that the second command reused the parse and still compiled the
new value, and that a `dbt_tests_since` var still wins over the environment (a unit test's override, a hand-run
`dbt build --vars`).
"""

from __future__ import annotations

import json

import pytest
from dbt_runs import as_of_vars, on_database

from crm_knowledge.dbt_stages import TESTS_SINCE_ENV
from crm_knowledge.runner import dbt_process_env, run_dbt

pytestmark = pytest.mark.warehouse

MODEL = "int_customers_affected"  # reads the run's start: `changed_since_timestamp()`
FIRST, SECOND = "2026-11-21 01:00:00+00", "2026-11-22 01:00:00+00"
FULL_PARSE = "Unable to do partial parsing"


def test_the_run_start_travels_in_the_environment_and_the_parse_is_shared(settings, scratch_db, tmp_path):
    s = on_database(settings, scratch_db)
    env = dbt_process_env(s)
    target, logs = tmp_path / "target", tmp_path / "logs"
    compiled = target / "compiled" / "crm_knowledge" / "models" / "intermediate" / f"{MODEL}.sql"

    def compile_with(since: str, dbt_vars: dict) -> tuple[str, str]:
        """The model's compiled SQL and what dbt logged of this command."""
        log_file = logs / "dbt.log"
        before = log_file.stat().st_size if log_file.exists() else 0
        run_dbt(["compile", "--select", MODEL, "--vars", json.dumps(dbt_vars)], {**env, TESTS_SINCE_ENV: since},
                s, target_path=target, log_path=logs)
        with open(log_file, encoding="utf-8") as fh:
            fh.seek(before)
            return compiled.read_text(encoding="utf-8"), fh.read()

    day = as_of_vars("2026-11-21")
    sql, log = compile_with(FIRST, day)
    assert f"cast('{FIRST}' as timestamptz)" in sql
    assert FULL_PARSE in log  # the first command of the day parses everything

    sql, log = compile_with(SECOND, day)  # the next task: same vars, another run start in the environment
    assert FULL_PARSE not in log, [line for line in log.splitlines() if "parsing" in line.lower()]
    assert f"cast('{SECOND}' as timestamptz)" in sql and FIRST not in sql

    # a var wins over the environment, even an empty one (the weekly run: every customer, every row)
    sql, _ = compile_with(SECOND, {**day, "dbt_tests_since": ""})
    assert "cast('-infinity' as timestamptz)" in sql and SECOND not in sql
