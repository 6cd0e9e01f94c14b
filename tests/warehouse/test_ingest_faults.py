"""Fault injection for ingestion: the warehouse dies mid-load, the disk is full, two
processes run the same load at once. Each test asserts nothing lost, nothing duplicated and a clear reason.

They are marked `faults` (slower: real subprocesses, killed sessions); they run in `make test` and CI like the
others, `-m "not faults"` skips them for a quick local loop.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from ckp_cli import ckp_env, run_ckp

from crm_knowledge.ingest import errors, ledger, readers
from crm_knowledge.ingest import files as files_mod
from crm_knowledge.ingest.files import ingest_source
from crm_knowledge.ingest.registry import load_registry
from crm_knowledge.settings import PROJECT_ROOT, get_settings
from crm_knowledge.warehouse.bootstrap import apply_ddl

pytestmark = [pytest.mark.warehouse, pytest.mark.faults]

HEADER = "interaction_id,channel,occurred_at,customer_name,email,phone,customer_ref,topic,notes,agent_id"


@pytest.fixture()
def db(scratch_db):
    apply_ddl(scratch_db)
    return get_settings().server_url(psycopg.conninfo.conninfo_to_dict(scratch_db)["dbname"])


def _contacts():
    return {s.name: s for s in load_registry()}["contacts"]


def _write_contacts(local, name: str, first: int, count: int) -> Path:
    path = local.landing_dir / "contacts" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"I{i},phone,2026-03-01T10:00:00Z,Name {i},c{i}@example.com,0912{i:07d},,billing,ok,a1\n"
                   for i in range(first, first + count))
    path.write_text(HEADER + "\n" + rows, encoding="utf-8")
    return path


def q(url: str, query: str, *args):
    with psycopg.connect(url) as conn:
        return conn.execute(query, args).fetchall()


def _midway(monkeypatch, fault) -> None:
    """Call `fault()` half-way through a CSV file of 3000 rows, on whichever path loads it: streaming the file to
    the server's COPY (the loader's fast path) or the Python reader's rows. `fault` acts once however often
    it is called."""
    real_read = readers.read_csv

    def reading(path, cfg_):
        parsed = real_read(path, cfg_)

        def rows():
            for i, item in enumerate(parsed.rows):
                if i == 1500:
                    fault()
                yield item
        return readers.ParsedFile(parsed.header, rows())

    monkeypatch.setitem(readers.READERS, "csv", reading)
    real_stream = files_mod.copy_file_in

    def streaming(conn, statement, path):
        data = Path(path).read_bytes()
        with conn.cursor() as cur:
            with cur.copy(statement) as copy:
                for start in range(0, len(data), 4096):
                    if start >= len(data) // 2:
                        fault()
                    copy.write(data[start:start + 4096])
            return cur.rowcount

    monkeypatch.setattr(files_mod, "copy_file_in", streaming)
    assert real_stream is not streaming


def _ledger(url):
    return q(url, "select batch_id, source_file, status, rows_read, rows_loaded, rows_rejected, error "
                  "from audit.load_batches order by started_at")


def test_warehouse_killed_mid_load_rolls_back_aborts_and_reloads(db, local, monkeypatch):
    """The loader's warehouse session is terminated mid-COPY: nothing of the file is kept, the ledger row stays
    `running`; the next load marks it `aborted` (when, why), loads the file again, and converges."""
    cfg = _contacts()
    _write_contacts(local, "a.csv", 1, 3000)
    real = readers.read_csv
    killed = []

    def kill_once():
        if not killed:
            killed.extend(q(db, "select pg_terminate_backend(pid) from pg_stat_activity "
                                "where application_name = 'loader-under-test'"))
            time.sleep(0.2)

    _midway(monkeypatch, kill_once)
    url = db + ("&" if "?" in db else "?") + "application_name=loader-under-test"
    with pytest.raises((errors.LoadFailed, psycopg.OperationalError)) as exc:
        ingest_source(cfg, url=url, settings=local)
    assert killed == [(True,)]
    assert "c1501@example.com" not in str(exc.value)
    assert q(db, "select count(*) from raw.contact_interactions") == [(0,)]  # rolled back
    (crashed,) = _ledger(db)
    assert crashed[2] == "running"  # the dead session could not close it
    assert (local.landing_dir / "contacts" / "a.csv").exists()

    monkeypatch.setitem(readers.READERS, "csv", real)
    results = ingest_source(cfg, url=db, settings=local)
    assert [(r.status, r.rows_loaded) for r in results] == [("loaded", 3000)]
    batches = _ledger(db)
    assert [(b[0], b[2]) for b in batches] == [(crashed[0], "aborted"), (results[0].batch_id, "loaded")]
    assert "aborted" in batches[0][6] and "did not finish" in batches[0][6] and "UTC" in batches[0][6]
    assert q(db, "select finished_at is not null from audit.load_batches where status = 'aborted'") == [(True,)]
    assert q(db, "select count(*), count(distinct interaction_id) from raw.contact_interactions") == [(3000, 3000)]

    # `ckp batches aborted` lists it, re-loaded by the second batch
    out = run_ckp("batches", "aborted", env=ckp_env(WAREHOUSE_URL=db), timeout=120)
    assert out.returncode == 0, out.stderr
    (line,) = out.stdout.splitlines()
    assert line.startswith(crashed[0]) and f"re-loaded by {results[0].batch_id}" in line
    assert "1 aborted batch(es), 0 not re-loaded yet" in out.stderr

    # a third run changes nothing
    assert ingest_source(cfg, url=db, settings=local) == []
    assert len(_ledger(db)) == 2


def test_ckp_batches_recover_aborts_only_dead_loads(db):
    """`ckp batches recover`: a batch left running by a dead process is aborted; one whose load is alive (it
    holds the source's lock) is left alone."""
    with psycopg.connect(db, autocommit=True) as conn:
        for source, batch in (("contacts", "contacts-dead"), ("forms", "forms-alive"),
                              ("orders.customers", "orders.customers-dead")):
            ledger.open_batch(conn, batch_id=batch, source_name=source, source_kind="x", source_file="f",
                              checksum=batch)
    with psycopg.connect(db, autocommit=True) as live, ledger.source_lock(live, "forms") as got:
        assert got
        out = run_ckp("batches", "recover", env=ckp_env(WAREHOUSE_URL=db), timeout=120)
        assert out.returncode == 0, out.stderr
        assert sorted(line.split("\t")[0] for line in out.stdout.splitlines()) == \
            ["contacts-dead", "orders.customers-dead"]
        assert "2 batch(es)" in out.stderr
    assert dict(q(db, "select batch_id, status from audit.load_batches")) == \
        {"contacts-dead": "aborted", "orders.customers-dead": "aborted", "forms-alive": "running"}
    out = run_ckp("batches", "aborted", env=ckp_env(WAREHOUSE_URL=db), timeout=120)
    assert out.returncode == 0 and "2 aborted batch(es), 2 not re-loaded yet" in out.stderr
    assert "not re-loaded yet" in out.stdout


CONCURRENT = """
import dataclasses, json, sys
from pathlib import Path
from crm_knowledge.settings import get_settings
from crm_knowledge.ingest.files import ingest_source
from crm_knowledge.ingest.registry import load_registry
cfg = {s.name: s for s in load_registry()}["contacts"]
st = dataclasses.replace(get_settings(), home=Path(sys.argv[2]), landing_dir=Path(sys.argv[3]))
print(json.dumps([r.as_dict() for r in ingest_source(cfg, url=sys.argv[1], settings=st)]))
"""


def test_two_processes_loading_the_same_source_load_each_file_once(db, local):
    """Two processes start the same load at the same moment: the source's advisory lock serialises them; the
    second finds the files already archived. Every row once, one `loaded` batch per file, nothing failed."""
    for k in range(4):
        _write_contacts(local, f"f{k}.csv", k * 2000 + 1, 2000)
    env = {**os.environ, "WAREHOUSE_URL": db, "PYTHONPATH": str(PROJECT_ROOT / "plugins")}
    args = [sys.executable, "-c", CONCURRENT, db, str(local.home), str(local.landing_dir)]
    # Hold the lock while both start, so they certainly run at the same time and contend for it.
    with psycopg.connect(db, autocommit=True) as gate, ledger.source_lock(gate, "contacts"):
        procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                 for _ in range(2)]
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            waiting = gate.execute("select count(*) from pg_locks where locktype = 'advisory' and not granted "
                                   "and database = (select oid from pg_database where datname = current_database())"
                                   ).fetchone()[0]
            if waiting == 2:
                break
            time.sleep(0.1)
        assert waiting == 2, "both loads should be waiting for the source's lock"
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    results = [json.loads(o[0].strip().splitlines()[-1]) for o in outs]
    loaded = sorted(r["file"] for res in results for r in res if r["status"] == "loaded")
    assert loaded == ["f0.csv", "f1.csv", "f2.csv", "f3.csv"]
    assert q(db, "select count(*), count(distinct interaction_id) from raw.contact_interactions") == [(8000, 8000)]
    assert q(db, "select status, count(*) from audit.load_batches group by 1") == [("loaded", 4)]
    assert sorted(p.name for p in (local.home / "archive" / "contacts").iterdir()) == \
        ["f0.csv", "f1.csv", "f2.csv", "f3.csv"]


