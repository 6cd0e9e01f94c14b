"""Bad input never blocks a source: each bad row is one reject with a reason free of values, every good row
loads, an unreadable file is quarantined once and the files after it still load."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from crm_knowledge.ingest import field_issues, readers
from crm_knowledge.ingest import files as files_mod
from crm_knowledge.ingest.files import ingest_source, load_file
from crm_knowledge.ingest.registry import load_registry

pytestmark = pytest.mark.warehouse


def _source(name: str):
    return {s.name: s for s in load_registry()}[name]


def _write(path: Path, data: str | bytes, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode(encoding) if isinstance(data, str) else data)
    return path


def _ledger(conn):
    return conn.execute("select source_file, status, rows_read, rows_loaded, rows_rejected, rows_duplicate, error "
                        "from audit.load_batches order by started_at").fetchall()


def _assert_accounted(conn):
    for file, status, read, loaded, rejected, duplicate, _ in _ledger(conn):
        if status == "loaded":
            assert read == loaded + rejected + duplicate, file


def _form(i: int, **extra) -> dict:
    return {"submission_id": f"P{i}", "form_type": "feedback", "submitted_at": "2026-03-02T09:00:00Z",
            "email": f"person{i}@example.com", **extra}


def _jsonl(objs: list[dict]) -> str:
    # ensure_ascii keeps \u0000 and lone surrogates as JSON escapes, exactly as a web form sends them
    return "\n".join(json.dumps(o) for o in objs) + "\n"


POISON = {
    4: {"message": "hello\u0000world"},         # NUL: no database text can hold it
    6: {"message": "broken \ud800 surrogate"},  # lone surrogate: not Unicode
    8: {"utm_source": "x\u0000y"},              # the same in a column that goes to extras (jsonb)
}
#: Values staging cannot convert: not structural, so the rows load as received
UNCONVERTIBLE = {
    2: {"rating": 99999999999},                 # beyond staging's 4-byte integer
    9: {"rating": 3.5},                         # not a whole number
}


def test_poison_rows_become_rejects_and_the_rest_loads(wh, local):
    objs = [_form(i, **POISON.get(i, UNCONVERTIBLE.get(i, {}))) for i in range(1, 11)]
    path = _write(local.landing_dir / "forms" / "poison.jsonl", _jsonl(objs))
    result = load_file(wh, _source("forms"), path, local)
    assert (result.status, result.rows_read, result.rows_loaded, result.rows_rejected) == ("loaded", 10, 7, 3)
    loaded = [r[0] for r in wh.execute("select submission_id from raw.form_submissions order by 1")]
    assert loaded == sorted(f"P{i}" for i in range(1, 11) if i not in POISON)
    rejects = dict(wh.execute("select row_number, reason from raw.load_rejects").fetchall())
    assert sorted(rejects) == sorted(POISON)
    assert "NUL" in rejects[4] and "message" in rejects[4]
    assert "surrogate" in rejects[6]
    assert "utm_source" in rejects[8] and "NUL" in rejects[8]
    # the unconvertible ratings are there as received, and field issues (never their values)
    assert field_issues.check_new_batches(wh) == {}
    issues = dict(wh.execute("select row_number, reason from audit.field_issues where column_name = 'rating'"))
    assert sorted(issues) == [2, 9] and "whole number" in issues[2] and "99999999999" not in issues[2]
    # the record is kept as received (printable) in raw, the reason never holds a value
    record = wh.execute("select record from raw.load_rejects where row_number = 4").fetchone()[0]
    assert record["message"] == "hello\ufffdworld" and record["email"] == "person4@example.com"
    assert not any("@" in r for r in rejects.values())
    _assert_accounted(wh)
    assert not path.exists()


def test_amount_overflow_in_a_csv_export_is_one_reject(wh, local):
    cfg = _source("order_export_kiosk")
    lines = ["order_id,customer_source_id,order_date,quantity,amount,items"]
    lines += [f"K{i},C{i},2026-01-02,1,{'1e20' if i == 3 else '1500.50'},SKU1" for i in range(1, 8)]
    path = _write(local.landing_dir / "order_exports" / "kiosk" / "x.csv", "\n".join(lines) + "\n")
    result = load_file(wh, cfg, path, local)
    assert (result.rows_read, result.rows_loaded, result.rows_rejected) == (7, 7, 0)  # kept as received
    field_issues.check_new_batches(wh)
    (n, column, reason), = wh.execute("select row_number, column_name, reason from audit.field_issues").fetchall()
    assert (n, column) == (3, "amount") and "out of range" in reason and "1e20" not in reason


def test_a_value_the_database_refuses_is_isolated_row_safe(wh, local, monkeypatch):
    """The safety net: a value convert.py lets through (here: its NUL check lifted) and the database (or its
    driver) refuses makes the file load again in chunks; only the refused row is rejected, with the error class,
    without the value (and without COPY's context line, which quotes the row)."""
    monkeypatch.setattr(files_mod, "text_or_none", lambda value: value)
    objs = [_form(i, message=("secret\u0000person37" if i == 37 else "ok")) for i in range(1, 101)]
    path = _write(local.landing_dir / "forms" / "refused.jsonl", _jsonl(objs))
    result = load_file(wh, _source("forms"), path, local)
    assert (result.status, result.rows_read, result.rows_loaded, result.rows_rejected) == ("loaded", 100, 99, 1)
    (n, reason), = wh.execute("select row_number, reason from raw.load_rejects").fetchall()
    assert n == 37 and "refused by the database" in reason and "DataError" in reason
    assert "secret" not in reason and "person37" not in reason
    assert wh.execute("select count(*), count(distinct submission_id) from raw.form_submissions").fetchone() == (99, 99)
    _assert_accounted(wh)


def test_unreadable_file_is_quarantined_once_and_later_files_load(wh, local, monkeypatch):
    """A reader that breaks mid-file (a corrupt part, a bug) quarantines that file, once; the next file loads,
    and a re-run neither adds ledger rows nor touches the quarantined file."""
    cfg = _source("forms")
    real = readers.read_jsonl

    def breaking(path, cfg_):
        parsed = real(path, cfg_)
        if "a_broken" not in path.name:
            return parsed

        def rows():
            for i, item in enumerate(parsed.rows):
                if i == 2:
                    raise RuntimeError("decoder state lost near 'person3@example.com'")
                yield item
        return readers.ParsedFile(parsed.header, rows())

    monkeypatch.setitem(readers.READERS, "jsonl", breaking)
    # (a NUL in its last line makes the server's COPY refuse the file, so the Python reader reads it)
    _write(local.landing_dir / "forms" / "a_broken.jsonl",
           _jsonl([_form(i, **({"message": "x\u0000"} if i == 5 else {})) for i in range(1, 6)]))
    _write(local.landing_dir / "forms" / "b_good.jsonl", _jsonl([_form(i) for i in range(10, 13)]))
    first = ingest_source(cfg, url=_url(wh), settings=local)
    assert [(r.file, r.status) for r in first] == [("a_broken.jsonl", "quarantined"), ("b_good.jsonl", "loaded")]
    assert "cannot be read after record 2" in first[0].error and "RuntimeError" in first[0].error
    assert "person3" not in first[0].error  # the exception's text is scrubbed
    assert (local.quarantine_dir / "forms" / "a_broken.jsonl").exists()
    assert wh.execute("select count(*) from raw.form_submissions").fetchone()[0] == 3  # nothing of the broken one
    second = ingest_source(cfg, url=_url(wh), settings=local)
    assert second == []
    assert [(r[0], r[1]) for r in _ledger(wh)] == [("a_broken.jsonl", "quarantined"), ("b_good.jsonl", "loaded")]


def _url(conn: psycopg.Connection) -> str:
    """The test connection's URL with its password (psycopg's dsn hides it)."""
    from crm_knowledge.settings import get_settings

    return get_settings().server_url(conn.info.dbname)


CONTACT_HEADER = "interaction_id,channel,occurred_at,customer_name,email,phone,customer_ref,topic,notes,agent_id"


def _contact(i: int, notes: str = "ok") -> str:
    return f"I{i},phone,2026-03-01T10:00:00Z,Name {i},c{i}@example.com,0912000{i:04d},,billing,{notes},a1"


def test_unclosed_quote_rejects_one_line_and_resyncs(wh, local):
    """An unclosed quote in row 2 of a 10-row file used to swallow the 8 rows after it."""
    rows = [_contact(i) for i in range(1, 11)]
    rows[1] = _contact(2, notes='"never closed')
    rows[5] = _contact(6, notes='"two\nlines, legally"')  # a quoted field may span lines
    path = _write(local.landing_dir / "contacts" / "q.csv", CONTACT_HEADER + "\n" + "\n".join(rows) + "\n")
    result = load_file(wh, _source("contacts"), path, local)
    assert (result.rows_read, result.rows_loaded, result.rows_rejected) == (10, 9, 1)
    ids = [r[0] for r in wh.execute("select interaction_id from raw.contact_interactions order by _row_number")]
    assert ids == [f"I{i}" for i in range(1, 11) if i != 2]
    notes = wh.execute("select notes from raw.contact_interactions where interaction_id = 'I6'").fetchone()[0]
    assert notes == "two\nlines, legally"
    (n, reason), = wh.execute("select row_number, reason from raw.load_rejects").fetchall()
    assert n == 2 and "unclosed quote" in reason and "line 3" in reason and "c2@example.com" not in reason
    _assert_accounted(wh)


def test_unclosed_quote_in_the_last_row(wh, local):
    rows = [_contact(i) for i in range(1, 4)] + [_contact(4, notes='"open to the end')]
    path = _write(local.landing_dir / "contacts" / "end.csv", CONTACT_HEADER + "\n" + "\n".join(rows) + "\n")
    result = load_file(wh, _source("contacts"), path, local)
    assert (result.rows_read, result.rows_loaded, result.rows_rejected) == (4, 3, 1)


def test_duplicate_header_name_is_quarantined_naming_the_column(wh, local):
    body = CONTACT_HEADER + ",email\n" + _contact(1) + ",other@example.com\n"
    _write(local.landing_dir / "contacts" / "a_dup.csv", body)
    _write(local.landing_dir / "contacts" / "b_ok.csv", CONTACT_HEADER + "\n" + _contact(2) + "\n")
    results = ingest_source(_source("contacts"), url=_url(wh), settings=local)
    assert [r.status for r in results] == ["quarantined", "loaded"]
    assert "'email' (columns 5, 11)" in results[0].error
    assert "other@example.com" not in results[0].error


def test_utf8_file_on_a_cp1256_source_is_an_encoding_problem(wh, local):
    """The header read in the wrong encoding must be reported as an encoding problem."""
    text = ("شماره مشتری,نام,نام خانوادگی,کد ملی,تلفن همراه,تاریخ تولد,شهر,استان,کد پستی,تاریخ عضویت\n"
            "B1,علی,کریمی,0012345679,09121112233,1369/11/14,تهران,تهران,1234567890,1400/01/01\n")
    path = _write(local.landing_dir / "siblings" / "bank_fa" / "utf8.csv", text, "utf-8")
    result = load_file(wh, _source("sibling_bank_fa"), path, local)
    assert result.status == "quarantined"
    assert "wrong encoding" in result.error and "utf-8" in result.error and "cp1256" in result.error.lower()
    assert "علی" not in result.error and "0012345679" not in result.error
    reason_file = local.quarantine_dir / "sibling_bank_fa" / "utf8.csv.reason.txt"
    assert "header as read" in reason_file.read_text(encoding="utf-8")


def test_missing_columns_error_does_not_quote_the_first_row(wh, local):
    """A file without a header has a data row where the header should be: the ledger must not quote it."""
    path = _write(local.landing_dir / "contacts" / "noheader.csv", _contact(1) + "\n" + _contact(2) + "\n")
    result = load_file(wh, _source("contacts"), path, local)
    assert result.status == "quarantined" and "required column" in result.error
    assert "c1@example.com" not in result.error and "09120000001" not in result.error


def test_xlsx_poison_cells(wh, local):
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "members"
    ws.append(["member_id", "full_name", "email", "phone", "birth_date", "city", "joined"])
    ws.append(["T1", "Sara Karimi", "s@example.com", "09120000001", "1990-01-02", "Tehran", "2020-01-01"])
    ws.append(["T2", "Reza Ahmadi", "r@example.com", "09120000002", "19505309", "Tehran", "2020-01-01"])
    ws.append(["T3", "Ali Rezaei", "a@example.com", "09120000003", "1991-01-02", "Tehran", "2020-01-01"])
    path = local.landing_dir / "siblings" / "travel" / "m.xlsx"
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    result = load_file(wh, _source("sibling_travel"), path, local)
    # the customer is kept: the invalid birth date loads as received, reads NULL in staging, and is a field issue
    assert (result.rows_read, result.rows_loaded, result.rows_rejected) == (3, 3, 0)
    field_issues.check_new_batches(wh)
    (n, column, reason), = wh.execute("select row_number, column_name, reason from audit.field_issues").fetchall()
    assert (n, column) == (2, "birth_date") and "19505309" not in reason
    assert wh.execute("select birth_date from raw.sibling_customers where source_record_id = 'T2'").fetchone() == \
        ("19505309",)
