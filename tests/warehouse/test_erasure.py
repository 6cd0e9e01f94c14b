"""The right to be forgotten, end to end on a real warehouse: plant, run the pipeline, erase, search everything.

One customer is planted in every source — a web-form registration (consents granted) and a complaint, the
orders database (account, orders, items) and a kiosk order export, each sibling unit (insurance CSV, travel
XLSX, the bank's Windows-1256 file with Persian digits) and the contact centre — with distinctive identifiers
spelled differently in each. The pipeline stages run directly (the functions the DAGs call): demo data,
ingestion, dbt, identity resolution, scoring and delivery to a file drop, a database table and a webhook
(a real local receiver). Then the customer is erased by a request naming only their national ID (Persian
digits) and a phone spelling no source used, and every table of the warehouse (every schema, every column,
as text) and every export file is searched for any of their identifiers in every spelling they arrived in.

The files ingestion keeps are checked too: the planted source files also carry other people's rows (one
quoting the customer's email), a contact-centre file of the same name is delivered twice (the second one is
archived under a timestamped name), an insurance file arrives twice with the same bytes (the ledger skips
the copy, which is archived as it came) and holds a malformed row quoting them (a load reject); three files
are quarantined (not valid UTF-8, a missing required column, a truncated workbook). After the erasure every
archived file holds every row it held except theirs, row numbers unchanged, and no file under the archive
or the quarantine holds their email / phone / national ID (nor, in the archive, their name).

The warehouse is a scratch database used as an external warehouse (WAREHOUSE_URL), with its own orders
database and CKP_HOME, so nothing here touches another test's data.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from dbt_runs import as_of_vars, build_stages
from export_world import running_receiver
from pipeline_world import external_scratch_warehouse, ingest_sources, write_csv
from psycopg import sql

from crm_knowledge import dbt_stages
from crm_knowledge.demo.messiness import cp1256_safe
from crm_knowledge.demo.sources import BANK_HEADER, CONTACT_HEADER, INSURANCE_HEADER, KIOSK_HEADER, TRAVEL_HEADER
from crm_knowledge.ingest.readers import BadRow, read_file
from crm_knowledge.ingest.registry import load_registry
from crm_knowledge.normalize.national_id import check_digit

pytestmark = pytest.mark.warehouse

AS_OF = dt.date(2026, 11, 20)
DEMO_SIZE = 120
ORDERS_ID = 990001

FIRST, LAST = "Zarvanok", "Quibblestone"
FIRST_FA, LAST_FA = "زروانک", "کوئیبلستون"
EMAIL = "zarvanok.quibble@erasure-test.example"
EMAIL_FORM = "Zarvanok.Quibble@Erasure-Test.example"
PHONE_E164 = "+989129876543"


def _nid(first9: str) -> str:
    return first9 + str(check_digit(first9))


NID = _nid("293018374")
NID_FA = NID.translate(str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹"))
NID_DASHED = f"{NID[:3]}-{NID[3:9]}-{NID[9]}"
PHONE_SPELLINGS = ["+98 912 987 6543", "09129876543", "0912-987-6543", "۰۹۱۲۹۸۷۶۵۴۳", "9129876543",
                   "0912 987 6543", PHONE_E164]

#: every spelling of every identifier of the planted customer, as the sources sent them (and normalised)
NEEDLES = [FIRST, LAST, FIRST_FA, LAST_FA, cp1256_safe(FIRST_FA), cp1256_safe(LAST_FA), f"{FIRST} {LAST}",
           EMAIL, EMAIL_FORM, NID, NID_FA, NID_DASHED, *PHONE_SPELLINGS]
#: the strong identifiers (what masking by text can remove from a file that cannot be parsed)
STRONG_NEEDLES = [EMAIL, EMAIL_FORM, NID, NID_FA, NID_DASHED, *PHONE_SPELLINGS]
#: primary keys of the planted customer's rows in the planted files (other ERT-* rows are other people)
ERASED_KEYS = {"ERT-F1", "ERT-F2", "ERT-C1", "ERT-C4", "ERT-I1", "ERT-B1", "ERT-T1", "ERT-K1"}

DESTINATIONS_YML = """
destinations:
  - name: erasure_files
    kind: file
    enabled: true
    purpose: marketing
    consent: marketing
    mode: mirror
    id_space: customer_id
    audiences:
      - {name: everyone, filter: {}}
    fields: [rfm_segment, value_tier, city]
    file: {format: csv, dir: marketing}
  - name: erasure_orders_db
    kind: database
    enabled: true
    purpose: service
    consent: none
    mode: mirror
    id_space: "source:orders"
    audiences:
      - {name: everyone, filter: {}}
    fields: [rfm_segment, value_tier]
    database: {table: public.erasure_segments}
  - name: erasure_webhook
    kind: webhook
    enabled: true
    purpose: marketing
    consent: marketing
    mode: upsert
    id_space: customer_id
    audiences:
      - {name: everyone, filter: {}}
    fields: [rfm_segment, churn_probability]
    webhook:
      url: "http://127.0.0.1:${CKP_WEBHOOK_PORT}/segments"
      batch_size: 500
      max_retries: 2
      backoff_seconds: 0.1
      timeout_seconds: 10
