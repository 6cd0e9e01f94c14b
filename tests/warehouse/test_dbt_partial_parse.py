"""The DAGs' dbt tasks share one dbt parse.

They hand dbt the run's as-of date and a daily run's start (crm_knowledge.run_mode) in the environment
variables `dbt_stages.AS_OF_ENV` and `TESTS_SINCE_ENV`, with no `--vars`: dbt parses the whole project again
whenever its vars change (seconds a task), but only the files that read a changed environment variable. This
runs dbt the way the tasks do (no vars, both values in the environment, one target folder kept between them as
cosmos keeps dbt's partial-parse file) and checks that the next day's command reused the parse and still
compiled the new values, and that a var still wins over the environment (a unit test's override, a hand-run
`dbt build --vars`).
"""

from __future__ import annotations

import json

import pytest
from dbt_runs import on_database

from crm_knowledge.dbt_stages import AS_OF_ENV, TESTS_SINCE_ENV
from crm_knowledge.runner import dbt_process_env, run_dbt

pytestmark = pytest.mark.warehouse

MODEL = "int_customers_affected"  # reads both: `changed_since_timestamp()` and `as_of_date()`
FIRST, SECOND = "2026-11-21 01:00:00+00", "2026-11-22 01:00:00+00"  # two days' runs' starts
FULL_PARSE = "Unable to do partial parsing"


def test_the_run_start_travels_in_the_environment_and_the_parse_is_shared(settings, scratch_db, tmp_path):
    s = on_database(settings, scratch_db)
    env = dbt_process_env(s)
    target, logs = tmp_path / "target", tmp_path / "logs"
    compiled = target / "compiled" / "crm_knowledge" / "models" / "intermediate" / f"{MODEL}.sql"

    def compile_with(day: str, since: str, dbt_vars: dict | None = None) -> tuple[str, str]:
        """The model's compiled SQL and what dbt logged of this command."""
        log_file = logs / "dbt.log"
        before = log_file.stat().st_size if log_file.exists() else 0
        args = ["compile", "--select", MODEL, *(["--vars", json.dumps(dbt_vars)] if dbt_vars else [])]
        run_dbt(args, {**env, AS_OF_ENV: day, TESTS_SINCE_ENV: since}, s, target_path=target, log_path=logs)
        with open(log_file, encoding="utf-8") as fh:
            fh.seek(before)
            return compiled.read_text(encoding="utf-8"), fh.read()

    sql, log = compile_with("2026-11-21", FIRST)
    assert f"cast('{FIRST}' as timestamptz)" in sql and "cast('2026-11-21' as date)" in sql
    assert FULL_PARSE in log  # the first command parses everything

    sql, log = compile_with("2026-11-22", SECOND)  # the next day's task: other values in the environment
    assert FULL_PARSE not in log, [line for line in log.splitlines() if "parsing" in line.lower()]
    assert f"cast('{SECOND}' as timestamptz)" in sql and FIRST not in sql
    assert "cast('2026-11-22' as date)" in sql and "2026-11-21" not in sql

    # vars win over the environment, even an empty dbt_tests_since (the weekly run: every customer, every row)
    sql, _ = compile_with("2026-11-22", SECOND, {"as_of_date": "2026-03-31", "dbt_tests_since": ""})
    assert "cast('-infinity' as timestamptz)" in sql and SECOND not in sql
    assert "cast('2026-03-31' as date)" in sql and "2026-11-22" not in sql
