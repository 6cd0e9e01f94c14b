"""Typed values from text as received: dates in a source's calendar and format, ISO-8601 timestamps,
whole and decimal numbers (Persian digits, thousands separators), yes/no words.

Raw keeps every file value as text; staging converts it with the SQL twins of these functions
(``util.parse_date``, ``util.parse_timestamp``, ``util.parse_integer``, ``util.parse_decimal``,
``util.parse_yes_no`` in warehouse/sql/00_functions.sql), and tests/warehouse/test_sql_functions.py
checks the two agree value by value. A value that does not convert gives ``None`` (staging keeps the
record with that field NULL and records a field issue); a blank value is ``None`` too, and is no issue.
The rules are spelled out as regular expressions both languages read the same way, not as whatever
``Decimal()`` or ``datetime.fromisoformat`` happen to accept.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

from crm_knowledge.normalize.dates import parse_date
from crm_knowledge.normalize.persian import WHITESPACE_CLASS, to_ascii_digits

#: The limits of the staging columns' types: `int` and `numeric(14, 2)`.
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
DECIMAL_LIMIT = Decimal(10) ** 12 - Decimal("0.005")

_TRUE = frozenset({"true", "t", "yes", "y", "1", "بله", "آری"})
_FALSE = frozenset({"false", "f", "no", "n", "0", "خیر", "نه"})

_EDGES = re.compile(f"^{WHITESPACE_CLASS}+|{WHITESPACE_CLASS}+$")
_INTEGER = re.compile(r"[+-]?[0-9]+(?:\.0*)?")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_TIMESTAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:[.,]([0-9]{1,6}))?)?)?"
    r"(Z|[+-][0-9]{2}(?::?[0-9]{2})?)?"
)

#: Why a value did not convert, per kind: what `audit.field_issues.reason` says (never the value).
REASONS = {
    "integer": "not a whole number (or out of the 4-byte integer range)",
    "decimal": "not a number (or out of range, at most 12 digits before the decimal point)",
    "yes_no": "not a yes/no value",
    "timestamp": "not an ISO-8601 timestamp (YYYY-MM-DD[THH:MM[:SS[.ffffff]]][Z|+HH:MM])",
}


def date_reason(calendar: str, fmt: str | None) -> str:
    """The field-issue reason of a date that does not convert, in a source's calendar and format."""
    return f"not a {calendar} date in format {fmt or 'YYYY-MM-DD'}"


def value_text(s: str | None) -> str | None:
    """ASCII digits, whitespace trimmed at both ends (the same whitespace as the SQL twins); '' -> None."""
    if s is None:
        return None
    text = _EDGES.sub("", to_ascii_digits(s) or "")
    return text or None


def parse_source_date(s: str | None, calendar: str = "gregorian", fmt: str | None = None) -> dt.date | None:
    """A date written in a source's `calendar` and `fmt` (normalize.dates.parse_date), else ISO
    YYYY-MM-DD or YYYY/MM/DD (sources with a declared format sometimes send ISO too); None if neither."""
    for candidate in ((fmt, None) if fmt else (None,)):
        try:
            return parse_date(s, calendar=calendar, fmt=candidate)
        except ValueError:
            continue
    return None


def parse_integer(s: str | None) -> int | None:
    """A whole number: sign, digits (Persian too), thousands separators `,` `٬`, an optional `.0`."""
    text = value_text(s)
    if text is None:
        return None
    text = text.replace(",", "").replace("٬", "")
    if not _INTEGER.fullmatch(text):
        return None
    number = int(text.split(".")[0])
    return number if INT_MIN <= number <= INT_MAX else None


def parse_decimal(s: str | None) -> Decimal | None:
    """A decimal number: thousands separators `,` `٬`, decimal point `.` or the Persian `٫`."""
    text = value_text(s)
    if text is None:
        return None
    text = text.replace(",", "").replace("٬", "").replace("٫", ".")
    if not _DECIMAL.fullmatch(text):
        return None
    number = Decimal(text)
    return number if abs(number) < DECIMAL_LIMIT else None


def parse_yes_no(s: str | None) -> bool | None:
    """true/false, yes/no, y/n, t/f, 1/0 (any case), بله/آری and خیر/نه."""
    text = value_text(s)
    if text is None:
        return None
    text = text.lower()
    return True if text in _TRUE else False if text in _FALSE else None


def parse_timestamp(s: str | None) -> dt.datetime | None:
    """An ISO-8601 timestamp in UTC; one without an offset is taken as UTC."""
    text = value_text(s)
    if text is None:
        return None
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        return None
    y, mo, d, h, mi, sec, frac, zone = match.groups()
    offset = dt.timedelta(0)
    if zone and zone != "Z":
        digits = zone[1:].replace(":", "")
        offset = dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
        if offset >= dt.timedelta(hours=24) or int(digits[2:] or 0) >= 60:
            return None
        offset = -offset if zone[0] == "-" else offset
    try:
        local = dt.datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(sec or 0),
                            int((frac or "0").ljust(6, "0")))
        return (local - offset).replace(tzinfo=dt.UTC)
    except (ValueError, OverflowError):
        return None
