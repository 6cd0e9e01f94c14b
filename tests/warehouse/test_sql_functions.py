"""The SQL twins in warehouse/sql/00_functions.sql give the same answers as crm_knowledge.normalize.

Staging (dbt, SQL) and ingestion/identity (Python) clean the same identifiers; if they disagree
on a single value, the same customer gets two phone_e164 values and identity resolution splits
them. So every SQL function is run, on a real PostgreSQL, over every input of the unit-test tables
(each function over *all* inputs, not only its own table) plus deterministic fuzz, and compared
value by value with its Python twin.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import random
import unicodedata
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from pipeline_world import scratch_database

from crm_knowledge.normalize import (
    is_valid_national_id,
    normalize_email,
    normalize_name,
    normalize_national_id,
    normalize_persian,
    normalize_phone,
    to_ascii_digits,
)
from crm_knowledge.normalize import values as twins
from crm_knowledge.normalize.dates import jalali_to_gregorian
from crm_knowledge.normalize.persian import ARABIC_INDIC_DIGITS, NUMBER_SEPARATOR_CHARS, PERSIAN_DIGITS
from crm_knowledge.warehouse.bootstrap import SQL_DIR

pytestmark = pytest.mark.warehouse

FUNCTIONS_SQL = SQL_DIR / "00_functions.sql"

#: SQL function -> Python twin.
TWINS: dict[str, Callable[[str | None], object]] = {
    "util.ascii_digits": to_ascii_digits,
    "util.nfkc_ascii_digits": lambda s: to_ascii_digits(None if s is None else unicodedata.normalize("NFKC", s)),
    "util.normalize_persian": normalize_persian,
    "util.normalize_name": normalize_name,
    "util.normalize_email": normalize_email,
    "util.normalize_phone": normalize_phone,
    "util.normalize_national_id": normalize_national_id,
    "util.national_id_is_valid": is_valid_national_id,
    # typed values from text as received (staging converts raw text with these)
    "util.value_text": twins.value_text,
    "util.parse_integer": twins.parse_integer,
    "util.parse_decimal": twins.parse_decimal,
    "util.parse_yes_no": twins.parse_yes_no,
    "util.parse_timestamp": twins.parse_timestamp,
}
#: SQL functions of several arguments, tested below with their own cases.
MULTI_ARG = {"util.parse_date", "util.jalali_to_gregorian", "util.gregorian_date"}
#: SQL functions of no argument -> the Python constant they stand for.
CONSTANTS = {"util.number_separator_chars": NUMBER_SEPARATOR_CHARS,
             "util.eastern_digits": PERSIAN_DIGITS + ARABIC_INDIC_DIGITS}

#: Values as sources send them: numbers with Persian digits and separators, yes/no words, timestamps and
#: dates in several calendars and formats, impossible dates (19505309, 1403/12/30 in a common year).
VALUE_CASES: list[str | None] = [
    None, "", " ", "0", "12", " 12 ", "+7", "-3", "۱۲", "٣٤", "1,234", "۱٬۲۳۴", "12.0", "12.5", "1e3", "abc",
    "2147483647", "2147483648", "-2147483648", "-2147483649", "99999999999", "1,234.50", "۱۲۳٫۴۵", ".5", "5.",
    "999999999999.99", "1000000000000", "NaN", "Infinity", "--1", "1-", "1 2", "١٢\u200f",
    "true", "TRUE", "t", "Yes", "y", "N", "no", "false", "f", "1", "0", "بله", "آری", "خیر", "نه", "maybe",
    "2024-03-20", "2024-03-20T10:15", "2024-03-20T10:15:30", "2024-03-20 10:15:30.5", "2024-03-20T10:15:30Z",
    "2024-03-20T10:15:30+03:30", "2024-03-20T10:15:30-0500", "2024-03-20T23:59:59.999999+00", "۲۰۲۴-۰۳-۲۰T۱۰:۰۰",
    "2024-02-30T10:00", "2024-03-20T24:00", "2024-03-20T10:60", "2024-03-20T10:15+24:00", "20240320T101500",
    "9999-12-31T23:00-05:00", "0001-01-01T00:30+01:00", "2024-3-20",
    "2024-03-20Z", "2024-03-20+03:30", "2024-03-20T10:15,5", "2024-03-20T10:15:60", "2024-03-20T10:15:30.1234567",
    "2024-03-20T10:15:30+0330", "2024-03-20T10:15:30-03", "2024-03-20t10:15", "2024-03-20T10:15:30+23:59",
    "2024-03-20T10:15:30+03:60", "2024-03-20T10:15:30+03:3", "2024-03-20T10", "2024-03-20 10:15:30 +03:30",
    "1369/05/12", "۱۳۶۹/۰۵/۱۲", "1403/12/30", "1402/12/30", "1403/07/31", "1403/06/31", "1369-5-2", "1369/13/01",
    "19505309", "19800101", "01.02.1990", "31.02.1990", "1.2.1990", "2020-01-13", "2020/01/13", "20-01-2020",
    " 1990-01-02 ", "1990-01-02\u200c", "0000-01-01", "9999-12-31", "1990 / 01 / 02",
]
#: (calendar, format) pairs: those of config/sources and the edge cases of the format language.
DATE_CONVENTIONS = [
    ("gregorian", None), ("gregorian", "%Y-%m-%d"), ("gregorian", "%d.%m.%Y"), ("gregorian", "%Y%m%d"),
    ("jalali", "%Y/%m/%d"), ("jalali", None), ("gregorian", "%Y-%d-%m"), ("gregorian", "%Y / %m / %d"),
    ("gregorian", "%Y%%%m%d"), ("gregorian", "%Y-%m"), ("gregorian", "%Y-%m-%d-%d"), ("gregorian", "%Y.%m.%d(x)"),
]


def _unit_case_inputs() -> list[str | None]:
    """Every raw input of the unit-test tables (one source of truth for expected behaviour)."""
    path = Path(__file__).resolve().parents[1] / "unit" / "test_normalize.py"
    spec = importlib.util.spec_from_file_location("_normalize_cases", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tables = [module.ASCII_DIGITS_CASES, module.PERSIAN_CASES, module.NAME_CASES, module.EMAIL_CASES,
              module.PHONE_CASES, module.NATIONAL_ID_CASES]
    values: list[str | None] = [raw for table in tables for raw, _ in table]
    values += [name for group in module.ROMANIZE_SAME for name in group]
    return values


#: Characters that exercise every rule: letter variants, digits of three scripts, diacritics,
#: invisible characters, exotic spaces, punctuation of both scripts, accented Latin, @ + . -
_FUZZ_ALPHABET = (
    "ابپتثجچحخدذرزژسشصضطظعغفقکگلمنوهیآ" "يىكڪةۀھەأإٱؤئء" "۰۱۲۳۴۵۶۷۸۹" "٠١٢٣٤٥٦٧٨٩" "0123456789"
    "\u064e\u064f\u0650\u0651\u0652\u0654\u0670\u0640" "\u200b\u200c\u200d\u200e\u200f\u2060\ufeff\u00ad"
    " \t\n\u00a0\u2009\u3000" "،؛؟«»٫٬.-_'’`()/+@" "abcdefghijklmnopqrstuvwxyzABCDEFZ" "éÉñçøßÖİ" "ﻻﺳ"
)


def _fuzz(seed: int = 20240320) -> Iterator[str]:
    """Deterministic random inputs: free text, phone-like, email-like and ID-like strings."""
    rng = random.Random(seed)
    for _ in range(400):
        yield "".join(rng.choice(_FUZZ_ALPHABET) for _ in range(rng.randint(0, 14)))
    digit_sets = ["0123456789", "۰۱۲۳۴۵۶۷۸۹", "٠١٢٣٤٥٦٧٨٩"]
    for _ in range(400):
        digits = rng.choice(digit_sets)
        prefix = rng.choice(["", "", "0", "+98", "0098", "98", "+98 0", "+1", "00", "+44", "+", "0 0"])
        body = "".join(digits[int(c)] for c in str(rng.randint(10**6, 10**11)))
        sep = rng.choice(["", " ", "-", ".", "\u200f"])
        yield prefix + sep.join(body[i:i + 3] for i in range(0, len(body), 3))
    for _ in range(200):
        local = "".join(rng.choice("abcXYZ._+-۱٢3") for _ in range(rng.randint(0, 6)))
        domain = "".join(rng.choice("abcdeFG.-") for _ in range(rng.randint(0, 8)))
        if rng.random() < 0.6:  # mostly well-formed domains, so the accept path is exercised too
            domain = domain.strip(".") + rng.choice([".ir", ".COM", ".co.ir", ".i", "."])
        yield rng.choice(["", " ", "\u200f", "mailto:"]) + local + rng.choice(["@", "@@", "", "＠"]) + domain
    for _ in range(300):
        code = str(rng.randint(0, 10**10 - 1)).zfill(rng.choice([8, 9, 10, 10]))
        yield rng.choice(["", " ", "-"]).join([code[:3], code[3:9], code[9:]]) if rng.random() < 0.3 else code


@pytest.fixture(scope="module")
def util_conn(scratch_db_module: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(scratch_db_module, autocommit=True) as conn:
        sql_text = FUNCTIONS_SQL.read_text(encoding="utf-8")
        conn.execute(sql_text)
        conn.execute(sql_text)  # idempotent: applying twice must work (bootstrap runs every deploy)
        yield conn


@pytest.fixture(scope="module")
def scratch_db_module(warehouse, settings) -> Iterator[str]:
    """A fresh database for this module, so 00_functions.sql is proven self-contained; dropped after."""
    with scratch_database(settings, "t_fn") as url:
        yield url


INPUTS: list[str | None] = list(dict.fromkeys([*_unit_case_inputs(), *VALUE_CASES, *_fuzz()]))


def _sql_results(conn: psycopg.Connection, function: str, values: list[str | None]) -> list[object]:
    rows = conn.execute(
        f"select {function}(v) from unnest(%s::text[]) with ordinality as t(v, n) order by n",
        (values,),
    ).fetchall()
    return [row[0] for row in rows]


def test_inputs_cover_every_outcome() -> None:
    """Guard against a fuzz list that only exercises the reject path."""
    assert len(INPUTS) > 1000
    assert sum(normalize_phone(v) is not None for v in INPUTS) > 100
    assert sum(normalize_email(v) is not None for v in INPUTS) > 20
    assert sum(is_valid_national_id(v) for v in INPUTS) > 20
    assert sum(twins.parse_integer(v) is not None for v in INPUTS) > 20
    assert sum(twins.parse_decimal(v) is not None for v in INPUTS) > 20
    assert sum(twins.parse_timestamp(v) is not None for v in INPUTS) > 5
    assert {twins.parse_yes_no(v) for v in INPUTS} == {True, False, None}
    assert sum(twins.parse_source_date(v, "jalali", "%Y/%m/%d") is not None for v in INPUTS) > 3


@pytest.mark.parametrize(("calendar", "fmt"), DATE_CONVENTIONS)
def test_parse_date_matches_python(util_conn: psycopg.Connection, calendar: str, fmt: str | None) -> None:
    """util.parse_date(value, calendar, format) == normalize.values.parse_source_date, per source convention."""
    rows = util_conn.execute(
        "select util.parse_date(v, %s, %s) from unnest(%s::text[]) with ordinality as t(v, n) order by n",
        (calendar, fmt, INPUTS),
    ).fetchall()
    mismatches = [(value, sql_value, twins.parse_source_date(value, calendar, fmt))
                  for value, (sql_value,) in zip(INPUTS, rows, strict=True)
                  if sql_value != twins.parse_source_date(value, calendar, fmt)]
    assert not mismatches, f"{len(mismatches)} mismatches (input, sql, python), first: {mismatches[:5]}"


def test_jalali_to_gregorian_matches_python_day_by_day(util_conn: psycopg.Connection) -> None:
    """Every (year, month, day) of Jalali 1300-1430, including the impossible ones (day 31 of month 7, day 30 of
    Esfand in a common year), and the ends of the range."""
    cases = [(y, m, d) for y in range(1300, 1431) for m in range(1, 13) for d in range(0, 33)]
    cases += [(1, 1, 1), (0, 1, 1), (9377, 10, 10), (9378, 10, 11), (9999, 12, 29)]
    rows = util_conn.execute(
        "select util.jalali_to_gregorian(y, m, d) from unnest(%s::int[], %s::int[], %s::int[]) "
        "with ordinality as t(y, m, d, n) order by n",
        ([c[0] for c in cases], [c[1] for c in cases], [c[2] for c in cases]),
    ).fetchall()

    def python(y: int, m: int, d: int):
        try:
            return jalali_to_gregorian(y, m, d)
        except ValueError:
            return None

    mismatches = [(case, got) for case, (got,) in zip(cases, rows, strict=True) if got != python(*case)]
    assert not mismatches, mismatches[:5]
    assert sum(got is None for (got,) in rows) > 1000  # the impossible days were there


@pytest.mark.parametrize("function", sorted(TWINS))
def test_sql_function_matches_python(util_conn: psycopg.Connection, function: str) -> None:
    python_twin = TWINS[function]
    sql_values = _sql_results(util_conn, function, INPUTS)
    mismatches = [
        (value, sql_value, python_twin(value))
        for value, sql_value in zip(INPUTS, sql_values, strict=True)
        if sql_value != python_twin(value)
    ]
    assert not mismatches, f"{len(mismatches)} mismatches (input, sql, python), first: {mismatches[:5]}"


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("util.normalize_phone('۰۹۱۲ ۳۴۵ ۶۷۸۹')", "+989123456789"),
        ("util.normalize_phone('(021) 8812 3456')", "+982188123456"),
        ("util.normalize_persian(U&'\\0645\\062D\\0645\\062F\\200C\\0631\\0636\\0627')", "محمد رضا"),
        ("util.normalize_name('  Ali   REZAEI ')", "ali rezaei"),
        ("util.normalize_email(' Ali@Example.COM ')", "ali@example.com"),
        ("util.normalize_national_id('۰۴۹۹۳۷۰۸۹۹')", "0499370899"),
        ("util.national_id_is_valid(null)", False),
        ("util.national_id_is_valid('1111111111')", False),
        ("util.normalize_persian(null)", None),
        ("util.parse_date('1369/05/12', 'jalali', '%Y/%m/%d')", dt.date(1990, 8, 3)),
        ("util.parse_date('19505309', 'gregorian', '%Y%m%d')", None),
        ("util.parse_date('31.12.1999', 'gregorian', '%d.%m.%Y')", dt.date(1999, 12, 31)),
        ("util.parse_integer('۱٬۲۳۴')", 1234),
        ("util.parse_decimal('۱۲۳٫۴۵')", Decimal("123.45")),
        ("util.parse_yes_no('بله')", True),
        ("util.parse_timestamp('2024-03-20T10:00:00+03:30')", dt.datetime(2024, 3, 20, 6, 30, tzinfo=dt.UTC)),
    ],
)
def test_sql_functions_known_values(util_conn: psycopg.Connection, expression: str, expected: object) -> None:
    """A few absolute values, so a bug shared by both twins cannot hide behind parity."""
    assert util_conn.execute(f"select {expression}").fetchone()[0] == expected


@pytest.mark.parametrize("function", sorted(CONSTANTS))
def test_sql_constants_are_their_python_twins(util_conn: psycopg.Connection, function: str) -> None:
    assert util_conn.execute(f"select {function}()").fetchone()[0] == CONSTANTS[function]


def test_sql_functions_are_immutable_and_parallel_safe(util_conn: psycopg.Connection) -> None:
    """dbt may index or parallel-scan on these; a volatile one would silently lose both."""
    rows = util_conn.execute(
        "select p.proname, p.provolatile, p.proparallel from pg_proc p "
        "join pg_namespace n on n.oid = p.pronamespace where n.nspname = 'util'"
    ).fetchall()
    assert {f"util.{name}" for name, _, _ in rows} == set(TWINS) | MULTI_ARG | set(CONSTANTS)
    assert all(vol == "i" and par == "s" for _, vol, par in rows), rows
