"""Airflow as deployed, on this machine: scheduler, DAG processor, triggerer and API server.

What `make run` and `make up` start, the way `airflow standalone` does (LocalExecutor, the simple auth
manager), but every setting derived from `crm_knowledge.settings`, each component's output in its own
log file, and the metadata database on the embedded warehouse server (database ``airflow``; SQLite under
``$CKP_HOME/airflow`` with an external WAREHOUSE_URL, unless ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` names
one). The UI and REST API listen on 127.0.0.1 only, without login (``simple_auth_manager_all_admins``):
a developer's stack; the production deployment is docker-compose.yml.

The caller talks to the stack through Airflow's public REST API (:class:`AirflowApi`): unpause, trigger,
DAG runs, task states and task logs, as an operator's tools would.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crm_knowledge.settings import Settings, env_value

log = logging.getLogger(__name__)

#: Airflow's components, as `airflow standalone` starts them (the API server gets host and port).
COMPONENTS = ("scheduler", "dag-processor", "triggerer", "api-server")
METADATA_DB = "airflow"


def _venv_bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def metadata_db_url(settings: Settings) -> str:
    """SQLAlchemy URL of Airflow's metadata database (see the module docstring for the choice)."""
    explicit = env_value("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    if explicit:
        return explicit
    if not settings.embedded:
        return f"sqlite:///{settings.airflow_home / 'airflow.db'}"
    return settings.server_url(METADATA_DB).replace("postgresql://", "postgresql+psycopg2://", 1)


def ensure_metadata_database(settings: Settings) -> None:
    """Create the ``airflow`` database on the embedded server when it is missing (ours to create)."""
    if env_value("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN") or not settings.embedded:
        return
    from psycopg import sql

    from crm_knowledge.warehouse.db import connect

    with connect(settings.server_url("postgres"), autocommit=True) as conn:
        if not conn.execute("select 1 from pg_database where datname = %s", (METADATA_DB,)).fetchone():
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(METADATA_DB)))
            log.info("created Airflow's metadata database %r on the embedded server", METADATA_DB)


def stack_env(settings: Settings, base_env: dict[str, str], port: int) -> dict[str, str]:
    """`base_env` (runner.airflow_env) plus what the four components need to work together."""
    env = dict(base_env)
    api = f"http://127.0.0.1:{port}"
    env.update({
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_db_url(settings),
        "AIRFLOW__CORE__AUTH_MANAGER":
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": api,
        "AIRFLOW__API__WORKERS": "1",
        # task processes report to the API server's execution API: without this they look on port 8080
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
        # one secret for every component, or the scheduler's task tokens fail the API server's check
        "AIRFLOW__API_AUTH__JWT_SECRET": env.get("AIRFLOW__API_AUTH__JWT_SECRET") or secrets.token_urlsafe(32),
        "AIRFLOW__API__SECRET_KEY": env.get("AIRFLOW__API__SECRET_KEY") or secrets.token_urlsafe(32),
        # a 2-core machine: a few tasks at once, DAG files re-parsed every 5 minutes, not every 30 s
        "AIRFLOW__CORE__PARALLELISM": env.get("AIRFLOW__CORE__PARALLELISM", "4"),
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL":
            env.get("AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL", "300"),
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": env.get("AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES", "1"),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
    })
    return env


