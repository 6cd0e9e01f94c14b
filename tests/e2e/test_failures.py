"""A failure is a failure: an unreachable warehouse turns the DAG run and `make run` red, and is alerted.

(A failing dbt model under the real scheduler is in test_pipeline.py.)
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from crm_knowledge.settings import PROJECT_ROOT

pytestmark = [pytest.mark.e2e]

BIN = Path(sys.executable).parent
#: Nothing listens on the discard port: every connection is refused at once.
UNREACHABLE = "postgresql://ckp@127.0.0.1:9/warehouse"


@pytest.fixture()
def alert_inbox():
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/alerts", received
    server.shutdown()
    server.server_close()


def test_make_run_exits_non_zero_naming_the_unreachable_warehouse(tmp_path):
    env = dict(os.environ, WAREHOUSE_URL=UNREACHABLE, CKP_HOME=str(tmp_path / "home"))
    res = subprocess.run([str(BIN / "ckp"), "run", "--size", "10"], env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 1, res.stdout[-2000:] + res.stderr[-2000:]
    assert "Cannot connect to the warehouse at 127.0.0.1:9/warehouse" in res.stderr, res.stderr[-2000:]


def test_an_unreachable_warehouse_fails_the_dag_run_and_alerts(tmp_path, alert_inbox):
    """An ingest DAG run whose warehouse is unreachable: prepare_warehouse fails, the load never runs, the
    watcher fails the run (its state is failed, not success) and the failure is posted to the webhook."""
    url, received = alert_inbox
    home = tmp_path / "airflow"
    env = dict(os.environ, AIRFLOW_HOME=str(home), AIRFLOW__CORE__DAGS_FOLDER=str(PROJECT_ROOT / "dags"),
               AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
               AIRFLOW__CORE__LOAD_EXAMPLES="False", AIRFLOW__CORE__PLUGINS_FOLDER=str(home / "plugins"),
               WAREHOUSE_URL=UNREACHABLE, AIRFLOW_CONN_WAREHOUSE=UNREACHABLE, CKP_HOME=str(tmp_path / "home"),
               CKP_TASK_RETRIES="0", CKP_ALERT_WEBHOOK_URL=url,
               PATH=os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
               PYTHONPATH=os.pathsep.join([str(PROJECT_ROOT / "plugins"), os.environ.get("PYTHONPATH", "")]))
    migrate = subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, capture_output=True, text=True,
                             timeout=600)
    assert migrate.returncode == 0, migrate.stderr[-2000:]
    subprocess.run([str(BIN / "airflow"), "dags", "test", "ingest_forms", "2026-11-20"], env=env,
                   capture_output=True, text=True, timeout=900)
    with sqlite3.connect(home / "airflow.db") as db:
        (run_state,) = db.execute("select state from dag_run where dag_id = 'ingest_forms'").fetchone()
        tasks = dict(db.execute("select task_id, state from task_instance where dag_id = 'ingest_forms'"))
    assert run_state == "failed", tasks
    assert tasks["as_of_date"] == "success"
    assert tasks["prepare_warehouse"] == "failed"
    assert tasks["load_forms"] == "upstream_failed"
    assert tasks["watcher"] == "failed"
    alerts = [a for a in received if a["task_id"] == "prepare_warehouse"]
    assert alerts and alerts[0]["dag_id"] == "ingest_forms", received
    assert "127.0.0.1" in alerts[0]["error"] and "9" in alerts[0]["error"]
