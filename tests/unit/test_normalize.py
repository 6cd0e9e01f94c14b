"""Unit tests of crm_knowledge.normalize: expected values, table by table.

The tables also feed tests/warehouse/test_sql_functions.py (the SQL twins must give the same
answers), so every row here is a contract shared by Python and SQL.
"""

from __future__ import annotations

import datetime as dt

import jdatetime
import pytest

from crm_knowledge.normalize import (
    gregorian_to_jalali,
    is_valid_national_id,
    jalali_to_gregorian,
    normalize_email,
    normalize_name,
    normalize_national_id,
    normalize_persian,
    normalize_phone,
    parse_date,
    romanize,
    to_ascii_digits,
)

ZWNJ = "\u200c"
RLM = "\u200f"

# --- digits & Persian text ----------------------------------------------------------------------

ASCII_DIGITS_CASES = [
    (None, None),
    ("", ""),
    ("۰۱۲۳۴۵۶۷۸۹", "0123456789"),
    ("٠١٢٣٤٥٦٧٨٩", "0123456789"),
    ("تهران، پلاک ۱۲ واحد ٣", "تهران، پلاک 12 واحد 3"),  # only digits change
    ("abc 123", "abc 123"),
]


@pytest.mark.parametrize(("raw", "expected"), ASCII_DIGITS_CASES)
def test_to_ascii_digits(raw: str | None, expected: str | None) -> None:
    assert to_ascii_digits(raw) == expected


PERSIAN_CASES = [
    (None, None),
    ("", None),
    ("   ", None),
    (ZWNJ, None),
    ("علي", "علی"),  # Arabic yeh
    ("مصطفى", "مصطفی"),  # alef maksura
    ("كريم", "کریم"),  # Arabic kaf and yeh
    ("فاطمة", "فاطمه"),  # teh marbuta
    ("خانۀ ما", "خانه ما"),  # heh with yeh above
    ("خانهٔ ما", "خانه ما"),  # heh + hamza above (a diacritic)
    ("أحمد", "احمد"),
    ("إبراهيم", "ابراهیم"),
    ("ٱلله", "الله"),
    ("مؤمن", "مومن"),
    ("آرش", "آرش"),  # madda alef is a letter of its own: kept
    ("آرش", "آرش"),  # alef + combining madda composes to آ (NFKC) and is kept
    ("مُحَمَّد", "محمد"),  # harakat and shadda
    ("رحمٰن", "رحمن"),  # superscript alef
    ("محـــمد", "محمد"),  # tatweel
    (f"محمد{ZWNJ}رضا", "محمد رضا"),
    (f"می{ZWNJ}{ZWNJ}خواهم", "می خواهم"),
    ("a\u200bb\u200dc\ufeffd\u2060e", "a b c d e"),  # other zero-width characters
    (f"{RLM}علی{RLM}", "علی"),  # bidi marks vanish, they never separate words
    ("  علی \t\n  رضایی  ", "علی رضایی"),
    ("علی\u00a0رضا", "علی رضا"),  # NBSP
    ("تلفن ۰۹۱۲ ٣٤٥", "تلفن 0912 345"),
    ("\ufeb3\ufee0\ufe8e\ufee1", "سلام"),  # Arabic presentation forms (PDF copy-paste)
    ("Ali  Rezaei", "Ali Rezaei"),  # Latin untouched except spaces
    ("ھمدان", "همدان"),  # Urdu heh doachashmee
]


@pytest.mark.parametrize(("raw", "expected"), PERSIAN_CASES)
def test_normalize_persian(raw: str | None, expected: str | None) -> None:
    assert normalize_persian(raw) == expected


def test_normalize_persian_is_idempotent() -> None:
    for raw, _ in PERSIAN_CASES:
        once = normalize_persian(raw)
        assert normalize_persian(once) == once


# --- names ---------------------------------------------------------------------------------------

NAME_CASES = [
    (None, None),
    ("", None),
    ("  -  ", None),
    ("  Ali   REZAEI ", "ali rezaei"),
    ("علي رضايي", "علی رضایی"),
    (f"محمد{ZWNJ}رضا", "محمد رضا"),
    ("José Núñez", "jose nunez"),
    ("Zoë Ørsted", "zoe orsted"),
    ("Jean-Pierre", "jean pierre"),
    ("O'Brien", "obrien"),
    ("Mas’ud", "masud"),  # typographic apostrophe
    ("Dr. Ali (Reza), Jr.", "dr ali reza jr"),
    ("رضا، علی", "رضا علی"),  # Persian comma
    ("«زهرا»", "زهرا"),  # guillemets
    ("آرش", "آرش"),  # madda survives the accent stripping (NFD/NFC round trip)
    ("مُحَمَّد", "محمد"),
    ("Straße", "strasse"),
    ("ALİ", "ali"),  # Turkish dotted capital I
]


