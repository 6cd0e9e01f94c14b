"""Scan for leaks: is any customer's email, phone, national ID or full name outside the pii vault?

The privacy promise ("after `make run`, a scan of every non-pii schema and every export finds no
email, phone, national ID or name of any demo customer") as a command, ``ckp pii-scan`` (exit 1 on findings).

* **What is searched for** (the needles): in a real deployment, everything the vault itself holds
  (:func:`vault_needles`: ``pii.pii_source_identities`` and ``pii.pii_customer_profiles``; findings name
  customer ids). On demo data, also the demo's ground truth (``<demo_dir>/ground_truth.csv``,
  ``source_system, source_record_id, person_id``) names every person who has a source record; the demo's
  persons are regenerated from ``<demo_dir>/demo_state.json`` (size, seed, as-of date — the generator is
  deterministic) to get each one's emails, mobile numbers (E.164 ``+989…``, local ``09…`` and ``989…``),
  national ID and full name (first + last, in Persian and in Latin spelling).
* **Where**: every base table of every schema except ``pii`` (the vault) and the pipeline-locked working
  layers ``raw``, ``staging`` and ``intermediate`` (source copies only ``ckp_pipeline`` can read; see
  docs/privacy.md) — so ``marts``, ``scoring``, ``audit`` (incl. the export log), ``identity``,
  ``snapshots``, ``seeds``, ``util``, ``public``; the table of every database destination; every file
  under ``exports_dir``; and the logs and reports (:func:`log_and_report_files`: the auditor's reports and
  Data Docs under ``reports_dir``, the pipeline's and Airflow's task logs, the embedded warehouse's server
  log), where error texts land. Destinations configured with ``named_fields`` are exempt (they are *meant*
  to carry those fields) and reported as such.
* **How** (fast enough for 100k customers): the needles go into a temporary table; each text/JSON column is
  normalised in Postgres (``util.normalize_persian`` + lower case: Persian digits and Arabic letter
  variants fold), split into tokens, and its 1..4-token n-grams (and their digits-only form, for phones
  typed with spaces or dashes: of a multi-token n-gram only when every token is a piece of a number,
  ``NUMBER_PIECE_RE``) are hash-joined to the needles. Files are tokenised the same way in Python.

Findings name the place, the kind of identifier and the demo person ids (never the value).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from crm_knowledge.identity.config import IdentifierKind
from crm_knowledge.normalize import normalize_persian
from crm_knowledge.privacy.lookup import declared_kinds
from crm_knowledge.settings import Settings, get_settings
from crm_knowledge.warehouse.db import column_exists, connect, copy_rows

log = logging.getLogger(__name__)

#: Not scanned: the vault, and the pipeline-locked working layers holding source copies.
EXCLUDED_SCHEMAS = ("pii", "raw", "staging", "intermediate")
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")
_TEXT_TYPES = ("text", "character varying", "character", "json", "jsonb", "ARRAY")
#: token separators: whitespace and punctuation that never occurs inside an email, phone or id
SPLIT_RE = r"[\s,;<>()\[\]{}\"'|/\\=:]+"
_SPLIT = re.compile(SPLIT_RE)
MAX_GRAM = 4
#: A token that is a piece of a number as people write one: digits, perhaps a leading + and inner dots or
#: dashes ("0912", "+98", "001-234567-8"). The digits of a multi-token n-gram are searched only when every token
#: is such a piece (a phone typed with spaces); a token with letters or one a clock time was split from does not
#: join its digits with its neighbours'. Without this rule a log line's "\u001b[0m23:37:57" joined into the
#: 10 digits 0010233757, which a demo national ID equalled at that second of the day (a false finding).
NUMBER_PIECE_RE = r"^[+]?[0-9][0-9.-]*$"
_NUMBER_PIECE = re.compile(NUMBER_PIECE_RE)
PERSIAN_DIGITS = "۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩"


@dataclass
class Finding:
    location: str          # schema.table.column, or a file path
    kind: str              # email | phone | national_id | name
    hits: int
    persons: list[str]     # demo person ids or customer ids (up to 10), never values

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ScanResult:
    findings: list[Finding] = field(default_factory=list)
    exempt: list[str] = field(default_factory=list)   # destinations with named_fields, not scanned
    columns_scanned: int = 0
    files_scanned: int = 0
    needles: int = 0

    @property
    def clean(self) -> bool:
        return not self.findings

    def as_dict(self) -> dict[str, Any]:
        return {"clean": self.clean, "findings": [f.as_dict() for f in self.findings], "exempt": self.exempt,
                "columns_scanned": self.columns_scanned, "files_scanned": self.files_scanned,
                "needles": self.needles}


# --- needles -------------------------------------------------------------------------------------------------

def _fold(text: str) -> str:
    return (normalize_persian(text) or "").lower()


def _phone_forms(e164: str) -> list[str]:
    """The ways an Iranian mobile number is written that the scan's tokens can equal (+98…, 0098…, 0…, 98…).

    Persian digits, spaces and dashes need no forms of their own: the scan folds digits and also compares
    the digits of up to four adjacent tokens ("+98 912 123 4567", "0912-123-4567", "۰۹۱۲ ۱۲۳ ۴۵۶۷").
    """
    if e164.startswith("+98"):
        local = e164[3:]
        return [e164, "0" + local, "98" + local, "0098" + local]
    return [e164, e164.lstrip("+")]


def identifier_needles(owner: str, *, emails: Iterable[str | None] = (), phones: Iterable[str | None] = (),
                       national_ids: Iterable[str | None] = (), names: Iterable[str | None] = (),
                       declared: Iterable[tuple[str, str | None]] = (),
                       kinds: dict[str, IdentifierKind] | None = None) -> dict[str, tuple[str, str]]:
    """{needle: (kind, owner)} for one person's identifiers, as the scan matches them.

    ``phones`` in E.164 (``+989…``: every usual spelling is derived), ``names`` as full names (folded:
    Persian letter variants and case), ``declared``: (kind, value) of identifier kinds declared in
    config/identity.yml, as received and as the kind normalises it. The one needle generator: the vault and
    demo scans use it, and so can anyone proving a person is gone (the erasure tests). `kinds`: the declared
    kinds by name (default: config/identity.yml's, read once per call; pass them when calling per row).
    """
    needles: dict[str, tuple[str, str]] = {}
    declared = list(declared)
    if kinds is None:
        kinds = declared_kinds() if declared else {}
    for kind, value in declared:
        forms = {value, kinds[kind].normalize_value(value) if kind in kinds else None}
        for form in forms:
            folded = " ".join(_fold(form or "").split())
            if len(folded) >= MIN_DECLARED_LENGTH:
                needles.setdefault(folded, (kind, owner))
    for email in emails:
        if email:
            needles.setdefault(email.strip().lower(), ("email", owner))
    for phone in phones:
        for form in _phone_forms(phone.strip()) if phone else []:
            needles.setdefault(form, ("phone", owner))
    for national_id in national_ids:
        if national_id:
            needles.setdefault(national_id.strip(), ("national_id", owner))
    for name in names:
        folded = " ".join(_fold(name or "").split())
        if folded:
            needles.setdefault(folded, ("name", owner))
    return needles


def demo_needles(settings: Settings) -> dict[str, tuple[str, str]]:
    """{needle: (kind, person_id)} for every demo person in the ground truth (see module doc)."""
    from crm_knowledge.demo.people import FIRST_FA, LAST_FA, generate_people, person_id
    from crm_knowledge.demo.sources import GT_HEADER

    gt = Path(settings.demo_dir) / "ground_truth.csv"
    state_path = Path(settings.demo_dir) / "demo_state.json"
    if not gt.exists() or not state_path.exists():
        raise FileNotFoundError(f"no demo ground truth in {settings.demo_dir} (ground_truth.csv and "
                                "demo_state.json): run `ckp demo` or `make run` first")
    with gt.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames != GT_HEADER:
            raise ValueError(f"{gt}: expected header {GT_HEADER}, got {reader.fieldnames}")
        person_ids = {row["person_id"] for row in reader}
    state = json.loads(state_path.read_text(encoding="utf-8"))
    import datetime as dt

    n = int(state.get("persons") or state["size"])
    people = generate_people(n, int(state["seed"]), dt.date.fromisoformat(state["as_of"]))
    needles: dict[str, tuple[str, str]] = {}
    for i in range(n):
        pid = person_id(i)
        if pid not in person_ids:
            continue
        person = identifier_needles(
            pid, emails=(people.email[i], people.email2[i]),
            phones=[f"+98{int(m)}" for m in (people.mobile[i], people.mobile2[i]) if m],
            national_ids=[f"{int(people.national_id[i]):010d}"],
            names=[f"{FIRST_FA[people.first[i]]} {LAST_FA[people.last[i]]}",
                   f"{people.first_latin(i)} {people.last_latin(i)}"])
        for value, found in person.items():
            needles.setdefault(value, found)
    log.info("pii scan: %d needles for %d demo persons", len(needles), len(person_ids))
    return needles


#: Shortest name the vault scan looks for: a one-word or very short "full name" matches ordinary text.
MIN_NAME_LENGTH = 6
#: Declared identifier values shorter than this are not searched for (they would match ordinary numbers).
MIN_DECLARED_LENGTH = 5


def vault_needles(url: str) -> dict[str, tuple[str, str]]:
    """{needle: (kind, customer_id)} from the pii vault itself: every email, phone, national ID and full name
    the warehouse holds about its customers (``pii.pii_source_identities``, ``pii.pii_customer_profiles``).

    Needs no demo ground truth, so it is the scan for real deployments. Findings name customer ids, never the
    values. Names are searched as full names of two words or more (a first name alone is ordinary text).
    """
    needles: dict[str, tuple[str, str]] = {}

    def add(value: str | None, kind: str, customer_id: str) -> None:
        if value:
            needles.setdefault(value, (kind, customer_id))

    def add_identifiers(customer_id: str, email: str | None, phone: str | None, national_id: str | None) -> None:
        for value, found in identifier_needles(customer_id, emails=[email], phones=[phone],
                                               national_ids=[national_id]).items():
            needles.setdefault(value, found)

    with connect(url) as conn:
        have = {r[0] for r in conn.execute(
            "select table_name from information_schema.tables where table_schema = 'pii'").fetchall()}
        if "pii_source_identities" in have:
            for row in conn.execute("select customer_id, email_norm, phone_e164, national_id_valid "
                                    "from pii.pii_source_identities where customer_id is not null"):
                add_identifiers(*row)
            if column_exists(conn, "pii.pii_source_identities", "identifiers"):
                kinds = declared_kinds()  # the config is read once, not per identifier value
                for customer_id, kind, value in conn.execute(
                        "select s.customer_id, i.key, i.value from pii.pii_source_identities s "
                        "cross join lateral jsonb_each_text(s.identifiers) as i "
                        "where s.customer_id is not null and s.identifiers is not null"):
                    for needle, found in identifier_needles(customer_id, declared=[(kind, value)],
                                                            kinds=kinds).items():
                        needles.setdefault(needle, found)
        if "pii_customer_profiles" in have:
            rows = conn.execute("select customer_id, email, phone, national_id, full_name, first_name, last_name "
                                "from pii.pii_customer_profiles")
            for customer_id, email, phone, national_id, full_name, first, last in rows:
                add_identifiers(customer_id, email, phone, national_id)
                for name in (full_name, f"{first or ''} {last or ''}"):
                    folded = " ".join(_fold(name or "").split())
                    if len(folded.split()) >= 2 and len(folded) >= MIN_NAME_LENGTH:
                        add(folded, "name", customer_id)
    log.info("pii scan: %d needles from the pii vault", len(needles))
    return needles


# --- the warehouse -------------------------------------------------------------------------------------------

def _load_needles(conn: psycopg.Connection, needles: dict[str, tuple[str, str]]) -> None:
    conn.execute("create temp table if not exists pii_needles (needle text primary key, kind text, person_id text) "
                 "on commit preserve rows")
    conn.execute("truncate pii_needles")
    copy_rows(conn, "copy pii_needles (needle, kind, person_id) from stdin",
              ((needle, kind, pid) for needle, (kind, pid) in needles.items()))
    conn.execute("analyze pii_needles")


_COLUMN_SCAN = """
with v as (
    select ctid as rid, lower(coalesce({fold}, '')) as v
    from {schema}.{table}
    where {col} is not null
),
tok as (
    select v.rid, x.ord, rtrim(x.tok, '.') as tok, rtrim(x.tok, '.') ~ %(number_piece)s as num
    from v cross join lateral regexp_split_to_table(v.v, %(split)s) with ordinality as x(tok, ord)
    where x.tok <> ''
),
grams as (
    select rid,
           tok as g1,
           tok || ' ' || lead(tok, 1) over w as g2,
           tok || ' ' || lead(tok, 1) over w || ' ' || lead(tok, 2) over w as g3,
           tok || ' ' || lead(tok, 1) over w || ' ' || lead(tok, 2) over w || ' ' || lead(tok, 3) over w as g4,
           num and lead(num, 1) over w as n2,
           num and lead(num, 1) over w and lead(num, 2) over w as n3,
           num and lead(num, 1) over w and lead(num, 2) over w and lead(num, 3) over w as n4
    from tok
    window w as (partition by rid order by ord)
),
candidates as (
    select rid, g from grams
    cross join lateral unnest(array[g1, g2, g3, regexp_replace(g1, '[^0-9]', '', 'g'),
                                    case when n2 then regexp_replace(g2, '[^0-9]', '', 'g') end,
                                    case when n3 then regexp_replace(g3, '[^0-9]', '', 'g') end,
                                    case when n4 then regexp_replace(g4, '[^0-9]', '', 'g') end]) as u(g)
    where g is not null and g <> ''
)
select n.kind, count(distinct c.rid), array_agg(distinct n.person_id)
from candidates c join pii_needles n on n.needle = c.g
group by n.kind
"""


def _text_columns(conn: psycopg.Connection, schemas: list[str] | None = None) -> list[tuple[str, str, str]]:
    rows = conn.execute(
        "select c.table_schema, c.table_name, c.column_name from information_schema.columns c "
        "join information_schema.tables t on t.table_schema = c.table_schema and t.table_name = c.table_name "
        "where t.table_type = 'BASE TABLE' and c.data_type = any(%s) "
        "and c.table_schema <> all(%s) and c.table_schema not like 'pg\\_%%' "
        "and (%s::text[] is null or c.table_schema = any(%s::text[])) "
        "order by 1, 2, c.ordinal_position",
        (list(_TEXT_TYPES), [*EXCLUDED_SCHEMAS, *SYSTEM_SCHEMAS], schemas, schemas)).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def _has_util(conn: psycopg.Connection) -> bool:
    return conn.execute("select to_regprocedure('util.normalize_persian(text)') is not null").fetchone()[0]


def scan_database(url: str, needles: dict[str, tuple[str, str]], *, schemas: list[str] | None = None,
                  tables: set[str] | None = None, label: str = "") -> tuple[list[Finding], int]:
    """Findings in the text/JSON columns of a database (non-excluded schemas, or only `tables`)."""
    findings: list[Finding] = []
    with connect(url, autocommit=True, application_name="crm_knowledge.pii_scan") as conn:
        # a destination database lacks the project's util functions: fold digits only, change nothing there
        fold = (sql.SQL("util.normalize_persian({}::text)") if _has_util(conn)
                else sql.SQL("translate({}::text, %(fa)s, '01234567890123456789')"))
        _load_needles(conn, needles)
        columns = _text_columns(conn, schemas)
        if tables is not None:
            columns = [c for c in columns if f"{c[0]}.{c[1]}" in tables]
        for schema, table, column in columns:
            q = sql.SQL(_COLUMN_SCAN).format(col=sql.Identifier(column), schema=sql.Identifier(schema),
                                             table=sql.Identifier(table), fold=fold.format(sql.Identifier(column)))
            params = {"split": SPLIT_RE, "number_piece": NUMBER_PIECE_RE, "fa": PERSIAN_DIGITS}
            for kind, hits, persons in conn.execute(q, params).fetchall():
                findings.append(Finding(f"{label}{schema}.{table}.{column}", kind, int(hits), sorted(persons)[:10]))
    return findings, len(columns)


# --- files ---------------------------------------------------------------------------------------------------

def _grams(text: str) -> set[str]:
    tokens = [t.rstrip(".") for t in _SPLIT.split(_fold(text)) if t.rstrip(".")]
    numeric = [bool(_NUMBER_PIECE.match(t)) for t in tokens]
    out: set[str] = set()
    for i in range(len(tokens)):
        for n in range(1, MAX_GRAM + 1):
            if i + n > len(tokens):
                break
            gram = " ".join(tokens[i:i + n])
            if n < MAX_GRAM:
                out.add(gram)
            if n == 1 or all(numeric[i:i + n]):  # NUMBER_PIECE_RE
                digits = re.sub(r"[^0-9]", "", gram)
                if digits:
                    out.add(digits)
    return out


def scan_text(text: str, needles: dict[str, tuple[str, str]], location: str) -> list[Finding]:
    """Findings in a text, line by line (a line holding a needle is one hit), as :func:`scan_file` reports."""
    by_kind: dict[str, tuple[int, set[str]]] = {}
    for line in io.StringIO(text):
        hit = {needles[g] for g in _grams(line) if g in needles}
        for kind, pid in hit:
            n, persons = by_kind.get(kind, (0, set()))
            by_kind[kind] = (n + 1, persons | {pid})
    return [Finding(location, kind, n, sorted(p)[:10]) for kind, (n, p) in sorted(by_kind.items())]


def scan_file(path: Path, needles: dict[str, tuple[str, str]]) -> list[Finding]:
    return scan_text(path.read_bytes().decode("utf-8", errors="replace"), needles, str(path))


#: Suffixes of the report and log files scanned (text; images, fonts and scripts of the Data Docs site are not).
TEXT_SUFFIXES = frozenset({".html", ".htm", ".json", ".jsonl", ".txt", ".log", ".md", ".csv", ".xml", ""})


def log_and_report_files(settings: Settings) -> list[Path]:
    """Every text file of the reports (``reports_dir``) and the logs: ``<home>/logs`` (the pipeline runs'
    task logs), ``<airflow_home>/logs`` and the embedded warehouse's server log."""
    roots = [Path(settings.reports_dir), Path(settings.home) / "logs", Path(settings.airflow_home) / "logs"]
    found: set[Path] = set()
    for root in roots:
        if root.is_dir():
            found.update(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    server_log = Path(settings.pgdata_dir).parent / "postgres.log"
    if server_log.is_file():
        found.add(server_log)
    return sorted(found)


# --- the scan ------------------------------------------------------------------------------------------------

def scan(settings: Settings | None = None, needles: dict[str, tuple[str, str]] | None = None, *,
         url: str | None = None, config_path: Path | str | None = None) -> ScanResult:
    """Scan the warehouse, every database destination and every export file (see module doc)."""
    from crm_knowledge.export.config import load_destinations

    settings = settings or get_settings()
    needles = needles if needles is not None else demo_needles(settings)
    result = ScanResult(needles=len(needles))
    cfg = load_destinations(config_path or settings.destinations_file)
    exempt_dirs: list[Path] = []
    for dest in cfg.destinations:
        if dest.named_fields:
            result.exempt.append(f"{dest.name} (named_fields: {', '.join(dest.named_fields)})")
            if dest.file is not None:
                exempt_dirs.append(Path(settings.exports_dir) / dest.file.dir / dest.name)
    findings, columns = scan_database(url or settings.warehouse_url, needles)
    result.findings += findings
    result.columns_scanned += columns
    for dest in cfg.destinations:
        if dest.kind != "database" or dest.named_fields or dest.database is None:
            continue
        try:
            dest_url = dest.database.resolve_url(settings)
        except Exception as exc:  # an unset url_env: nothing was delivered there by this deployment
            log.warning("pii scan: destination %s not scanned: %s", dest.name, exc)
            continue
        f, n = scan_database(dest_url, needles, tables={dest.database.table}, label=f"{dest.name}:")
        result.findings += f
        result.columns_scanned += n
    root = Path(settings.exports_dir)
    if root.exists():
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            if any(d in path.parents for d in exempt_dirs):
                continue
            result.files_scanned += 1
            result.findings += scan_file(path, needles)
    for path in log_and_report_files(settings):
        result.files_scanned += 1
        result.findings += scan_file(path, needles)
    if result.findings:
        log.error("pii scan: %d finding(s): %s", len(result.findings),
                  "; ".join(f"{f.location} ({f.kind} x{f.hits})" for f in result.findings[:20]))
    else:
        log.info("pii scan: clean (%d columns, %d files, %d needles)", result.columns_scanned,
                 result.files_scanned, result.needles)
    return result
