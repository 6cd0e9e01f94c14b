"""Raw as received: the server's COPY (the fast path) and the Python readers land the same rows;
a warehouse from before keeps its rows, their typed values now text that staging reads back unchanged."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import psycopg
import pytest

from crm_knowledge.ingest import files as files_mod
from crm_knowledge.ingest.files import load_file
from crm_knowledge.ingest.registry import load_registry
from crm_knowledge.warehouse.bootstrap import apply_ddl

pytestmark = pytest.mark.warehouse

INSURANCE = ("PolicyHolderNo;GivenName;FamilyName;EMail;Mobile;NationalCode;DateOfBirth;Sex;Address;City;Province;"
             "ZIP;CustomerSince;PolicyType\n"
             "P1;Sara;Karimi;s@example.com;09120000001;0012345679;03.02.1990;f;Main 1;Tehran;Tehran;1234567890;"
             "01.01.2020;life\n"
             "P2;Ali;Rezaei;;;;31.02.1990;m;;Shiraz;Fars;;;\n"
             ";No;Key;x@example.com;;;;;;;;;;car\n"
             "P4;\"Multi\nLine\";Name;;;;;;;;;;;\n")
ROW = ("unit, source_record_id, first_name, last_name, email, phone, national_id, birth_date, gender, street, city, "
       "province, postcode, signup_date, extras, _row_number")


def _load(wh, local, name: str) -> tuple:
    cfg = {s.name: s for s in load_registry()}["sibling_insurance"]
    path = local.landing_dir / "siblings" / "insurance" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(INSURANCE, encoding="utf-8")
    result = load_file(wh, cfg, path, local)
    rows = wh.execute(f"select {ROW} from raw.sibling_customers where _batch_id = %s order by _row_number",
                      (result.batch_id,)).fetchall()
    rejects = wh.execute("select row_number, reason, record from raw.load_rejects where batch_id = %s",
                         (result.batch_id,)).fetchall()
    conventions = wh.execute("select source_name, date_calendar, date_format, source_columns ->> 'birth_date' "
                             "from audit.batch_conventions where batch_id = %s", (result.batch_id,)).fetchall()
    return (result.rows_read, result.rows_loaded, result.rows_rejected), rows, rejects, conventions


def test_copy_and_python_readers_land_the_same_rows(wh, local, monkeypatch):
    fast = _load(wh, local, "a.csv")
    wh.execute("truncate raw.sibling_customers, raw.load_rejects, audit.load_batches, audit.batch_conventions")
    monkeypatch.setattr(files_mod, "_copy_file", lambda *args, **kwargs: None)  # the Python readers only
    slow = _load(wh, local, "b.csv")
    assert fast == slow
    counts, rows, rejects, conventions = fast
    assert counts == (4, 3, 1)
    assert rows[0] == ("insurance", "P1", "Sara", "Karimi", "s@example.com", "09120000001", "0012345679",
                       "03.02.1990", "f", "Main 1", "Tehran", "Tehran", "1234567890", "01.01.2020",
                       {"PolicyType": "life"}, 1)
    assert rows[1][7] == "31.02.1990" and rows[1][4] is None  # as received; an empty field is NULL
    assert rows[2][2] == "Multi\nLine" and rows[2][-1] == 4  # the file's row number
    ((n, reason, record),) = rejects
    assert n == 3 and "primary key" in reason and record["EMail"] == "x@example.com"
    assert conventions == [("sibling_insurance", "gregorian", "%d.%m.%Y", "DateOfBirth")]


def test_typed_raw_tables_from_before_become_text(scratch_db):
    """A warehouse created before raw held text (typed raw columns): the DDL turns them into text that the staging
    functions read back as the same values."""
    apply_ddl(scratch_db)
    with psycopg.connect(scratch_db, autocommit=True) as conn:
        conn.execute("""
            alter table raw.form_submissions alter column submitted_at type timestamptz using submitted_at::timestamptz,
                alter column rating type int using rating::int,
                alter column consent_marketing type boolean using consent_marketing::boolean,
                alter column birth_date type date using birth_date::date;
            alter table raw.order_exports alter column amount type numeric(16, 2) using amount::numeric;
            set timezone = 'Asia/Tehran';
            insert into raw.form_submissions (submission_id, submitted_at, rating, consent_marketing, birth_date,
                                              _batch_id, _source_file, _loaded_at, _row_number)
            values ('F1', '2026-03-01 10:00:00+03:30', 4, true, '1990-02-03', 'old', 'f.jsonl', now(), 1);
            insert into raw.order_exports (shop, order_id, amount, _batch_id, _source_file, _loaded_at, _row_number)
            values ('kiosk', 'K1', 1500.50, 'old', 'o.csv', now(), 1);""")
    apply_ddl(scratch_db)
    apply_ddl(scratch_db)  # and again: a no-op
    with psycopg.connect(scratch_db) as conn:
        types = dict(conn.execute("select column_name, data_type from information_schema.columns "
                                  "where table_schema = 'raw' and table_name = 'form_submissions'").fetchall())
        assert {types[c] for c in ("submitted_at", "rating", "consent_marketing", "birth_date")} == {"text"}
        row = conn.execute("select submitted_at, util.parse_timestamp(submitted_at), util.parse_integer(rating), "
                           "util.parse_yes_no(consent_marketing), util.parse_date(birth_date, 'gregorian', null) "
                           "from raw.form_submissions").fetchone()
        assert row[0] == "2026-03-01T06:30:00.000000Z"
        assert row[1:] == (dt.datetime(2026, 3, 1, 6, 30, tzinfo=dt.UTC), 4, True, dt.date(1990, 2, 3))
        assert conn.execute("select amount, util.parse_decimal(amount) from raw.order_exports").fetchone() == \
            ("1500.50", Decimal("1500.50"))


CONTACTS_HEADER = ("interaction_id,channel,occurred_at,customer_name,email,phone,customer_ref,topic,outcome,notes,"
                   "agent_id\n")


def test_straight_copies_in_one_session_number_each_file_from_one(wh, local):
    """Files COPY loads straight into their raw table (every column mapped), one after another on one connection:
    the row sequence hands its numbers out from a session cache, yet each file's rows are 1, 2, 3, ... and a
    row COPY leaves out (no key) is still counted and rejected (the Python readers load that file)."""
    cfg = {s.name: s for s in load_registry()}["contacts"]
    wh.execute("truncate raw.contact_interactions, raw.load_rejects, audit.load_batches, audit.batch_conventions")
    results = []
    for name, lines in (("a.csv", 3), ("b.csv", 2), ("c.csv", 3)):
        body = "".join(f"I{name[0]}{i},phone,2026-11-20T10:00:00+03:30,,,,,,,,\n" for i in range(1, lines + 1))
        if name == "c.csv":
            body = body.replace("Ic2,", ",", 1)  # row 2 without its key
        path = local.landing_dir / "contacts" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(CONTACTS_HEADER + body, encoding="utf-8")
        results.append(load_file(wh, cfg, path, local))
    assert [(r.rows_read, r.rows_loaded, r.rows_rejected) for r in results] == [(3, 3, 0), (2, 2, 0), (3, 2, 1)]
    for result, expected in zip(results, ([1, 2, 3], [1, 2], [1, 3]), strict=True):
        numbers = [n for (n,) in wh.execute("select _row_number from raw.contact_interactions where _batch_id = %s "
                                            "order by 1", (result.batch_id,)).fetchall()]
        assert numbers == expected
    assert wh.execute("select row_number from raw.load_rejects where batch_id = %s",
                      (results[2].batch_id,)).fetchall() == [(2,)]
