"""Run one DAG in a fresh process with `airflow dags test` (a manual run with a logical date), for tests that
need a DAG's tasks end to end without the whole scheduler (the scheduler itself is tested in
tests/e2e/test_pipeline.py). Importable from every test module (`tests/` is on sys.path)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

from crm_knowledge.airflow_stack import migrate


def airflow_dags_test(dag_id: str, run_date: dt.date, env: dict[str, str], log_dir: Path) -> str:
    """`airflow dags test <dag_id> <run_date>` with `env` (runner.airflow_env); the metadata database is
    migrated first. Returns the run's log; fails the test with the log's tail unless the run succeeded."""
    migrate(env)
    log_dir.mkdir(parents=True, exist_ok=True)
    logfile = log_dir / f"{dag_id}.log"
    with open(logfile, "w", encoding="utf-8") as fh:
        res = subprocess.run([str(Path(sys.executable).with_name("airflow")), "dags", "test", dag_id,
                              run_date.isoformat()], env=env, stdout=fh, stderr=subprocess.STDOUT, text=True,
                             timeout=1800)
    text = logfile.read_text(encoding="utf-8", errors="replace")
    finished = [line for line in text.splitlines() if "DagRun Finished:" in line]
    assert res.returncode == 0 and finished and "state=success" in finished[-1], (
        f"DAG {dag_id} failed (exit {res.returncode}); log {logfile}:\n" + "\n".join(text.splitlines()[-60:]))
    return text
