"""No other local OS user gets into the embedded warehouse or reads personal files under CKP_HOME.

The embedded server asks every connection (Unix socket and loopback TCP) for its scram-sha-256 password,
its socket folder is 0700, its log never quotes statement values, and files holding personal data are 0600
in 0700 folders. Denials are tested as another OS user (`nobody`, through `runuser`; we run as root here).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import stat
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest

from crm_knowledge.warehouse import server

pytestmark = pytest.mark.warehouse

OTHER_USER = "nobody"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture()
def embedded(warehouse, settings):
    if not settings.embedded:
        pytest.skip("WAREHOUSE_URL names an external server: its access rules are its owner's")
    state = json.loads(settings.warehouse_state_file.read_text())
    return {"url": warehouse, "password": state["password"], "port": state["port"],
            "sock": Path(state["socket_dir"]), "base": settings.pgdata_dir.parent}


def _psql() -> str:
    path = shutil.which("psql") or str(server._binaries() / "psql")
    if not Path(path).exists():
        pytest.skip("no psql client on this machine")
    return path


def _as_other_user(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    if os.geteuid() != 0 or not shutil.which("runuser"):
        pytest.skip("needs root and runuser to act as another OS user")
    return subprocess.run(["runuser", "-u", OTHER_USER, "--", "env", *[f"{k}={v}" for k, v in (env or {}).items()],
                           *cmd], capture_output=True, text=True, timeout=30, check=False, cwd="/")


def _conninfo(host: str | Path, port: int) -> str:
    return f"host={host} port={port} user={server.ADMIN_USER} dbname=warehouse connect_timeout=5"


def test_another_os_user_cannot_connect_even_with_the_password(embedded):
    psql = _psql()
    # through the socket: the 0700 folder stops them before the server is even asked
    res = _as_other_user([psql, "-w", _conninfo(embedded["sock"], embedded["port"]), "-c", "select 1"],
                         {"PGPASSWORD": embedded["password"]})
    assert res.returncode != 0 and "Permission denied" in res.stderr, res.stderr
    # over loopback TCP without the password (what `trust` used to let through)
    res = _as_other_user([psql, "-w", _conninfo("127.0.0.1", embedded["port"]), "-c", "select 1"])
    assert res.returncode != 0 and "no password supplied" in res.stderr, res.stderr
    # and they cannot read the password file
    res = _as_other_user(["cat", str(server.get_settings().warehouse_state_file)])
    assert res.returncode != 0 and "Permission denied" in res.stderr
    # control: the same socket connection as the owner (root), with the password, works
    ok = subprocess.run([psql, "-w", "-Atc", "select current_user", _conninfo(embedded["sock"], embedded["port"])],
                        env={**os.environ, "PGPASSWORD": embedded["password"]}, capture_output=True, text=True,
                        timeout=30, check=False)
    assert ok.returncode == 0 and ok.stdout.strip() == server.ADMIN_USER, ok.stderr


def test_the_socket_asks_for_the_password_too(embedded):
    with pytest.raises(psycopg.OperationalError, match="no password supplied"):
        psycopg.connect(_conninfo(embedded["sock"], embedded["port"]), connect_timeout=5)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(_conninfo(embedded["sock"], embedded["port"]) + " password=wrong", connect_timeout=5)
    with psycopg.connect(_conninfo(embedded["sock"], embedded["port"]), password=embedded["password"]) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_pg_hba_asks_every_connection_for_scram(embedded):
    with psycopg.connect(embedded["url"]) as conn:
        rules = conn.execute("select type, auth_method, error from pg_hba_file_rules order by rule_number").fetchall()
        settings = dict(conn.execute(
            "select name, setting from pg_settings where name in ('unix_socket_permissions', 'password_encryption',"
            " 'log_parameter_max_length', 'log_parameter_max_length_on_error', 'log_min_error_statement',"
            " 'log_error_verbosity', 'log_min_messages', 'log_statement', 'listen_addresses')").fetchall())
    assert {t for t, _, _ in rules} == {"local", "host"}
    assert all(method == "scram-sha-256" and error is None for _, method, error in rules), rules
    assert settings == {"unix_socket_permissions": "0700", "password_encryption": "scram-sha-256",
                        "log_parameter_max_length": "0", "log_parameter_max_length_on_error": "0",
                        "log_min_error_statement": "panic", "log_error_verbosity": "terse",
                        "log_min_messages": "log", "log_statement": "none", "listen_addresses": "127.0.0.1"}


def test_warehouse_folders_and_files_are_private(embedded, settings):
    base, sock = embedded["base"], embedded["sock"]
    assert _mode(settings.home) in (0o700, 0o711)  # 0711: the server's OS user may pass, nobody may list
    assert _mode(base) == 0o700 and _mode(sock) == 0o700
    assert _mode(settings.pgdata_dir) == 0o700
    assert _mode(settings.warehouse_state_file) == 0o600
    assert _mode(base / "postgres.log") == 0o600
    assert _mode(sock / f".s.PGSQL.{embedded['port']}") == 0o700


def test_server_log_keeps_no_statement_values(embedded):
    """Failing statements with planted values (bound parameters and literals, the errors whose DETAIL quotes
    the row or key) leave no trace of the values in the server log; the log itself is live."""
    log = embedded["base"] / "postgres.log"
    offset = log.stat().st_size
    planted = [f"planted-{uuid.uuid4().hex[:10]}@example.com" for _ in range(4)]
    with psycopg.connect(embedded["url"], autocommit=True) as conn:
        conn.execute("create temporary table t (email text unique check (email not like '%@example.com'))")
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            conn.execute("select %s::integer", (planted[0],))  # a bound parameter
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            conn.execute(f"select '{planted[1]}'::integer")  # a literal, quoted by the error message
        with pytest.raises(psycopg.errors.CheckViolation):  # DETAIL: Failing row contains (...)
            conn.execute("insert into t values (%s)", (planted[2],))
        conn.execute("alter table t drop constraint t_email_check")
        conn.execute("insert into t values (%s)", (planted[3],))
        with pytest.raises(psycopg.errors.UniqueViolation):  # DETAIL: Key (email)=(...) already exists
            conn.execute("insert into t values (%s)", (planted[3],))
    wrong = embedded["url"].replace(embedded["password"], "wrong-password")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(wrong, connect_timeout=5)
    with psycopg.connect(embedded["url"], autocommit=True) as conn:  # make the logger catch up
        conn.execute("select pg_sleep(0.2)")
    text = log.read_text(encoding="utf-8", errors="replace")[offset:]
    assert "password authentication failed" in text  # the log records what an operator needs
    leaked = [v for v in planted if v in text or v.split("@")[0] in text]
    assert leaked == [], text[-3000:]


def test_a_home_made_by_an_older_version_is_fixed_on_start(embedded, settings):
    """Trust on the socket, 0755 folders and 0644 files with personal data: the next start fixes them all."""
    pgdata, base = settings.pgdata_dir, embedded["base"]
    hba = pgdata / "pg_hba.conf"
    hba.write_text("local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n", encoding="utf-8")
    with psycopg.connect(embedded["url"], autocommit=True) as conn:
        conn.execute("select pg_reload_conf()")
    old = {}
    for rel in ("archive/forms/s1.jsonl", "quarantine/kiosk/bad.csv", "demo/ground_truth.csv",
                "exports/segments.csv", "reports/latest.html", "logs/runs/ingest_forms.log",
                "airflow/logs/dag_id=x/attempt=1.log"):
        path = settings.home / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("علی,0912 345 6789\n", encoding="utf-8")
        path.chmod(0o644)
        for parent in path.relative_to(settings.home).parents:
            if str(parent) != ".":
                (settings.home / parent).chmod(0o755)
        old[rel] = path
    for path in (base, embedded["sock"]):
        path.chmod(0o755)
    (base / "postgres.log").chmod(0o644)
    # the old state really is open: the socket lets anyone who reaches it in without a password
    with psycopg.connect(_conninfo(embedded["sock"], embedded["port"])) as conn:
        assert conn.execute("select current_user").fetchone() == (server.ADMIN_USER,)

    assert server.start(settings) == embedded["url"]

    test_the_socket_asks_for_the_password_too(embedded)
    test_pg_hba_asks_every_connection_for_scram(embedded)
    test_warehouse_folders_and_files_are_private(embedded, settings)
    for rel, path in old.items():
        assert _mode(path) == 0o600, rel
        for parent in path.relative_to(settings.home).parents:
            if str(parent) != ".":
                assert _mode(settings.home / parent) == 0o700, parent
    psql = _psql()
    res = _as_other_user([psql, "-w", _conninfo(embedded["sock"], embedded["port"]), "-c", "select 1"],
                         {"PGPASSWORD": embedded["password"]})
    assert res.returncode != 0 and "Permission denied" in res.stderr
    res = _as_other_user(["cat", str(old["demo/ground_truth.csv"])])
    assert res.returncode != 0 and "Permission denied" in res.stderr
    for path in old.values():
        path.unlink()


# --- files with personal data, as the pipeline creates them (this process keeps umask 022 on purpose) -------

@pytest.fixture()
def local(settings, tmp_path):
    return dataclasses.replace(settings, home=tmp_path / "home", landing_dir=tmp_path / "home" / "landing")


def _assert_private_tree(root: Path) -> int:
    n = 0
    for dirpath, _dirnames, filenames in os.walk(root):
        assert _mode(Path(dirpath)) == 0o700, dirpath
        for name in filenames:
            assert _mode(Path(dirpath) / name) == 0o600, Path(dirpath) / name
            n += 1
    return n


def test_demo_files_are_private(local):
    from crm_knowledge.demo import generate

    old = os.umask(0o022)
    try:
        generate(60, seed=3, settings=local, write_orders_db=False)
    finally:
        os.umask(old)
    assert _assert_private_tree(local.landing_dir) >= 6
    assert _assert_private_tree(local.demo_dir) >= 2  # ground truth and state


def test_archived_and_quarantined_landing_files_are_private(local, scratch_db):
    from crm_knowledge.ingest.files import load_file
    from crm_knowledge.ingest.registry import load_registry
    from crm_knowledge.warehouse.bootstrap import apply_ddl

    apply_ddl(scratch_db)
    sources = {s.name: s for s in load_registry()}
    good = local.landing_dir / "forms" / "s1.jsonl"
    bad = local.landing_dir / "siblings" / "bank_fa" / "bad.csv"
    for path, body in ((good, b'{"submission_id": "F1", "form_type": "feedback", '
                              b'"submitted_at": "2026-03-01T10:00:00Z", "email": "a@b.example"}\n'),
                       (bad, "نام;تلفن\n".encode("utf-16"))):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        path.chmod(0o644)  # dropped by another program with a world-readable mode
    with psycopg.connect(scratch_db, autocommit=True) as conn:
        assert load_file(conn, sources["forms"], good, local).status == "loaded"
        assert load_file(conn, sources["sibling_bank_fa"], bad, local).status == "quarantined"
    assert _assert_private_tree(local.home / "archive") == 1
    assert _assert_private_tree(local.quarantine_dir) == 2  # the file and its reason
