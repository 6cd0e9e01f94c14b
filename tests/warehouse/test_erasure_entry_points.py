"""Erasure from every entry point, each in a fresh process, proven by a full dump and every file under CKP_HOME.

Three customers are planted in the pipeline's sources (a web-form registration with consents, a contact-centre
call, the bank's Windows-1256 file with their Persian name, and an orders-database account with a dozen big,
recent orders, so they are scored and delivered to every destination of ``config/destinations.yml``). The
pipeline runs (ingestion, dbt, identity resolution, scoring, delivery to a file drop, a database table and a
webhook on a real local receiver). Then each customer is erased the way a privacy officer would ask, in a
process of its own, as a user or the scheduler starts it:

* ``cli``: ``.venv/bin/ckp erase --national-id <Persian digits> --phone "0098 …" --reason …`` (a subprocess);
* ``form``: an ``erasure_request`` web form lands and is loaded, then ``airflow dags test customer_erasure``;
* ``file``: a request file dropped in ``<landing>/erasure_requests/``, then ``airflow dags test customer_erasure``;
* ``passport``: ``ckp erase --identifier passport=<another spelling>``: a customer named by an identifier kind
  declared in config/identity.yml alone (their registration form carried a passport number). A record that
  arrives later with that passport and nothing else they were known by stays out too (the tombstone holds the
  declared kind).

The proof: ``pg_dump`` of the whole warehouse database (every schema, data and definitions) and of every
database destination's table, and every file under ``CKP_HOME`` (archive, quarantine, exports, landing,
Airflow's metadata database and task logs, ...) hold none of their identifiers -- email, phone in every usual
spelling (+98 / 0098 / 09 / Persian digits, with spaces or dashes), national ID, name in Latin and Persian
letters. The needles come from ``crm_knowledge.privacy.pii_scan.identifier_needles`` (the leak scan's own
generator) and are matched by the scan's tokenised matcher, plus a plain substring search of every spelling
the sources used. Then the sources deliver them again (the same files, byte for byte; the same rows with new
bytes; the orders system touching their account) and the pipeline and the next delivery run: still nothing.

The orders database's own tables are the source system (documented limit in docs/privacy.md: the customer
asks that system to erase them); of that database, the pipeline's destination table is dumped.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import re
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from ckp_cli import ckp_env, run_ckp
from dbt_runs import as_of_vars, build_stages
from export_world import running_receiver
from pipeline_world import external_scratch_warehouse, ingest_sources, write_csv

from crm_knowledge import dbt_stages
from crm_knowledge.demo.messiness import cp1256_safe
from crm_knowledge.demo.sources import BANK_HEADER, CONTACT_HEADER
from crm_knowledge.normalize.national_id import check_digit
from crm_knowledge.privacy.pii_scan import identifier_needles, scan_text

pytestmark = pytest.mark.warehouse

AS_OF = dt.date(2026, 11, 20)
DEMO_SIZE = 120
FA_DIGITS = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")


def _nid(first9: str) -> str:
    return first9 + str(check_digit(first9))


@dataclass(frozen=True)
class Person:
    key: str        # cli | form | file | passport: the entry point that erases them
    first: str
    last: str
    first_fa: str
    last_fa: str
    email: str
    local: str      # mobile without the country code: 9xxxxxxxxx
    nid: str
    orders_id: int
    passport: str = ""  # a declared identifier kind (config/identity.yml), on their registration form

    @property
    def e164(self) -> str:
        return "+98" + self.local

    def phone_spellings(self) -> list[str]:
        """How people and systems write this mobile number (what the sources and requests use)."""
        loc = self.local
        return [self.e164, f"+98 {loc[:3]} {loc[3:6]} {loc[6:]}", "0" + loc, f"0{loc[:3]}-{loc[3:6]}-{loc[6:]}",
                ("0" + loc).translate(FA_DIGITS), "0098" + loc, f"0098 {loc[:3]} {loc[3:6]} {loc[6:]}",
                "98" + loc]

    def nid_spellings(self) -> list[str]:
        return [self.nid, self.nid.translate(FA_DIGITS), f"{self.nid[:3]}-{self.nid[3:9]}-{self.nid[9]}"]

    def needles(self) -> dict[str, tuple[str, str]]:
        """The leak scan's needles for this person (pii_scan's one generator)."""
        return identifier_needles(self.key, emails=[self.email], phones=[self.e164], national_ids=[self.nid],
                                  names=[f"{self.first} {self.last}", f"{self.first_fa} {self.last_fa}",
                                         f"{cp1256_safe(self.first_fa)} {cp1256_safe(self.last_fa)}"],
                                  declared=[("passport", self.passport)] if self.passport else [])

    def substrings(self) -> list[str]:
        """Every spelling planted or requested, and each name on its own (they are invented, so unique)."""
        return sorted({s.lower() for s in [
            self.email, self.email.upper(), *self.phone_spellings(), *self.nid_spellings(), self.first, self.last,
            self.first_fa, self.last_fa, cp1256_safe(self.first_fa), cp1256_safe(self.last_fa),
            *([self.passport, self.passport.replace("-", ""), self.passport.replace("-", " ")]
              if self.passport else [])]})


PERSONS = (
    Person("cli", "Yervandik", "Moltenbrook", "یرواندیک", "مولتنبروک", "yervandik.molten@entry-test.example",
           "9121237788", _nid("381920475"), 990101),
    Person("form", "Quillonar", "Haverstrand", "کویلونار", "هاورستراند", "quillonar.haver@entry-test.example",
           "9357712046", _nid("562018334"), 990102),
    Person("file", "Brannoch", "Ellisvarde", "برانوخ", "الیسوارده", "brannoch.ellis@entry-test.example",
           "9191640283", _nid("047729165"), 990103),
    Person("passport", "Teodric", "Vallanmoor", "تئودریک", "والانمور", "teodric.vallan@entry-test.example",
           "9126608412", _nid("715530286"), 990104, passport="K4-471-9023"),
)
BY_KEY = {p.key: p for p in PERSONS}


# --- the pipeline (the functions the DAGs call) ------------------------------------------------------------

FILE_SOURCES = ("forms", "contacts", "sibling_insurance", "sibling_travel", "sibling_bank_fa", "order_export_kiosk")


def ingest_all() -> None:
    ingest_sources(FILE_SOURCES)


def build_score_deliver(settings, tmp: Path) -> list[dict]:
    """customer_warehouse and customer_scoring's bodies (quality gates left out for time)."""
    from crm_knowledge.export.deliver import deliver_all
    from crm_knowledge.identity.store import run as resolve_identities
    from crm_knowledge.scoring.run import score_all

    dbt_vars = as_of_vars(AS_OF)
    build_stages(settings, tmp, dbt_stages.STAGING, dbt_vars=dbt_vars, with_tests=False)
    resolve_identities(settings.warehouse_url, mode="full")
    build_stages(settings, tmp, dbt_stages.MARTS, dbt_vars=dbt_vars, with_tests=False)
    score_all(as_of=AS_OF, settings=settings)
    build_stages(settings, tmp, dbt_stages.POST_SCORING, dbt_vars=dbt_vars, with_tests=False)
    return deliver_all(AS_OF, settings=settings)


