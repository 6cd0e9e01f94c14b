"""A small warehouse the pipeline built, with planted customers, and `ckp serve` running over it over real HTTP
(for tests/warehouse/test_serve*.py).

Planted persons (web-form registrations, so their consents are known; ``ana`` also in the bank's Windows-1256
file with her Persian name, so a partner key of unit ``sibling:bank_fa`` sees her):

* ``ana``   marketing and profiling consent, bank customer;
* ``omid``  opted out of profiling (no scores, no segments);
* ``sara``  erased by `ckp erase` in the tests (then never found).

The pipeline runs as the DAGs run it, without Airflow (ingestion, dbt stages, identity, scoring): the
functions the tasks call.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
from ckp_cli import ckp_env, start_ckp
from dbt_runs import as_of_vars, build_stages
from psycopg import sql

from crm_knowledge import dbt_stages
from crm_knowledge.demo.messiness import cp1256_safe
from crm_knowledge.demo.sources import BANK_HEADER
from crm_knowledge.normalize.national_id import check_digit

AS_OF = dt.date(2026, 11, 20)
DEMO_SIZE = 150
FA_DIGITS = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")
SERVE_PORT = int(os.environ["CKP_TEST_SERVE_PORT"])  # tests/conftest.py: shifted per xdist worker
#: The service's key cache TTL in these tests (CKP_SERVE_KEY_CACHE_SECONDS), short so revocation tests are quick.
KEY_CACHE_S = 2
#: Worker processes of the tests' service: more than one, so per-key limits and key revocation are tested
#: across workers.
SERVE_WORKERS = 2


def national_id(first9: str) -> str:
    return first9 + str(check_digit(first9))


@dataclass(frozen=True)
class Person:
    key: str
    first_fa: str
    last_fa: str
    email: str
    local: str  # mobile without the country code: 9xxxxxxxxx
    nid: str
    birth_date: str
    consent_marketing: bool
    consent_profiling: bool
    bank_id: str | None = None

    @property
    def e164(self) -> str:
        return "+98" + self.local

    @property
    def full_name_fa(self) -> str:
        return f"{self.first_fa} {self.last_fa}"

    def phone_spellings(self) -> list[str]:
        loc = self.local
        return [self.e164, f"+98 {loc[:3]} {loc[3:6]} {loc[6:]}", "0" + loc, f"0{loc[:3]}-{loc[3:6]}-{loc[6:]}",
                ("0" + loc).translate(FA_DIGITS), "0098" + loc, "98" + loc]


PERSONS = (
    Person("ana", "آناهیتا", "کیانپور", "anahita.kianpour@serve-test.example", "9121110917", national_id("381920611"),
           "1990-04-12", True, True, bank_id="SRV-B1"),
    Person("omid", "امید", "یزدانی‌فر", "omid.yazdanifar@serve-test.example", "9351117265", national_id("562011873"),
           "1985-09-30", True, False),
    Person("sara", "سارا", "کرمانی‌نژاد", "sara.kermani@serve-test.example", "9191114488", national_id("047711928"),
           "1979-01-03", False, True),
)
BY_KEY = {p.key: p for p in PERSONS}


def plant(landing: Path) -> None:
    forms = [{"submission_id": f"SRV-F-{p.key}", "form_type": "registration",
              "submitted_at": "2026-10-01T10:00:00+03:30", "first_name": p.first_fa, "last_name": p.last_fa,
              "email": p.email.upper(), "phone": f"0{p.local}", "national_id": p.nid.translate(FA_DIGITS),
              "birth_date": p.birth_date, "consent_marketing": p.consent_marketing,
              "consent_profiling": p.consent_profiling, "city": "Tehran"} for p in PERSONS]
    path = landing / "forms" / "submissions_serve_test.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in forms), encoding="utf-8")
    bank = [[p.bank_id, p.first_fa, p.last_fa, p.nid, p.e164, "1369/01/23", "تهران", "تهران", "1411713111",
             "1398/02/15", "جاری"] for p in PERSONS if p.bank_id]
    bank_path = landing / "siblings" / "bank_fa" / "customers_serve_test.csv"
    bank_path.parent.mkdir(parents=True, exist_ok=True)
    with open(bank_path, "w", encoding="cp1256", newline="") as fh:
        w = csv.writer(fh, lineterminator="\r\n")
        w.writerow([cp1256_safe(h) for h in BANK_HEADER])
        w.writerows([[cp1256_safe(c) for c in row] for row in bank])


def run_pipeline(settings, tmp: Path) -> None:
    """Ingest every source, then the warehouse and scoring DAGs' bodies (dbt data tests left out for time)."""
    from crm_knowledge.identity.store import run as resolve_identities
    from crm_knowledge.ingest.registry import load_registry
    from crm_knowledge.ingest.tasks import ingest_file_source, ingest_orders_database
    from crm_knowledge.scoring.run import score_all

    for source in load_registry(settings.config_dir):
        if source.kind == "orders_db":
            ingest_orders_database(source.name)
        else:
            ingest_file_source(source.name)
    build_stages(settings, tmp, dbt_stages.STAGING, dbt_vars=as_of_vars(AS_OF), with_tests=False)
    resolve_identities(settings.warehouse_url, mode="full")
    build_stages(settings, tmp, dbt_stages.MARTS, dbt_vars=as_of_vars(AS_OF), with_tests=False)
    score_all(as_of=AS_OF, settings=settings)
    build_stages(settings, tmp, dbt_stages.POST_SCORING, dbt_vars=as_of_vars(AS_OF), with_tests=False)


