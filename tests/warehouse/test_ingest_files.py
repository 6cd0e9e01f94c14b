"""File ingestion against the real warehouse: exactly-once, quarantine, rejects, drift, encodings."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from crm_knowledge.ingest import field_issues
from crm_knowledge.ingest.files import load_file, pending_files
from crm_knowledge.ingest.registry import load_registry, parse_source

pytestmark = pytest.mark.warehouse


def _source(name: str):
    return {s.name: s for s in load_registry()}[name]


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def _batches(conn):
    return conn.execute(
        "select source_file, status, rows_read, rows_loaded, rows_rejected, error from audit.load_batches "
        "order by started_at").fetchall()


FORMS = [
    {"submission_id": "F1", "form_type": "registration", "submitted_at": "2026-03-01T10:00:00+03:30",
     "first_name": "علي", "last_name": "رضايي", "email": " Ali@Example.COM ", "phone": "۰۹۱۲۳۴۵۶۷۸۹",
     "birth_date": "1990-02-03", "consent_marketing": True},
    {"submission_id": "F2", "form_type": "complaint", "submitted_at": "2026-03-02T09:00:00Z",
     "message": "delivery late", "rating": "2", "utm_campaign": "spring"},
    {"submission_id": "F3", "form_type": "feedback", "submitted_at": "2026-03-02T09:00:00Z",
     "birth_date": "1990-13-45"},
]


def test_forms_load_once_with_rejects_and_extras(wh, local):
    cfg = _source("forms")
    body = "\n".join(json.dumps(r, ensure_ascii=False) for r in FORMS) + '\n{"submission_id": "F4", "form'
    path = _write(local.landing_dir / "forms" / "s1.jsonl", body)

    result = load_file(wh, cfg, path, local)
    # only the line that is no JSON object is rejected (a structural fault); F3's impossible birth date is not
    assert (result.status, result.rows_read, result.rows_loaded, result.rows_rejected) == ("loaded", 4, 3, 1)
    rows = wh.execute("select submission_id, first_name, phone, consent_marketing, rating, extras, submitted_at, "
                      "util.parse_timestamp(submitted_at) at time zone 'UTC', birth_date "
                      "from raw.form_submissions order by 1").fetchall()
    assert [r[0] for r in rows] == ["F1", "F2", "F3"]
    assert rows[0][1] == "علي" and rows[0][2] == "۰۹۱۲۳۴۵۶۷۸۹"  # raw keeps what customers typed
    assert rows[0][3] == "true" and rows[1][4] == "2"  # as received, as text
    assert rows[1][5] == {"utm_campaign": "spring"}  # unknown field kept, not dropped
    assert rows[0][6] == "2026-03-01T10:00:00+03:30" and str(rows[0][7]) == "2026-03-01 06:30:00"
    assert rows[2][8] == "1990-13-45"
    (reject,) = wh.execute("select row_number, reason, record from raw.load_rejects order by row_number").fetchall()
    assert reject[0] == 4 and "invalid JSON" in reject[1]
    # the value staging cannot convert is a field issue: source, row, column, reason, never the value
    assert field_issues.check_new_batches(wh) == {}
    (issue,) = wh.execute("select source_name, row_number, column_name, source_column, reason "
                          "from audit.field_issues").fetchall()
    assert issue[:4] == ("forms", 3, "birth_date", "birth_date") and "1990-13-45" not in issue[4]
    drift = wh.execute("select unexpected_columns from audit.schema_drift").fetchall()
    assert drift == [(["utm_campaign"],)]
    # the file left the landing zone only after it was recorded as loaded
    assert not path.exists() and (local.home / "archive" / "forms" / "s1.jsonl").exists()

    # The same content arriving again (a re-run, or a re-sent file) loads nothing twice.
    again = _write(local.landing_dir / "forms" / "s1-resent.jsonl", body)
    second = load_file(wh, cfg, again, local)
    assert second.status == "skipped" and second.batch_id == result.batch_id
    assert wh.execute("select count(*) from raw.form_submissions").fetchone()[0] == 3
    batches = _batches(wh)
    assert len(batches) == 1 and batches[0][2] == batches[0][3] + batches[0][4]


def test_unreadable_file_is_quarantined_with_reason(wh, local):
    cfg = _source("sibling_bank_fa")
    # UTF-16 is not Windows-1256: the whole file is unreadable.
    path = _write(local.landing_dir / "siblings" / "bank_fa" / "bad.csv", "شماره مشتری,نام\n1,علی\n", "utf-16")
    result = load_file(wh, cfg, path, local)
    assert result.status == "quarantined"
    assert not path.exists()
    moved = local.quarantine_dir / "sibling_bank_fa" / "bad.csv"
    assert moved.exists() and "batch" in moved.with_name("bad.csv.reason.txt").read_text()
    (status, error), = wh.execute("select status, error from audit.load_batches").fetchall()
    assert status == "quarantined" and "bad.csv" in error
    assert wh.execute("select count(*) from raw.sibling_customers").fetchone()[0] == 0


def test_wrong_columns_quarantine_and_good_file_still_loads(wh, local):
    cfg = _source("order_export_kiosk")
    _write(local.landing_dir / "order_exports" / "kiosk" / "a_corrupt.csv", "foo,bar,baz\n1,2,3\n")
    good = _write(local.landing_dir / "order_exports" / "kiosk" / "b.csv",
                  "order_id,customer_source_id,order_date,quantity,amount,items\n"
                  "K1,17,2026-01-02,2,150000,SKU1:2\n"
                  "K2,18,2026-01-03,1,abc,\n"
                  "K3,19,2026-01-04,1,۲۵۰۰۰۰,\n")
    results = [load_file(wh, cfg, p, local) for p in pending_files(cfg, local)]
    assert [r.status for r in results] == ["quarantined", "loaded"]
    assert "required column" in results[0].error
    rows = wh.execute("select order_id, amount, util.parse_decimal(amount), shop from raw.order_exports "
                      "order by 1").fetchall()
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("K1", "150000", 150000, "kiosk"), ("K2", "abc", None, "kiosk"), ("K3", "۲۵۰۰۰۰", 250000, "kiosk")]
    assert wh.execute("select count(*) from raw.load_rejects").fetchone() == (0,)
    field_issues.check_new_batches(wh)
    (row, column, reason), = wh.execute("select row_number, column_name, reason from audit.field_issues").fetchall()
    assert (row, column) == (2, "amount") and "not a number" in reason and "abc" not in reason
    assert good.exists() is False


def test_windows_1256_jalali_file(wh, local):
    cfg = _source("sibling_bank_fa")
    # Windows-1256 has no Persian ی: real exports write the Arabic ي, in the header too.
    text = ("شماره مشتري,نام,نام خانوادگي,کد ملي,تلفن همراه,تاريخ تولد,شهر,استان,کد پستي,تاريخ عضويت,نوع حساب\n"
            "B1,علي,کريمي,0012345679,09121112233,1369/11/14,تهران,تهران,1234567890,1400/01/01,جاري\n"
            "B2,مريم,احمدي,,09351112233,1370/13/45,شيراز,فارس,,1401/05/05,\n")
    path = _write(local.landing_dir / "siblings" / "bank_fa" / "customers.csv", text, "cp1256")
    result = load_file(wh, cfg, path, local)
    # B2's impossible birth date does not lose the customer: the record loads as received, staging reads its
    # birth date as NULL and a field issue records it (one is too few to hold the batch).
    assert (result.status, result.rows_loaded, result.rows_rejected) == ("loaded", 2, 0)
    assert field_issues.check_new_batches(wh) == {}
    assert wh.execute("select row_number, column_name, source_column from audit.field_issues").fetchall() == \
        [(2, "birth_date", "تاريخ تولد")]
    row = wh.execute("select unit, source_record_id, first_name, birth_date, signup_date, extras, "
                     "util.parse_date(birth_date, c.date_calendar, c.date_format), "
                     "util.parse_date(signup_date, c.date_calendar, c.date_format) "
                     "from raw.sibling_customers r join audit.batch_conventions c on c.batch_id = r._batch_id "
                     "where source_record_id = 'B1'").fetchone()
    assert row[0] == "bank_fa" and row[1] == "B1" and row[2] == "علي"
    assert row[3] == "1369/11/14" and str(row[6]) == "1991-02-03"  # as received; Solar Hijri in staging
    assert str(row[7]) == "2021-03-21"  # 1400/01/01
    assert row[5] == {"نوع حساب": "جاري"}
    assert wh.execute("select birth_date from raw.sibling_customers where source_record_id = 'B2'").fetchone() == \
        ("1370/13/45",)
    (n, column, source_column, reason), = wh.execute(
        "select row_number, column_name, source_column, reason from audit.field_issues").fetchall()
    assert (n, column, source_column) == (2, "birth_date", "تاريخ تولد")
    assert "jalali date" in reason and "1370/13/45" not in reason


def test_new_sibling_unit_by_config_alone(wh, local, tmp_path):
    config_dir = tmp_path / "config"
    (config_dir / "sources").mkdir(parents=True)
    (config_dir / "sources" / "sibling_leasing.yml").write_text(
        "name: sibling_leasing\nkind: sibling_unit\nunit: leasing\npath: siblings/leasing/*.txt\n"
        "format: csv\nencoding: utf-8\ndelimiter: '|'\ndate_calendar: jalali\ndate_format: '%Y-%m-%d'\n"
        "primary_key: source_record_id\ncolumns:\n  ID: source_record_id\n  Name: full_name\n"
        "  Born: birth_date\n  Tel: phone\n")
    cfg, = load_registry(config_dir)
    path = _write(local.landing_dir / "siblings" / "leasing" / "x.txt",
                  "ID|Name|Born|Tel\nL1|Sara Karimi|1375-06-31|0912 000 1111\n")
    result = load_file(wh, cfg, path, local)
    assert result.status == "loaded" and result.rows_loaded == 1
    row = wh.execute("select unit, full_name, birth_date, util.parse_date(birth_date, c.date_calendar, c.date_format) "
                     "from raw.sibling_customers r join audit.batch_conventions c on c.batch_id = r._batch_id"
                     ).fetchone()
    assert row == ("leasing", "Sara Karimi", "1375-06-31", dt.date(1996, 9, 21))


def test_wrong_config_names_file_and_key(tmp_path):
    from crm_knowledge.ingest.registry import SourceConfigError

    bad = tmp_path / "bad.yml"
    bad.write_text("name: x\nkind: sibling_unit\nunit: u\npath: a/*.csv\nformat: csv\nprimary_key: source_record_id\n"
                   "columns:\n  ID: source_record_id\n  Nm: nickname\n")
    with pytest.raises(SourceConfigError, match=r"bad.yml: key 'columns.Nm'"):
        parse_source(bad)
    bad.write_text("name: x\nkind: sibling_unit\nunit: u\npath: a/*.csv\nformat: csv\nencoding: klingon\n"
                   "primary_key: source_record_id\ncolumns:\n  ID: source_record_id\n")
    with pytest.raises(SourceConfigError, match=r"key 'encoding'"):
        parse_source(bad)
    # a source has no schedule of its own (its DAG's is the one that runs): the key says so instead of being
    # parsed and ignored
    bad.write_text("name: x\nkind: sibling_unit\nunit: u\npath: a/*.csv\nformat: csv\nschedule: '@hourly'\n"
                   "primary_key: source_record_id\ncolumns:\n  ID: source_record_id\n")
    with pytest.raises(SourceConfigError, match=r"bad.yml: key 'schedule': is not a source setting"):
        parse_source(bad)
    # read as every config file is (crm_knowledge.config_reader.load_yaml_file)
    bad.write_text("name: [x\n")
    with pytest.raises(SourceConfigError, match=r"bad.yml: not valid YAML"):
        parse_source(bad)


def test_jsonl_keys_met_late_are_mapped_and_reported(wh, local, monkeypatch):
    """Files stream (never held whole in memory): a key first met after the header sample still maps to its
    raw column, and an unknown one still lands in extras and in the drift report."""
    from crm_knowledge.ingest import readers

    monkeypatch.setattr(readers, "JSONL_HEADER_SAMPLE", 2)
    lines = [{"submission_id": f"S{i}", "form_type": "feedback", "submitted_at": "2026-03-02T09:00:00Z"}
             for i in range(5)]
    lines[4].update(email="late@example.com", campaign_code="X9")
    path = _write(local.landing_dir / "forms" / "late.jsonl",
                  "\n".join(json.dumps(r) for r in lines) + "\n")
    result = load_file(wh, _source("forms"), path, local)
    assert (result.status, result.rows_loaded) == ("loaded", 5)
    assert result.unexpected_columns == ["campaign_code"]
    assert "email" not in result.missing_columns
    row = wh.execute("select email, extras from raw.form_submissions where submission_id = 'S4'").fetchone()
    assert row == ("late@example.com", {"campaign_code": "X9"})
    drift = wh.execute("select unexpected_columns from audit.schema_drift").fetchall()
    assert drift == [(["campaign_code"],)]


def test_bad_encoding_deep_in_a_large_file_quarantines_it_whole(wh, local):
    """The encoding is checked over the whole file before a row loads, in chunks: a bad byte after the first
    megabyte still quarantines the file and nothing of it reaches raw."""
    cfg = _source("contacts")
    header = "interaction_id,channel,occurred_at,phone,email,customer_ref,topic,notes,agent_id"
    good = "".join(f"I{i},phone,2026-03-01T10:00:00Z,0912000{i:04d},,,billing,ok,a1\n" for i in range(30_000))
    path = local.landing_dir / "contacts" / "big.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((header + "\n" + good).encode("utf-8") + b"I-bad,phone,2026-03-01T10:00:00Z,\xff\xfe,,,x,y,z\n")
    assert path.stat().st_size > (1 << 20)
    result = load_file(wh, cfg, path, local)
    assert result.status == "quarantined" and "not valid utf-8" in result.error
    assert wh.execute("select count(*) from raw.contact_interactions").fetchone()[0] == 0
