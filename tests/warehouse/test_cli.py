"""`ckp` sub-commands run as a user runs them: the console script in a fresh process (tests/ckp_cli.py).

Each test checks what the command means: its exit code, what it prints (and what it must not print, such as
the warehouse password) and its effect (a server running or stopped, files and rows written, a batch retired).
Also tested elsewhere: `erase` (each entry point), `customer-report` and `identity-eval` in
test_erasure_entry_points.py; `run` in tests/e2e/test_pipeline.py, `bench` in tests/e2e/test_cli_bench.py (see
SUBPROCESS_TESTS in tests/unit/test_cli_coverage.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import uuid
from pathlib import Path

import psycopg
import pytest
from ckp_cli import ckp_env, run_ckp

from crm_knowledge.netports import free_port
from crm_knowledge.warehouse.bootstrap import apply_ddl

pytestmark = pytest.mark.warehouse


def test_warehouse_lifecycle():
    """A new home: status/url say it is not running; start creates and starts it (DDL applied, password not
    printed); start again changes nothing; stop stops it; stop again says so.

    The home is under the test home, not pytest's tmp_path: the server runs as an unprivileged user when the
    tests run as root, and every pytest session resets /tmp/pytest-of-<user> to mode 0700.
    """
    home = Path(os.environ["CKP_HOME"]) / f"cli-lifecycle-{uuid.uuid4().hex[:8]}"
    env = ckp_env(CKP_HOME=str(home), CKP_WAREHOUSE_PORT=str(free_port()), WAREHOUSE_URL=None,
                  CKP_ORDERS_URL=None)
    try:
        status = run_ckp("warehouse", "status", env=env)
        assert (status.returncode, status.stdout.split()[0]) == (1, "running=False")
        url = run_ckp("warehouse", "url", env=env)
        assert url.returncode == 1 and "not running" in url.stderr and url.stdout == ""

        started = run_ckp("warehouse", "start", env=env, timeout=300)
        assert started.returncode == 0, started.stderr[-3000:]
        assert started.stdout.startswith("warehouse running: postgresql://") and ":***@" in started.stdout
        password = json.loads((home / "warehouse" / "server.json").read_text())["password"]
        assert password and password not in started.stdout + started.stderr

        status = run_ckp("warehouse", "status", env=env)
        assert (status.returncode, status.stdout.split()[0]) == (0, "running=True")
        url = run_ckp("warehouse", "url", env=env)
        assert url.returncode == 0 and password in url.stdout  # asked for: the full URL
        with psycopg.connect(url.stdout.strip()) as conn:
            schemas = {r[0] for r in conn.execute("select schema_name from information_schema.schemata")}
        assert {"raw", "pii", "audit", "identity", "scoring"} <= schemas  # `start` applied the DDL

        again = run_ckp("warehouse", "start", env=env, timeout=300)
        assert again.returncode == 0 and again.stdout.startswith("warehouse running:")

        stopped = run_ckp("warehouse", "stop", env=env)
        assert (stopped.returncode, stopped.stdout.strip()) == (0, "stopped")
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url.stdout.strip(), connect_timeout=5).close()
        status = run_ckp("warehouse", "status", env=env)
        assert (status.returncode, status.stdout.split()[0]) == (1, "running=False")
        assert run_ckp("warehouse", "stop", env=env).stdout.strip() == "not running (or external)"
    finally:
        run_ckp("warehouse", "stop", env=env)
        shutil.rmtree(home, ignore_errors=True)


def test_demo_generates_sources_and_a_day_more(scratch_db_factory, tmp_path):
    """`ckp demo` writes every file source into the landing zone, the orders database and the ground truth;
    `--increment-day` adds one more day on top."""
    wh, orders = scratch_db_factory(), scratch_db_factory()
    home = tmp_path / "home"
    env = ckp_env(CKP_HOME=str(home), WAREHOUSE_URL=wh, CKP_ORDERS_URL=orders, CKP_LANDING_DIR=None)
    # the scratch databases exist only for this demo: say so, or the demo refuses to touch them
    res = run_ckp("demo", "--size", "40", "--seed", "3", "--overwrite-external-db", env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout)
    assert (summary["kind"], summary["size"], summary["seed"]) == ("full", 40, 3)
    assert summary["persons"] >= 40 and all(n >= 0 for n in summary["counts"].values())
    for path in summary["paths"].values():
        assert Path(path).exists(), path
    landing = home / "landing"
    assert {p.parent.name for p in landing.rglob("*") if p.is_file()} >= {"forms", "contacts"}
    assert (home / "demo" / "ground_truth.csv").read_text(encoding="utf-8").count("\n") > 40
    with psycopg.connect(orders) as conn:
        customers = conn.execute("select count(*) from customers").fetchone()[0]
        orders_before = conn.execute("select count(*) from orders").fetchone()[0]
    assert customers > 0 and orders_before > 0

    files_before = {p for p in landing.rglob("*") if p.is_file()}
    more = run_ckp("demo", "--increment-day", "2026-11-21", "--seed", "3", "--overwrite-external-db", env=env,
                   timeout=600)
    assert more.returncode == 0, more.stderr[-3000:]
    assert json.loads(more.stdout)["kind"] == "increment"
    assert {p for p in landing.rglob("*") if p.is_file()} > files_before  # new files, the old ones kept
    with psycopg.connect(orders) as conn:
        assert conn.execute("select count(*) from orders").fetchone()[0] > orders_before

    bad = run_ckp("demo", "--increment-day", "21.11.2026", env=env)
    assert bad.returncode == 1 and bad.stderr.startswith("error: ") and "21.11.2026" in bad.stderr


FORM_COLS = ("submission_id", "form_type", "submitted_at", "email")


def _open_batch(url: str, batch_id: str, rows: list[dict]) -> None:
    """A forms batch as ingestion records it (ledger row + raw rows), waiting for the raw quality gate."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "insert into audit.load_batches (batch_id, source_name, source_kind, source_file, checksum, rows_read, "
            "rows_loaded, status, finished_at) values (%s, 'forms', 'forms', %s, %s, %s, %s, 'loaded', now())",
            (batch_id, f"forms/{batch_id}.jsonl", f"sha-{batch_id}", len(rows), len(rows)))
        for i, row in enumerate(rows, start=1):
            conn.execute(
                "insert into raw.form_submissions (submission_id, form_type, submitted_at, email, _batch_id, "
                "_source_file, _loaded_at, _row_number, _record_hash) values (%s, %s, %s, %s, %s, %s, now(), %s, %s)",
                (*[row.get(c) for c in FORM_COLS], batch_id, f"forms/{batch_id}.jsonl", i, f"h{i}"))


