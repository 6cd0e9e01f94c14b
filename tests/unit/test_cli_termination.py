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
    assert f"ckp: interrupted by {sig.name}" in err and "Traceback" not in err, err


# The signal also reaches what the command started (a Spark JVM, dbt): the body sees that child's failure and turns
# it into an error of its own, as identity/spark_session.ending_session turns a JVM's failure into SparkStageError.
SCRIPT_WRAPPED = """
import sys, time
from crm_knowledge import cli

def wraps_the_stop(args):
    try:
        print("started", flush=True)
        time.sleep(120)
    except BaseException:
        raise RuntimeError("identity on Spark failed: org.apache.spark.SparkException")
    return 0

cli._cmd_demo = wraps_the_stop
sys.exit(cli.main(["demo", "--size", "10"]))
"""


def test_an_error_raised_because_of_the_signal_is_reported_as_the_stop():
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "plugins")}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT_WRAPPED], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "started"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == INTERRUPTED_EXIT, err
    assert "ckp: interrupted by SIGTERM" in err and "RuntimeError" in err, err
    assert "error:" not in err and "Traceback" not in err, err


def test_an_error_without_a_signal_is_still_a_failure():
    """The stop check must not hide real failures: with no signal received, the same error exits 1."""
    script = SCRIPT_WRAPPED.replace("time.sleep(120)", "raise ValueError('boom')")
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "plugins")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "error: identity on Spark failed" in done.stderr and "interrupted" not in done.stderr, done.stderr