def plant(settings) -> None:
    landing = settings.landing_dir
    forms, contacts, bank = [], [], []
    for i, p in enumerate(PERSONS):
        loc = p.local
        forms.append({"submission_id": f"EEP-F{i}", "form_type": "registration",
                      "submitted_at": "2026-10-01T10:00:00+03:30", "first_name": p.first, "last_name": p.last,
                      "email": p.email.title(), "phone": f"+98 {loc[:3]} {loc[3:6]} {loc[6:]}",
                      "national_id": p.nid.translate(FA_DIGITS), "customer_ref": str(p.orders_id),
                      "consent_marketing": True, "consent_profiling": True, "city": "Tehran",
                      **({"passport": p.passport} if p.passport else {})})
        contacts.append([f"EEP-C{i}", "phone", "2026-11-03T10:00:00+03:30", f"{p.first} {p.last}", p.email,
                         f"0{loc[:3]}-{loc[3:6]}-{loc[6:]}", str(p.orders_id), "complaint", "follow_up",
                         f"Call back on {('0' + loc).translate(FA_DIGITS)}", "A1"])
        bank.append([f"EEP-B{i}", p.first_fa, p.last_fa, p.nid, p.e164, "1366/11/12", "تهران", "تهران",
                     "1411713111", "1398/02/15", "جاری"])
    path = landing / "forms" / "submissions_entry_points.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in forms), encoding="utf-8")
    write_csv(landing / "contacts" / "interactions_entry_points.csv", CONTACT_HEADER, contacts)
    write_csv(landing / "siblings" / "bank_fa" / "customers_entry_points.csv", [cp1256_safe(h) for h in BANK_HEADER],
              [[cp1256_safe(c) for c in row] for row in bank], encoding="cp1256", lineterminator="\r\n")
    with psycopg.connect(settings.orders_url) as conn:
        product_id, price = conn.execute("select product_id, unit_price from products order by unit_price desc "
                                         "limit 1").fetchone()
        for n, p in enumerate(PERSONS):
            conn.execute(
                "insert into customers (customer_id, first_name, last_name, email, phone, national_id, birth_date, "
                "gender, street, city, province, postcode, created_at, updated_at) values (%s, %s, %s, %s, %s, %s, "
                "'1988-02-01', 'M', 'Planted street 7', 'Tehran', 'Tehran', '1411713111', '2024-01-01 10:00+00', "
                "'2026-11-01 10:00+00')", (p.orders_id, p.first_fa, p.last_fa, p.email, "0" + p.local, p.nid))
            for i in range(12):  # frequent, recent, big: champions, in every destination's audiences
                order_id = 9_910_000 + 100 * n + i
                at = dt.datetime(2026, 11, 18, 12, tzinfo=dt.UTC) - dt.timedelta(days=8 * i)
                conn.execute("insert into orders (order_id, customer_id, ordered_at, status, channel, total_amount, "
                             "updated_at) values (%s, %s, %s, 'paid', 'web', %s, %s)",
                             (order_id, p.orders_id, at, price * 6, at))
                conn.execute("insert into order_items (order_item_id, order_id, product_id, quantity, unit_price, "
                             "line_amount, updated_at) values (%s, %s, %s, 6, %s, %s, %s)",
                             (order_id, order_id, product_id, price, price * 6, at))


