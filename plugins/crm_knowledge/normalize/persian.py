"""Persian/Arabic script clean-up shared by every other normaliser.

Iranian data arrives typed on Arabic keyboards (ي, ك), Persian keyboards (ی, ک), copied from PDFs
(presentation forms), with ZWNJ inside words and Persian or Arabic-Indic digits. Two spellings of
the same word must compare equal before anything else (matching, deduplication, validation) can
work, so this module defines the one canonical form. Every rule here has a twin in
``warehouse/sql/00_functions.sql`` (``util.ascii_digits``, ``util.normalize_persian``); the parity test
in ``tests/warehouse/test_sql_functions.py`` keeps them in step, so change both together.
"""

from __future__ import annotations

import re
import unicodedata

#: Persian (U+06F0..) and Arabic-Indic (U+0660..) digits, in order 0-9.
PERSIAN_DIGITS = "".join(chr(0x06F0 + i) for i in range(10))
ARABIC_INDIC_DIGITS = "".join(chr(0x0660 + i) for i in range(10))

_DIGITS_TABLE = str.maketrans(PERSIAN_DIGITS + ARABIC_INDIC_DIGITS, "0123456789" * 2)

#: Arabic letter variants -> the Persian letter a Persian keyboard produces. آ is deliberately kept:
#: it is a distinct letter in Persian (آرش is not ارش). ئ is kept too (پائیز/پاییز is a spelling
#: question, not a keyboard one).
LETTER_MAP: dict[str, str] = {
    "\u064a": "\u06cc",  # ي Arabic yeh          -> ی
    "\u0649": "\u06cc",  # ى alef maksura         -> ی
    "\u0643": "\u06a9",  # ك Arabic kaf           -> ک
    "\u06aa": "\u06a9",  # ڪ swash kaf            -> ک
    "\u0629": "\u0647",  # ة teh marbuta          -> ه
    "\u06c0": "\u0647",  # ۀ heh with yeh above   -> ه
    "\u06be": "\u0647",  # ھ heh doachashmee (Urdu keyboards) -> ه
    "\u06d5": "\u0647",  # ە ae                   -> ه
    "\u0623": "\u0627",  # أ alef hamza above     -> ا
    "\u0625": "\u0627",  # إ alef hamza below     -> ا
    "\u0671": "\u0627",  # ٱ alef wasla           -> ا
    "\u0624": "\u0648",  # ؤ waw hamza            -> و
}

#: Harakat and other Arabic marks (U+064B-U+065F), superscript alef (U+0670) and tatweel (U+0640):
#: optional in writing, so they carry no identity.
DIACRITICS = "".join(chr(c) for c in range(0x064B, 0x0660)) + "\u0670" + "\u0640"

#: Zero-width characters that separate (or join) parts of a word. ZWNJ is how Persian writes
#: compound words (می‌خواهم, محمد‌رضا); people type the same thing with a space or nothing, and a
#: space is the choice that keeps word boundaries.
ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"

#: Invisible formatting that carries no meaning at all: bidi marks (pasted from RTL editors, often
#: into phone numbers), Arabic letter mark, soft hyphen. Removed outright.
INVISIBLE = "\u200e\u200f\u061c\u00ad" + "".join(chr(c) for c in range(0x202A, 0x202F)) + "".join(
    chr(c) for c in range(0x2066, 0x206A)
)

#: Whitespace after NFKC (which already folds NBSP, thin spaces, ideographic space... to U+0020).
#: Spelled out rather than ``\s`` so Python and PostgreSQL regexes agree character for character.
WHITESPACE_CLASS = r"[ \t\n\r\f\v\u0085\u1680\u2028\u2029]"

_WS_RUN = re.compile(WHITESPACE_CLASS + "+")

#: What people type or paste between the digits of a phone number or an ID: whitespace, zero-width and
#: bidi marks, soft hyphen. The body of a regex character class (Python and PostgreSQL syntax alike), so
#: each kind of number adds its own punctuation: ``"[" + NUMBER_SEPARATOR_CHARS + "-]"``.
NUMBER_SEPARATOR_CHARS = (
    r" \t\n\r\f\v\u0085\u1680\u2028\u2029\u00ad\u061c\u200b-\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff"
)

_PERSIAN_TABLE: dict[int, str | None] = {
    **{ord(k): v for k, v in LETTER_MAP.items()},
    **{ord(c): None for c in DIACRITICS + INVISIBLE},
    **{ord(c): " " for c in ZERO_WIDTH},
    **{ord(c): str(i % 10) for i, c in enumerate(PERSIAN_DIGITS + ARABIC_INDIC_DIGITS)},
}


def to_ascii_digits(s: str | None) -> str | None:
    """Persian and Arabic-Indic digits to ASCII; nothing else changes (``""`` stays ``""``).

    Kept minimal on purpose: callers use it on values whose other characters matter (amounts,
    timestamps), where a fuller normalisation would be wrong.
    """
    if s is None:
        return None
    return s.translate(_DIGITS_TABLE)


def collapse_whitespace(s: str) -> str:
    """Runs of whitespace to one space, trimmed; the same definition of whitespace as the SQL twin."""
    return _WS_RUN.sub(" ", s).strip(" ")


def normalize_persian(s: str | None) -> str | None:
    """Canonical form of free Persian (or mixed-script) text; ``None`` when nothing is left.

    Steps: NFKC (folds Arabic presentation forms from PDFs and exotic spaces to plain ones),
    Arabic letter variants to Persian, diacritics/tatweel/bidi marks removed, zero-width characters
    to a space, digits to ASCII, whitespace collapsed and trimmed. Latin text passes through
    unchanged apart from NFKC and whitespace, so the function is safe on any customer text.
    """
    if s is None:
        return None
    text = unicodedata.normalize("NFKC", s).translate(_PERSIAN_TABLE)
    text = collapse_whitespace(text)
    return text or None
