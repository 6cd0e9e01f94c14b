"""Iranian national ID (کد ملی): cleaning and check-digit validation.

The national ID is the strongest identifier the sources share, so a wrong one is worse than none:
only IDs that pass the check digit are returned. Twins: ``util.normalize_national_id`` and
``util.national_id_is_valid`` in ``warehouse/sql/00_functions.sql``.
"""

from __future__ import annotations

import re
import unicodedata

from crm_knowledge.normalize.persian import NUMBER_SEPARATOR_CHARS, to_ascii_digits

#: Whitespace, invisible marks and dashes people type inside an ID (e.g. 001-234567-8).
ID_SEPARATOR_CLASS = "[" + NUMBER_SEPARATOR_CHARS + "-]"
_SEPARATORS = re.compile(ID_SEPARATOR_CLASS)
#: Spreadsheets store IDs as numbers: leading zeros vanish (hence 8-9 digits are padded) and the
#: value sometimes comes back as "12345678.0".
_EXCEL_FRACTION = re.compile(r"\.0+$")
_CANDIDATE = re.compile(r"[0-9]{8,10}")


def check_digit(first9: str) -> int:
    """The check digit of the national ID whose first nine (ASCII) digits are ``first9``: the weighted sum
    (10, 9, ..., 2) modulo 11, kept when below 2, else subtracted from 11."""
    s = sum(int(first9[i]) * (10 - i) for i in range(9)) % 11
    return s if s < 2 else 11 - s


def _check_digit_ok(code: str) -> bool:
    return int(code[9]) == check_digit(code)


def normalize_national_id(s: str | None) -> str | None:
    """The 10-digit ID when ``s`` is a valid national ID, else ``None``.

    Accepts Persian/Arabic-Indic digits, spaces and dashes, and 8-9 digit values (zero-padded).
    Codes of one repeated digit pass the checksum arithmetic but are placeholders, so are rejected.
    """
    if s is None:
        return None
    text = _SEPARATORS.sub("", to_ascii_digits(unicodedata.normalize("NFKC", s)) or "")
    text = _EXCEL_FRACTION.sub("", text)
    if not _CANDIDATE.fullmatch(text):
        return None
    code = text.zfill(10)
    if len(set(code)) == 1 or not _check_digit_ok(code):
        return None
    return code


def is_valid_national_id(s: str | None) -> bool:
    """Whether ``s`` is (after cleaning and padding) a valid Iranian national ID."""
    return normalize_national_id(s) is not None