# --- searching everything ----------------------------------------------------------------------------------

def readable_texts(data: bytes) -> list[str]:
    """Every way the bytes can say something: UTF-8, Windows-1256, inside zip (xlsx) or gzip, JSON-unescaped."""
    texts = [data.decode("utf-8", errors="replace")]
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        texts.append(data.decode("cp1256", errors="replace"))
    if data[:2] == b"\x1f\x8b":
        try:
            texts += readable_texts(gzip.decompress(data))
        except (OSError, EOFError):
            pass
    if data[:2] == b"PK":
        import io

        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                for name in zf.namelist():
                    texts += readable_texts(zf.read(name))
        except zipfile.BadZipFile:
            pass
    escaped = [t for t in texts if "\\u" in t]
    texts += [re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), t) for t in escaped]
    return texts


def hits_in(data: bytes, where: str, persons=PERSONS) -> list[str]:
    """`where: person kind` for each person's identifier found in the bytes (tokenised scan + substrings)."""
    needles: dict[str, tuple[str, str]] = {}
    for p in persons:
        needles.update(p.needles())
    spellings = {s: p.key for p in persons for s in p.substrings()}
    hits = set()
    for text in readable_texts(data):
        for finding in scan_text(text, needles, where):
            hits |= {f"{where}: {key} {finding.kind}" for key in finding.persons}
        lowered = text.lower()
        hits |= {f"{where}: {key} {s!r}" for s, key in spellings.items() if s in lowered}
    return sorted(hits)


