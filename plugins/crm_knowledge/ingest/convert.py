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
        return json.dumps(value, ensure_ascii=False)
    return str(value)


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
        raise RowError(f"not a {cfg.date_calendar} date in format {cfg.date_format or 'YYYY-MM-DD'}: "
                       f"{value!r}") from None


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
            raise RowError(f"not an ISO-8601 timestamp: {value!r}") from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt.UTC)
    return ts.astimezone(dt.UTC)


def to_int(value: Any) -> int | None:
    if _blank(value):
        return None
    if isinstance(value, bool):
        raise RowError(f"not a whole number: {value!r}")
    if isinstance(value, int):
        return value
    text = (to_ascii_digits(str(value).strip()) or "").replace(",", "").replace("٬", "")
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise RowError(f"not a whole number: {value!r}") from None
    if number != number.to_integral_value():
        raise RowError(f"not a whole number: {value!r}")
    return int(number)


def to_numeric(value: Any) -> Decimal | None:
    if _blank(value):
        return None
    if isinstance(value, bool):
        raise RowError(f"not a number: {value!r}")
    if isinstance(value, (int, float)):
        return Decimal(str(value))
    text = (to_ascii_digits(str(value).strip()) or "").replace(",", "").replace("٬", "").replace("٫", ".")
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise RowError(f"not a number: {value!r}") from None
    if not number.is_finite():
        raise RowError(f"not a finite number: {value!r}")
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
    raise RowError(f"not a yes/no value: {value!r}")


def text_or_none(value: Any) -> str | None:
    """`to_text` with a fast path for the common case, a str from a CSV or JSON reader."""
    if value.__class__ is str:
        return None if not value or value.isspace() else value
    return to_text(value)


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
