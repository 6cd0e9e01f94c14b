"""Variation functions: how the same fact gets typed differently by different people and systems.

Functions here take plain Python values (and a numpy Generator where randomness is needed) and
return strings. The generator decides *which* records get which variation with vectorised masks and
calls these only for the affected records, so the per-record Python cost stays small.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

ASCII_DIGITS = "0123456789"
PERSIAN_DIGITS = "۰۱۲۳۴۵۶۷۸۹"
ARABIC_DIGITS = "٠١٢٣٤٥٦٧٨٩"
_TO_PERSIAN = str.maketrans(ASCII_DIGITS, PERSIAN_DIGITS)
_TO_ARABIC_DIGITS = str.maketrans(ASCII_DIGITS, ARABIC_DIGITS)
_TO_ASCII = str.maketrans(PERSIAN_DIGITS + ARABIC_DIGITS, ASCII_DIGITS * 2)
# Persian letters -> Arabic look-alikes, as typed on Arabic keyboards / stored by old systems.
_TO_ARABIC_LETTERS = str.maketrans({"ی": "ي", "ک": "ك"})
# Windows-1256 has no U+06CC (Persian yeh): real cp1256 systems store U+064A instead.
_CP1256_SAFE = str.maketrans({"ی": "ي", "ۀ": "ه", "ـ": ""})

PERSIAN_LETTERS = "ابپتثجچحخدذرزژسشصضطظعغفقکگلمنوهی"
LATIN_LETTERS = "abcdefghijklmnopqrstuvwxyz"
# Keys next to each other on a QWERTY keyboard, for realistic substitutions.
_QWERTY_NEIGHBOURS = {
    "a": "sqz", "b": "vn", "c": "xv", "d": "sf", "e": "wr", "f": "dg", "g": "fh", "h": "gj", "i": "uo",
    "j": "hk", "k": "jl", "l": "k", "m": "n", "n": "bm", "o": "ip", "p": "o", "q": "wa", "r": "et",
    "s": "ad", "t": "ry", "u": "yi", "v": "cb", "w": "qe", "x": "zc", "y": "tu", "z": "xa",
}


def to_persian_digits(text: str) -> str:
    return text.translate(_TO_PERSIAN)


def to_arabic_digits(text: str) -> str:
    return text.translate(_TO_ARABIC_DIGITS)


def to_ascii_digits(text: str) -> str:
    return text.translate(_TO_ASCII)


def arabic_letters(text: str) -> str:
    """ی -> ي and ک -> ك."""
    return text.translate(_TO_ARABIC_LETTERS)


def cp1256_safe(text: str) -> str:
    """Make Persian text encodable in Windows-1256 the way real systems do (ی stored as ي)."""
    return text.translate(_CP1256_SAFE)


def is_persian(text: str) -> bool:
    return any("\u0600" <= ch <= "\u06ff" for ch in text)


def typo(text: str, rng: np.random.Generator) -> str:
    """Apply one edit: substitute, delete, insert or transpose one character (never the empty string)."""
    if len(text) < 3:
        return text + (text[-1] if text else "")
    persian = is_persian(text)
    alphabet = PERSIAN_LETTERS if persian else LATIN_LETTERS
    kind = int(rng.integers(0, 4))
    i = int(rng.integers(1, len(text) - 1))  # keep the first letter: people rarely mistype it
    ch = text[i]
    if kind == 0:  # substitute
        if not persian and ch.lower() in _QWERTY_NEIGHBOURS:
            nb = _QWERTY_NEIGHBOURS[ch.lower()]
            new = nb[int(rng.integers(0, len(nb)))]
            new = new.upper() if ch.isupper() else new
        else:
            new = alphabet[int(rng.integers(0, len(alphabet)))]
            if new == ch:
                new = alphabet[(alphabet.find(new) + 1) % len(alphabet)]
        return text[:i] + new + text[i + 1:]
    if kind == 1:  # delete
        return text[:i] + text[i + 1:]
    if kind == 2:  # insert (doubling a letter is the most common insertion)
        return text[:i] + ch + text[i:]
    return text[:i - 1] + text[i] + text[i - 1] + text[i + 1:] if text[i] != text[i - 1] else text[:i] + text[i + 1:]


def latin_case(text: str, style: int) -> str:
    """0 Title, 1 UPPER, 2 lower."""
    if style == 1:
        return text.upper()
    if style == 2:
        return text.lower()
    return text


# --- phones -----------------------------------------------------------------------------------------
PHONE_FORMATS = ("e164", "spaced", "national", "national_spaced", "persian", "dashed", "intl00")


def format_mobile(national10: int, fmt: str) -> str:
    """`national10` is the 10-digit mobile number without the trunk 0, e.g. 9123456789."""
    s = f"{national10:010d}"
    if fmt == "e164":
        return "+98" + s
    if fmt == "spaced":
        return f"+98 {s[:3]} {s[3:6]} {s[6:]}"
    if fmt == "national":
        return "0" + s
    if fmt == "national_spaced":
        return f"0{s[:3]} {s[3:6]} {s[6:]}"
    if fmt == "persian":
        return to_persian_digits("0" + s)
    if fmt == "dashed":
        return f"{s[:3]}-{s[3:6]}-{s[6:]}"
    if fmt == "intl00":
        return f"0098 {s[:3]} {s[3:]}"
    raise ValueError(fmt)


# --- national ids -------------------------------------------------------------------------------------
def national_ids_from_first9(first9: np.ndarray) -> np.ndarray:
    """Vectorised: 9 leading digits -> 10-digit national id (int64) with a valid check digit."""
    first9 = first9.astype(np.int64)
    s = np.zeros_like(first9)
    rest = first9.copy()
    for pos in range(8, -1, -1):  # digit at position pos (0 = most significant) has weight 10 - pos
        s += (rest % 10) * (10 - pos)
        rest //= 10
    s %= 11
    check = np.where(s < 2, s, 11 - s)
    return first9 * 10 + check


def format_national_id(nid: int, fmt: int) -> str:
    """0 plain, 1 Persian digits, 2 dashed xxx-xxxxxx-x, 3 leading zeros lost (spreadsheet)."""
    s = f"{nid:010d}"
    if fmt == 1:
        return to_persian_digits(s)
    if fmt == 2:
        return f"{s[:3]}-{s[3:9]}-{s[9]}"
    if fmt == 3:
        return s.lstrip("0") or "0"
    return s


# --- emails -------------------------------------------------------------------------------------------
def messy_email(email: str, style: int) -> str:
    """0 as is, 1 Capitalised, 2 UPPER, 3 surrounding spaces, 4 capitalised + trailing space."""
    if style == 1:
        return email[:1].upper() + email[1:]
    if style == 2:
        return email.upper()
    if style == 3:
        return f" {email} "
    if style == 4:
        return email[:1].upper() + email[1:] + " "
    return email


#: How people build an email's local part from their Latin name (f: first, l: last, i: first initial,
#: n: a number, n2 / n3: its last two / three digits); `email_local` picks one by style number.
EMAIL_LOCAL_STYLES = ("{f}.{l}", "{f}_{l}", "{i}.{l}", "{f}{l}{n2:02d}", "{l}.{f}", "{f}{n}", "{f}.{l}{n}",
                      "{i}{l}{n3}")


def email_local(first_latin: str, last_latin: str, style: int, number: int) -> str:
    f = first_latin.lower().replace(" ", "")
    last = last_latin.lower().replace(" ", "")
    pattern = EMAIL_LOCAL_STYLES[style] if 0 <= style < len(EMAIL_LOCAL_STYLES) else EMAIL_LOCAL_STYLES[-1]
    return pattern.format(f=f, l=last, i=f[:1], n=number, n2=number % 100, n3=number % 1000)


# --- dates --------------------------------------------------------------------------------------------
EPOCH = dt.date(1970, 1, 1)
#: "no date" in day-number arrays (persons are born before 1970 too, so -1 is a real day).
NO_DAY = -10_000_000


def day_to_date(days: int) -> dt.date:
    return EPOCH + dt.timedelta(days=int(days))


def jalali(d: dt.date) -> tuple[int, int, int]:
    """Gregorian -> Solar Hijri (jdatetime's arithmetic, without the object overhead per call site)."""
    import jdatetime

    j = jdatetime.date.fromgregorian(date=d)
    return j.year, j.month, j.day


def jalali_str(d: dt.date, sep: str = "/", persian_digits: bool = False) -> str:
    y, m, dd = jalali(d)
    s = f"{y:04d}{sep}{m:02d}{sep}{dd:02d}"
    return to_persian_digits(s) if persian_digits else s