def pg_dump(url: str, *tables: str) -> bytes:
    """The whole database (or the tables named) as SQL: every schema, definitions and data."""
    from crm_knowledge.warehouse.server import _binaries

    cmd = [str(_binaries() / "pg_dump"), "--no-owner", "--dbname", url]
    for t in tables:
        cmd += ["--table", t]
    res = subprocess.run(cmd, capture_output=True, timeout=600, check=False)
    assert res.returncode == 0, res.stderr.decode(errors="replace")[-2000:]
    return res.stdout


def database_destination_tables() -> dict[str, str]:
    """{database url: table} of every enabled database destination of the project's config."""
    from crm_knowledge.export.config import load_destinations

    out = {}
    for d in load_destinations().destinations:
        if d.kind == "database" and d.enabled and d.database is not None:
            out[d.database.resolve_url()] = d.database.table
    return out


def dump_hits(url: str, persons=PERSONS) -> list[str]:
    found = hits_in(pg_dump(url), "warehouse dump", persons)
    for dest_url, table in database_destination_tables().items():
        found += hits_in(pg_dump(dest_url, table), f"destination {table}", persons)
    return found


def home_hits(home: Path, persons=PERSONS) -> list[str]:
    found = []
    for path in sorted(p for p in home.rglob("*") if p.is_file()):
        found += hits_in(path.read_bytes(), str(path.relative_to(home)), persons)
    return found


def file_count(home: Path) -> int:
    return sum(1 for p in home.rglob("*") if p.is_file())


# --- fresh processes ---------------------------------------------------------------------------------------

def run_erasure_dag(settings, run_date: dt.date) -> str:
    """`airflow dags test customer_erasure <date>` in a fresh process; returns the run's log."""
    from airflow_dags import airflow_dags_test

    from crm_knowledge.runner import airflow_env

    return airflow_dags_test("customer_erasure", run_date, airflow_env(settings),
                             settings.home / "logs" / "runs" / run_date.isoformat())


# --- fixtures ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def world(warehouse, settings, tmp_path_factory) -> Iterator[dict]:
    """Scratch warehouse + orders database as an external warehouse, own CKP_HOME, pipeline run and delivered."""
    from crm_knowledge import settings as settings_module
    from crm_knowledge.demo import generate
    from crm_knowledge.warehouse.bootstrap import apply_ddl

    tmp = tmp_path_factory.mktemp("erasure_entry_points")
    with external_scratch_warehouse(settings, "t_eep", tmp / "home") as mp:
        # the project's config without campaign holdouts: each planted customer is sent to every destination
        # (a held-out one would never be, by design: tests/warehouse/test_campaign_holdouts.py)
        config = tmp / "config"
        shutil.copytree(settings.config_dir, config)
        destinations = config / "destinations.yml"
        destinations.write_text("".join(line for line in destinations.read_text(encoding="utf-8").splitlines(True)
                                        if not line.lstrip().startswith("holdout:")), encoding="utf-8")
        mp.setenv("CKP_CONFIG_DIR", str(config))
        local = settings_module.get_settings()
        with running_receiver(int(os.environ["CKP_WEBHOOK_PORT"]), tmp / "webhook_inbox") as receiver:
            apply_ddl(local.warehouse_url)
            generate(size=DEMO_SIZE, seed=23, settings=local, as_of=AS_OF, overwrite_external_db=True)  # scratch
            plant(local)
            shutil.copytree(local.landing_dir, tmp / "as_delivered")  # the sources' files, to deliver them again
            ingest_all()
            deliveries = build_score_deliver(local, tmp)
            yield {"settings": local, "url": local.warehouse_url, "tmp": tmp, "receiver": receiver,
                   "deliveries": deliveries, "env": ckp_env()}


