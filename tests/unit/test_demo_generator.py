"""Demo source generator: determinism, ground truth, formats, planted problems (files only, no database)."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crm_knowledge.demo import generate
from crm_knowledge.demo.messiness import (
    format_mobile,
    national_ids_from_first9,
    to_ascii_digits,
)
from crm_knowledge.demo.people import generate_people
from crm_knowledge.normalize.national_id import check_digit, is_valid_national_id
from crm_knowledge.settings import get_settings

AS_OF = dt.date(2026, 11, 20)
TO_ASCII = str.maketrans("۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩", "0123456789" * 2)


def _settings(tmp_path: Path, name: str):
    base = get_settings()
    home = tmp_path / name
    return dataclasses.replace(base, home=home, landing_dir=home / "landing")


def _hashes(summary) -> dict[str, str]:
    return {k: hashlib.sha256(Path(p).read_bytes()).hexdigest() for k, p in summary.paths.items()}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo")
    settings = _settings(tmp, "a")
    summary = generate(400, seed=42, settings=settings, write_orders_db=False)
    return settings, summary


def _gt(settings) -> pd.DataFrame:
    return pd.read_csv(settings.demo_dir / "ground_truth.csv", dtype=str, keep_default_na=False)


def _forms(summary) -> list[dict]:
    return [json.loads(line) for line in Path(summary.paths["forms"]).read_text(encoding="utf-8").splitlines()]


# --- building blocks ------------------------------------------------------------------------------------
def test_national_id_check_digit_vectorised_matches_scalar():
    first9 = np.array([0, 1, 123456789, 999999998, 7_654_321, 314159265])
    nids = national_ids_from_first9(first9)
    for f, nid in zip(first9, nids, strict=True):
        assert nid % 10 == check_digit(f"{f:09d}")
        assert nid // 10 == f
    # a known valid id: 0084575948 (s = 0*10+0*9+8*8+4*7+5*6+7*5+5*4+9*3+4*2 = 212, 212 % 11 = 3 -> 8)
    assert check_digit("008457594") == 8
    assert is_valid_national_id("0084575948")
    assert not is_valid_national_id("0084575949")
    assert not is_valid_national_id("0000000000")


def test_people_valid_unique_and_prefix_stable():
    a = generate_people(3000, 7, AS_OF)
    b = generate_people(3500, 7, AS_OF)
    assert all(is_valid_national_id(f"{n:010d}") for n in a.national_id)
    assert len(set(a.national_id.tolist())) == 3000
    assert len(set(a.mobile.tolist())) == 3000
    emails = [e for e in list(a.email) + list(a.email2) if e]
    assert len(set(emails)) == len(emails)
    # extending the population does not change anyone already generated
    for col in ("first", "last", "birth", "national_id", "mobile", "email", "postcode", "city"):
        assert (getattr(a, col) == getattr(b, col)[:3000]).all(), col
    ages = (AS_OF - dt.date(1970, 1, 1)).days - a.birth
    assert ages.min() >= 18 * 365 and ages.max() <= 81 * 366


def test_phone_formats():
    assert format_mobile(9123456789, "spaced") == "+98 912 345 6789"
    assert format_mobile(9123456789, "national") == "09123456789"
    assert format_mobile(9123456789, "persian") == "۰۹۱۲۳۴۵۶۷۸۹"
    assert format_mobile(9123456789, "dashed") == "912-345-6789"
    assert to_ascii_digits("۰۹۱۲") == "0912"


# --- determinism ----------------------------------------------------------------------------------------
def test_same_seed_identical_files_different_seed_differs(tmp_path, demo):
    settings_a, summary_a = demo
    settings_b = _settings(tmp_path, "b")
    summary_b = generate(400, seed=42, settings=settings_b, write_orders_db=False)
    ha, hb = _hashes(summary_a), _hashes(summary_b)
    assert ha == hb
    assert summary_a.counts == summary_b.counts
    # a second run into the same place rewrites identical files
    again = generate(400, seed=42, settings=settings_b, write_orders_db=False)
    assert _hashes(again) == hb
    other = generate(400, seed=43, settings=_settings(tmp_path, "c"), write_orders_db=False)
    hc = _hashes(other)
    assert all(hc[k] != ha[k] for k in ("forms", "contacts", "sibling_insurance", "sibling_travel",
                                        "sibling_bank_fa", "ground_truth"))


# --- volumes, ground truth -------------------------------------------------------------------------------
def test_volumes_roughly_as_specified(demo):
    _, s = demo
    n = 400
    c = s.counts
    assert 0.6 * n < c["orders.customers"] < 0.8 * n
    assert 3 * n < c["orders.orders"] < 7 * n
    assert 8 * n < c["orders.order_items"] < 16 * n
    assert 1.6 * n < c["forms"] < 2.4 * n
    assert 2.5 * n < c["contacts"] < 3.5 * n
    for unit in ("insurance", "travel", "bank_fa"):
        assert 0.08 * n < c[f"sibling:{unit}"] < 0.22 * n
    assert 0 < c["order_export:kiosk"] < 0.05 * c["orders.orders"]
    assert c["orders.products"] == 300


def test_ground_truth_covers_every_record(demo):
    settings, s = demo
    gt = _gt(settings)
    assert not str(settings.demo_dir).startswith(str(settings.landing_dir))
    assert not list(settings.landing_dir.rglob("ground_truth*"))
    assert not gt.duplicated(["source_system", "source_record_id"]).any()
    by = gt.groupby("source_system").size().to_dict()
    assert by["orders"] == s.counts["orders.customers"]
    assert by["forms"] == s.counts["forms"]
    assert by["contacts"] == s.counts["contacts"]
    for unit in ("insurance", "travel", "bank_fa"):
        assert by[f"sibling:{unit}"] == s.counts[f"sibling:{unit}"]
    assert len(gt) == s.counts["ground_truth"]
    assert gt["person_id"].str.fullmatch(r"P\d{7}").all()

    forms_ids = {r["submission_id"] for r in _forms(s)}
    assert forms_ids == set(gt.loc[gt.source_system == "forms", "source_record_id"])
    contacts = pd.read_csv(s.paths["contacts"], dtype=str)
    assert set(contacts.interaction_id) == set(gt.loc[gt.source_system == "contacts", "source_record_id"])
    ins = pd.read_csv(s.paths["sibling_insurance"], sep=";", dtype=str)
    assert set(ins.PolicyHolderNo) == set(gt.loc[gt.source_system == "sibling:insurance", "source_record_id"])
    trv = pd.read_excel(s.paths["sibling_travel"], sheet_name="members", dtype=str)
    assert set(trv.member_id) == set(gt.loc[gt.source_system == "sibling:travel", "source_record_id"])
    # some persons appear only outside the orders system
    orders_persons = set(gt.loc[gt.source_system == "orders", "person_id"])
    assert len(set(gt.person_id) - orders_persons) > 0.2 * 400


def test_ground_truth_consistent_with_persons(demo):
    """A sibling/forms record's person has the national id / birth date the record shows (mostly)."""
    settings, s = demo
    people = generate_people(400, 42, AS_OF)
    gt = _gt(settings)
    pmap = dict(zip(zip(gt.source_system, gt.source_record_id, strict=True), gt.person_id.str[1:].astype(int) - 1,
                    strict=True))
    ins = pd.read_csv(s.paths["sibling_insurance"], sep=";", dtype=str, keep_default_na=False)
    checked = agree = 0
    for r in ins.itertuples():
        p = pmap[("sibling:insurance", r.PolicyHolderNo)]
        if r.DateOfBirth and r.DateOfBirth != "31.02.1990":
            checked += 1
            agree += dt.datetime.strptime(r.DateOfBirth, "%d.%m.%Y").date() == people.birth_date(p)
        nid = re.sub(r"\D", "", r.NationalCode.translate(TO_ASCII))
        if nid and nid != "0000000000":
            assert nid.zfill(10) == f"{people.national_id[p]:010d}"
    assert checked > 30 and agree == checked
    # forms carrying a customer_ref point at a customer record of the same person
    orders_person = {rid: pid for sys, rid, pid in gt.itertuples(index=False) if sys == "orders"}
    form_person = {rid: pid for sys, rid, pid in gt.itertuples(index=False) if sys == "forms"}
    refs = [(f["submission_id"], f["customer_ref"]) for f in _forms(s) if "customer_ref" in f]
    assert 0.3 < len(refs) / s.counts["forms"] < 0.5
    assert all(orders_person[ref] == form_person[sid] for sid, ref in refs)


