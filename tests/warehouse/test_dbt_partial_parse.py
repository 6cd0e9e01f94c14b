"""The DAGs' dbt tasks share one dbt parse.

They hand dbt the run's as-of date and a daily run's start (crm_knowledge.run_mode) in the environment
variables `dbt_stages.AS_OF_ENV` and `TESTS_SINCE_ENV`, with no `--vars`: dbt parses the whole project again
whenever its vars change (seconds a task), but only the files that read a changed environment variable. This
runs dbt the way the tasks do (no vars, both values in the environment, one target folder kept between them as
cosmos keeps dbt's partial-parse file) and checks that the next day's command reused the parse and still
compiled the new values, and that a var still wins over the environment (a unit test's override, a hand-run
`dbt build --vars`).

The first task of a stack reuses the parse `make run` / `make up` make before the stack starts
(runner.dbt_parse): cosmos copies it into the task's project copy, and dbt keeps it only when the task names
the same profile and target and its profile (cosmos', from the Airflow connection) states the same connection
values as profiles.yml (crm_knowledge.warehouse.dbt_connection.PROFILE_DEFAULTS).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from airflow_dags import dags_importable
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


def test_the_first_task_of_a_stack_reuses_the_parse_made_before_it_started(settings, scratch_db, tmp_path,
                                                                          monkeypatch):
    """The runner's `dbt parse` (profiles.yml, the `ckp` environment), then a warehouse task's dbt command as
    cosmos runs it: its profile from the Airflow connection `warehouse` (dags/ckp_common.dbt_profile), the
    parse copied into its temporary project copy (cosmos' own functions), cosmos' flags. dbt must reuse it."""
    from cosmos import cache
    from cosmos.dbt.project import create_symlinks

    s = on_database(settings, scratch_db)
    parsed = tmp_path / "parsed"
    run_dbt(["parse"], dbt_process_env(s), s, target_path=parsed, log_path=tmp_path / "parse_logs")

    # the Airflow connection the stack's tasks have (runner.airflow_env: AIRFLOW_CONN_WAREHOUSE)
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", s.warehouse_url)
    dags_importable()
    import ckp_common

    task = ckp_common.dbt_build_stage("staging", "staging")
    task._discover_invocation_mode()
    project = tmp_path / "task_project"  # the task's copy of the project (cosmos: a temporary folder)
    project.mkdir()
    create_symlinks(s.dbt_project_dir, project, ignore_dbt_packages=False)
    cache._copy_partial_parse_to_project(parsed / "partial_parse.msgpack", project)
    with task.profile_config.ensure_profile() as (profile_path, profile_env):
        env = {**os.environ, **profile_env, AS_OF_ENV: "2026-11-21", TESTS_SINCE_ENV: FIRST}
        flags = task._generate_dbt_flags(str(project), profile_path)  # --profiles-dir, --profile, --target
        cmd = [str(Path(sys.executable).with_name("dbt")), "compile", "--select", MODEL, *flags]
        res = subprocess.run(cmd, env=env, cwd=project, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:]
    log = (project / "logs" / "dbt.log").read_text(encoding="utf-8")
    assert FULL_PARSE not in log, [line for line in log.splitlines() if "parsing" in line.lower()]
    compiled = project / "target" / "compiled" / "crm_knowledge" / "models" / "intermediate" / f"{MODEL}.sql"
    assert f"cast('{FIRST}' as timestamptz)" in compiled.read_text(encoding="utf-8")
