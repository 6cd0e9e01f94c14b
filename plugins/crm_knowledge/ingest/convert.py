"""Turn one source value into what a raw text column or `extras` can hold, or say why it cannot be.

Raw keeps every file value as text, as received: converting it (dates in the source's calendar,
numbers, yes/no words) is staging's job, with the util.* SQL functions (normalize/values.py is their Python
twin). What is left here is structure: a value a database text column cannot hold at all (a NUL character,
a lone UTF-16 surrogate) makes its row a structural reject; a reader's non-text cell (an XLSX number or date,
a JSON number or object) becomes the text the file shows.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Decimal
from typing import Any


class RowError(ValueError):
    """One field of one row cannot be stored as text at all (a structural fault of the row)."""


def to_text(value: Any) -> str | None:
    """The text of a reader's value: None for blank, JSON text for an object or list, `true`/`false` for a
    boolean (as JSON writes it), ISO-8601 for a date or time, a whole float (Excel ids, phones) without `.0`."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, dt.datetime):
        value = value.date() if value.time() == dt.time(0) and value.tzinfo is None else value
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        return check_text(json.dumps(value, ensure_ascii=False))
    text = str(value)
    if not text or text.isspace():
        return None
    return check_text(text)


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


def jsonable(value: Any) -> Any:
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value
