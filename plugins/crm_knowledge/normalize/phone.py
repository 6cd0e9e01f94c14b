"""Phone numbers to E.164, with Iranian national conventions as the default.

Customers type the same mobile as 0912 345 6789, +98 912 345 6789, 0098912…, 98912… or with
Persian digits; identity resolution can only match on phone if all of these become one string.
Twin: ``util.normalize_phone`` in ``warehouse/sql/00_functions.sql`` (Iranian default only).
"""

from __future__ import annotations

import re
import unicodedata

from crm_knowledge.normalize.persian import NUMBER_SEPARATOR_CHARS, to_ascii_digits

#: Characters people put between digits: whitespace, invisible marks, ( ) . - /
PHONE_SEPARATOR_CLASS = "[" + NUMBER_SEPARATOR_CHARS + r"()./-]"
_SEPARATORS = re.compile(PHONE_SEPARATOR_CLASS)
_DIGITS_ONLY = re.compile(r"\+?[0-9]+")
#: Iranian national significant numbers (10 digits): mobiles 9xx xxx xxxx; landlines a two-digit
#: area code starting 1-8 followed by an 8-digit subscriber number.
_IR_NATIONAL = re.compile(r"9[0-9]{9}|[1-8][0-9]{9}")
#: Any other country: country code cannot start with 0; E.164 allows at most 15 digits.
_FOREIGN = re.compile(r"[1-9][0-9]{7,14}")

SUPPORTED_DEFAULT_COUNTRIES = frozenset({"IR"})


def _iranian(national: str) -> str | None:
    return f"+98{national}" if _IR_NATIONAL.fullmatch(national) else None


def normalize_phone(s: str | None, default_country: str = "IR") -> str | None:
    """E.164 form (``+982188123456``) of a phone number, or ``None`` when it is not a usable number.

    A number with an explicit international prefix (``+`` or ``00``) is trusted: +98 numbers must
    be valid Iranian numbers, other countries are kept as ``+<digits>`` when 8-15 digits long.
    Without a prefix the number is read in ``default_country`` (only ``"IR"`` is implemented; other
    values raise ``ValueError`` because that is a configuration error, not bad data). A landline
    without its area code is rejected: guessing Tehran would invent identifiers.
    """
    if default_country.upper() not in SUPPORTED_DEFAULT_COUNTRIES:
        raise ValueError(f"normalize_phone: unsupported default_country {default_country!r}")
    if s is None:
        return None
    text = _SEPARATORS.sub("", to_ascii_digits(unicodedata.normalize("NFKC", s)) or "")
    if not _DIGITS_ONLY.fullmatch(text):
        return None
    if text.startswith("+") or text.startswith("00"):
        digits = text[1:] if text.startswith("+") else text[2:]
        if digits.startswith("98"):
            national = digits[2:]
            if national.startswith("0"):  # "+98 (0)912 …"
                national = national[1:]
            return _iranian(national)
        return f"+{digits}" if _FOREIGN.fullmatch(digits) else None
    if len(text) == 12 and text.startswith("98"):  # 98912… typed without the +
        return _iranian(text[2:])
    return _iranian(text[1:] if text.startswith("0") else text)