@pytest.mark.parametrize(("raw", "expected"), NAME_CASES)
def test_normalize_name(raw: str | None, expected: str | None) -> None:
    assert normalize_name(raw) == expected


#: Real Persian names: the Persian spelling first, then common Latin spellings. All must share a key.
ROMANIZE_SAME = [
    ("محمد", "Mohammad", "Mohamad", "Muhammad", "Mohammed", "محمّد"),
    ("علی", "Ali", "علي"),
    ("رضا", "Reza"),
    ("فاطمه", "Fatemeh", "Fatima", "Fateme", "فاطمة"),
    ("حسین", "Hossein", "Hosein", "Hussain"),
    ("زهرا", "Zahra"),
    ("سید", "Seyed", "Sayyed", "Seyyed"),
    ("مریم", "Maryam"),
    ("زینب", "Zeinab", "Zeynab", "Zainab"),
    ("یوسف", "Yousef", "Yusuf", "Youssef"),
    ("ابراهیم", "Ebrahim", "Ibrahim"),
    ("مسعود", "Masoud", "Masood", "Mas'ud"),
    ("سعید", "Saeed", "Saeid"),
    ("داوود", "Davood", "Davoud", "Dawood"),
    ("قاسم", "Ghasem", "Qasem"),
    ("غلامرضا", "Gholamreza", "Gholam-Reza"),
    ("خدیجه", "Khadijeh", "Khadija"),
    ("عباس", "Abbas"),
    ("عبدالله", "Abdollah"),
    ("اسماعیل", "Esmaeil", "Esmail"),
    ("جعفر", "Jafar", "Ja'far"),
    ("مصطفی", "Mostafa", "Mustafa"),
    ("مرتضی", "Morteza"),
    ("مجتبی", "Mojtaba"),
    ("ابوالفضل", "Abolfazl"),
    ("شیرین", "Shirin"),
    ("آرش", "Arash"),
    ("کوروش", "Kourosh", "Koorosh"),
    ("داریوش", "Dariush", "Daryoush"),
    ("سیاوش", "Siavash", "Siyavash"),
    ("پژمان", "Pejman", "Pezhman"),
    ("منیژه", "Manijeh", "Manizheh"),
    ("امید", "Omid"),
    ("احسان", "Ehsan"),
    ("وحید", "Vahid"),
    ("یاسمن", "Yasaman", "Yasamin"),
    ("لیلا", "Leila", "Leyla"),
    ("مهرداد", "Mehrdad"),
    ("نرگس", "Narges"),
    ("معصومه", "Masoumeh", "Masoomeh"),
    ("طاهره", "Tahereh"),
    ("شهرام", "Shahram"),
    ("اصغر", "Asghar"),
    ("جواد", "Javad"),
    ("بابک", "Babak"),
    # compound first names: with and without a space, ZWNJ or hyphen
    ("محمدرضا", f"محمد{ZWNJ}رضا", "محمد رضا", "Mohammad Reza", "Mohammadreza", "Mohammad-Reza"),
    ("امیرعلی", "Amir Ali", "Amirali"),
    ("سید محمد", "Seyed Mohammad", "Sayed Mohammad"),
    # family names
    ("رضایی", "Rezaei", "Rezaee", "Rezaie"),
    ("حسینی", "Hosseini", "Hoseini"),
    ("موسوی", "Mousavi", "Musavi"),
    ("احمدی", "Ahmadi"),
    ("کریمی", "Karimi"),
    ("صادقی", "Sadeghi", "Sadeqi"),
    ("قربانی", "Ghorbani", "Qorbani"),
    ("طباطبایی", "Tabatabaei", "Tabatabai"),
    ("اصفهانی", "Esfahani", "Isfahani"),
]


@pytest.mark.parametrize("spellings", ROMANIZE_SAME, ids=lambda names: names[1])
def test_romanize_same_name_same_key(spellings: tuple[str, ...]) -> None:
    keys = {name: romanize(name) for name in spellings}
    assert len(set(keys.values())) == 1, keys
    assert next(iter(keys.values())), keys  # and not empty


