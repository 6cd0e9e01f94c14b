"""How `make run` / `make up` configure Airflow's components, and how a failed task's error is read back."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from crm_knowledge.airflow_stack import error_of, metadata_db_url, stack_env
from crm_knowledge.settings import get_settings


def test_every_component_finds_the_api_server_it_was_given(monkeypatch, tmp_path):
    """Task processes report to the execution API: its URL must follow the port, or they look on 8080."""
    monkeypatch.delenv("AIRFLOW__API_AUTH__JWT_SECRET", raising=False)
    # an external warehouse: no embedded server needs to be running for the metadata database's URL
    settings = dataclasses.replace(get_settings(), external_warehouse_url="postgresql://u@db.internal/w", home=tmp_path)
    env = stack_env(settings, {"PATH": "/usr/bin"}, 8814)
    assert env["AIRFLOW__API__PORT"] == "8814"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8814/execution/"
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert len(env["AIRFLOW__API_AUTH__JWT_SECRET"]) >= 32  # one shared secret, never Airflow's per-process one
    assert env["PATH"].split(":")[0] == str(Path(__import__("sys").executable).parent)  # airflow/dbt on PATH


def test_metadata_database(monkeypatch, tmp_path):
    monkeypatch.delenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", raising=False)
    settings = get_settings()
    external = dataclasses.replace(settings, external_warehouse_url="postgresql://u@db.internal/w", home=tmp_path)
    # an external warehouse is the user's: Airflow's tables do not go there uninvited
    assert metadata_db_url(external) == f"sqlite:///{tmp_path / 'airflow' / 'airflow.db'}"
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "postgresql+psycopg2://a@meta/airflow")
    assert metadata_db_url(external) == "postgresql+psycopg2://a@meta/airflow"


def test_the_error_of_a_failed_task_is_read_from_its_structured_log():
    log = [
        {"event": "::group::Log message source details", "level": "info"},
        {"event": "dbt build started", "level": "info"},
        {"event": "Task failed with exception", "level": "error",
         "error_detail": [{"exc_type": "OperationalError", "exc_value": "connection refused", "frames": []},
                          {"exc_type": "RuntimeError", "exc_value": "Cannot connect to the warehouse at db:5432/w",
                           "frames": [{"filename": "run.py", "lineno": 3}]}]},
        "plain text line",
    ]
    assert error_of(log) == "RuntimeError: Cannot connect to the warehouse at db:5432/w"
    assert error_of([{"event": "done", "level": "info"}]) == "(no error in the task log)"
    assert error_of([{"event": "QUARANTINED f.csv: missing columns", "level": "error"}]) == \
        "QUARANTINED f.csv: missing columns"


# A stand-in for a component: slow to stop (ignores SIGTERM, as a scheduler finishing its tasks may take long),
# with a task process of its own in a session of its own, as the LocalExecutor starts them. Prints both pids.
SLOW_COMPONENT = """
import os, signal, subprocess, sys, time
task = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True)
print(os.getpid(), task.pid, flush=True)
signal.signal(signal.SIGTERM, lambda *_: None)
time.sleep(300)
"""

# `make run` as far as stopping goes: SIGTERM ends it like Ctrl-C (termination.end_like_ctrl_c), the stack's
# context manager stops the components (grace 60 s here, so only a hastened stop ends within the test).
RUN = """
import os, subprocess, sys, time
from pathlib import Path
from crm_knowledge import airflow_stack
from crm_knowledge.termination import end_like_ctrl_c

stack = airflow_stack.AirflowStack(env=dict(os.environ), port=0, log_dir=Path(sys.argv[2]))
stack.stop = lambda grace=60, _stop=stack.stop: _stop(grace)
proc = subprocess.Popen([sys.executable, "-c", sys.argv[1]], stdout=subprocess.PIPE, text=True,
                        start_new_session=True)
stack.processes["scheduler"] = proc
print("pids", proc.stdout.readline().strip(), flush=True)
end_like_ctrl_c()
with stack:
    time.sleep(300)
"""


def test_a_second_signal_while_airflow_stops_kills_what_is_left_instead_of_orphaning_it(tmp_path):
    """A supervisor's SIGTERM (or Ctrl-C) stops the stack; a second Ctrl-C while the components take their
    time used to end the run half way, leaving the scheduler and its tasks running. Now it cuts the grace
    short: every component and task process is gone, long before the grace would have ended."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    from crm_knowledge.settings import PROJECT_ROOT

    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "plugins")}
    log = tmp_path / "stderr.log"  # a file, not a pipe: orphans would hold a pipe open and hang the test
    with open(log, "w") as stderr:
        run = subprocess.Popen([sys.executable, "-c", RUN, SLOW_COMPONENT, str(tmp_path)], stdout=subprocess.PIPE,
                               stderr=stderr, text=True, env=env, start_new_session=True)
    pids: list[int] = []
    try:
        line = run.stdout.readline()
        assert line.startswith("pids "), line + log.read_text()
        pids = [int(p) for p in line.split()[1:]]
        assert all(psutil.pid_exists(p) for p in pids)
        time.sleep(0.5)
        run.send_signal(signal.SIGTERM)  # the first: the stack stops, the component takes its time
        time.sleep(1.5)
        assert run.poll() is None and psutil.Process(pids[0]).is_running()  # still within the grace
        t0 = time.monotonic()
        run.send_signal(signal.SIGINT)  # the second
        run.wait(timeout=30)
        assert time.monotonic() - t0 < 20
        err = log.read_text()
        assert "SIGINT while Airflow stops: killing what is left now" in err, err[-2000:]
        gone = psutil.wait_procs([psutil.Process(p) for p in pids if psutil.pid_exists(p)], timeout=5)[1]
        assert not [p for p in gone if p.status() != psutil.STATUS_ZOMBIE], gone
    finally:
        for pid in [run.pid, *pids]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