def customer_of(url: str, p: Person) -> str | None:
    with psycopg.connect(url) as conn:
        row = conn.execute("select customer_id from identity.record_clusters where source_system = 'orders' "
                           "and source_record_id = %s", (str(p.orders_id),)).fetchone()
    return row[0] if row else None


@pytest.fixture(scope="module")
def before(world) -> dict:
    """What the warehouse, the destinations and CKP_HOME held about them before any erasure."""
    url, home = world["url"], Path(world["settings"].home)
    with psycopg.connect(url) as conn:
        delivered = {p.key: sorted(r[0] for r in conn.execute(
            "select distinct destination from scoring.delivered_state where customer_id = %s",
            (customer_of(url, p),))) for p in PERSONS}
    report = run_customer_report(world, "before")
    return {"customers": {p.key: customer_of(url, p) for p in PERSONS}, "delivered": delivered,
            "dump_hits": dump_hits(url), "home_hits": home_hits(home), "report": report}


def run_customer_report(world, label: str) -> dict:
    """`ckp customer-report` for the cli person (the file it writes holds personal data: outside CKP_HOME)."""
    out = world["tmp"] / f"report_{label}.json"
    res = run_ckp("customer-report", "--email", BY_KEY["cli"].email.upper(), "--verified-by",
                  "privacy desk, ID card seen", "-o", str(out), env=world["env"])
    return {"res": res, "path": out}


@pytest.fixture(scope="module")
def erased(world, before) -> dict:
    """Each person erased from their entry point, each in a fresh process."""
    settings, env = world["settings"], world["env"]
    out: dict = {}
    # 1. the command line
    p = BY_KEY["cli"]
    res = run_ckp("erase", "--national-id", p.nid.translate(FA_DIGITS), "--phone", p.phone_spellings()[6],
                  "--reason", "ticket PRV-7", "--date", AS_OF.isoformat(), env=env)
    out["cli"] = res
    # 2. the web form: an erasure_request submission lands, is loaded, and the erasure DAG runs
    from crm_knowledge.ingest.tasks import ingest_file_source

    p = BY_KEY["form"]
    form = {"submission_id": "EEP-ERASE-1", "form_type": "erasure_request", "submitted_at": "2026-11-19T08:00:00+03:30",
            "email": p.email.upper(), "phone": p.phone_spellings()[4], "message": "Please forget me"}
    (settings.landing_dir / "forms" / "erasure_form.jsonl").write_text(json.dumps(form, ensure_ascii=False) + "\n",
                                                                        encoding="utf-8")
    out["form_ingest"] = ingest_file_source("forms")
    out["form_log"] = run_erasure_dag(settings, AS_OF)
    # 3. the file drop
    p = BY_KEY["file"]
    write_csv(settings.landing_dir / "erasure_requests" / "requests_2026-11-20.csv",
              ["email", "phone", "national_id", "reason"], [[p.email, p.phone_spellings()[3], "", "letter 2026/88"]])
    out["file_log"] = run_erasure_dag(settings, AS_OF + dt.timedelta(days=1))
    # 4. the command line, by a declared identifier kind alone, spelt otherwise than on the form
    p = BY_KEY["passport"]
    out["passport"] = run_ckp("erase", "--identifier", f"passport={p.passport.lower().replace('-', ' ')}",
                              "--reason", "ticket PRV-9", "--date", AS_OF.isoformat(), env=env)
    return out


# --- tests -------------------------------------------------------------------------------------------------

