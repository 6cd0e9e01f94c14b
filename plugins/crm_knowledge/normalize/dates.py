"""Jalali (Solar Hijri) <-> Gregorian conversion and lenient date parsing for ingestion.

Sibling units keep birth and signup dates in the Jalali calendar ("1369/05/12"); the warehouse
stores Gregorian ``date``. The conversion is implemented here (no runtime dependency) with the same
33-year leap cycle the ``jdatetime`` package uses, and a test checks the two agree day by day.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata

from crm_knowledge.normalize.persian import INVISIBLE, ZERO_WIDTH, collapse_whitespace, to_ascii_digits

#: Jalali years y with y % 33 in this set are leap years (12th month has 30 days).
_LEAP_REMAINDERS = (1, 5, 9, 13, 17, 22, 26, 30)
#: 1 Farvardin 1 AP = 21 March 622 (proleptic Gregorian), as an ordinal.
_EPOCH_ORDINAL = dt.date(622, 3, 21).toordinal()
_MONTH_START = (0, 31, 62, 93, 124, 155, 186, 216, 246, 276, 306, 336)  # days before month m (1-based)


def is_jalali_leap(jy: int) -> bool:
    """Whether Jalali year ``jy`` has 366 days."""
    return jy % 33 in _LEAP_REMAINDERS


def jalali_month_length(jy: int, jm: int) -> int:
    """Days in month ``jm`` of Jalali year ``jy`` (31 for months 1-6, 30 for 7-11, 29/30 for 12)."""
    if jm <= 6:
        return 31
    if jm <= 11:
        return 30
    return 30 if is_jalali_leap(jy) else 29


def _leap_years_before(jy: int) -> int:
    """Number of leap years among Jalali years 1 .. jy-1."""
    n = jy - 1
    return (n // 33) * len(_LEAP_REMAINDERS) + sum(1 for r in _LEAP_REMAINDERS if r <= n % 33)


def _days_before_year(jy: int) -> int:
    return 365 * (jy - 1) + _leap_years_before(jy)


def jalali_to_gregorian(jy: int, jm: int, jd: int) -> dt.date:
    """Gregorian date of Jalali ``jy/jm/jd``; ``ValueError`` naming the date when it does not exist."""
    if not (1 <= jy and 1 <= jm <= 12 and 1 <= jd <= jalali_month_length(jy, jm)):
        raise ValueError(f"Jalali date {jy:04d}/{jm:02d}/{jd:02d} does not exist")
    ordinal = _EPOCH_ORDINAL + _days_before_year(jy) + _MONTH_START[jm - 1] + jd - 1
    try:
        return dt.date.fromordinal(ordinal)
    except (ValueError, OverflowError):
        raise ValueError(f"Jalali date {jy:04d}/{jm:02d}/{jd:02d} is outside the supported range") from None


def gregorian_to_jalali(date: dt.date) -> tuple[int, int, int]:
    """(year, month, day) in the Jalali calendar of a Gregorian ``date`` (a datetime uses its date)."""
    days = date.toordinal() - _EPOCH_ORDINAL  # days since 1 Farvardin 1
    if days < 0:
        raise ValueError(f"{date.isoformat()} is before the Jalali epoch (622-03-21)")
    jy = int(days // 365.2424) + 1  # estimate, then correct by at most one year either way
    while _days_before_year(jy) > days:
        jy -= 1
    while _days_before_year(jy + 1) <= days:
        jy += 1
    day_of_year = days - _days_before_year(jy)
    jm = 1 + sum(1 for start in _MONTH_START[1:] if start <= day_of_year)
    return jy, jm, day_of_year - _MONTH_START[jm - 1] + 1


# --- parsing -------------------------------------------------------------------------------------

CALENDARS = ("gregorian", "jalali")
_DEFAULT_FORMATS = ("%Y-%m-%d", "%Y/%m/%d")
_DIRECTIVES = {"Y": r"(?P<Y>[0-9]{4})", "m": r"(?P<m>[0-9]{1,2})", "d": r"(?P<d>[0-9]{1,2})"}
_INVISIBLES = str.maketrans({c: None for c in INVISIBLE + ZERO_WIDTH})


def _format_regex(fmt: str) -> re.Pattern[str]:
    """Regex for a strptime-like ``fmt`` supporting %Y %m %d %%; other characters match literally."""
    parts: list[str] = []
    i = 0
    while i < len(fmt):
        ch = fmt[i]
        if ch == "%":
            if i + 1 >= len(fmt):
                raise ValueError(f"date format {fmt!r} ends with a lone '%'")
            code = fmt[i + 1]
            if code == "%":
                parts.append("%")
            elif code in _DIRECTIVES:
                parts.append(_DIRECTIVES[code])
            else:
                raise ValueError(f"date format {fmt!r}: unsupported directive %{code} (use %Y %m %d)")
            i += 2
        else:
            parts.append(re.escape(ch))
            i += 1
    try:
        return re.compile("".join(parts))
    except re.error as exc:  # e.g. a directive used twice
        raise ValueError(f"date format {fmt!r} is not usable: {exc}") from None


def parse_date(s: str | None, calendar: str = "gregorian", fmt: str | None = None) -> dt.date | None:
    """Parse a date written in ``calendar`` ("gregorian" or "jalali"); always returns a Gregorian date.

    ``fmt`` uses %Y (4 digits), %m and %d (1-2 digits) with any separators; without it ISO
    ``YYYY-MM-DD`` and ``YYYY/MM/DD`` are tried. Persian digits are accepted. Blank input gives
    ``None`` (a missing value is not an error); anything unparsable or impossible raises
    ``ValueError`` quoting the value, which ingestion turns into a row reject.
    """
    cal = calendar.strip().lower()
    if cal not in CALENDARS:
        raise ValueError(f"unknown calendar {calendar!r}; expected one of {', '.join(CALENDARS)}")
    if s is None:
        return None
    text = collapse_whitespace(
        (to_ascii_digits(unicodedata.normalize("NFKC", s)) or "").translate(_INVISIBLES)
    )
    if not text:
        return None
    formats = (fmt,) if fmt else _DEFAULT_FORMATS
    for candidate in formats:
        match = _format_regex(candidate).fullmatch(text)
        if match is None:
            continue
        fields = match.groupdict()
        if set(fields) != {"Y", "m", "d"}:
            raise ValueError(f"date format {candidate!r} must contain %Y, %m and %d")
        y, m, d = int(fields["Y"]), int(fields["m"]), int(fields["d"])
        try:
            return jalali_to_gregorian(y, m, d) if cal == "jalali" else dt.date(y, m, d)
        except ValueError as exc:
            raise ValueError(f"impossible {cal} date {s!r}: {exc}") from None
    expected = " or ".join(formats)
    raise ValueError(f"unparsable {cal} date {s!r} (expected {expected})")