@pytest.mark.parametrize(
    ("name", "key"),
    [("محمد", "mhmd"), ("Ali", "al"), ("Reza", "rz"), ("فاطمه", "ftm"), ("Seyed Mohammad", "sdmhmd")],
)
def test_romanize_key_values(name: str, key: str) -> None:
    """Pin a few keys so a change of the key alphabet is a deliberate, visible decision."""
    assert romanize(name) == key


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Ali", "Reza"),
        ("علی", "رضا"),
        ("Maryam", "Zahra"),
        ("Sara", "Zahra"),
        ("Mohammad", "Ahmad"),
        ("Fatemeh", "Zeinab"),
        ("Ali", "Leila"),
        ("Omid", "Majid"),
        ("Hamid", "Hassan"),
        ("Arash", "Rasha"),  # the initial vowel counts
        ("Kaveh", "Kazem"),
    ],
)
def test_romanize_different_names_differ(a: str, b: str) -> None:
    assert romanize(a) != romanize(b)


@pytest.mark.parametrize("raw", [None, "", "   ", "---", "123"])
def test_romanize_empty(raw: str | None) -> None:
    assert romanize(raw) is None


# --- e-mail --------------------------------------------------------------------------------------

EMAIL_CASES = [
    (None, None),
    ("", None),
    ("  Ali.Rezaei@Example.COM ", "ali.rezaei@example.com"),
    ("ali۱۳۶۵@gmail.com", "ali1365@gmail.com"),
    ("reza٢٠@yahoo.com", "reza20@yahoo.com"),
    (f"{RLM}zahra@mail.ir{RLM}", "zahra@mail.ir"),
    ("ali+shop@gmail.com", "ali+shop@gmail.com"),  # tags are kept: that is identity's call
    ("first.last@sub.domain.co.ir", "first.last@sub.domain.co.ir"),
    ("mailto:Ali@Example.com", "ali@example.com"),
    ("ａｌｉ＠ｅｘａｍｐｌｅ．ｃｏｍ", "ali@example.com"),  # full-width
    ("ali@example", None),  # no dot in the domain
    ("ali.example.com", None),  # no @
    ("ali@@example.com", None),
    ("ali@foo@example.com", None),
    ("ali reza@example.com", None),  # space inside
    ("@example.com", None),
    ("ali@", None),
    ("ali@.com", None),
    ("ali@example.", None),
    ("ali@example..com", None),
    ("ali@example.c", None),  # one-letter TLD
    ("Ali <ali@example.com>", None),
    ("a@x.ir, b@y.ir", None),
    ("نامعتبر", None),
]


@pytest.mark.parametrize(("raw", "expected"), EMAIL_CASES)
def test_normalize_email(raw: str | None, expected: str | None) -> None:
    assert normalize_email(raw) == expected


# --- phone ---------------------------------------------------------------------------------------

MOBILE = "+989123456789"
TEHRAN = "+982188123456"

PHONE_CASES = [
    (None, None),
    ("", None),
    ("09123456789", MOBILE),
    ("0912 345 6789", MOBILE),
    ("912-345-6789", MOBILE),
    ("9123456789", MOBILE),
    ("+98 912 345 6789", MOBILE),
    ("+98 (0) 912 345 6789", MOBILE),
    ("0098 912 345 6789", MOBILE),
    ("00989123456789", MOBILE),
    ("989123456789", MOBILE),
    ("0912.345.6789", MOBILE),
    ("۰۹۱۲ ۳۴۵ ۶۷۸۹", MOBILE),
    ("٠٩١٢٣٤٥٦٧٨٩", MOBILE),
    (f"{RLM}+۹۸ ۹۱۲ ۳۴۵ ۶۷۸۹{RLM}", MOBILE),
    ("(021) 8812 3456", TEHRAN),
    ("021-88123456", TEHRAN),
    ("+98 21 8812 3456", TEHRAN),
    ("2188123456", TEHRAN),
    ("031 3222 1234", "+983132221234"),  # Isfahan
    ("+1 (555) 123-4567", "+15551234567"),
    ("+44 20 7946 0958", "+442079460958"),
    ("0049 30 1234567", "+49301234567"),
    ("88123456", None),  # landline without area code: ambiguous
    ("0912345678", None),  # a digit short
    ("091234567890", None),  # a digit too many
    ("0012345", None),  # foreign, too short
    ("+1234567890123456", None),  # foreign, longer than E.164 allows
    ("+98 123", None),  # +98 but not an Iranian number
    ("+0 912 345 6789", None),  # country codes do not start with 0
    ("0012345678", "+12345678"),  # "00" is the international prefix: read as +1 2345678
    ("0912 345 6789 ext 12", None),
    ("09 12 34 abc", None),
    ("+98+912", None),
    ("-", None),
]


