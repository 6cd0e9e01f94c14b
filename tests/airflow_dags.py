"""The DAGs as Airflow sees them: the dags folder parsed into a DagBag, and one DAG run in a fresh process with
`airflow dags test` (a manual run with a logical date), for tests that need a DAG's tasks end to end without the
whole scheduler (the scheduler itself is tested in tests/e2e/test_pipeline.py). Importable from every test
module (`tests/` is on sys.path)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

from crm_knowledge.airflow_stack import migrate
from crm_knowledge.settings import PROJECT_ROOT, get_settings

DAGS_DIR = PROJECT_ROOT / "dags"


def dags_importable() -> None:
    """Airflow puts the dags folder on sys.path (the DAG files import ckp_common); so do the tests."""
    if str(DAGS_DIR) not in sys.path:
        sys.path.append(str(DAGS_DIR))


def dag_bag(*, parse_dbt: bool = True):
    """The dags folder parsed the way Airflow does; with `parse_dbt`, dbt's manifest (what cosmos renders the
    dbt tasks from) is built first."""
    if parse_dbt:
        from dbt_runs import parse_project

        parse_project(get_settings())
    dags_importable()
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR))


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
