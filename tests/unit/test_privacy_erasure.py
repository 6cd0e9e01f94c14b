"""Pure parts of erasure, lookup and the leak scan (no database): ids, masking, the tombstone rule, request files."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from crm_knowledge.privacy import erasure, lookup, pii_scan
from crm_knowledge.privacy.pseudonym import pseudonymize


def test_identifiers_are_normalised_and_validated():
    assert lookup.normalise_identifiers(email=" Ali@Example.COM ", phone="۰۹۱۲ ۱۲۳ ۴۰۰۱") == {
        "email": "ali@example.com", "phone": "+989121234001"}
    with pytest.raises(lookup.IdentifierError, match="at least one identifier"):
        lookup.normalise_identifiers()
    with pytest.raises(lookup.IdentifierError, match="phone"):
        lookup.normalise_identifiers(phone="12")


def test_request_id_is_stable_across_spellings_and_holds_no_identifier():
    a = erasure.request_id(lookup.normalise_identifiers(phone="0912 123 4001", national_id="0499370899"))
    b = erasure.request_id(lookup.normalise_identifiers(phone="+989121234001", national_id="۰۴۹۹۳۷۰۸۹۹"))
    assert a == b and a.startswith("erq-")
    assert "9121234001" not in a and "0499370899" not in a
    assert a != erasure.request_id({"phone": "+989121234002"})


def test_masking_patterns_are_literal():
    needles = {"a.b+c@example.com", "+989121234001", "short"}
    pattern = erasure._sql_pattern(needles)
    assert "short" not in pattern  # too short to mask free text safely
    assert r"\+989121234001" in pattern and r"a\.b\+c\@example\.com" in pattern
    assert erasure._mask_text("mail A.B+C@example.com or +989121234001 now", needles) == \
        "mail [erased] or [erased] now"
    assert erasure._mask_text("axb+c@example.com", needles) == "axb+c@example.com"  # '.' is not a wildcard


def test_needles_cover_phone_and_id_spellings():
    m = lookup.Match(identifiers={})
    m.values["phone"] = {"+989121234001"}
    m.values["national_id"] = {"0499370899"}
    m.raw_spellings = {"0912-123-4001", "Ali"}
    needles = erasure._needles(m)
    assert {"09121234001", "9121234001", "۰۴۹۹۳۷۰۸۹۹", "0912-123-4001", "+989121234001"} <= needles
    assert "Ali" not in needles  # names are never used to mask: other people share them


def test_tombstone_rule_spares_a_relative_sharing_the_phone():
    phone = "+989121110000"
    tomb = {"phone": {pseudonymize(phone, "phone")}, "name": {pseudonymize("ali karimi", "name")},
            "email": {pseudonymize("ali@example.com", "email")}}
    frame = pd.DataFrame([
        {"source_record_id": "1", "email_norm": None, "phone_e164": phone, "national_id_valid": None,
         "full_name_norm": None, "first_name_norm": "ali", "last_name_norm": "karimi"},       # the erased one
        {"source_record_id": "2", "email_norm": None, "phone_e164": phone, "national_id_valid": None,
         "full_name_norm": None, "first_name_norm": "sara", "last_name_norm": "karimi"},      # his sister
        {"source_record_id": "3", "email_norm": None, "phone_e164": phone, "national_id_valid": None,
         "full_name_norm": None, "first_name_norm": None, "last_name_norm": None},            # no name: blocked
        {"source_record_id": "4", "email_norm": "ali@example.com", "phone_e164": None, "national_id_valid": None,
         "full_name_norm": "someone", "first_name_norm": None, "last_name_norm": None},       # his email
    ])
    assert erasure.blocked_mask(frame, tomb).tolist() == [True, False, True, True]
    assert not erasure.blocked_mask(frame, {}).any()


def test_request_files(tmp_path):
    good = tmp_path / "a.jsonl"
    good.write_text('{"email": "x@example.com", "reason": "ticket 1"}\n\n{"phone": "09121234001"}\n')
    reqs = erasure.read_request_file(good)
    assert [(r.email, r.phone, r.origin, r.ref) for r in reqs] == [
        ("x@example.com", None, "file", "a.jsonl"), (None, "09121234001", "file", "a.jsonl")]
    csv_file = tmp_path / "b.csv"
    csv_file.write_text("email,phone,national_id,reason\n,,0499370899,t2\n")
    assert [r.national_id for r in erasure.read_request_file(csv_file)] == ["0499370899"]
    bad = tmp_path / "c.jsonl"
    bad.write_text('{"email": "x@example.com", "name": "Ali"}\n')
    with pytest.raises(ValueError, match=re.escape(f"{bad}: line 1 has unknown field")):
        erasure.read_request_file(bad)
    empty = tmp_path / "d.csv"
    empty.write_text("email,phone\n,\n")
    with pytest.raises(ValueError, match="line 2"):
        erasure.read_request_file(empty)


def test_scan_grams_fold_digits_and_spacing():
    grams = pii_scan._grams("Call ۰۹۱۲ ۱۲۳ ۴۰۰۱ or <Ali.Karimi@Example.com>. Met علي كريمي.")
    assert "09121234001" in grams
    assert "ali.karimi@example.com" in grams
    assert "علی کریمی" in grams  # Arabic letter variants folded to Persian
