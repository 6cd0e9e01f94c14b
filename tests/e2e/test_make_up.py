"""`make up` (`ckp up`): the real Airflow stack on the deployment's own sources, until it is stopped.

Run as an operator runs it: `ckp up` in its own process. The test waits until the API server answers and
every DAG is unpaused in Airflow's metadata database, then stops it with SIGTERM (as a supervisor does) and
checks that it said where the UI is and stopped cleanly.
"""

from __future__ import annotations

import signal
import socket
import time
import urllib.request

import psycopg
import pytest
from ckp_cli import ckp_env, start_ckp

from crm_knowledge.airflow_stack import METADATA_DB
from crm_knowledge.netports import free_port
from crm_knowledge.runner import ALL_DAGS

pytestmark = [pytest.mark.e2e, pytest.mark.warehouse]


def _unpaused(settings) -> set[str]:
    try:
        with psycopg.connect(settings.server_url(METADATA_DB), connect_timeout=5) as conn:
            return {r[0] for r in conn.execute("select dag_id from dag where not is_paused").fetchall()}
    except psycopg.Error:  # the metadata tables are not there yet
        return set()


def test_ckp_up_serves_the_stack_until_stopped(warehouse, settings):
    port = free_port()
    env = ckp_env(CKP_AIRFLOW_PORT=str(port))
    proc = start_ckp("up", env=env)
    try:
        deadline = time.monotonic() + 600
        healthy = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=5) as r:
                    healthy = r.status == 200
            except OSError:
                healthy = False
            if healthy and set(ALL_DAGS) <= _unpaused(settings):
                break
            time.sleep(3)
        assert proc.poll() is None, f"ckp up ended on its own:\n{proc.stdout.read()[-3000:]}"
        assert healthy, "the API server never answered"
        assert set(ALL_DAGS) <= _unpaused(settings), "ckp up did not unpause every DAG"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # as a supervisor stops it
        output = proc.communicate(timeout=180)[0]
        # leave the DAGs paused, as the other end-to-end tests expect to find them
        with psycopg.connect(settings.server_url(METADATA_DB), autocommit=True) as conn:
            conn.execute("update dag set is_paused = true")
    assert proc.returncode == 0, output[-3000:]
    assert f"Airflow is up: http://127.0.0.1:{port}" in output
    assert "stopping Airflow" in output
    with socket.socket() as s:  # the stack went down with it
        assert s.connect_ex(("127.0.0.1", port)) != 0