def test_they_were_everywhere_before(world, before):
    """The search works: before the erasure it finds each of them in the dump, the destinations and the files."""
    assert all(before["customers"].values()), before["customers"]
    for p in PERSONS:
        assert before["delivered"][p.key] == ["crm_webhook", "marketing_campaigns", "orders_service_segments"], (
            p.key, world["deliveries"])
        assert {h.split(": ")[1].split()[1] for h in before["dump_hits"] if h.startswith(f"warehouse dump: {p.key} ")} \
            >= {"email", "phone", "national_id", "name"}
        home = {h.split(":")[0].split("/")[0] for h in before["home_hits"] if f": {p.key} " in h}
        assert {"archive"} <= home, before["home_hits"]


def test_each_entry_point_completed_in_its_own_process(world, erased):
    cli = erased["cli"]
    assert cli.returncode == 0, cli.stderr[-3000:]
    result = json.loads(cli.stdout)
    assert (result["status"], result["origin"], result["customers_erased"]) == ("completed", "cli", 1)
    assert set(result["removals_sent"]) == {"crm_webhook", "marketing_campaigns", "orders_service_segments"}
    assert "RecursionError" not in cli.stderr
    by_passport = erased["passport"]
    assert by_passport.returncode == 0, by_passport.stderr[-3000:]
    assert (json.loads(by_passport.stdout)["status"], json.loads(by_passport.stdout)["customers_erased"]) == (
        "completed", 1)
    assert BY_KEY["passport"].passport.replace("-", "") not in by_passport.stdout + by_passport.stderr
    assert erased["form_ingest"]["loaded"] == 1
    for log in (erased["form_log"], erased["file_log"]):
        assert "erasure run:" in log and "RecursionError" not in log
    with psycopg.connect(world["url"]) as conn:
        rows = conn.execute("select origin, status, customers_erased, removals_sent from audit.erasure_requests "
                            "order by origin").fetchall()
    assert [(o, s, n) for o, s, n, _ in rows] == [("cli", "completed", 1), ("cli", "completed", 1),
                                                 ("file", "completed", 1), ("form", "completed", 1)]
    with psycopg.connect(world["url"]) as conn:  # the tombstone holds the declared kind too (a pseudonym)
        kinds = {r[0] for r in conn.execute("select distinct identifier_kind from identity.erasure_tombstones")}
    assert {"email", "phone", "national_id", "name", "passport"} <= kinds
    assert all(set(r) == {"crm_webhook", "marketing_campaigns", "orders_service_segments"} for *_, r in rows)
    assert not (world["settings"].landing_dir / "erasure_requests" / "requests_2026-11-20.csv").exists()


def test_no_identifier_in_a_full_dump_of_the_warehouse_and_destinations(world, erased):
    dump = pg_dump(world["url"]).decode()
    assert dump.count("CREATE TABLE") > 60 and "COPY raw.form_submissions" in dump  # a real, full dump
    assert dump_hits(world["url"]) == []


def copy_sections(dump: str) -> dict[str, str]:
    """A pg_dump split into the data of each table (`COPY schema.table ... FROM stdin;` up to `\\.`) and,
    under "", everything else (definitions, comments, sequences)."""
    sections: dict[str, list[str]] = {"": []}
    current = ""
    for line in dump.splitlines():
        if current == "" and line.startswith("COPY "):
            current = line.split()[1]
            sections[current] = []
        elif current and line == "\\.":
            current = ""
        else:
            sections[current].append(line)
    return {name: "\n".join(lines) for name, lines in sections.items()}


