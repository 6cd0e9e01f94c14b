"""normalize.values: typed values from raw text as received (the Python twins of util.parse_*; parity with the SQL
functions is tested in tests/warehouse/test_sql_functions.py, absolute values here)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from crm_knowledge.normalize.values import (
    parse_decimal,
    parse_integer,
    parse_source_date,
    parse_timestamp,
    parse_yes_no,
    value_text,
)


@pytest.mark.parametrize(("text", "calendar", "fmt", "expected"), [
    ("1369/11/14", "jalali", "%Y/%m/%d", dt.date(1991, 2, 3)),
    ("۱۳۶۹/۱۱/۱۴", "jalali", "%Y/%m/%d", dt.date(1991, 2, 3)),
    ("1403/12/30", "jalali", "%Y/%m/%d", dt.date(2025, 3, 20)),  # 1403 is a leap year
    ("1402/12/30", "jalali", "%Y/%m/%d", None),  # 1402 is not
    ("31.12.1999", "gregorian", "%d.%m.%Y", dt.date(1999, 12, 31)),
    ("1999-12-31", "gregorian", "%d.%m.%Y", dt.date(1999, 12, 31)),  # ISO accepted besides the format
    ("19505309", "gregorian", "%Y%m%d", None),  # month 53
    ("19800101", "gregorian", "%Y%m%d", dt.date(1980, 1, 1)),
    ("  ", "gregorian", None, None),
    (None, "jalali", None, None),
])
def test_parse_source_date(text, calendar, fmt, expected):
    assert parse_source_date(text, calendar, fmt) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("۴", 4), (" 12 ", 12), ("1,234", 1234), ("۱٬۲۳۴", 1234), ("-7", -7), ("12.0", 12), ("12.5", None),
    ("1e3", None), ("2147483647", 2147483647), ("2147483648", None), ("abc", None), ("", None), (None, None),
])
def test_parse_integer(text, expected):
    assert parse_integer(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("1500.50", Decimal("1500.50")), ("۱۲۳٫۴۵", Decimal("123.45")), ("1,234.5", Decimal("1234.5")),
    (".5", Decimal("0.5")), ("1e20", None), ("NaN", None), ("999999999999.99", Decimal("999999999999.99")),
    ("1000000000000", None), ("abc", None),
])
def test_parse_decimal(text, expected):
    assert parse_decimal(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("true", True), ("YES", True), ("y", True), ("1", True), ("بله", True), ("آری", True),
    ("false", False), ("No", False), ("0", False), ("خیر", False), ("نه", False),
    ("maybe", None), ("", None), (None, None),
])
def test_parse_yes_no(text, expected):
    assert parse_yes_no(text) is expected


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-03-01T10:00:00+03:30", dt.datetime(2026, 3, 1, 6, 30, tzinfo=dt.UTC)),
    ("2026-03-01T10:00:00Z", dt.datetime(2026, 3, 1, 10, 0, tzinfo=dt.UTC)),
    ("2026-03-01 10:00", dt.datetime(2026, 3, 1, 10, 0, tzinfo=dt.UTC)),  # no offset: UTC
    ("۲۰۲۶-۰۳-۰۱T۱۰:۰۰:۰۰.5-0500", dt.datetime(2026, 3, 1, 15, 0, 0, 500000, tzinfo=dt.UTC)),
    ("2026-02-30T10:00", None), ("2026-03-01T24:00", None), ("yesterday", None), ("", None),
])
def test_parse_timestamp(text, expected):
    assert parse_timestamp(text) == expected


def test_value_text_trims_whitespace_and_makes_digits_ascii():
    assert value_text("\u2028 ۱۲ \t") == "12" and value_text("   ") is None and value_text(None) is None