@pytest.mark.parametrize(("raw", "expected"), PHONE_CASES)
def test_normalize_phone(raw: str | None, expected: str | None) -> None:
    assert normalize_phone(raw) == expected


def test_normalize_phone_rejects_unknown_default_country() -> None:
    with pytest.raises(ValueError, match="default_country"):
        normalize_phone("0912 345 6789", default_country="DE")


# --- national ID ---------------------------------------------------------------------------------

# 0499370899: 0*10+4*9+9*8+9*7+3*6+7*5+0*4+8*3+9*2 = 266; 266 % 11 = 2 -> check 11-2 = 9. Valid.
NATIONAL_ID_CASES = [
    (None, None),
    ("", None),
    ("0499370899", "0499370899"),
    ("1234567891", "1234567891"),
    ("0001234560", "0001234560"),  # sum % 11 == 0 -> check digit 0
    ("0012345131", "0012345131"),  # sum % 11 == 1 -> check digit 1
    ("0012345091", "0012345091"),  # sum % 11 == 10 -> check digit 1
    ("۰۴۹۹۳۷۰۸۹۹", "0499370899"),
    ("٠٤٩٩٣٧٠٨٩٩", "0499370899"),
    ("049-937089-9", "0499370899"),
    (" 0499 370 899 ", "0499370899"),
    ("499370899", "0499370899"),  # 9 digits: leading zero dropped by a spreadsheet
    ("12345679", "0012345679"),  # 8 digits
    ("499370899.0", "0499370899"),  # spreadsheet float
    ("0499370898", None),  # wrong check digit
    ("1234567890", None),
    ("0000000000", None),  # all-same digits pass the arithmetic but are placeholders
    ("1111111111", None),
    ("5555555555", None),
    ("1234567", None),  # 7 digits: too short to pad
    ("04993708991", None),  # 11 digits
    ("04993708a9", None),
    ("0499/370/899", None),
]


@pytest.mark.parametrize(("raw", "expected"), NATIONAL_ID_CASES)
def test_normalize_national_id(raw: str | None, expected: str | None) -> None:
    assert normalize_national_id(raw) == expected
    assert is_valid_national_id(raw) is (expected is not None)


def test_all_same_digit_codes_are_invalid() -> None:
    assert not any(is_valid_national_id(str(d) * 10) for d in range(10))


# --- dates ---------------------------------------------------------------------------------------

JALALI_CASES = [
    ((1403, 1, 1), dt.date(2024, 3, 20)),  # Nowruz 1403
    ((1402, 12, 29), dt.date(2024, 3, 19)),
    ((1403, 12, 30), dt.date(2025, 3, 20)),  # 1403 is a leap year
    ((1404, 1, 1), dt.date(2025, 3, 21)),
    ((1369, 5, 12), dt.date(1990, 8, 3)),
    ((1357, 11, 22), dt.date(1979, 2, 11)),
    ((1300, 1, 1), dt.date(1921, 3, 21)),
    ((1, 1, 1), dt.date(622, 3, 21)),
]


@pytest.mark.parametrize(("jalali", "gregorian"), JALALI_CASES)
def test_jalali_gregorian_known_dates(jalali: tuple[int, int, int], gregorian: dt.date) -> None:
    assert jalali_to_gregorian(*jalali) == gregorian
    assert gregorian_to_jalali(gregorian) == jalali


@pytest.mark.parametrize(
    "jalali",
    [(1404, 12, 30), (1402, 12, 30), (1403, 13, 1), (1403, 0, 1), (1403, 1, 0), (1403, 1, 32), (1403, 7, 31),
     (0, 1, 1)],
)
def test_jalali_to_gregorian_rejects_impossible_dates(jalali: tuple[int, int, int]) -> None:
    jy, jm, jd = jalali
    with pytest.raises(ValueError, match=f"{jy:04d}/{jm:02d}/{jd:02d}"):
        jalali_to_gregorian(jy, jm, jd)