def test_the_orders_database_holds_them_only_in_the_source_systems_own_tables(world, erased):
    """The orders database is a source system (its copies are the documented limit of docs/privacy.md):
    there they remain in its own customers table only; what the pipeline wrote there (the destination table)
    and the database's definitions hold nothing of them."""
    from crm_knowledge.ingest.registry import load_registry

    source_tables = {f"public.{t}" for c in load_registry() if c.kind == "orders_db" for t in c.tables}
    dump = pg_dump(world["settings"].orders_url).decode()
    found = {name: hits_in(text.encode(), name) for name, text in copy_sections(dump).items()}
    found = {name: hits for name, hits in found.items() if hits}
    assert set(found) == {"public.customers"} <= source_tables, found
    assert {h.split(": ")[1].split()[0] for h in found["public.customers"]} == {p.key for p in PERSONS}
    assert "public.customer_segments" in copy_sections(dump)  # the destination table was dumped, clean


def test_no_identifier_in_any_file_under_ckp_home(world, erased):
    home = Path(world["settings"].home)
    assert file_count(home / "archive") >= 8 and (home / "airflow" / "airflow.db").exists()
    assert any((home / "exports").rglob("*.csv"))
    assert home_hits(home) == []


def test_every_destination_was_told(world, before, erased):
    cids = {before["customers"][p.key] for p in PERSONS}
    with psycopg.connect(world["url"]) as conn:
        assert conn.execute("select count(*) from scoring.delivered_state where customer_id = any(%s)",
                            (sorted(cids),)).fetchone()[0] == 0
        removed = conn.execute("select destination, count(*) from audit.exports where rows_removed > 0 "
                               "and status = 'delivered' group by 1 order by 1").fetchall()
    n = len(PERSONS)
    assert removed == [("crm_webhook", n), ("marketing_campaigns", n), ("orders_service_segments", n)]
    hooked = [r for batch in world["receiver"].stored() for r in batch["records"]
              if r["customer_id"] in cids and r["change_type"] == "removed"]
    assert sorted(r["removal_reason"] for r in hooked) == ["forgotten"] * len(PERSONS)


def test_ckp_customer_report_before_and_after(world, before, erased):
    """Before the erasure the access report holds everything about them; after it, nothing (exit 0 both)."""
    p = BY_KEY["cli"]
    first = before["report"]
    assert first["res"].returncode == 0, first["res"].stderr[-3000:]
    summary = json.loads(first["res"].stdout)
    assert summary["customers"] == 1 and summary["output"] == str(first["path"])
    assert oct(first["path"].stat().st_mode & 0o777) == "0o600"
    report = json.loads(first["path"].read_text(encoding="utf-8"))
    assert report["customer_ids"] == [before["customers"]["cli"]]
    text = json.dumps(report, ensure_ascii=False).lower()
    assert p.email in text and p.nid in text  # the vault's values are in the report: that is its purpose
    assert p.email not in first["res"].stdout.lower()  # never on the terminal
    after = run_customer_report(world, "after")
    second = run_ckp("customer-report", "--national-id", p.nid, "--verified-by", "privacy desk",
                     "-o", str(world["tmp"] / "report_after_nid.json"), env=world["env"])
    for res, path in ((after["res"], after["path"]), (second, world["tmp"] / "report_after_nid.json")):
        assert res.returncode == 0, res.stderr[-3000:]
        assert json.loads(res.stdout)["customers"] == 0
        assert json.loads(path.read_text(encoding="utf-8"))["customer_ids"] == []
    refused = run_ckp("customer-report", "--email", p.email, "--verified-by", " ", "-o",
                      str(world["tmp"] / "never.json"), env=world["env"])
    assert refused.returncode == 1 and "--verified-by" in refused.stderr
    assert not (world["tmp"] / "never.json").exists()


def test_ckp_identity_eval(world, erased, tmp_path):
    """`ckp identity-eval` scores the identity map against the demo's ground truth; without one it says so and
    still writes Splink's charts (a real deployment has no ground truth)."""
    res = run_ckp("identity-eval", env=world["env"])
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = dict(re.findall(r"pairwise (precision|recall)\s+([0-9.]+)", res.stdout))
    assert float(metrics["precision"]) >= 0.9 and float(metrics["recall"]) >= 0.8, res.stdout
    records = int(re.search(r"records evaluated\s+([0-9,]+)", res.stdout).group(1).replace(",", ""))
    assert records > DEMO_SIZE
    empty = run_ckp("identity-eval", env=ckp_env(CKP_HOME=str(tmp_path / "no_demo")))
    assert empty.returncode == 0 and "no accuracy report" in empty.stderr and "ground truth" in empty.stderr
    assert "match_weights chart:" in empty.stdout


