"""A failure is a failure: an unreachable warehouse or a failing quality gate turns the DAG run red (also
when an `all_done` report task succeeds after it), `make run` exits non-zero, and the failure is alerted.

(A failing dbt model under the real scheduler is in test_pipeline.py.) DAG runs here are run by
`airflow dags test` on a SQLite metadata database: the run's state is decided by the same code
(DagRun.update_state) as under the scheduler.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from alert_webhook import alert_inbox_server

from crm_knowledge.settings import PROJECT_ROOT

pytestmark = [pytest.mark.e2e]

BIN = Path(sys.executable).parent
#: Nothing listens on the discard port: every connection is refused at once.
UNREACHABLE = "postgresql://ckp@127.0.0.1:9/warehouse"


@pytest.fixture()
def alert_inbox():
    """A loopback HTTP server standing in for the deployment's alert webhook (tests/alert_webhook.py)."""
    with alert_inbox_server() as inbox:
        yield inbox


def test_make_run_exits_non_zero_naming_the_unreachable_warehouse(tmp_path):
    # CKP_WAREHOUSE_WAIT: the refusal is the same at the first try as after the default 30 s of retries
    env = dict(os.environ, WAREHOUSE_URL=UNREACHABLE, CKP_HOME=str(tmp_path / "home"), CKP_WAREHOUSE_WAIT="2")
    # past the demo's guard (the flag), so the run itself has to reach the warehouse
    res = subprocess.run([str(BIN / "ckp"), "run", "--size", "10", "--overwrite-external-db"], env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 1, res.stdout[-2000:] + res.stderr[-2000:]
    assert "Cannot connect to the warehouse at 127.0.0.1:9/warehouse" in res.stderr, res.stderr[-2000:]


@pytest.fixture(scope="module")
def airflow_db(tmp_path_factory) -> Path:
    """A migrated SQLite metadata database for `airflow dags test`."""
    home = tmp_path_factory.mktemp("airflow")
    env = dict(os.environ, AIRFLOW_HOME=str(home), AIRFLOW__CORE__LOAD_EXAMPLES="False",
               AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}")
    migrate = subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, capture_output=True, text=True,
                             timeout=600)
    assert migrate.returncode == 0, migrate.stderr[-2000:]
    return home


def _dags_test(home: Path, dags_folder: Path, dag_id: str, tmp_path: Path, **env_vars: str) -> tuple[str, dict]:
    """`airflow dags test dag_id` (logical date 2026-11-20); returns the run's state and its tasks' states."""
    env = dict(os.environ, AIRFLOW_HOME=str(home), AIRFLOW__CORE__DAGS_FOLDER=str(dags_folder),
               AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
               AIRFLOW__CORE__LOAD_EXAMPLES="False", AIRFLOW__CORE__PLUGINS_FOLDER=str(home / "plugins"),
               CKP_HOME=str(tmp_path / "home"), CKP_TASK_RETRIES="0",
               PATH=os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
               PYTHONPATH=os.pathsep.join([str(PROJECT_ROOT / "plugins"), str(PROJECT_ROOT / "dags"),
                                           os.environ.get("PYTHONPATH", "")]), **env_vars)
    subprocess.run([str(BIN / "airflow"), "dags", "test", dag_id, "2026-11-20"], env=env,
                   capture_output=True, text=True, timeout=900)
    with sqlite3.connect(home / "airflow.db") as db:
        (run_state,) = db.execute("select state from dag_run where dag_id = ?", (dag_id,)).fetchone()
        tasks = dict(db.execute("select task_id, state from task_instance where dag_id = ?", (dag_id,)))
    return run_state, tasks


#: The warehouse and scoring DAGs' shape, small: a quality gate, then an `all_done` report task.
GATE_DAG = """
from airflow.sdk import dag, task
from ckp_common import DEFAULT_ARGS, START_DATE, as_of_date_task, watcher


@dag(dag_id="gate_then_report", schedule=None, start_date=START_DATE, default_args=DEFAULT_ARGS)
def gate_then_report():
    @task
    def quality_gate(as_of: str) -> dict:
        from crm_knowledge.quality.gate import CriticalDataQualityError

        raise CriticalDataQualityError(f"marts: expect_column_values_to_be_unique failed on day-{as_of}", None)

    @task(trigger_rule="all_done")
    def build_reports(as_of: str) -> dict:
        return {"report": "written"}

    as_of = as_of_date_task()
    quality_gate(as_of) >> build_reports(as_of)
    watcher()


gate_then_report()
"""


def test_a_failing_quality_gate_fails_the_run_though_the_report_succeeds(airflow_db, tmp_path, alert_inbox):
    url, received = alert_inbox
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "gate_then_report.py").write_text(GATE_DAG, encoding="utf-8")
    run_state, tasks = _dags_test(airflow_db, dags, "gate_then_report", tmp_path, CKP_ALERT_WEBHOOK_URL=url)
    assert tasks == {"as_of_date": "success", "quality_gate": "failed", "build_reports": "success",
                     "watcher": "failed"}
    assert run_state == "failed"
    assert [(a["task_id"], a["error"].split(":")[0]) for a in received] == [
        ("quality_gate", "CriticalDataQualityError")]


def test_an_unreachable_warehouse_fails_the_dag_run_and_alerts(airflow_db, tmp_path, alert_inbox):
    """An ingest DAG run whose warehouse is unreachable: prepare_warehouse fails, the load never runs, the
    watcher fails the run (its state is failed, not success) and the failure is posted to the webhook."""
    url, received = alert_inbox
    run_state, tasks = _dags_test(airflow_db, PROJECT_ROOT / "dags", "ingest_forms", tmp_path,
                                  WAREHOUSE_URL=UNREACHABLE, AIRFLOW_CONN_WAREHOUSE=UNREACHABLE,
                                  CKP_ALERT_WEBHOOK_URL=url)
    assert run_state == "failed", tasks
    assert tasks["as_of_date"] == "success"
    assert tasks["prepare_warehouse"] == "failed"
    assert tasks["load_forms"] == "upstream_failed"
    assert tasks["watcher"] == "failed"
    alerts = [a for a in received if a["task_id"] == "prepare_warehouse"]
    assert alerts and alerts[0]["dag_id"] == "ingest_forms", received
    assert "127.0.0.1" in alerts[0]["error"] and "9" in alerts[0]["error"]
