"""No personal data in errors.

Identifiers (email, mobile, national ID, full name) are planted in failing rows of every source kind: CSV,
XLSX, JSON Lines and the orders database, in every way a row or file can fail (a value that does not convert,
a value the database refuses, an unclosed quote, a broken JSON line, a file without a header, an outage whose
error DETAIL quotes the row). Then the audit tables, the reject reasons, the auditor's report, the task log and
`ckp pii-scan`'s log and report coverage are searched for them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from pathlib import Path

import psycopg
import pytest

from crm_knowledge.ingest import errors, field_issues
from crm_knowledge.ingest.files import ingest_source
from crm_knowledge.ingest.orders_db import extract_orders_db
from crm_knowledge.ingest.registry import load_registry
from crm_knowledge.privacy.pii_scan import scan, scan_database
from crm_knowledge.settings import get_settings
from crm_knowledge.warehouse.bootstrap import apply_ddl

pytestmark = pytest.mark.warehouse

EMAIL = "kourosh.leakfinder@example.org"
MOBILE = "09127654321"
NATIONAL_ID = "0084575948"
NAME = "Kourosh Leakfinder"
NEEDLES = {EMAIL: ("email", "planted"), MOBILE: ("phone", "planted"), "+989127654321": ("phone", "planted"),
           "989127654321": ("phone", "planted"), NATIONAL_ID: ("national_id", "planted"),
           NAME.lower(): ("name", "planted")}
PLAIN = [EMAIL, MOBILE, "9127654321", NATIONAL_ID, NAME, "Leakfinder"]

DESTINATIONS_YML = "destinations: []\n"


def _sources():
    return {s.name: s for s in load_registry()}


@pytest.fixture()
def world(scratch_db_factory, settings, tmp_path):
    wh, src = scratch_db_factory(), scratch_db_factory()
    apply_ddl(wh)
    with psycopg.connect(src, autocommit=True) as conn:
        conn.execute("""
            create table customers (customer_id bigint primary key, first_name text, last_name text, email text,
                phone text, national_id text, birth_date date, gender text, street text, city text, province text,
                postcode text, company text, business_type text, created_at timestamptz, updated_at timestamptz);
            create table orders (order_id int primary key, customer_id bigint, ordered_at timestamptz, status text,
                channel text, total_amount numeric, currency text, updated_at timestamptz);""")
        conn.execute("insert into customers (customer_id, first_name, last_name, email, phone, national_id, "
                     "updated_at) values (1, 'Sara', 'Karimi', 's@example.com', '09120000001', null, now()), "
                     "(99999999999, 'Kourosh', 'Leakfinder', %s, %s, %s, now())", (EMAIL, MOBILE, NATIONAL_ID))
        conn.execute("insert into orders values (10, 1, now(), 'paid', 'web', 100, 'IRR', now()), "
                     "(11, 1, now(), 'paid', 'web', 1e20, 'IRR', now())")
    home = tmp_path / "home"
    local = dataclasses.replace(settings, home=home, landing_dir=tmp_path / "landing",
                                external_warehouse_url=wh, external_orders_url=src)
    return {"wh": wh, "src": src, "settings": local}


def _write(path: Path, data: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data, encoding="utf-8")
    return path


def _plant_files(local) -> None:
    land = local.landing_dir
    who = {"email": EMAIL, "phone": MOBILE, "national_id": NATIONAL_ID, "full_name": NAME}
    forms = [
        {"submission_id": "F1", "form_type": "registration", "submitted_at": "2026-03-01T10:00:00Z"},
        {"submission_id": "F2", "form_type": "feedback", "submitted_at": "2026-03-01T10:00:00Z",
         "rating": 99999999999, **who},
        {"submission_id": "F3", "form_type": "feedback", "submitted_at": "not a time", **who},
        {"submission_id": "F4", "form_type": "feedback", "submitted_at": "2026-03-01T10:00:00Z",
         "message": f"{EMAIL}\u0000", **who},
        {"submission_id": "F5", "form_type": "feedback", "submitted_at": "2026-03-01T10:00:00Z",
         "birth_date": f"{NATIONAL_ID}", **who},
    ]
    body = "\n".join(json.dumps(f) for f in forms) + f'\n{{"submission_id": "F6", "email": "{EMAIL}", "phone\n'
    _write(land / "forms" / "a.jsonl", body)
    # the safety net: a value only the database refuses (convert's limit lifted in the test)
    _write(land / "forms" / "b.jsonl", json.dumps({"submission_id": "F7", "form_type": "feedback",
                                                   "submitted_at": "2026-03-01T10:00:00Z", "rating": 2**40, **who}))
    header = "interaction_id,channel,occurred_at,customer_name,email,phone,customer_ref,topic,notes,agent_id"
    _write(land / "contacts" / "a.csv", "\n".join([
        header,
        "I1,phone,2026-03-01T10:00:00Z,Ali,,,,billing,ok,a1",
        f"I2,phone,yesterday,{NAME},{EMAIL},{MOBILE},,billing,ok,a1",
        f'I3,phone,2026-03-01T10:00:00Z,{NAME},{EMAIL},{MOBILE},,billing,"never closed,a1',
        f"I4,phone,2026-03-01T10:00:00Z,{NAME},{EMAIL}",
        "I5,phone,2026-03-01T10:00:00Z,Reza,,,,billing,ok,a1"]) + "\n")
    # no header: its first line is a customer's row
    _write(land / "contacts" / "b.csv", f"I9,phone,2026-03-01T10:00:00Z,{NAME},{EMAIL},{MOBILE},,x,y,a1\n")
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "members"
    ws.append(["member_id", "full_name", "email", "phone", "birth_date", "city", "joined"])
    ws.append(["T1", "Sara Karimi", "s@example.com", "09120000001", "1990-01-02", "Tehran", "2020-01-01"])
    ws.append(["T2", NAME, EMAIL, MOBILE, NATIONAL_ID, "Tehran", "2020-01-01"])
    path = land / "siblings" / "travel" / "m.xlsx"
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)


def test_identifiers_in_failing_rows_never_reach_audit_reports_or_logs(world, settings, caplog, monkeypatch):
    local, wh = world["settings"], world["wh"]
    server_log = settings.pgdata_dir.parent / "postgres.log"
    server_log_start = server_log.stat().st_size if settings.embedded and server_log.exists() else None
    _plant_files(local)
    sources = _sources()
    caplog.set_level(logging.DEBUG)
    results = {}
    for name in ("forms", "contacts", "sibling_travel"):
        results[name] = ingest_source(sources[name], url=wh, settings=local)
    extracted = extract_orders_db(sources["orders"], ["customers", "orders"], settings=local)

    # every row loaded as received, only structurally broken ones rejected (nothing blocked); the values staging
    # cannot convert (F2, F7 rating, F3 submitted_at, F5 birth_date, I2 occurred_at, T2 birth_date) are field issues
    assert [(r.rows_loaded, r.rows_rejected) for r in results["forms"]] == [(4, 2), (1, 0)]
    assert [r.status for r in results["contacts"]] == ["loaded", "quarantined"]
    assert (results["contacts"][0].rows_loaded, results["contacts"][0].rows_rejected) == (3, 2)
    assert [(r.rows_loaded, r.rows_rejected) for r in results["sibling_travel"]] == [(2, 0)]
    with psycopg.connect(wh, autocommit=True) as conn:
        field_issues.check_new_batches(conn)
    assert [(r.table, r.rows_loaded, r.rows_rejected) for r in extracted] == \
        [("customers", 1, 1), ("orders", 1, 1)]

    # an outage whose error DETAIL (and message) quote the row: the ledger and the exception keep neither
    with psycopg.connect(wh, autocommit=True) as conn:
        conn.execute(f"""
            create function public.outage() returns trigger language plpgsql as $$
            begin
                raise exception 'could not extend file "base/16384/24576": No space left on device'
                    using errcode = 'disk_full', detail = '{NAME} ' || new.national_id || ' ' || new.email;
            end $$;
            create trigger outage before insert on raw.form_submissions
                for each row execute function public.outage();""")
    _write(local.landing_dir / "forms" / "c.jsonl", json.dumps(
        {"submission_id": "F8", "form_type": "registration", "submitted_at": "2026-03-01T10:00:00Z",
         "email": EMAIL, "phone": MOBILE, "national_id": NATIONAL_ID, "full_name": NAME}) + "\n")
    with pytest.raises(errors.LoadFailed) as exc:
        ingest_source(sources["forms"], url=wh, settings=local)
    assert "DiskFull" in str(exc.value)
    _assert_clean(str(exc.value), "the raised error")

    # audit tables (what ckp_auditor reads) and reject reasons
    with psycopg.connect(wh) as conn:
        texts = [r[0] for r in conn.execute(
            "select coalesce(error, '') || ' ' || coalesce(source_file, '') from audit.load_batches "
            "union all select array_to_string(missing_columns || unexpected_columns, ' ') from audit.schema_drift "
            "union all select reason from raw.load_rejects "
            "union all select reason || ' ' || source_column from audit.field_issues")]
        # forms 2, contacts 2, orders 2
        assert conn.execute("select count(*) from raw.load_rejects").fetchone()[0] == 6
        assert conn.execute("select count(*) from audit.field_issues").fetchone()[0] == 6
        # the rejected records themselves are kept, in raw (locked), for the data engineers
        assert conn.execute("select count(*) from raw.load_rejects where record::text like %s",
                            (f"%{EMAIL}%",)).fetchone()[0] >= 5
    for text in texts:
        _assert_clean(text, "an audit row")
    findings, columns = scan_database(wh, NEEDLES, schemas=["audit"])
    assert columns > 5 and findings == []

    # the warehouse's server log: the loader's sessions log errors tersely (no DETAIL, CONTEXT or statement)
    if server_log_start is not None:
        with open(server_log, "rb") as fh:
            fh.seek(server_log_start)
            appended = fh.read().decode("utf-8", errors="replace")
        # The embedded server logs no ERROR lines at all (log_min_messages = log, warehouse/server.py: an
        # error message can quote a value); whatever it did log holds none of the row's identifiers.
        _assert_clean(appended, "the warehouse's server log")

    # the task log
    log_text = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "rejected" in log_text and "QUARANTINED" in log_text
    _assert_clean(log_text, "the log")

    # the auditor's report, and `ckp pii-scan`'s coverage of reports and logs
    from crm_knowledge.quality.report import build_run_report

    page = build_run_report("pii-test", settings=local, url=wh, since=dt.datetime(1970, 1, 1, tzinfo=dt.UTC),
                            build_docs=False)
    html = page.read_text(encoding="utf-8")
    assert "DiskFull" in html and "required column" in html  # the reasons are there, without values
    _assert_clean(html, "the auditor's report")
    logs = local.home / "logs" / "runs"
    logs.mkdir(parents=True)
    (logs / "ingest.log").write_text(log_text, encoding="utf-8")
    config = local.home / "destinations.yml"
    config.write_text(DESTINATIONS_YML, encoding="utf-8")
    result = scan(local, NEEDLES, url=wh, config_path=config)
    assert result.files_scanned >= 2 and result.clean, result.findings

    # ... and the scan does find what a leak would leave there
    (logs / "leaky.log").write_text(f"ERROR copy failed: CONTEXT: COPY x, line 3: \"{EMAIL},{MOBILE}\"\n")
    leaky = scan(local, NEEDLES, url=wh, config_path=config)
    assert {(Path(f.location).name, f.kind) for f in leaky.findings} == {("leaky.log", "email"), ("leaky.log", "phone")}


def _assert_clean(text: str, where: str) -> None:
    for value in PLAIN:
        assert value.lower() not in text.lower(), f"{value!r} leaked into {where}: {text[:500]}"


def test_scrub_and_describe_keep_class_column_and_row():
    assert errors.scrub(f"row 12: bad {EMAIL} and 0912 765 4321 and \"{NAME}\" at line 7") == \
        "row 12: bad «email» and «digits» and «…» at line 7"
    with psycopg.connect(get_settings().warehouse_url, autocommit=True) as conn:
        conn.execute("create temp table t (a int, b text)")
        with pytest.raises(psycopg.Error) as exc, conn.cursor() as cur, cur.copy("copy t from stdin") as copy:
            copy.write_row((1, EMAIL))
            copy.write_row((99999999999, EMAIL))
    text = errors.describe(exc.value)
    assert text == ("NumericValueOutOfRange (SQLSTATE 22003): value «…» is out of range for type integer "
                    "(column a, copy line 2)")
    assert errors.is_data_error(exc.value)


def test_ckp_pii_scan_searches_logs_and_reports(scratch_db, tmp_path):
    """`ckp pii-scan` as an operator runs it: a vault customer's identifiers in a task log or a report fail it
    (exit 1, naming the file and the kind, not the value); clean logs and reports pass (exit 0)."""
    import os
    import subprocess
    import sys

    from crm_knowledge.settings import PROJECT_ROOT

    apply_ddl(scratch_db)
    with psycopg.connect(scratch_db) as conn:
        conn.execute("create table if not exists pii.pii_customer_profiles (customer_id text, email text, phone text, "
                     "national_id text, full_name text, first_name text, last_name text)")
        conn.execute("insert into pii.pii_customer_profiles values ('C-1', %s, '+989127654321', %s, %s, "
                     "'Kourosh', 'Leakfinder')", (EMAIL, NATIONAL_ID, NAME))
    home = tmp_path / "home"
    (home / "logs" / "runs").mkdir(parents=True)
    (home / "reports").mkdir(parents=True)
    (home / "logs" / "runs" / "ingest.log").write_text("INFO contacts: a.csv loaded, rejected 2\n")
    (home / "reports" / "latest.html").write_text("<p>rows rejected: 2</p>\n")
    env = {**os.environ, "WAREHOUSE_URL": scratch_db, "CKP_ORDERS_URL": scratch_db, "CKP_HOME": str(home),
           "PYTHONPATH": str(PROJECT_ROOT / "plugins")}

    def pii_scan():
        return subprocess.run([sys.executable, "-m", "crm_knowledge.cli", "pii-scan", "--needles", "vault"],
                              capture_output=True, text=True, env=env, timeout=300)

    clean = pii_scan()
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert json.loads(clean.stdout)["files_scanned"] >= 2
    (home / "logs" / "runs" / "ingest.log").write_text(
        f"ERROR CONTEXT:  COPY contact_interactions, line 3: \"I3,phone,{EMAIL},09127654321\"\n")
    (home / "reports" / "latest.html").write_text(f"<td>{NATIONAL_ID}</td>\n")
    leaky = pii_scan()
    assert leaky.returncode == 1
    found = {(Path(f["location"]).name, f["kind"]) for f in json.loads(leaky.stdout)["findings"]}
    assert found == {("ingest.log", "email"), ("ingest.log", "phone"), ("latest.html", "national_id")}
    assert EMAIL not in leaky.stdout and NATIONAL_ID not in leaky.stdout