def _row(i: int, **over) -> dict:
    return {"submission_id": f"F{i:07d}", "form_type": "registration", "submitted_at": "2026-03-01T10:22:00+03:30",
            "email": f"customer{i}@example.ir", **over}


def test_batches_held_and_retire(scratch_db, settings, tmp_path):
    """`ckp batches held` lists what the raw gate holds; `retire` sets one aside with a reason, refuses
    anything else with a clear error and exit 1."""
    from crm_knowledge.quality import gate
    from crm_knowledge.quality.gate import CriticalDataQualityError

    apply_ddl(scratch_db)
    env = ckp_env(WAREHOUSE_URL=scratch_db, CKP_HOME=str(tmp_path / "home"))
    empty = run_ckp("batches", "held", env=env)
    assert (empty.returncode, empty.stdout, empty.stderr.strip().splitlines()[-1]) == (0, "", "0 held batch(es)")

    _open_batch(scratch_db, "b-bad", [_row(1), _row(2, submission_id=None)])
    _open_batch(scratch_db, "b-fine", [_row(3)])
    with pytest.raises(CriticalDataQualityError):
        gate.validate_raw_batches("raw.form_submissions", ["b-bad", "b-fine"], "run-1",
                                  settings=dataclasses.replace(settings, home=tmp_path), url=scratch_db)
    held = run_ckp("batches", "held", env=env)
    assert held.returncode == 0, held.stderr
    assert held.stdout.startswith("b-bad\tforms\tforms/b-bad.jsonl\t2 rows") and "b-fine" not in held.stdout
    assert held.stderr.strip().splitlines()[-1] == "1 held batch(es)"

    for batch, reason, why in (("b-bad", " ", "a reason is required"), ("b-fine", "x", "not held"),
                               ("b-nope", "x", "no batch 'b-nope'")):
        refused = run_ckp("batches", "retire", batch, "--reason", reason, env=env)
        assert refused.returncode == 1 and refused.stderr.startswith("error: ") and why in refused.stderr, why
    retired = run_ckp("batches", "retire", "b-bad", "--reason", "replaced by forms/b-bad-corrected.jsonl", env=env)
    assert (retired.returncode, retired.stdout.strip()) == (0, "batch b-bad retired")
    with psycopg.connect(scratch_db) as conn:
        status, error = conn.execute("select status, error from audit.load_batches where batch_id = 'b-bad'"
                                     ).fetchone()
    assert status == "retired" and error.startswith("retired: replaced by forms/b-bad-corrected.jsonl (was: ")
    assert run_ckp("batches", "held", env=env).stdout == ""
    missing = run_ckp("batches", "retire", "b-bad", env=env)  # --reason is required by the parser
    assert missing.returncode == 2 and "--reason" in missing.stderr