def test_jalali_matches_jdatetime_every_day_1300_to_1500() -> None:
    """Day by day over two centuries (both conversions), plus leap-year agreement far outside."""
    day = dt.date(1921, 3, 21)  # 1300/01/01
    end = dt.date(2121, 3, 21)  # 1500/01/01
    while day < end:
        j = jdatetime.date.fromgregorian(date=day)
        assert gregorian_to_jalali(day) == (j.year, j.month, j.day), day
        assert jalali_to_gregorian(j.year, j.month, j.day) == day, (j.year, j.month, j.day)
        day += dt.timedelta(days=1)
    for jy in range(1, 3000):
        leap = jdatetime.date(jy, 1, 1).isleap()
        last = 30 if leap else 29
        assert jalali_to_gregorian(jy, 12, last) == jdatetime.date(jy, 12, last).togregorian(), jy
        if not leap:
            with pytest.raises(ValueError):
                jalali_to_gregorian(jy, 12, 30)


def test_gregorian_to_jalali_accepts_datetime() -> None:
    assert gregorian_to_jalali(dt.datetime(2024, 3, 20, 23, 59)) == (1403, 1, 1)


PARSE_CASES = [
    # (value, calendar, fmt, expected)
    (None, "gregorian", None, None),
    ("", "gregorian", None, None),
    ("   ", "jalali", None, None),
    ("1990-08-03", "gregorian", None, dt.date(1990, 8, 3)),
    ("1990/08/03", "gregorian", None, dt.date(1990, 8, 3)),
    (" 1990-8-3 ", "gregorian", None, dt.date(1990, 8, 3)),
    ("۱۹۹۰-۰۸-۰۳", "gregorian", None, dt.date(1990, 8, 3)),
    ("1369/05/12", "jalali", None, dt.date(1990, 8, 3)),
    ("۱۳۶۹/۰۵/۱۲", "jalali", None, dt.date(1990, 8, 3)),
    ("١٣٦٩-٥-١٢", "jalali", None, dt.date(1990, 8, 3)),
    ("12/05/1369", "jalali", "%d/%m/%Y", dt.date(1990, 8, 3)),
    ("03.08.1990", "gregorian", "%d.%m.%Y", dt.date(1990, 8, 3)),
    ("08/03/1990", "gregorian", "%m/%d/%Y", dt.date(1990, 8, 3)),
    ("1369 5 12", "jalali", "%Y %m %d", dt.date(1990, 8, 3)),
    ("13690512", "jalali", "%Y%m%d", dt.date(1990, 8, 3)),
    ("1403/12/30", "jalali", None, dt.date(2025, 3, 20)),
    ("2024-02-29", "gregorian", None, dt.date(2024, 2, 29)),
    ("1990-08-03", "GREGORIAN", None, dt.date(1990, 8, 3)),
]


@pytest.mark.parametrize(("raw", "calendar", "fmt", "expected"), PARSE_CASES)
def test_parse_date(raw: str | None, calendar: str, fmt: str | None, expected: dt.date | None) -> None:
    assert parse_date(raw, calendar=calendar, fmt=fmt) == expected


@pytest.mark.parametrize(
    ("raw", "calendar", "fmt", "reason"),
    [
        ("2023-02-29", "gregorian", None, "impossible"),
        ("1404/12/30", "jalali", None, "impossible"),
        ("1403/07/31", "jalali", None, "impossible"),
        ("1990-13-01", "gregorian", None, "impossible"),
        ("03/08/1990", "gregorian", None, "unparsable"),  # not ISO and no format given
        ("1990-08-03", "gregorian", "%d.%m.%Y", "unparsable"),
        ("yesterday", "gregorian", None, "unparsable"),
        ("1990-08-03T10:00", "gregorian", None, "unparsable"),
        ("90-08-03", "gregorian", None, "unparsable"),
    ],
)
def test_parse_date_errors_quote_the_value(raw: str, calendar: str, fmt: str | None, reason: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_date(raw, calendar=calendar, fmt=fmt)
    assert repr(raw) in str(info.value)
    assert reason in str(info.value)


@pytest.mark.parametrize(
    ("calendar", "fmt", "message"),
    [("hijri", None, "calendar"), ("gregorian", "%d/%b/%Y", "%b"), ("gregorian", "%Y-%m", "%d")],
)
def test_parse_date_rejects_bad_arguments(calendar: str, fmt: str | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_date("1990-08", calendar=calendar, fmt=fmt)
