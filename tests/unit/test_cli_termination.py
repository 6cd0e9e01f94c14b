"""A `ckp` command stopped by SIGTERM (a supervisor, `docker stop`, CI's timeout) or SIGHUP (its terminal
closed) unwinds like Ctrl-C: its cleanup runs (a Spark JVM and its scratch directory of staged personal data,
Airflow's components, a benchmark's home lock), and it exits 130 with one line saying so. Before, only `ckp run`
and `ckp up` did; a SIGTERM ended every other command at once and left what it had started behind.

The command is `ckp demo` with its body replaced by one that waits in a ``try`` / ``finally``: what is tested
is `crm_knowledge.cli.main`, the entry point of every command, in a process of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from crm_knowledge.settings import PROJECT_ROOT
from crm_knowledge.termination import INTERRUPTED_EXIT

SCRIPT = """
import sys, time
from crm_knowledge import cli

def waits(args):
    try:
        print("started", flush=True)
        time.sleep(120)
    finally:
        print("cleaned up", flush=True)
    return 0

cli._cmd_demo = waits
sys.exit(cli.main(["demo", "--size", "10"]))
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_runs_the_commands_cleanup_and_exits_130(sig):
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "plugins")}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "started"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert out.strip() == "cleaned up", out + err
    assert proc.returncode == INTERRUPTED_EXIT, err
    assert "ckp: interrupted" in err and "Traceback" not in err, err
