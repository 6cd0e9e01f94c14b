"""Turn one source record into a typed raw row, or say exactly why it cannot be.

Raw keeps text as received (normalisation happens in staging, where it can be re-done); only the
values whose meaning depends on the source's own conventions are converted here, because the raw
table is the last place that still knows them: dates in the source's calendar and format (Solar
Hijri or Gregorian), timestamps, numbers written with Persian digits, yes/no flags.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from decimal import Decimal, InvalidOperation
from typing import Any

from crm_knowledge.ingest.registry import SourceConfig
from crm_knowledge.normalize import parse_date, to_ascii_digits

DATE_COLUMNS = {"birth_date", "signup_date", "order_date"}
TIMESTAMP_COLUMNS = {"submitted_at", "occurred_at"}
INT_COLUMNS = {"rating", "quantity"}
NUMERIC_COLUMNS = {"amount"}
BOOL_COLUMNS = {"consent_marketing", "consent_profiling"}

_TRUE = {"true", "t", "yes", "y", "1", "بله", "آری"}
_FALSE = {"false", "f", "no", "n", "0", "خیر", "نه"}


#: Limits of the raw columns' types (`int`, `numeric(16, 2)`): a value beyond them is the row's fault, caught
#: here so the database never has to refuse it (and never logs it).
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
NUMERIC_LIMIT = Decimal(10) ** 14


class RowError(ValueError):
    """One field of one row could not be converted."""


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def to_text(value: Any) -> str | None:
    if _blank(value):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # Excel stores ids and phone numbers as floats
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        return check_text(json.dumps(value, ensure_ascii=False))
    return check_text(str(value))


def to_date(value: Any, cfg: SourceConfig) -> dt.date | None:
    if _blank(value):
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return parse_date(str(value).strip(), calendar=cfg.date_calendar, fmt=cfg.date_format)
    except ValueError:
        if cfg.date_format:
            # A source with a declared format sometimes also sends ISO dates; accept those.
            try:
                return parse_date(str(value).strip(), calendar=cfg.date_calendar, fmt=None)
            except ValueError:
                pass
        raise RowError(f"not a {cfg.date_calendar} date in format {cfg.date_format or 'YYYY-MM-DD'}") from None


def to_timestamp(value: Any) -> dt.datetime | None:
    if _blank(value):
        return None
    if isinstance(value, dt.datetime):
        ts = value
    else:
        text = to_ascii_digits(str(value).strip()) or ""
        try:
            ts = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise RowError("not an ISO-8601 timestamp") from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt.UTC)
    return ts.astimezone(dt.UTC)


def to_int(value: Any) -> int | None:
    if _blank(value):
        return None
    if isinstance(value, bool):
        raise RowError("not a whole number (a yes/no value)")
    if isinstance(value, int):
        number = value
    else:
        text = (to_ascii_digits(str(value).strip()) or "").replace(",", "").replace("٬", "")
        try:
            decimal = Decimal(text)
        except InvalidOperation:
            raise RowError("not a whole number") from None
        if not decimal.is_finite() or decimal != decimal.to_integral_value():
            raise RowError("not a whole number")
        number = int(decimal)
    if not INT_MIN <= number <= INT_MAX:
        raise RowError(f"whole number out of range (raw column is a 4-byte integer, {INT_MIN}..{INT_MAX})")
    return number


def to_numeric(value: Any) -> Decimal | None:
    if _blank(value):
        return None
    if isinstance(value, bool):
        raise RowError("not a number (a yes/no value)")
    if isinstance(value, (int, float)):
        number = Decimal(str(value))
    else:
        text = (to_ascii_digits(str(value).strip()) or "").replace(",", "").replace("٬", "").replace("٫", ".")
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise RowError("not a number") from None
    if not number.is_finite():
        raise RowError("not a finite number")
    if abs(number) >= NUMERIC_LIMIT - Decimal("0.005"):  # numeric(16, 2) rounds to cents
        raise RowError(f"number out of range (raw column holds less than {NUMERIC_LIMIT:,} in absolute value)")
    return number


def to_bool(value: Any) -> bool | None:
    if _blank(value):
        return None
    if isinstance(value, bool):
        return value
    text = (to_ascii_digits(str(value).strip()) or "").casefold()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise RowError("not a yes/no value")


def check_text(value: str) -> str:
    """`value` if Postgres can store it as text: no NUL character, no lone UTF-16 surrogate (JSON `\\ud800`)."""
    if "\x00" in value:
        raise RowError("holds a NUL character (\\u0000), which a database text value cannot")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise RowError("holds a lone UTF-16 surrogate (invalid Unicode)") from None
    return value


def text_or_none(value: Any) -> str | None:
    """`to_text` with a fast path for the common case, a str from a CSV or JSON reader.

    Only NUL is checked here: a str decoded from bytes (CSV, XLSX) cannot hold a lone surrogate, and the JSON
    Lines reader rejects lines whose escapes produce one (readers.read_jsonl).
    """
    if value.__class__ is str:
        if not value or value.isspace():
            return None
        if "\x00" in value:
            raise RowError("holds a NUL character (\\u0000), which a database text value cannot")
        return value
    return to_text(value)


def check_json(value: Any) -> Any:
    """`value` (a JSON-able extras value) if jsonb can store it: every key and string passes `check_text`."""
    if isinstance(value, str):
        return check_text(value)
    if isinstance(value, dict):
        for key, item in value.items():
            check_text(str(key))
            check_json(item)
    elif isinstance(value, list):
        for item in value:
            check_json(item)
    elif isinstance(value, float) and not math.isfinite(value):
        raise RowError("not a finite number (NaN or infinity)")
    return value


def printable(value: Any) -> Any:
    """`value` with NUL characters and lone surrogates replaced by U+FFFD, so a rejected record can be kept
    as received (in `raw.load_rejects.record`) even when it is exactly what the database refused."""
    if isinstance(value, str):
        if "\x00" in value:
            value = value.replace("\x00", "\ufffd")
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                value = "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in value)
        return value
    if isinstance(value, dict):
        return {printable(str(k)): printable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [printable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return jsonable(value)


def converter_for(column: str, cfg: SourceConfig):
    """The one-argument converter of a raw column, chosen once per file instead of once per field."""
    if column in DATE_COLUMNS or column in TIMESTAMP_COLUMNS or column in INT_COLUMNS \
            or column in NUMERIC_COLUMNS or column in BOOL_COLUMNS:
        return lambda value: convert_field(column, value, cfg)
    return text_or_none


def convert_field(column: str, value: Any, cfg: SourceConfig) -> Any:
    if column in DATE_COLUMNS:
        return to_date(value, cfg)
    if column in TIMESTAMP_COLUMNS:
        return to_timestamp(value)
    if column in INT_COLUMNS:
        return to_int(value)
    if column in NUMERIC_COLUMNS:
        return to_numeric(value)
    if column in BOOL_COLUMNS:
        return to_bool(value)
    return to_text(value)


def record_hash(values: list[Any]) -> str:
    """Content hash of a typed row: the same record content always gives the same hash."""
    # one update of the joined bytes: the same digest as updating value by value, several times faster
    joined = "".join("\x1f" if v is None else f"{v}\x1e" for v in values)
    return hashlib.md5(joined.encode("utf-8"), usedforsecurity=False).hexdigest()


def jsonable(value: Any) -> Any:
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value