def test_warehouse_disk_full_fails_the_file_whole_and_the_rerun_loads_it(db, local):
    """The database runs out of space mid-COPY (SQLSTATE 53100, raised by the server): that is an outage, not
    a bad row: nothing of the file is kept or rejected, the reason says disk full, the file stays in landing."""
    cfg = _contacts()
    _write_contacts(local, "a.csv", 1, 500)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("""
            create function public.disk_full() returns trigger language plpgsql as $$
            begin
                if new.interaction_id = 'I250' then
                    raise exception 'could not extend file "base/16384/24576": No space left on device'
                        using errcode = 'disk_full', detail = 'row ' || new.email;
                end if;
                return new;
            end $$;
            create trigger disk_full before insert on raw.contact_interactions
                for each row execute function public.disk_full();""")
    with pytest.raises(errors.LoadFailed, match=r"DiskFull \(SQLSTATE 53100\)") as exc:
        ingest_source(cfg, url=db, settings=local)
    assert "c250@example.com" not in str(exc.value) and "24576" not in str(exc.value)
    assert q(db, "select count(*) from raw.contact_interactions") == [(0,)]
    assert q(db, "select count(*) from raw.load_rejects") == [(0,)]  # not mistaken for a bad row
    (batch,) = _ledger(db)
    assert batch[2] == "failed" and "DiskFull" in batch[6] and "c250" not in batch[6]
    assert (local.landing_dir / "contacts" / "a.csv").exists()

    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("drop trigger disk_full on raw.contact_interactions")
    results = ingest_source(cfg, url=db, settings=local)
    assert [(r.status, r.rows_loaded) for r in results] == [("loaded", 500)]
    assert q(db, "select count(*), count(distinct interaction_id) from raw.contact_interactions") == [(500, 500)]