# --- formats ---------------------------------------------------------------------------------------------
def test_bank_file_is_cp1256_with_jalali_dates(demo):
    _, s = demo
    path = Path(s.paths["sibling_bank_fa"])
    assert path.name == "customers_1405-08-29.csv"
    raw = path.read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    text = raw.decode("cp1256")
    rows = list(csv.reader(text.splitlines()))
    header = [h.replace("ي", "ی") for h in rows[0]]
    assert header == ["شماره مشتری", "نام", "نام خانوادگی", "کد ملی", "تلفن همراه", "تاریخ تولد", "شهر", "استان",
                      "کد پستی", "تاریخ عضویت", "نوع حساب"]
    assert "ی" not in text and "ي" in text
    births = [r[5] for r in rows[1:] if r[5]]
    assert births and all(re.fullmatch(r"1[23]\d\d/\d\d/\d\d", b) for b in births)
    assert sum(int(b[5:7]) > 12 for b in births) == sum(b == "1370/13/45" for b in births) >= 1
    assert all(re.fullmatch(r"14\d\d/\d\d/\d\d", r[9]) for r in rows[1:])


def test_insurance_and_travel_formats(demo):
    _, s = demo
    ins_path = Path(s.paths["sibling_insurance"])
    assert ins_path.name == "customers_2026-11-20.csv"
    head = ins_path.read_text(encoding="utf-8").splitlines()[0]
    assert head == ("PolicyHolderNo;GivenName;FamilyName;EMail;Mobile;NationalCode;DateOfBirth;Sex;Address;City;"
                    "Province;ZIP;CustomerSince;PolicyType")
    ins = pd.read_csv(ins_path, sep=";", dtype=str, keep_default_na=False)
    latin = ins.GivenName.str.contains(r"[A-Za-z]")
    assert latin.mean() > 0.7
    assert set(ins.PolicyType) <= {"auto", "home", "health", "life", "travel"}
    assert ins.CustomerSince.str.fullmatch(r"\d\d\.\d\d\.\d{4}").all()
    from openpyxl import load_workbook

    wb = load_workbook(s.paths["sibling_travel"], read_only=True)
    assert wb.sheetnames == ["members"]
    rows = list(wb["members"].iter_rows(values_only=True))
    assert list(rows[0]) == ["member_id", "full_name", "email", "phone", "birth_date", "city", "joined",
                             "loyalty_tier"]
    names = [r[1] for r in rows[1:]]
    assert any(re.search(r"[A-Za-z]", n) for n in names) and any(re.search(r"[\u0600-\u06ff]", n) for n in names)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d", r[6]) for r in rows[1:])