def test_pii_scan_exit_codes(scratch_db_factory, tmp_path):
    """`ckp pii-scan`: 0 when clean, 1 with the findings (places, never values) written out, 2 when there is
    nothing to search for."""
    from crm_knowledge import settings as settings_module
    from crm_knowledge.demo import generate
    from crm_knowledge.privacy.pii_scan import demo_needles

    wh, orders = scratch_db_factory(), scratch_db_factory()
    home = tmp_path / "home"
    env = ckp_env(WAREHOUSE_URL=wh, CKP_ORDERS_URL=orders, CKP_HOME=str(home), CKP_LANDING_DIR=None)
    mp = pytest.MonkeyPatch()
    for name in ("WAREHOUSE_URL", "CKP_ORDERS_URL", "CKP_HOME"):
        mp.setenv(name, env[name])
    mp.delenv("CKP_LANDING_DIR", raising=False)
    try:
        local = settings_module.get_settings()
        generate(size=30, seed=5, settings=local, write_orders_db=False)  # the ground truth: demo needles
        email, (_, pid) = next((n, v) for n, v in demo_needles(local).items() if v[0] == "email")
    finally:
        mp.undo()
    apply_ddl(wh)

    clean = run_ckp("pii-scan", "-o", str(tmp_path / "clean.json"), env=env)
    assert clean.returncode == 0, clean.stderr[-3000:]
    report = json.loads((tmp_path / "clean.json").read_text())
    assert report["clean"] is True and report["needles"] > 60 and report["columns_scanned"] > 20

    with psycopg.connect(wh) as conn:
        conn.execute("create table scoring.leak (note text)")
        conn.execute("insert into scoring.leak values (%s)", (f"wrote to {email.upper()} today",))
    found = run_ckp("pii-scan", "-o", str(tmp_path / "found.json"), env=env)
    assert found.returncode == 1
    out = json.loads((tmp_path / "found.json").read_text())
    assert [(f["location"], f["kind"], f["persons"]) for f in out["findings"]] == [
        ("scoring.leak.note", "email", [pid])]
    assert email.lower() not in (found.stdout + found.stderr + json.dumps(out)).lower()

    nothing = run_ckp("pii-scan", "--needles", "vault", env=env)  # no vault built: nothing to look for
    assert nothing.returncode == 2 and "no identifiers to search for" in nothing.stderr


def test_erase_refuses_unusable_requests_and_records_a_no_match(scratch_db, tmp_path):
    """`ckp erase`: no identifier or a malformed one is refused (exit 1, the value not echoed); a request
    naming nobody is recorded once as no_match, tombstoned, with counts only on the terminal."""
    apply_ddl(scratch_db)
    env = ckp_env(WAREHOUSE_URL=scratch_db, CKP_HOME=str(tmp_path / "home"), CKP_LANDING_DIR=None)
    nothing = run_ckp("erase", "--reason", "ticket 1", env=env)
    assert nothing.returncode == 1 and "at least one identifier" in nothing.stderr
    bad = run_ckp("erase", "--phone", "12", "--reason", "ticket 2", env=env)
    assert bad.returncode == 1 and bad.stderr.startswith("error: ") and "phone" in bad.stderr

    res = run_ckp("erase", "--email", "Nobody.Here@Example.ir", "--reason", "ticket 3", env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    result = json.loads(res.stdout)
    assert (result["status"], result["origin"], result["customers_erased"]) == ("no_match", "cli", 0)
    assert result["tombstones"] == 1
    assert "nobody.here" not in (res.stdout + res.stderr).lower()
    again = run_ckp("erase", "--email", "nobody.here@example.ir", "--reason", "ticket 3", env=env)
    assert json.loads(again.stdout)["status"] == "already_erased"
    with psycopg.connect(scratch_db) as conn:
        rows = conn.execute("select origin, status, reason from audit.erasure_requests").fetchall()
        kinds = conn.execute("select identifier_kind from identity.erasure_tombstones").fetchall()
    assert rows == [("cli", "no_match", "ticket 3")] and kinds == [("email",)]