"""


# --- the pipeline, stage by stage (what the DAGs call) ------------------------------------------------------

FILE_SOURCES = ("forms", "contacts", "sibling_insurance", "sibling_travel", "sibling_bank_fa", "order_export_kiosk")


def ingest_all() -> None:
    ingest_sources(FILE_SOURCES)


def build_warehouse(settings, tmp: Path) -> None:
    """customer_warehouse's body: staging, identity resolution, marts (quality gates left out for time)."""
    from crm_knowledge.identity.store import run as resolve_identities

    build_stages(settings, tmp, dbt_stages.STAGING, dbt_vars=as_of_vars(AS_OF), with_tests=False)
    resolve_identities(settings.warehouse_url, mode="full")
    build_stages(settings, tmp, dbt_stages.MARTS, dbt_vars=as_of_vars(AS_OF), with_tests=False)


def plant(settings) -> None:
    """One customer in every source, each spelling their identifiers its own way."""
    landing = settings.landing_dir
    submitted = "2026-10-01T10:00:00+03:30"
    forms = [
        {"submission_id": "ERT-F1", "form_type": "registration", "submitted_at": submitted,
         "first_name": FIRST, "last_name": LAST, "email": EMAIL_FORM, "phone": "+98 912 987 6543",
         "national_id": NID_FA, "customer_ref": str(ORDERS_ID), "consent_marketing": True, "consent_profiling": True,
         "city": "Tehran"},
        {"submission_id": "ERT-F2", "form_type": "complaint", "submitted_at": "2026-11-02T09:00:00+03:30",
         "email": EMAIL, "customer_ref": str(ORDERS_ID), "rating": 1,
         "message": f"Parcel late. Call me on 0912 987 6543 or write to {EMAIL}"},
        # another person's feedback quoting the planted customer's email: kept, email masked
        {"submission_id": "ERT-F3", "form_type": "feedback", "submitted_at": "2026-11-03T09:00:00+03:30",
         "first_name": "Ottoline", "last_name": "Varnstead", "email": "ottoline.varnstead@other-test.example",
         "rating": 5, "message": f"My friend {EMAIL} recommended you"},
    ]
    path = landing / "forms" / "submissions_planted.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in forms), encoding="utf-8")

    write_csv(landing / "contacts/interactions_planted.csv", CONTACT_HEADER, [
        ["ERT-C1", "phone", "2026-11-03T10:00:00+03:30", f"{FIRST} {LAST}", EMAIL, "09129876543", str(ORDERS_ID),
         "complaint", "follow_up", "Asked again where the parcel is", "A1"],
        # someone else's call whose note quotes the planted customer's email: masked, not deleted
        ["ERT-C2", "email", "2026-11-04T10:00:00+03:30", "", "", "", "", "other", "resolved",
         f"Forwarded a message from {EMAIL} to billing", "A2"],
        ["ERT-C3", "phone", "2026-11-05T10:00:00+03:30", "Ottoline Varnstead", "", "09351112233", "", "billing",
         "resolved", "Asked for an invoice copy", "A2"],
    ])
    insurance = [
        ["ERT-I2", "OTTOLINE", "VARNSTEAD", "ottoline.varnstead@other-test.example", "0935-111-2233", "", "03.03.1990",
         "f", "Other street 1", "Shiraz", "Fars", "7134567890", "01.01.2020", "home"],
        ["ERT-I1", FIRST.upper(), LAST.upper(), EMAIL, "0912-987-6543", NID_DASHED, "01.02.1988", "m",
         "Planted street 7", "Tehran", "Tehran", "1411713111", "05.05.2019", "auto"],
        ["ERT-I9", "BROKEN", "ROW", EMAIL],  # too few fields: a load reject quoting them
    ]
    write_csv(landing / "siblings/insurance/customers_planted.csv", INSURANCE_HEADER, insurance, delimiter=";")
    # the same bytes again under another name: the ledger skips it, ingestion archives it as it came
    write_csv(landing / "siblings/insurance/customers_planted_copy.csv", INSURANCE_HEADER, insurance, delimiter=";")
    write_csv(landing / "siblings/bank_fa/customers_planted.csv", [cp1256_safe(h) for h in BANK_HEADER], [
        [cp1256_safe(c) for c in row] for row in (
            ["ERT-B0", "مریم", "احمدی", "0012345679", "09121110000", "1360/01/01", "شیراز", "فارس", "7134567890",
             "1395/01/01", "جاری"],
            ["ERT-B1", FIRST_FA, LAST_FA, NID, PHONE_E164, "1366/11/12", "تهران", "تهران", "1411713111",
             "1398/02/15", "جاری"],
            ["ERT-B2", "سارا", "کریمی", "", "09122223344", "1370/05/05", "تبریز", "آذربایجان شرقی", "",
             "1399/03/03", "پس‌انداز"])
    ], encoding="cp1256", lineterminator="\r\n")
    write_csv(landing / "order_exports/kiosk/orders_planted.csv", KIOSK_HEADER, [
        ["ERT-K1", str(ORDERS_ID), "2026-11-10", "2", "4500000.00", ""],
        ["ERT-K2", "990002", "2026-11-11", "1", "1200000.00", ""],
    ])
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "members"
    ws.append(TRAVEL_HEADER)
    ws.append(["ERT-T0", "Ottoline Varnstead", "ottoline.varnstead@other-test.example", "09351112233", "1990-03-03",
               "Shiraz", "2021-01-01", "silver"])
    ws.append(["ERT-T1", f"{FIRST} {LAST}", EMAIL.upper(), "۰۹۱۲۹۸۷۶۵۴۳", "1988-02-01", "Tehran", "2020-01-01",
               "gold"])
    ws.append(["ERT-T2", "Barnaby Quell", "barnaby.quell@other-test.example", "09127778899", "1985-07-07", "Qom",
               "2022-02-02", "gold"])
    p = landing / "siblings" / "travel" / "members_planted.xlsx"
    p.parent.mkdir(parents=True, exist_ok=True)
    wb.save(p)

    # files ingestion cannot parse at all: quarantined whole
    broken = landing / "contacts" / "interactions_broken.csv"  # UTF-8 source, one line in Windows-1256
    broken.write_bytes(",".join(CONTACT_HEADER).encode() + b"\r\n"
                       + b"ERT-Q1,phone,2026-11-06T10:00:00+03:30," + cp1256_safe("مریم").encode("cp1256")
                       + f",{EMAIL},09129876543,,x,y,call back on {PHONE_SPELLINGS[0]},A3\r\n".encode())
    write_csv(landing / "siblings/insurance/customers_wrongcols.csv", ["HolderNumber", "EMail", "NationalCode"],
              [["ERT-Q2", EMAIL_FORM, NID_DASHED]], delimiter=";")  # required PolicyHolderNo missing
    workbook = p.read_bytes()  # a workbook cut short: its compressed content cannot be read or searched
    (landing / "siblings" / "travel" / "members_truncated.xlsx").write_bytes(workbook[: len(workbook) // 2])

    with psycopg.connect(settings.orders_url) as conn:
        conn.execute(
            "insert into customers (customer_id, first_name, last_name, email, phone, national_id, birth_date, "
            "gender, street, city, province, postcode, created_at, updated_at) values "
            "(%s, %s, %s, %s, %s, %s, '1988-02-01', 'M', 'Planted street 7', 'Tehran', 'Tehran', '1411713111', "
            "'2024-01-01 10:00+00', '2026-11-01 10:00+00')",
            (ORDERS_ID, FIRST_FA, LAST_FA, EMAIL, "09129876543", NID))
        product_id, price = conn.execute("select product_id, unit_price from products order by unit_price desc "
                                         "limit 1").fetchone()
        for i in range(12):  # a frequent, recent, big spender: lands in every audience
            order_id = 9_900_000 + i
            at = dt.datetime(2026, 11, 18, 12, tzinfo=dt.UTC) - dt.timedelta(days=9 * i)
            conn.execute("insert into orders (order_id, customer_id, ordered_at, status, channel, total_amount, "
                         "updated_at) values (%s, %s, %s, 'paid', 'web', %s, %s)",
                         (order_id, ORDERS_ID, at, price * 5, at))
            conn.execute("insert into order_items (order_item_id, order_id, product_id, quantity, unit_price, "
                         "line_amount, updated_at) values (%s, %s, %s, 5, %s, %s, %s)",
                         (order_id, order_id, product_id, price, price * 5, at))


def deliver_contacts_again(settings) -> None:
    """A second contact-centre file with the same name: archived as interactions_planted.<timestamp>.csv."""
    from crm_knowledge.ingest.tasks import ingest_file_source

    path = settings.landing_dir / "contacts" / "interactions_planted.csv"
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(CONTACT_HEADER)
        w.writerow(["ERT-C4", "chat", "2026-11-07T10:00:00+03:30", f"{FIRST} {LAST}", EMAIL_FORM, "", str(ORDERS_ID),
                    "delivery", "resolved", "Parcel arrived", "A4"])
        w.writerow(["ERT-C5", "chat", "2026-11-07T11:00:00+03:30", "Barnaby Quell", "barnaby.quell@other-test.example",
                    "09127778899", "", "delivery", "resolved", "Wrong colour", "A4"])
    assert ingest_file_source("contacts")["loaded"] == 1


def planted_customer(url: str) -> str | None:
    with psycopg.connect(url) as conn:
        row = conn.execute("select customer_id from identity.record_clusters where source_system = 'orders' "
                           "and source_record_id = %s", (str(ORDERS_ID),)).fetchone()
    return row[0] if row else None


# --- searching everything ------------------------------------------------------------------------------------

def warehouse_hits(url: str, needles: list[str]) -> list[str]:
    """`schema.table` (and the needle) for every table of every schema holding a needle in any column."""
    hits = []
    patterns = [f"%{n.lower()}%" for n in needles]
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "select table_schema, table_name from information_schema.tables where table_type = 'BASE TABLE' "
            "and table_schema not in ('pg_catalog', 'information_schema') order by 1, 2").fetchall()
        for schema, table in tables:
            q = sql.SQL("select n from unnest(%s::text[]) n where exists (select 1 from {}.{} t "
                        "where lower(t::text) like n)").format(sql.Identifier(schema), sql.Identifier(table))
            for (n,) in conn.execute(q, (patterns,)).fetchall():
                hits.append(f"{schema}.{table}: {n.strip('%')}")
    return hits


def text_column_count(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("select count(*) from information_schema.columns where data_type in "
                            "('text', 'jsonb', 'json', 'character varying') and table_schema not in "
                            "('pg_catalog', 'information_schema')").fetchone()[0]


def file_hits(root: Path, needles: list[str]) -> list[str]:
    hits = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        text = path.read_bytes().decode("utf-8", errors="replace").lower()
        hits += [f"{path}: {n}" for n in needles if n.lower() in text]
    return hits


def file_sources() -> dict:
    return {c.name: c for c in load_registry() if c.format}


def read_rows(path: Path, cfg) -> dict[int, object]:
    """{row number: record} as ingestion reads the file; a rejected row as ("rejected", its fields)."""
    out: dict[int, object] = {}
    for item in read_file(path, cfg).rows:
        if isinstance(item, BadRow):
            out[item.row_number] = ("rejected", item.raw)
        else:
            out[item[0]] = item[1]
    return out


def row_key(record) -> str:
    """The planted files carry the record key in their first column."""
    return str(record[1][0] if isinstance(record, tuple) else next(iter(record.values())))


def data_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def file_text(path: Path, cfg) -> str:
    """Everything a file says, as text: decoded in its source's encoding, JSON unescaped, workbook cells."""
    data = path.read_bytes()
    if cfg is not None and cfg.format == "xlsx" and data.startswith(b"PK"):
        import zipfile

        from openpyxl import load_workbook

        try:
            wb = load_workbook(path, data_only=True)
        except zipfile.BadZipFile:  # a damaged workbook: only its raw bytes can be searched
            return data.decode("utf-8", errors="replace")
        return "\n".join(str(c.value) for ws in wb.worksheets for row in ws.iter_rows() for c in row
                         if c.value is not None)
    texts = [data.decode(cfg.encoding if cfg else "utf-8", errors="replace"), data.decode("utf-8", errors="replace"),
             data.decode("cp1256", errors="replace")]
    if cfg is not None and cfg.format == "jsonl":
        texts += [json.dumps(json.loads(line), ensure_ascii=False) for line in texts[0].splitlines() if line.strip()]
    return "\n".join(texts)


def needle_hits(root: Path, needles: list[str], skip: tuple[str, ...] = ()) -> list[str]:
    sources = file_sources()
    hits = []
    for path in data_files(root):
        rel = path.relative_to(root)
        if rel.name in skip:
            continue
        text = file_text(path, sources.get(rel.parts[0]) if not rel.name.endswith(".reason.txt") else None).lower()
        hits += [f"{rel}: {n}" for n in needles if n.lower() in text]
    return hits


def stamped(name: str) -> str:
    """A re-delivered file's archive name with its timestamp replaced by <ts>."""
    return re.sub(r"\.\d{8}T\d{12}(?=\.)", ".<ts>", name)


def table_counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "select table_schema, table_name from information_schema.tables where table_type = 'BASE TABLE' "
            "and table_schema not in ('pg_catalog', 'information_schema') order by 1, 2").fetchall()
        return {f"{s}.{t}": conn.execute(sql.SQL("select count(*) from {}.{}").format(
            sql.Identifier(s), sql.Identifier(t))).fetchone()[0] for s, t in tables}


# --- fixture -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def world(warehouse, settings, tmp_path_factory) -> Iterator[dict]:
    """Scratch warehouse + orders db as an external warehouse, demo data + the planted customer, pipeline run."""
    from crm_knowledge import settings as settings_module
    from crm_knowledge.demo import generate
    from crm_knowledge.export.deliver import deliver_all
    from crm_knowledge.scoring.run import score_all
    from crm_knowledge.warehouse.bootstrap import apply_ddl

    tmp = tmp_path_factory.mktemp("erasure")
    with external_scratch_warehouse(settings, "t_erase", tmp / "home"), \
            running_receiver(int(os.environ["CKP_WEBHOOK_PORT"]), tmp / "webhook_inbox") as receiver:
        local = settings_module.get_settings()
        config_path = tmp / "destinations.yml"
        config_path.write_text(DESTINATIONS_YML, encoding="utf-8")
        apply_ddl(local.warehouse_url)
        generate(size=DEMO_SIZE, seed=11, settings=local, as_of=AS_OF, overwrite_external_db=True)
        plant(local)
        ingest_all()
        deliver_contacts_again(local)
        build_warehouse(local, tmp)
        score_all(as_of=AS_OF, settings=local)
        build_stages(local, tmp, dbt_stages.POST_SCORING, dbt_vars=as_of_vars(AS_OF), with_tests=False)
        deliveries = deliver_all(AS_OF, settings=local, config_path=config_path)
        yield {"settings": local, "url": local.warehouse_url, "orders_url": local.orders_url, "tmp": tmp,
               "config_path": config_path, "receiver": receiver, "deliveries": deliveries}


@pytest.fixture(scope="module")
def erased(world) -> dict:
    """State before the erasure (the planted customer id, their delivered keys), then the erasure itself."""
    from crm_knowledge.privacy.erasure import ErasureRequest, erase

    url = world["url"]
    cid = planted_customer(url)
    with psycopg.connect(url) as conn:
        delivered = conn.execute("select destination, destination_key from scoring.delivered_state "
                                 "where customer_id = %s order by 1", (cid,)).fetchall()
        before_hits = warehouse_hits(url, [EMAIL, NID])
    home = Path(world["settings"].home)
    before = world["tmp"] / "before_erasure"  # the archive and the quarantine as they were
    for folder in ("archive", "quarantine"):
        shutil.copytree(home / folder, before / folder)
    result = erase(ErasureRequest(national_id=NID_FA, phone="0098 912 987 65 43", reason="verified request #41"),
                   settings=world["settings"], as_of=AS_OF, config_path=world["config_path"])
    return {"customer_id": cid, "delivered": delivered, "before_hits": before_hits, "result": result,
            "before": before}


# --- tests ---------------------------------------------------------------------------------------------------

def test_planted_customer_reached_every_layer_and_destination(world, erased):
    cid = erased["customer_id"]
    assert cid is not None
    destinations = {d for d, _ in erased["delivered"]}
    assert destinations == {"erasure_files", "erasure_orders_db", "erasure_webhook"}, world["deliveries"]
    assert ("erasure_orders_db", str(ORDERS_ID)) in erased["delivered"]
    # before the erasure the identifiers were everywhere a customer's data goes (the search works)
    layers = {h.split(".")[0] for h in erased["before_hits"]}
    assert {"raw", "staging", "pii"} <= layers, erased["before_hits"]


def test_pipeline_output_holds_no_demo_identifier(world, erased):
    """The leak scan over the same run (demo persons' identifiers outside pii and the locked layers)."""
    from crm_knowledge.privacy.pii_scan import scan

    result = scan(world["settings"], config_path=world["config_path"])
    assert result.files_scanned > 0 and result.columns_scanned > 50
    assert result.findings == [], [f.as_dict() for f in result.findings]


def test_erasure_matched_all_records_through_the_identity_map(erased):
    r = erased["result"]
    assert r.status == "completed"
    assert r.customers_erased >= 1
    # orders account, 2 forms, 1 contact, 3 sibling units (the kiosk export carries only the account number)
    assert r.records_erased >= 7
    assert r.removals_sent == {"erasure_files": 1, "erasure_orders_db": 1, "erasure_webhook": 1}
    assert r.tombstones >= 4
    assert r.values_masked >= 1  # the other customer's note quoting the email


def test_nothing_left_anywhere(world, erased):
    url = world["url"]
    assert text_column_count(url) > 100  # the search covers a real warehouse
    assert warehouse_hits(url, NEEDLES) == []
    assert file_hits(Path(world["settings"].exports_dir), NEEDLES) == []
    with psycopg.connect(url) as conn:
        for table in ("identity.record_clusters", "marts.dim_customers", "marts.customer_identity_map",
                      "scoring.customer_scores", "marts.customer_segments", "scoring.delivered_state",
                      "scoring.communications", "marts.customer_knowledge", "pii.pii_customer_profiles"):
            n = conn.execute(f"select count(*) from {table} where customer_id = %s",
                             (erased["customer_id"],)).fetchone()[0]
            assert n == 0, table
        # no orphans left behind: every staged order line still belongs to a staged order
        orphans = conn.execute("select count(*) from staging.stg_orders__order_items i where not exists "
                               "(select from staging.stg_orders__orders o where o.order_id = i.order_id)").fetchone()
        assert orphans == (0,)
        # the other caller's record survives, with the quoted address masked
        note = conn.execute("select notes from raw.contact_interactions where interaction_id = 'ERT-C2'").fetchone()
        assert note is not None and "[erased]" in note[0]
        # the tombstone: pseudonyms and a date, nothing else
        tomb = conn.execute("select identifier_kind, pseudonym, erased_on from identity.erasure_tombstones").fetchall()
        assert {k for k, _, _ in tomb} >= {"email", "phone", "national_id", "name"}
        assert all(p.startswith(k + ":") and len(p) == len(k) + 65 for k, p, _ in tomb)
        assert {d for _, _, d in tomb} == {AS_OF}
        audit = conn.execute("select status, origin, reason, customers_erased, removals_sent "
                             "from audit.erasure_requests").fetchall()
    assert audit == [("completed", "cli", "verified request #41", erased["result"].customers_erased,
                      {"erasure_files": 1, "erasure_orders_db": 1, "erasure_webhook": 1})]


def test_a_removal_reached_each_destination(world, erased):
    cid = erased["customer_id"]
    settings = world["settings"]
    # file drop: the newest delivery file removes the customer
    folder = Path(settings.exports_dir) / "marketing" / "erasure_files"
    removal = []
    for path in sorted(folder.glob("*.csv")):
        removal += [row for row in csv.DictReader(path.open(encoding="utf-8"))
                    if row["customer_id"] == cid and row["change_type"] == "removed"]
    assert [r["removal_reason"] for r in removal] == ["forgotten"]
    # database: the row keyed by the orders account is gone
    with psycopg.connect(world["orders_url"]) as conn:
        assert conn.execute("select count(*) from public.erasure_segments where customer_id = %s",
                            (str(ORDERS_ID),)).fetchone()[0] == 0
        assert conn.execute("select count(*) from public.erasure_segments").fetchone()[0] > 0
    # webhook: the receiver stored a batch removing them
    removed = [rec for batch in world["receiver"].stored() for rec in batch["records"]
               if rec["customer_id"] == cid and rec["change_type"] == "removed"]
    assert [r["removal_reason"] for r in removed] == ["forgotten"]
    with psycopg.connect(world["url"]) as conn:
        rows = conn.execute("select destination, status, rows_removed from audit.exports where rows_removed > 0 "
                            "order by 1").fetchall()
    assert rows == [("erasure_files", "delivered", 1), ("erasure_orders_db", "delivered", 1),
                    ("erasure_webhook", "delivered", 1)]

# --- the files ingestion keeps: the landing archive and the quarantine --------------------------------------------

#: archived file (timestamp as <ts>) -> keys of the rows the erasure removes from it
ARCHIVE_REMOVALS = {
    "forms/submissions_planted.jsonl": {"ERT-F1", "ERT-F2"},
    "contacts/interactions_planted.csv": {"ERT-C1"},
    "contacts/interactions_planted.<ts>.csv": {"ERT-C4"},
    "sibling_insurance/customers_planted.csv": {"ERT-I1", "ERT-I9"},
    "sibling_insurance/customers_planted_copy.csv": {"ERT-I1", "ERT-I9"},
    "sibling_bank_fa/customers_planted.csv": {"ERT-B1"},
    "sibling_travel/members_planted.xlsx": {"ERT-T1"},
    "order_export_kiosk/orders_planted.csv": {"ERT-K1"},
}
#: (archived file, key) -> the fields of another person's row where their identifier is masked
ARCHIVE_MASKED = {
    ("forms/submissions_planted.jsonl", "ERT-F3"): {"message": "My friend [erased] recommended you"},
    ("contacts/interactions_planted.csv", "ERT-C2"): {"notes": "Forwarded a message from [erased] to billing"},
}


def test_archived_files_keep_every_row_but_theirs(world, erased):
    """Their rows are emptied (row numbers unchanged), other people's rows read back exactly as loaded."""
    before_root, after_root = erased["before"] / "archive", Path(world["settings"].home) / "archive"
    sources = file_sources()
    changed: dict[str, set[str]] = {}
    masked: dict[tuple[str, str], dict] = {}
    untouched = 0
    for old in data_files(before_root):
        rel = old.relative_to(before_root)
        new = after_root / rel
        assert new.exists(), rel
        if new.read_bytes() == old.read_bytes():
            untouched += 1
            continue
        cfg = sources[rel.parts[0]]
        rows_before, rows_after = read_rows(old, cfg), read_rows(new, cfg)
        assert set(rows_after) <= set(rows_before), rel  # nothing added, nothing renumbered
        name = stamped(str(rel))
        changed[name] = {row_key(r) for n, r in rows_before.items() if n not in rows_after}
        for n, rec in rows_after.items():
            if rec != rows_before[n]:
                masked[(name, row_key(rec))] = {k: v for k, v in rec.items() if v != rows_before[n][k]}
    assert changed == ARCHIVE_REMOVALS
    assert masked == ARCHIVE_MASKED
    assert untouched >= len(FILE_SOURCES)  # the demo's files (nobody erased there) are byte for byte the same

    # the Windows-1256 file: header and other rows byte for byte, their row an empty line, in place
    rel = Path("sibling_bank_fa") / "customers_planted.csv"
    old_lines = (before_root / rel).read_bytes().split(b"\r\n")
    new_lines = (after_root / rel).read_bytes().split(b"\r\n")
    assert cp1256_safe(FIRST_FA).encode("cp1256") in old_lines[2]
    assert new_lines == [*old_lines[:2], b"", *old_lines[3:]]
    assert cp1256_safe("مریم").encode("cp1256") in new_lines[1]  # Persian text of the others kept
    # the skipped copy (same bytes as delivered) ends up exactly like the file it copies
    insurance = after_root / "sibling_insurance"
    assert (insurance / "customers_planted_copy.csv").read_bytes() == (insurance / "customers_planted.csv").read_bytes()


def test_no_identifier_left_in_archive_or_quarantine(world, erased):
    home, before = Path(world["settings"].home), erased["before"]
    # the search works: before the erasure it finds them in the archive and in two quarantined files
    assert {h.split(":")[0] for h in needle_hits(before / "archive", NEEDLES)} >= {
        "forms/submissions_planted.jsonl", "sibling_bank_fa/customers_planted.csv",
        "sibling_travel/members_planted.xlsx"}
    assert {h.split(":")[0] for h in needle_hits(before / "quarantine", STRONG_NEEDLES)} == {
        "contacts/interactions_broken.csv", "sibling_insurance/customers_wrongcols.csv"}
    assert needle_hits(home / "archive", NEEDLES) == []
    # quarantined files cannot be parsed: their identifiers are masked (names cannot be told from other text)
    assert needle_hits(home / "quarantine", STRONG_NEEDLES, skip=("members_truncated.xlsx",)) == []
    # the file that is not valid UTF-8: masked on its bytes, everything else as it was
    rel = Path("contacts") / "interactions_broken.csv"
    old = (before / "quarantine" / rel).read_bytes()
    expected = old
    for needle in (PHONE_SPELLINGS[0], EMAIL, "09129876543"):
        expected = expected.replace(needle.encode(), b"[erased]")
    assert (home / "quarantine" / rel).read_bytes() == expected != old
    wrongcols = (home / "quarantine" / "sibling_insurance" / "customers_wrongcols.csv").read_bytes()
    assert wrongcols == b"HolderNumber;EMail;NationalCode\r\nERT-Q2;[erased];[erased]\r\n"


def test_erasure_result_and_audit_count_the_files(world, erased):
    r = erased["result"]
    assert (r.archive_files_redacted, r.archive_rows_removed, r.archive_values_masked) == (8, 11, 2)
    assert r.quarantine_files_masked == 2 and r.quarantine_values_masked == 5
    # the truncated workbook cannot be searched: said in the result and the audit row, not hidden
    assert len(r.files_not_redacted) == 1
    assert r.files_not_redacted[0].startswith("quarantine/sibling_travel/members_truncated.xlsx: could not be "
                                              "searched (Uninspectable: a workbook that does not open")
    with psycopg.connect(world["url"]) as conn:
        status, error, *counts = conn.execute(
            "select status, error, archive_files_redacted, archive_rows_removed, quarantine_files_masked, "
            "files_not_redacted from audit.erasure_requests where request_id = %s", (r.request_id,)).fetchone()
        checksum = conn.execute("select checksum from audit.load_batches where source_name = 'sibling_bank_fa' "
                                "and source_file = 'customers_planted.csv' and status = 'loaded'").fetchone()[0]
    assert status == "completed" and counts == [8, 11, 2, 1]
    assert error.startswith("completed, but 1 file(s) could not be redacted") and "members_truncated.xlsx" in error
    # the manifest: checksums as delivered (the ledger's) and now, counts, never a value
    archive = Path(world["settings"].home) / "archive"
    manifest = json.loads((archive / "sibling_bank_fa" / ".erasure-manifest.json").read_text(encoding="utf-8"))
    entry = manifest["files"]["customers_planted.csv"]
    assert entry["original_sha256"] == checksum
    now = hashlib.sha256((archive / "sibling_bank_fa" / "customers_planted.csv").read_bytes()).hexdigest()
    assert entry["sha256"] == now != checksum
    assert [(x["by"], x["rows_removed"], x["values_masked"]) for x in entry["redactions"]] == [
        (f"erasure {r.request_id}", 1, 0)]
    home = Path(world["settings"].home)
    for path in [*home.glob("archive/*/.erasure-manifest.json"), *home.glob("quarantine/*/.erasure-manifest.json")]:
        text = path.read_text(encoding="utf-8").lower()
        assert [n for n in NEEDLES if n.lower() in text] == [], path


def test_erasing_again_changes_nothing(world, erased):
    from crm_knowledge.privacy.erasure import ErasureRequest, erase

    before = table_counts(world["url"])
    home = Path(world["settings"].home)
    files = {p: p.read_bytes() for p in data_files(home / "archive") + data_files(home / "quarantine")}
    again = erase(ErasureRequest(national_id=NID, phone=PHONE_E164, reason="verified request #41"),
                  settings=world["settings"], as_of=AS_OF, config_path=world["config_path"])
    assert again.status == "already_erased"
    assert again.request_id == erased["result"].request_id
    assert table_counts(world["url"]) == before
    assert {p: p.read_bytes() for p in files} == files
    assert (again.archive_files_redacted, again.quarantine_files_masked) == (0, 0)


def test_reloading_the_source_files_does_not_bring_them_back(world, erased):
    """The file as first delivered (ledger: skipped, although the archived file was rewritten since) and
    re-delivered copies with new bytes (loaded, then dropped by the tombstones — and redacted in the archive)."""
    from crm_knowledge.privacy.erasure_files import sweep_copies

    settings = world["settings"]
    archive = Path(settings.home) / "archive"
    original = erased["before"] / "archive" / "forms" / "submissions_planted.jsonl"  # as delivered
    assert original.read_bytes() != (archive / "forms" / "submissions_planted.jsonl").read_bytes()  # rewritten
    landing = settings.landing_dir / "forms"
    shutil.copy(original, landing / "submissions_planted.jsonl")
    # their two submissions again, with new bytes (another person's line quoting them is left out: the
    # tombstones block their records, not other people's free text)
    redelivered = "".join(original.read_text(encoding="utf-8").splitlines(keepends=True)[:2]) + "\n"
    (landing / "submissions_planted_resent.jsonl").write_text(redelivered, encoding="utf-8")
    bank = erased["before"] / "archive" / "sibling_bank_fa" / "customers_planted.csv"
    (settings.landing_dir / "siblings" / "bank_fa" / "customers_planted_resent.csv").write_bytes(
        bank.read_bytes() + b"\r\n")
    from crm_knowledge.ingest.tasks import ingest_file_source

    forms = ingest_file_source("forms")
    assert forms["skipped"] == 1 and forms["loaded"] == 1  # the ledger keeps the checksum as delivered
    assert ingest_file_source("sibling_bank_fa")["loaded"] == 1
    with psycopg.connect(world["url"]) as conn:  # raw holds them again until identity resolution runs
        assert conn.execute("select count(*) from raw.form_submissions where submission_id = any(%s)",
                            (sorted(ERASED_KEYS),)).fetchone()[0] == 2
    build_warehouse(settings, world["tmp"])
    assert planted_customer(world["url"]) is None
    assert warehouse_hits(world["url"], NEEDLES) == []
    with psycopg.connect(world["url"]) as conn:
        assert conn.execute("select count(*) from raw.form_submissions where submission_id = any(%s)",
                            (sorted(ERASED_KEYS),)).fetchone()[0] == 0
        assert conn.execute("select count(*) from marts.customer_identity_map where source_record_id = any(%s)",
                            (sorted(ERASED_KEYS),)).fetchone()[0] == 0
        assert conn.execute("select count(*) from marts.customer_identity_map where source_record_id = any(%s)",
                            (["ERT-F3", "ERT-B0", "ERT-B2", "ERT-C3"],)).fetchone()[0] == 4  # the others stay
    # identity resolution emptied their rows in the re-delivered files it dropped; the skipped copy (archived
    # as it came) is replaced by the redacted file by the next erasure run's sweep
    resent_bank = archive / "sibling_bank_fa" / "customers_planted_resent.csv"
    assert resent_bank.read_bytes() == (archive / "sibling_bank_fa" / "customers_planted.csv").read_bytes() + b"\r\n"
    assert (archive / "forms" / "submissions_planted_resent.jsonl").read_text(encoding="utf-8") == "\n\n\n"
    copies = list((archive / "forms").glob("submissions_planted.*.jsonl"))
    assert len(copies) == 1 and copies[0].read_bytes() == original.read_bytes()
    swept = sweep_copies(settings)
    assert (swept.copies_replaced, swept.not_redacted) == (1, [])
    assert copies[0].read_bytes() == (archive / "forms" / "submissions_planted.jsonl").read_bytes()
    assert needle_hits(archive, NEEDLES) == []