def migrate(env: dict[str, str]) -> None:
    """`airflow db migrate`: creates or upgrades the metadata database (idempotent)."""
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    res = subprocess.run([_venv_bin("airflow"), "db", "migrate"], env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class AirflowStack:
    """The four components as child processes; a context manager that stops them on exit."""

    env: dict[str, str]
    port: int
    log_dir: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 240) -> AirflowApi:
        if _port_open(self.port):
            raise RuntimeError(f"port {self.port} is already taken (another Airflow?): set CKP_AIRFLOW_PORT")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name in COMPONENTS:
            args = [_venv_bin("airflow"), name]
            if name == "api-server":
                args += ["--host", "127.0.0.1", "--port", str(self.port)]
            with open(self.log_dir / f"{name}.log", "ab") as out:
                self.processes[name] = subprocess.Popen(args, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                                        start_new_session=True)
        api = AirflowApi(self.url)
        deadline = time.monotonic() + timeout
        while not api.healthy():
            self.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Airflow API server did not answer on {self.url} within {timeout:.0f}s; "
                                   f"see {self.log_dir / 'api-server.log'}")
            time.sleep(2)
        return api

    def check_alive(self) -> None:
        """Raise naming the component (and its log) that exited."""
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                tail = (self.log_dir / f"{name}.log").read_text(errors="replace").splitlines()[-25:]
                raise RuntimeError(f"airflow {name} exited with code {proc.returncode}; log "
                                   f"{self.log_dir / (name + '.log')}:\n" + "\n".join(tail))

    def stop(self, grace: float = 30) -> None:
        """SIGTERM each component's process group, then SIGKILL what is left after `grace` seconds, including
        task processes the executor started in sessions of their own.

        Not interruptible: a second Ctrl-C (or SIGTERM, SIGHUP) while the components shut down used to end
        this process half way and leave the scheduler running on its own, holding the port and running tasks.
        Such a signal now cuts the grace short instead: what is left is killed at once."""
        import psutil

        with _SignalsHasten() as hurry:
            descendants: list[psutil.Process] = []
            for proc in self.processes.values():
                try:
                    descendants += psutil.Process(proc.pid).children(recursive=True)
                except psutil.NoSuchProcess:
                    pass
            for proc in self.processes.values():
                if proc.poll() is None:
                    try:
                        os.killpg(proc.pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
            deadline = time.monotonic() + grace
            for proc in self.processes.values():
                if not hurry.wait(lambda proc=proc: proc.poll() is not None, deadline):
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    proc.wait(timeout=10)
            hurry.wait(lambda: not any(_alive(p) for p in descendants), deadline)
            for child in descendants:
                try:
                    child.kill()
                except psutil.NoSuchProcess:
                    pass
            self.processes.clear()

    def __enter__(self) -> AirflowStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _alive(proc: Any) -> bool:
    """A psutil process still running (not ended, not a zombie waiting to be reaped)."""
    import psutil

    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:  # ended between the two questions
        return False


class _SignalsHasten:
    """While a stack stops: Ctrl-C, SIGTERM and SIGHUP are recorded instead of raised, and :meth:`wait` gives
    up at once after one (in the main thread only: elsewhere Python handles no signals, and nothing changes).
    The previous handlers come back afterwards."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.received: list[int] = []
        self.saved: dict[int, Any] = {}

    def __enter__(self) -> _SignalsHasten:
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self.saved[sig] = signal.signal(sig, self._record)
        return self

    def _record(self, signum: int, _frame: object) -> None:
        self.received.append(signum)
        log.warning("%s while Airflow stops: killing what is left now", signal.Signals(signum).name)

    def wait(self, done: Any, deadline: float) -> bool:
        """Poll `done()` until it is true (True), or the deadline passes or a signal came (False)."""
        while not done():
            if self.received or time.monotonic() >= deadline:
                return bool(done())
            time.sleep(0.1)
        return True

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)


class AirflowApi:
    """The few calls of Airflow's public REST API (v2) the runner needs."""

    def __init__(self, base_url: str):
        self.base = base_url.rstrip("/")

    def _call(self, method: str, path: str, body: Any = None, query: dict | None = None) -> Any:
        url = f"{self.base}/api/v2/{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query, doseq=True)
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310 (loopback)
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"Airflow API {method} {path}: HTTP {exc.code}: "
                               f"{exc.read().decode(errors='replace')[:500]}") from None

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base}/api/v2/monitor/health", timeout=5) as resp:  # noqa: S310
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def dag(self, dag_id: str) -> dict | None:
        try:
            return self._call("GET", f"dags/{dag_id}")
        except RuntimeError as exc:
            if "HTTP 404" in str(exc):
                return None
            raise

    def import_errors(self) -> list[dict]:
        return self._call("GET", "importErrors").get("import_errors", [])

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self._call("PATCH", f"dags/{dag_id}", {"is_paused": paused}, {"update_mask": "is_paused"})

    def trigger(self, dag_id: str, logical_date: dt.datetime | None = None, conf: dict | None = None) -> dict:
        body = {"logical_date": logical_date.isoformat() if logical_date else None, "conf": conf or {}}
        return self._call("POST", f"dags/{dag_id}/dagRuns", body)

    def set_run_state(self, dag_id: str, run_id: str, state: str) -> None:
        self._call("PATCH", f"dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}", {"state": state})

    def dag_runs(self, dag_id: str, limit: int = 20) -> list[dict]:
        return self._call("GET", f"dags/{dag_id}/dagRuns",
                          query={"order_by": "-run_after", "limit": limit}).get("dag_runs", [])

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        path = f"dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances"
        out: list[dict] = []
        while True:  # pages of at most 100 (the API's maximum_page_limit)
            page = self._call("GET", path, query={"limit": 100, "offset": len(out)})
            out += page.get("task_instances", [])
            if not page.get("task_instances") or len(out) >= page.get("total_entries", 0):
                return out

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1) -> list:
        path = (f"dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/"
                f"{urllib.parse.quote(task_id, safe='')}/logs/{try_number}")
        content = self._call("GET", path, query={"full_content": "true", "map_index": map_index}).get("content")
        return content if isinstance(content, list) else [content]


def error_of(log_entries: list) -> str:
    """The error a task log ends with: its error-level lines and the exception's type and message."""
    lines: list[str] = []
    for entry in log_entries:
        if not isinstance(entry, dict):
            continue
        if str(entry.get("level", "")).lower() not in ("error", "critical"):
            continue
        detail = entry.get("error_detail") or []
        if detail and isinstance(detail, list):
            last = detail[-1] if isinstance(detail[-1], dict) else {}
            lines.append(f"{last.get('exc_type', 'Error')}: {last.get('exc_value', '')}".strip())
        elif entry.get("event"):
            lines.append(str(entry["event"]))
    seen: list[str] = []
    for line in lines:
        if line and line not in seen:
            seen.append(line)
    return "\n".join(seen[-6:])[-3000:] or "(no error in the task log)"