def webhook_records(receiver, before) -> list[dict]:
    """What the webhook destination received about them, in order."""
    cids = {before["customers"][p.key] for p in PERSONS}
    return [r for batch in receiver.stored() for r in batch["records"] if r["customer_id"] in cids]


def test_a_redelivery_does_not_bring_them_back(world, before, erased):
    """The same files again (byte for byte), the same rows with new bytes, their orders accounts touched;
    ingestion, identity resolution, scoring, the next delivery and the next erasure run: still nothing."""
    settings, tmp = world["settings"], world["tmp"]
    sent_before = webhook_records(world["receiver"], before)
    n = len(PERSONS)
    assert [r["change_type"] for r in sent_before] == ["added"] * n + ["removed"] * n
    delivered = tmp / "as_delivered"
    landing = settings.landing_dir
    for rel in ("forms/submissions_entry_points.jsonl", "contacts/interactions_entry_points.csv",
                "siblings/bank_fa/customers_entry_points.csv"):
        shutil.copy(delivered / rel, landing / rel)  # the ledger knows these bytes: skipped, archived as they came
    resent = (delivered / "forms" / "submissions_entry_points.jsonl").read_text(encoding="utf-8") + "\n"
    (landing / "forms" / "submissions_entry_points_resent.jsonl").write_text(resent, encoding="utf-8")
    # a newsletter sign-up that carries nothing they were known by but the passport number, spelt anew
    p = BY_KEY["passport"]
    newsletter = {"submission_id": "EEP-P1", "form_type": "newsletter", "submitted_at": "2026-11-19T09:00:00+03:30",
                  "full_name": "T. V.", "passport": p.passport.replace("-", " "), "consent_marketing": True}
    (landing / "forms" / "newsletter_entry_points.jsonl").write_text(json.dumps(newsletter) + "\n", encoding="utf-8")
    with psycopg.connect(settings.orders_url) as conn:  # the orders system touches their accounts
        conn.execute("update customers set updated_at = '2026-11-19 09:00+00' where customer_id = any(%s)",
                     ([p.orders_id for p in PERSONS],))
    ingest_all()
    with psycopg.connect(world["url"]) as conn:  # raw holds them again until identity resolution runs
        assert conn.execute("select count(*) from raw.form_submissions where submission_id like 'EEP-F%'"
                            ).fetchone()[0] == len(PERSONS)
        assert conn.execute("select count(*) from raw.form_submissions where submission_id = 'EEP-P1'"
                            ).fetchone()[0] == 1
    results = build_score_deliver(settings, tmp)
    assert {r["destination"]: r["status"] for r in results} == {
        "crm_webhook": "delivered", "marketing_campaigns": "delivered", "orders_service_segments": "delivered"}
    run_erasure_dag(settings, AS_OF + dt.timedelta(days=2))  # sweeps the archived copies of redacted files
    assert all(customer_of(world["url"], p) is None for p in PERSONS)
    with psycopg.connect(world["url"]) as conn:  # the passport alone kept the newsletter record out
        assert conn.execute("select count(*) from raw.form_submissions where submission_id = 'EEP-P1'"
                            ).fetchone()[0] == 0
        assert conn.execute("select count(*) from identity.record_clusters where source_record_id = 'EEP-P1'"
                            ).fetchone()[0] == 0
    assert dump_hits(world["url"]) == []
    assert home_hits(Path(settings.home)) == []
    assert webhook_records(world["receiver"], before) == sent_before  # the next delivery sent nothing of them