def test_ckp_home_disk_full_after_commit_converges(db, local, monkeypatch):
    """ENOSPC while the loaded file moves to the archive (CKP_HOME full): the batch is committed and the run
    fails with the OS's reason; the re-run recognises the file by its checksum, archives it and loads nothing
    twice."""
    cfg = _contacts()
    _write_contacts(local, "a.csv", 1, 100)
    real_move = files_mod.shutil.move

    def full(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))

    monkeypatch.setattr(files_mod.shutil, "move", full)
    with pytest.raises(OSError, match="No space left on device"):
        ingest_source(cfg, url=db, settings=local)
    assert q(db, "select status, rows_loaded from audit.load_batches") == [("loaded", 100)]
    assert (local.landing_dir / "contacts" / "a.csv").exists()

    monkeypatch.setattr(files_mod.shutil, "move", real_move)
    results = ingest_source(cfg, url=db, settings=local)
    assert [r.status for r in results] == ["skipped"]
    assert q(db, "select count(*) from raw.contact_interactions") == [(100,)]
    assert not (local.landing_dir / "contacts" / "a.csv").exists()
    assert (local.home / "archive" / "contacts" / "a.csv").exists()


def test_embedded_warehouse_crashes_mid_load_and_the_rerun_converges(db, local, settings, monkeypatch):
    """The real thing: the embedded warehouse is stopped with `pg_ctl stop -m immediate` (a crash: no
    shutdown checkpoint, crash recovery on start) while a file streams into it. After restart: no row of the
    file, the ledger row `running`; the next load marks it aborted and loads the file exactly once."""
    from crm_knowledge.warehouse import server

    if not settings.embedded:
        pytest.skip("needs the embedded warehouse (WAREHOUSE_URL points at a server this test must not kill)")
    cfg = _contacts()
    _write_contacts(local, "a.csv", 1, 3000)
    real = readers.read_csv
    crashed = []

    def crash_once():
        if not crashed:
            res = server._pg("pg_ctl", "stop", "-m", "immediate", "-D", str(settings.pgdata_dir),
                             user=server._run_as())
            crashed.append(res.returncode)

    _midway(monkeypatch, crash_once)
    try:
        with pytest.raises((errors.LoadFailed, psycopg.OperationalError)):
            ingest_source(cfg, url=db, settings=local)
    finally:
        server.start(settings)
    assert crashed == [0]
    assert q(db, "select count(*) from raw.contact_interactions") == [(0,)]
    assert [b[2] for b in _ledger(db)] == ["running"]

    monkeypatch.setitem(readers.READERS, "csv", real)
    monkeypatch.undo()
    results = ingest_source(cfg, url=db, settings=local)
    assert [(r.status, r.rows_loaded) for r in results] == [("loaded", 3000)]
    assert [b[2] for b in _ledger(db)] == ["aborted", "loaded"]
    assert q(db, "select count(*), count(distinct interaction_id) from raw.contact_interactions") == [(3000, 3000)]
    assert not (local.landing_dir / "contacts" / "a.csv").exists()
