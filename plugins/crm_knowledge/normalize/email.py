"""E-mail addresses in matching form.

Only the harmless normalisations are applied (case, whitespace, digits, invisible marks):
provider-specific rewrites such as removing Gmail dots would merge addresses that may belong to
different people, and that is identity resolution's decision, not a formatting one.
Twin: ``util.normalize_email`` in ``warehouse/sql/00_functions.sql``.
"""

from __future__ import annotations

import re
import unicodedata

from crm_knowledge.normalize.persian import INVISIBLE, WHITESPACE_CLASS, ZERO_WIDTH, to_ascii_digits

_INVISIBLES = str.maketrans({c: None for c in INVISIBLE + ZERO_WIDTH})
_EDGE_WHITESPACE = re.compile(rf"^{WHITESPACE_CLASS}+|{WHITESPACE_CLASS}+$")
#: Characters never seen in a real address outside RFC-quoted local parts: whitespace, @ and the
#: list/display-name delimiters (so "Ali <ali@x.ir>" and "a@x.ir, b@y.ir" are rejected).
_FORBIDDEN = r" \t\n\r\f\v\u0085\u1680\u2028\u2029@<>()\[\]\\,;:\""
#: local@label.label…tld: one @, at least one dot in the domain, no empty labels, TLD ≥ 2 chars.
EMAIL_PATTERN = rf"[^{_FORBIDDEN}]+@([^{_FORBIDDEN}.]+\.)+[^{_FORBIDDEN}.]{{2,}}"
_EMAIL = re.compile(EMAIL_PATTERN)


def normalize_email(s: str | None) -> str | None:
    """Trimmed, lower-case address with ASCII digits, or ``None`` when it is not a plausible address.

    NFKC first so full-width characters from CJK or Persian input methods (＠, ．) become ASCII;
    a leading ``mailto:`` (pasted links) is dropped.
    """
    if s is None:
        return None
    text = (to_ascii_digits(unicodedata.normalize("NFKC", s)) or "").translate(_INVISIBLES)
    text = _EDGE_WHITESPACE.sub("", text).lower()
    if text.startswith("mailto:"):
        text = text[len("mailto:"):]
    return text if _EMAIL.fullmatch(text) else None
