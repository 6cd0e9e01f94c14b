"""`make test`'s two pytest-xdist workers (README "Tests"): each gets its own ports and home from
tests/conftest.py, and the scheduler keeps every module whole and the modules that start Airflow's stack on one
worker, handed out first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from xdist_scheduling import AIRFLOW_STACK_MODULES, SLOWEST_FIRST, ModulesWithAirflowStacksTogether

from crm_knowledge.settings import PROJECT_ROOT

TESTS = Path(__file__).resolve().parents[1]
NAMES = ("CKP_TEST_WAREHOUSE_PORT", "CKP_TEST_WEBHOOK_PORT", "CKP_TEST_AIRFLOW_PORT", "CKP_TEST_SECOND_PG_PORT",
         "CKP_TEST_REPORTS_PORT", "CKP_WAREHOUSE_PORT", "CKP_WEBHOOK_PORT", "CKP_AIRFLOW_PORT", "CKP_HOME",
         "AIRFLOW_HOME")


def environment_of(worker: str | None, **given: str) -> dict[str, str]:
    """The ports and homes tests/conftest.py sets up in a fresh process as xdist worker ``worker`` (None: a
    plain pytest), the calling shell having exported ``given``."""
    env = {k: v for k, v in os.environ.items() if k not in NAMES and k not in (
        "PYTEST_XDIST_WORKER", "CKP_TEST_HOME", "CKP_TEST_PINNED_PORTS", "CKP_TEST_SERVE_PORT")}
    env.update(given)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT / "plugins"), env.get("PYTHONPATH")]))
    if worker:
        env["PYTEST_XDIST_WORKER"] = worker
    code = ("import json, os, sys; sys.path.insert(0, sys.argv[1]); import conftest; "
            f"print(json.dumps({{n: os.environ.get(n) for n in {NAMES!r}}}))")
    res = subprocess.run([sys.executable, "-c", code, str(TESTS)], env=env, capture_output=True, text=True,
                         timeout=120, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_each_worker_gets_its_own_ports_and_home():
    given = {"CKP_TEST_WAREHOUSE_PORT": "54411", "CKP_TEST_WEBHOOK_PORT": "8911", "CKP_TEST_AIRFLOW_PORT": "8912",
             "CKP_TEST_SECOND_PG_PORT": "54412", "CKP_TEST_REPORTS_PORT": "8825"}
    plain, first, second = (environment_of(w, **given) for w in (None, "gw0", "gw1"))
    # a plain pytest and worker 0: the ports given, the home var/test; worker 1: every port 1000 up, its own home
    for env, up, home in ((plain, 0, "test"), (first, 0, "test"), (second, 1000, "test-gw1")):
        for name, port in (("WAREHOUSE", 54411), ("WEBHOOK", 8911), ("AIRFLOW", 8912)):
            assert env[f"CKP_TEST_{name}_PORT"] == env[f"CKP_{name}_PORT"] == str(port + up), (home, name)
        assert env["CKP_TEST_SECOND_PG_PORT"] == str(54412 + up) and env["CKP_TEST_REPORTS_PORT"] == str(8825 + up)
        assert env["CKP_HOME"] == str(PROJECT_ROOT / "var" / home)
        assert env["AIRFLOW_HOME"] == str(PROJECT_ROOT / "var" / home / "airflow")
    # no two workers share a port
    for name in NAMES[:5]:
        assert first[name] != second[name], name


def test_a_default_port_something_else_holds_is_replaced_by_a_free_one():
    """CI failed when another program held the second PostgreSQL's default port: a default port that is taken
    makes way for a free one; a port the developer exported is used as given even when taken."""
    import errno
    import socket

    default = 24362 + 1000  # worker gw1's second PostgreSQL (tests/conftest.py TEST_PORT_DEFAULTS + stride)
    with socket.socket() as held:
        # SO_REUSEADDR as servers bind: a port only in TIME_WAIT (this run's own second PostgreSQL of worker gw1,
        # stopped a moment ago) is free, and must be held here, not taken for held by something else
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            held.bind(("127.0.0.1", default))
            held.listen()
        except OSError as exc:  # a listener of something else holds it already: as good for this test
            assert exc.errno == errno.EADDRINUSE, exc
        # a worker of a run in which the developer pinned nothing (its controller's record says so)
        moved = environment_of("gw1", CKP_TEST_PINNED_PORTS="{}")
        assert moved["CKP_TEST_SECOND_PG_PORT"] != str(default)
        replacement = int(moved["CKP_TEST_SECOND_PG_PORT"])
        # exported by the developer: pinned, so kept, the clash left for them to see
        port = held.getsockname()[1] if held.getsockname()[1] else default
        pinned = environment_of(None, CKP_TEST_SECOND_PG_PORT=str(port))
        assert pinned["CKP_TEST_SECOND_PG_PORT"] == str(port)
    with socket.socket() as probe:  # the replacement was free
        probe.bind(("127.0.0.1", replacement))


def test_a_worker_ignores_a_home_and_port_exported_by_the_shell():
    """A developer's shell may export CKP_HOME / CKP_WAREHOUSE_PORT for `ckp` (their dev warehouse): a plain
    pytest honours them, as before; two workers must not share them, so a worker uses its own."""
    exported = {"CKP_HOME": "/tmp/someones-dev-home", "CKP_WAREHOUSE_PORT": "54413", "CKP_AIRFLOW_PORT": "8913"}
    plain = environment_of(None, **exported)
    assert (plain["CKP_HOME"], plain["CKP_WAREHOUSE_PORT"], plain["CKP_AIRFLOW_PORT"]) == (
        "/tmp/someones-dev-home", "54413", "8913")
    worker = environment_of("gw1", **exported)
    assert worker["CKP_HOME"] == str(PROJECT_ROOT / "var" / "test-gw1")
    assert worker["CKP_WAREHOUSE_PORT"] == worker["CKP_TEST_WAREHOUSE_PORT"] != "54413"
    assert worker["CKP_AIRFLOW_PORT"] == worker["CKP_TEST_AIRFLOW_PORT"] != "8913"


@pytest.mark.parametrize("a, b, together", [
    ("tests/e2e/test_pipeline.py::test_every_layer_has_rows", "tests/e2e/test_make_up.py::test_ckp_up_serves", True),
    ("tests/e2e/test_external_warehouse.py::test_x", "tests/e2e/test_pipeline.py::failed_run", True),
    ("tests/e2e/test_external_warehouse.py::test_x", "tests/e2e/test_cli_bench.py::test_ckp_bench_small", False),
    ("tests/e2e/test_failures.py::test_a", "tests/e2e/test_make_up.py::test_ckp_up_serves", False),
    ("tests/warehouse/test_erasure.py::test_a", "tests/warehouse/test_erasure.py::test_b[x]", True),
    ("tests/warehouse/test_erasure.py::test_a", "tests/warehouse/test_erasure_entry_points.py::test_a", False),
    ("tests/e2e/test_pipeline.py::test_a", "tests/warehouse/test_dbt_models.py::test_a", False),
    ("tests/unit/test_as_of.py::test_a", "tests/unit/test_settings.py::test_a", False),
])
def test_modules_stay_whole_and_the_airflow_stacks_run_together(a, b, together):
    scheduler = object.__new__(ModulesWithAirflowStacksTogether)  # _split_scope needs no scheduler state
    assert (scheduler._split_scope(a) == scheduler._split_scope(b)) is together


def test_the_airflow_stack_modules_are_handed_out_first():
    """Every module that starts Airflow's stack exists, and their unit is the first work handed out (it is the
    longest); every module named in SLOWEST_FIRST exists."""
    assert SLOWEST_FIRST[:len(AIRFLOW_STACK_MODULES)] == AIRFLOW_STACK_MODULES
    for module in SLOWEST_FIRST:
        assert (PROJECT_ROOT / module).is_file(), module


def test_default_ports_lie_below_the_ephemeral_range():
    """The local ports of client connections come from Linux's ephemeral range (32768-60999): a test server's
    default port there could be taken by one of the suite's own connections between its check and its start.
    Every default, shifted for up to four workers, stays below it."""
    # tests/conftest.py read in a process of its own: here `conftest` may name another folder's conftest
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import conftest; "
            "print(json.dumps([conftest.TEST_PORT_DEFAULTS, conftest.WORKER_PORT_STRIDE, conftest.PORT_SPANS]))")
    res = subprocess.run([sys.executable, "-c", code, str(TESTS)], capture_output=True, text=True, timeout=120,
                         check=False, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "plugins")})
    assert res.returncode == 0, res.stderr[-2000:]
    defaults, stride, spans = json.loads(res.stdout.strip().splitlines()[-1])
    assert defaults and stride > 0
    for name, port in defaults.items():
        highest = port + 3 * stride + spans.get(name, 1) - 1
        assert 1024 < port and highest < 32768, (name, port, highest)
