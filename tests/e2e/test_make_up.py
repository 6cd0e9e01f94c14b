"""`make up` (`ckp up`): the real Airflow stack on the deployment's own sources, until it is stopped.

Run as an operator runs it: `ckp up` in its own process. The test waits until the API server answers and
every DAG is unpaused in Airflow's metadata database, then stops it with SIGTERM (as a supervisor does) and
checks that it said where the UI is and stopped cleanly.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
import urllib.request

import psutil
import psycopg
import pytest
from ckp_cli import ckp_env, run_ckp

from crm_knowledge.airflow_stack import METADATA_DB
from crm_knowledge.runner import ALL_DAGS

pytestmark = [pytest.mark.e2e, pytest.mark.warehouse]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ckp_up_process(home: str) -> psutil.Process | None:
    """The `ckp up` process of this test (its CKP_HOME), once it has started."""
    for proc in psutil.process_iter(["cmdline"]):
        try:
            cmd = proc.info["cmdline"] or []
            if len(cmd) >= 2 and cmd[-1] == "up" and cmd[-2].endswith("/ckp") and \
                    proc.environ().get("CKP_HOME") == home:
                return proc
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return None


def _unpaused(settings) -> set[str]:
    try:
        with psycopg.connect(settings.server_url(METADATA_DB), connect_timeout=5) as conn:
            return {r[0] for r in conn.execute("select dag_id from dag where not is_paused").fetchall()}
    except psycopg.Error:  # the metadata tables are not there yet
        return set()


def test_ckp_up_serves_the_stack_until_stopped(warehouse, settings):
    port = _free_port()
    env = ckp_env(CKP_AIRFLOW_PORT=str(port))
    result: dict = {}
    runner = threading.Thread(target=lambda: result.update(res=run_ckp("up", env=env, timeout=900)), daemon=True)
    runner.start()
    try:
        deadline = time.monotonic() + 600
        healthy = False
        while time.monotonic() < deadline and runner.is_alive():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=5) as r:
                    healthy = r.status == 200
            except OSError:
                healthy = False
            if healthy and set(ALL_DAGS) <= _unpaused(settings):
                break
            time.sleep(3)
        assert runner.is_alive(), f"ckp up ended on its own: {result.get('res')}"
        assert healthy, "the API server never answered"
        assert set(ALL_DAGS) <= _unpaused(settings), "ckp up did not unpause every DAG"
    finally:
        proc = _ckp_up_process(str(settings.home))
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
        runner.join(timeout=180)
        # leave the DAGs paused, as the other end-to-end tests expect to find them
        with psycopg.connect(settings.server_url(METADATA_DB), autocommit=True) as conn:
            conn.execute("update dag set is_paused = true")
    res = result["res"]
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"Airflow is up: http://127.0.0.1:{port}" in res.stdout
    assert "stopping Airflow" in res.stdout
    with socket.socket() as s:  # the stack went down with it
        assert s.connect_ex(("127.0.0.1", port)) != 0