def test_forms_and_contacts_content(demo):
    _, s = demo
    forms = _forms(s)
    types = {f["form_type"] for f in forms}
    assert {"registration", "order_form", "feedback", "complaint", "newsletter_consent"} <= types
    assert "erasure_request" not in types
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+03:30", f["submitted_at"]) for f in forms)
    news = [f for f in forms if f["form_type"] == "newsletter_consent"]
    assert any(f["consent_marketing"] is True for f in news) and any(f["consent_marketing"] is False for f in news)
    assert all("consent_marketing" in f for f in forms)
    contacts = pd.read_csv(s.paths["contacts"], dtype=str, keep_default_na=False)
    assert list(contacts.columns) == ["interaction_id", "channel", "occurred_at", "customer_name", "email", "phone",
                                      "customer_ref", "topic", "outcome", "notes", "agent_id"]
    assert set(contacts.channel) <= {"phone", "email", "web_chat", "mail", "fax", "in_person"}
    assert set(contacts.outcome) <= {"resolved", "follow_up", "escalated", "no_answer", "sale"}
    assert (contacts.customer_ref != "").mean() > 0.1
    # messiness present: Persian digits, Arabic letters, several phone formats, upper-case emails
    phones = list(contacts.phone) + [f.get("phone", "") for f in forms]
    assert any(re.search("[۰-۹]", p) for p in phones)
    assert any(p.startswith("+98 ") for p in phones) and any(re.fullmatch(r"09\d{9}", p) for p in phones)
    names = " ".join(f.get("first_name", "") + f.get("last_name", "") for f in forms)
    assert "ي" in names or "ك" in names
    emails = [f.get("email", "") for f in forms]
    assert any(e != e.strip() for e in emails) and any(e.strip() != e.strip().lower() for e in emails)