def make_world(settings, tmp: Path, monkeypatch) -> dict:
    """Scratch warehouse + orders databases, own CKP_HOME, demo data + planted persons, pipeline run."""
    from crm_knowledge import settings as settings_module
    from crm_knowledge.demo import generate
    from crm_knowledge.warehouse.bootstrap import apply_ddl

    admin = settings.server_url("postgres")
    names = {"wh": f"t_srv_{uuid.uuid4().hex[:8]}", "orders": f"t_srv_orders_{uuid.uuid4().hex[:8]}"}
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in names.values():
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    monkeypatch.setenv("WAREHOUSE_URL", settings.server_url(names["wh"]))
    monkeypatch.setenv("CKP_ORDERS_URL", settings.server_url(names["orders"]))
    monkeypatch.setenv("CKP_HOME", str(tmp / "home"))
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp / "home" / "airflow"))
    monkeypatch.delenv("CKP_LANDING_DIR", raising=False)
    local = settings_module.get_settings()
    apply_ddl(local.warehouse_url)
    generate(size=DEMO_SIZE, seed=31, settings=local, as_of=AS_OF, overwrite_external_db=True)  # scratch dbs
    plant(local.landing_dir)
    run_pipeline(local, tmp)
    return {"settings": local, "url": local.warehouse_url, "tmp": tmp, "admin": admin, "names": names,
            "env": ckp_env(CKP_SERVE_PORT=str(SERVE_PORT), CKP_SERVE_KEY_CACHE_SECONDS=str(KEY_CACHE_S))}


def drop_world(world: dict) -> None:
    with psycopg.connect(world["admin"], autocommit=True) as conn:
        for name in world["names"].values():
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


def start_service(env: dict, port: int = SERVE_PORT, timeout: float = 60, workers: int = SERVE_WORKERS):
    """`ckp serve` in its own process(es), once /healthz answers."""
    proc = start_ckp("serve", "--port", str(port), "--workers", str(workers), env=env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"ckp serve exited {proc.returncode}: {proc.stdout.read()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                if resp.status == 200:
                    return proc
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.3)
    proc.terminate()
    raise AssertionError("ckp serve did not answer /healthz in time")


def stop_service(proc) -> str:
    proc.terminate()
    try:
        out, _ = proc.communicate(timeout=20)
    except Exception:
        proc.kill()
        out, _ = proc.communicate()
    return out or ""


def call(method: str, path: str, key: str | None = None, body: dict | None = None, headers: dict | None = None,
         port: int = SERVE_PORT) -> tuple[int, dict | str, dict]:
    """One real HTTP request; returns (status, JSON body or text, headers with lower-case names)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    if key:
        req.add_header("X-API-Key", key)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        req.add_header(name, value)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, raw, hdrs = resp.status, resp.read(), {k.lower(): v for k, v in resp.headers.items()}
    except urllib.error.HTTPError as exc:
        status, raw, hdrs = exc.code, exc.read(), {k.lower(): v for k, v in exc.headers.items()}
    text = raw.decode("utf-8")
    try:
        return status, json.loads(text), hdrs
    except json.JSONDecodeError:
        return status, text, hdrs