def test_kiosk_export(demo):
    _, s = demo
    kiosk = pd.read_csv(s.paths["order_export_kiosk"], dtype=str)
    assert list(kiosk.columns) == ["order_id", "customer_source_id", "order_date", "quantity", "amount", "items"]
    assert kiosk.order_id.str.fullmatch(r"K\d{7}").all()
    assert kiosk.customer_source_id.astype(int).between(1, s.counts["orders.customers"]).all()
    assert kiosk["items"].str.fullmatch(r"[A-Z]{3}-\d{4}:\d+(\|[A-Z]{3}-\d{4}:\d+)*").all()


# --- planted problems ------------------------------------------------------------------------------------
def test_planted_problems(demo):
    settings, s = demo
    planted = {(p["kind"], p["source"]): p for p in s.planted}
    forms = {f["submission_id"]: f for f in _forms(s)}
    gt = _gt(settings)
    person = dict(zip(zip(gt.source_system, gt.source_record_id, strict=True), gt.person_id, strict=True))

    junk_email = planted[("junk_email", "forms")]
    assert junk_email["count"] >= 3
    ids = junk_email["examples"]
    assert all(forms[i]["email"].strip().lower() == "test@test.com" for i in ids)
    assert len({person[("forms", i)] for i in ids}) >= 2

    contacts = pd.read_csv(s.paths["contacts"], dtype=str, keep_default_na=False)
    junk_phone = (contacts.phone == "02100000000").mean()
    assert 0.003 < junk_phone < 0.03
    assert planted[("junk_phone", "contacts")]["count"] == (contacts.phone == "02100000000").sum()

    ins = pd.read_csv(s.paths["sibling_insurance"], sep=";", dtype=str, keep_default_na=False)
    assert (ins.NationalCode == "0000000000").sum() >= 1
    assert (ins.DateOfBirth == "31.02.1990").sum() >= 1
    assert planted[("bad_date", "sibling:bank_fa")]["count"] >= 1

    kiosk = pd.read_csv(s.paths["order_export_kiosk"], dtype=str)
    bad = pd.to_numeric(kiosk.amount, errors="coerce").isna()
    assert 1 <= bad.sum() <= 3
    assert set(kiosk.order_id[bad]) == set(planted[("non_numeric_amount", "order_export:kiosk")]["examples"])

    corrupt = Path(s.paths["order_export_kiosk_corrupt"])
    assert corrupt.name == "orders_2026-11-20_corrupt.csv" and corrupt.parent.name == "kiosk"
    assert corrupt.read_text().splitlines()[0] != Path(s.paths["order_export_kiosk"]).read_text().splitlines()[0]

    noid = sum(p["count"] for p in s.planted if p["kind"] == "no_usable_identifier")
    total = s.counts["ground_truth"]
    assert 0.001 < noid / total < 0.012
    # no-identifier forms really carry no email / phone / national id
    for sid in planted[("no_usable_identifier", "forms")]["examples"]:
        f = forms[sid]
        assert not any(f.get(k) for k in ("email", "phone", "national_id"))
