"""Demo source generator: true persons rendered into every source the pipeline ingests.

`generate(size, seed)` writes the landing-zone files, (re)builds the operational orders database and
writes the ground truth to `<demo_dir>/ground_truth.csv`. `generate_increment(day, seed)` adds one day
of new data on top. Both are deterministic: all randomness comes from numpy Generators seeded with
(seed, stream, chunk) and every timestamp derives from `as_of` / `day`, never from the clock.

Persons are processed in chunks of `CHUNK`, so memory stays bounded (about 1 GB at 1M persons) and the
output of a chunk depends only on (seed, chunk).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from crm_knowledge.demo import names_fa as N
from crm_knowledge.demo import orders_db as odb
from crm_knowledge.demo.guard import OVERWRITE_FLAG, DemoTargetRefused, check_demo_targets
from crm_knowledge.demo.messiness import EPOCH, cp1256_safe, jalali_str
from crm_knowledge.demo.people import generate_people
from crm_knowledge.demo.render import Fresh, render
from crm_knowledge.demo.sources import (
    BANK_HEADER,
    CONTACT_HEADER,
    DAY,
    GT_HEADER,
    INSURANCE_HEADER,
    KIOSK_HEADER,
    ORDERS_PROFILE,
    TRAVEL_HEADER,
    CsvOut,
    Ctx,
    JsonlOut,
    Planted,
    XlsxOut,
    build_bank,
    build_contacts,
    build_forms,
    build_insurance,
    build_kiosk,
    build_travel,
    plant_junk_emails,
    plant_kiosk_amounts,
    plant_sibling_problems,
    remove_files,
    write_corrupt_kiosk,
)
from crm_knowledge.privacy.file_modes import open_private, restrict_umask, write_private_text
from crm_knowledge.settings import Settings, get_settings
from crm_knowledge.warehouse.db import connect, copy_frame

log = logging.getLogger(__name__)

CHUNK = 50_000
DEFAULT_AS_OF = dt.date(2026, 11, 20)
SNAP_HOUR = 20                  # as_of 20:00 UTC (23:30 Tehran): the moment the demo data is taken
CUSTOMER_SHARE = 0.70
DUPLICATE_SHARE = 0.03          # persons registered twice in the orders system
SIBLING_SHARE = 0.15
STATE_FILE = "demo_state.json"


@dataclass
class DemoSummary:
    kind: str                    # "full" | "increment"
    size: int
    seed: int
    as_of: str
    day: str | None
    persons: int
    counts: dict[str, int] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    planted: list[dict] = field(default_factory=list)
    elapsed_seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def _epoch(d: dt.date, hour: int = 0) -> int:
    return (d - EPOCH).days * DAY + hour * 3600


def file_paths(settings: Settings, day: dt.date, increment: bool = False) -> dict[str, Path]:
    L = settings.landing_dir
    iso = day.isoformat()
    paths = {
        "forms": L / "forms" / f"submissions_{iso}.jsonl",
        "contacts": L / "contacts" / f"interactions_{iso}.csv",
        "order_export_kiosk": L / "order_exports" / "kiosk" / f"orders_{iso}.csv",
    }
    if not increment:
        paths.update({
            "sibling_insurance": L / "siblings" / "insurance" / f"customers_{iso}.csv",
            "sibling_travel": L / "siblings" / "travel" / f"members_{iso}.xlsx",
            "sibling_bank_fa": L / "siblings" / "bank_fa" / f"customers_{jalali_str(day, sep='-')}.csv",
            "order_export_kiosk_corrupt": L / "order_exports" / "kiosk" / f"orders_{iso}_corrupt.csv",
        })
    return paths


def _state_path(settings: Settings) -> Path:
    return settings.demo_dir / STATE_FILE


def load_state(settings: Settings) -> dict | None:
    p = _state_path(settings)
    return json.loads(p.read_text()) if p.exists() else None


def _save_state(settings: Settings, state: dict) -> None:
    write_private_text(_state_path(settings), json.dumps(state, indent=2, sort_keys=True))


# ------------------------------------------------------------------------------------------------------
def _customer_frame(ctx: Ctx, rng: np.random.Generator, cust_p: np.ndarray, cids: np.ndarray,
                    created: np.ndarray, updated: np.ndarray) -> pd.DataFrame:
    people = ctx.people
    r = render(people, cust_p, rng, ORDERS_PROFILE, ctx.fresh)
    comp_i = people.company[cust_p]
    company = [(N.COMPANIES[c][1] if lt else N.COMPANIES[c][0]) if c >= 0 else None
               for c, lt in zip(comp_i, r.latin, strict=True)]
    btype = [N.BUSINESS_TYPES[b] if c >= 0 else None for c, b in zip(comp_i, people.business_type[cust_p], strict=True)]
    ids = [str(int(c)) for c in cids]
    ctx.planted.add("no_usable_identifier", "orders", [ids[j] for j in np.flatnonzero(r.noid)],
                    "no email, phone or national id: a name only")
    ctx.planted.add("fuzzy_only", "orders", [ids[j] for j in np.flatnonzero(r.weak)],
                    "no identifier shared with the person's other records")
    return pd.DataFrame({
        "customer_id": cids, "first_name": r.first, "last_name": r.last, "email": r.email, "phone": r.phone,
        "national_id": r.national_id, "birth_date": odb.date_text(r.birth), "gender": r.gender,
        "street": r.street, "city": r.city, "province": r.province, "postcode": r.postcode,
        "company": company, "business_type": btype,
        "created_at": odb.ts_text(created), "updated_at": odb.ts_text(updated),
    })


def _order_lookup(block: odb.OrdersBlock):
    """customer_id -> a random one of its orders (or None)."""
    order = np.argsort(block.order_customer, kind="stable")
    cust_sorted = block.order_customer[order]
    ids_sorted = block.order_ids[order]

    def pick(cid: int, rng: np.random.Generator):
        lo = np.searchsorted(cust_sorted, cid, "left")
        hi = np.searchsorted(cust_sorted, cid, "right")
        if hi <= lo:
            return None
        return int(ids_sorted[lo + int(rng.integers(0, hi - lo))])

    return pick


class _Outputs:
    def __init__(self, settings: Settings, as_of: dt.date):
        self.paths = file_paths(settings, as_of)
        p = self.paths
        self.forms = JsonlOut(p["forms"])
        self.contacts = CsvOut(p["contacts"], CONTACT_HEADER)
        self.insurance = CsvOut(p["sibling_insurance"], INSURANCE_HEADER, delimiter=";")
        self.bank = CsvOut(p["sibling_bank_fa"], [cp1256_safe(h) for h in BANK_HEADER], encoding="cp1256",
                           lineterminator="\r\n")
        self.travel = XlsxOut(p["sibling_travel"], "members", TRAVEL_HEADER, as_of)
        self.kiosk = CsvOut(p["order_export_kiosk"], KIOSK_HEADER)
        self.gt_path = settings.demo_dir / "ground_truth.csv"
        self.gt = CsvOut(self.gt_path, GT_HEADER)

    def close(self) -> None:
        for w in (self.forms, self.contacts, self.insurance, self.bank, self.travel, self.kiosk, self.gt):
            w.close()


def generate(size: int, seed: int = 42, settings: Settings | None = None, as_of: dt.date = DEFAULT_AS_OF,
             write_orders_db: bool = True, overwrite_external_db: bool = False) -> DemoSummary:
    """Generate the demo sources for `size` true persons (see module docstring).

    The orders database is rebuilt only on the embedded server unless `overwrite_external_db` (see
    `crm_knowledge.demo.guard`); a refusal happens before anything is written.
    """
    if size < 1:
        raise ValueError("size must be at least 1")
    t0 = time.monotonic()
    settings = settings or get_settings()
    check_demo_targets(settings, overwrite_external_db=overwrite_external_db, orders_db=write_orders_db)
    prev = load_state(settings)
    if prev:
        remove_files(prev.get("files", []))

    people = generate_people(size, seed, as_of)
    snap = _epoch(as_of, SNAP_HOUR)
    cat = odb.build_catalogue(seed, snap)
    ctx = Ctx(people=people, fresh=Fresh(), as_of=as_of, snap=snap, counters={}, planted=Planted())
    out = _Outputs(settings, as_of)
    stats = {"orders_last30": 0, "forms_last30": 0, "contacts_last30": 0, "customers": 0, "orders": 0,
             "order_items": 0, "kiosk": 0}

    conn = None
    orders_db = contextlib.ExitStack()
    if write_orders_db:
        url = odb.ensure_orders_database(settings)
        conn = orders_db.enter_context(connect(url))
        conn.execute("set timezone = 'UTC'")
        odb.recreate_schema(conn.cursor())
        copy_frame(conn, "products", odb.products_frame(cat))
    try:
        n_chunks = -(-size // CHUNK)
        for c in range(n_chunks):
            lo, hi = c * CHUNK, min(size, (c + 1) * CHUNK)
            _chunk(ctx, c, lo, hi, seed, cat, out, conn, stats)
            if size > CHUNK:
                log.info("demo: chunk %d/%d done (%d persons, %.0fs)", c + 1, n_chunks, hi,
                         time.monotonic() - t0)
        rng_c = np.random.default_rng([seed, 8])
        write_corrupt_kiosk(out.paths["order_export_kiosk_corrupt"], rng_c,
                            np.arange(1, max(2, stats["customers"] + 1)), as_of)
        ctx.planted.add("corrupt_file", "order_export:kiosk", [str(out.paths["order_export_kiosk_corrupt"])],
                        "whole file with a different header (OrderNo, Client, Date, Total, PaymentMethod)",
                        str(out.paths["order_export_kiosk_corrupt"]))
        if conn is not None:
            odb.add_constraints(conn.cursor())
            conn.commit()
    except BaseException:
        if conn is not None:
            conn.rollback()
        raise
    finally:
        out.close()
        orders_db.close()

    counts = {
        "persons": size,
        "orders.customers": stats["customers"],
        "orders.products": len(cat),
        "orders.orders": stats["orders"],
        "orders.order_items": stats["order_items"],
        "forms": out.forms.rows,
        "contacts": out.contacts.rows,
        "sibling:insurance": out.insurance.rows,
        "sibling:travel": out.travel.rows,
        "sibling:bank_fa": out.bank.rows,
        "order_export:kiosk": out.kiosk.rows,
        "ground_truth": out.gt.rows,
    }
    paths = {k: str(v) for k, v in out.paths.items()}
    paths["ground_truth"] = str(out.gt_path)
    state = {
        "size": size, "seed": seed, "as_of": as_of.isoformat(), "persons": size,
        "counters": ctx.counters, "fresh": ctx.fresh.k,
        "customers": stats["customers"], "orders": stats["orders"], "order_items": stats["order_items"],
        "rates": {"orders_per_day": stats["orders_last30"] / 30, "forms_per_day": stats["forms_last30"] / 30,
                  "contacts_per_day": stats["contacts_last30"] / 30, "kiosk_per_day": stats["kiosk"] / 365},
        "files": sorted(str(v) for v in out.paths.values()), "increments": {},
        "orders_db": bool(write_orders_db),
    }
    _save_state(settings, state)
    summary = DemoSummary(kind="full", size=size, seed=seed, as_of=as_of.isoformat(), day=None, persons=size,
                          counts=counts, paths=paths, planted=ctx.planted.as_list(),
                          elapsed_seconds=round(time.monotonic() - t0, 2))
    log.info("demo: generated %d persons in %.1fs", size, summary.elapsed_seconds)
    return summary


def _chunk(ctx: Ctx, c: int, lo: int, hi: int, seed: int, cat: odb.Catalogue, out: _Outputs, conn,
           stats: dict) -> None:
    people = ctx.people
    rng = np.random.default_rng([seed, 3, c])
    snap = ctx.snap
    pidx = np.arange(lo, hi, dtype=np.int64)
    m = len(pidx)
    has_cust = rng.random(m) < CUSTOMER_SHARE
    dup = has_cust & (rng.random(m) < DUPLICATE_SHARE)
    in_ins = rng.random(m) < SIBLING_SHARE
    in_trv = rng.random(m) < SIBLING_SHARE
    in_bank = rng.random(m) < SIBLING_SHARE
    n_forms = rng.poisson(np.where(has_cust, 2.2, 1.5))
    n_contacts = rng.poisson(np.where(has_cust, 3.6, 1.6))
    nowhere = ~has_cust & (n_forms == 0) & ~in_ins & ~in_trv & ~in_bank & (n_contacts == 0)
    n_forms[nowhere] = 1
    since_s = people.since[pidx].astype(np.int64) * DAY

    # --- orders database: customers (incl. persons registered twice), orders, items --------------
    cust_p = np.concatenate([pidx[has_cust], pidx[dup]])
    is_dup = np.concatenate([np.zeros(int(has_cust.sum()), bool), np.ones(int(dup.sum()), bool)])
    perm = rng.permutation(len(cust_p))
    cust_p, is_dup = cust_p[perm], is_dup[perm]
    k = len(cust_p)
    cids = ctx.next_ids("customer", k)
    since_c = people.since[cust_p].astype(np.int64) * DAY + rng.integers(6 * 3600, 20 * 3600, size=k)
    created = np.where(is_dup, since_c + (rng.random(k) * (snap - since_c)).astype(np.int64), since_c)
    created = np.minimum(created, snap - 3600)
    later = rng.random(k) < 0.35
    updated = np.where(later, created + (rng.random(k) * (snap - created)).astype(np.int64), created)
    cust_df = _customer_frame(ctx, rng, cust_p, cids, created, updated)
    person_cust = np.full(people.n, -1, dtype=np.int64)
    primary = ~is_dup
    person_cust[cust_p[primary]] = cids[primary]

    tenure = (snap - created).astype(float)
    factor = tenure / max(tenure.mean(), 1.0)
    lam = rng.gamma(1.2, 7.0 / 1.2, size=k) * factor * np.where(is_dup, 0.3, 1.0)
    n_orders = rng.poisson(lam)
    start_oid = ctx.counters.get("order", 0) + 1
    start_iid = ctx.counters.get("order_item", 0) + 1
    block = odb.make_orders(rng, cids, created, n_orders, cat, snap, start_oid, start_iid)
    ctx.counters["order"] = start_oid - 1 + len(block.orders)
    ctx.counters["order_item"] = start_iid - 1 + len(block.items)
    stats["customers"] += k
    stats["orders"] += len(block.orders)
    stats["order_items"] += len(block.items)
    stats["orders_last30"] += int((block.ordered >= snap - 30 * DAY).sum())
    if conn is not None:
        copy_frame(conn, "customers", cust_df)
        copy_frame(conn, "orders", block.orders)
        copy_frame(conn, "order_items", block.items)
    out.gt.write(("orders", str(int(cid)), f"P{int(p) + 1:07d}") for cid, p in zip(cids, cust_p, strict=True))

    # --- forms ------------------------------------------------------------------------------------
    fp = np.repeat(pidx, n_forms)
    f_lo = np.maximum(np.repeat(since_s, n_forms) + 8 * 3600, snap - 3 * 365 * DAY)
    recs, gt = build_forms(ctx, rng, fp, f_lo, snap, person_cust, _order_lookup(block),
                           file=str(out.paths["forms"]))
    plant_junk_emails(ctx, rng, recs, max(3, round(len(recs) * 0.0004)), str(out.paths["forms"]))
    cutoff = _iso_local(snap - 30 * DAY)
    stats["forms_last30"] += sum(1 for r in recs if r["submitted_at"] >= cutoff)
    out.forms.write(recs)
    out.gt.write(gt)

    # --- siblings ---------------------------------------------------------------------------------
    # (unit, builder, its members, its writer, whether its file gets planted problems); order = RNG order
    siblings = (("insurance", build_insurance, in_ins, out.insurance, True),
                ("travel", build_travel, in_trv, out.travel, False),
                ("bank_fa", build_bank, in_bank, out.bank, True))
    for unit, build, members, writer, has_problems in siblings:
        path = str(out.paths[f"sibling_{unit}"])
        rows, gt = build(ctx, rng, pidx[members], path)
        if has_problems:
            plant_sibling_problems(ctx, rng, rows, unit, 2, 2, path)
        writer.write(rows)
        out.gt.write(gt)

    # --- contact centre ---------------------------------------------------------------------------
    cp = np.repeat(pidx, n_contacts)
    c_lo = np.maximum(np.repeat(since_s, n_contacts) + 8 * 3600, snap - 2 * 365 * DAY)
    rows, gt = build_contacts(ctx, rng, cp, c_lo, snap, person_cust, str(out.paths["contacts"]))
    stats["contacts_last30"] += sum(1 for r in rows if r[2] >= cutoff)
    out.contacts.write(rows)
    out.gt.write(gt)

    # --- kiosk export: ~2% of the orders volume, last year -----------------------------------------
    as_of_days = (ctx.as_of - EPOCH).days
    n_k = int(round(0.02 * len(block.orders)))
    rows = build_kiosk(ctx, rng, cat, cids, n_k, as_of_days - 364, as_of_days)
    if c == 0:
        plant_kiosk_amounts(ctx, rows, rng, str(out.paths["order_export_kiosk"]))
    stats["kiosk"] += len(rows)
    out.kiosk.write(rows)


def _iso_local(epoch: int) -> str:
    from crm_knowledge.demo.sources import iso_tehran

    return iso_tehran(np.array([epoch]))[0]


# ------------------------------------------------------------------------------------------------------
def _orders_ground_truth(path: Path) -> tuple[dict[int, int], dict[int, int]]:
    """(customer_id -> person index, person index -> first customer_id) from the ground truth."""
    gt = pd.read_csv(path, dtype=str)
    o = gt[gt["source_system"] == "orders"]
    cid = o["source_record_id"].astype(np.int64).to_numpy()
    pix = o["person_id"].str[1:].astype(np.int64).to_numpy() - 1
    cust_person = dict(zip(cid.tolist(), pix.tolist(), strict=True))
    person_cust: dict[int, int] = {}
    for c, p in sorted(zip(cid.tolist(), pix.tolist(), strict=True)):
        person_cust.setdefault(p, c)
    return cust_person, person_cust


def _apply_customer_changes(conn, ctx: Ctx, rng: np.random.Generator, cust_person: dict[int, int],
                            max_cid: int, n_changed: int, lo: int, hi: int) -> int:
    """Some existing customers changed their phone, email or address on the day (updated_at = day)."""
    from crm_knowledge.demo.people import DOMAINS, FIRST_LAT, LAST_LAT, fresh_mobile
    from crm_knowledge.demo.render import STREET_FA

    people = ctx.people
    n_changed = min(n_changed, max_cid)
    if n_changed <= 0:
        return 0
    chosen = np.sort(rng.choice(np.arange(1, max_cid + 1), size=n_changed, replace=False))
    rows = conn.execute(
        "select customer_id, email, phone, street, postcode from customers where customer_id = any(%s) "
        "order by customer_id", (chosen.tolist(),)).fetchall()
    kind = rng.choice(3, size=len(rows), p=[0.4, 0.3, 0.3])
    when = np.sort(lo + (rng.random(len(rows)) * (hi - lo)).astype(np.int64))
    ks = ctx.fresh.take(len(rows))
    new_rows = []
    for j, (cid, email, phone, street, postcode) in enumerate(rows):
        p = cust_person.get(int(cid), 0)
        if kind[j] == 0:
            phone = f"0{int(fresh_mobile(ks[j] + 30_000_000)):010d}"
        elif kind[j] == 1:
            fl = FIRST_LAT[people.first[p]][0].lower().replace(" ", "")
            ll = LAST_LAT[people.last[p]][0].lower().replace(" ", "")
            email = f"{fl}.{ll}.{int(ks[j])}@{DOMAINS[int(rng.integers(0, len(DOMAINS)))]}"
        else:
            st = STREET_FA[int(rng.integers(0, len(STREET_FA)))]
            street = f"خیابان {st}، کوچه {int(rng.integers(1, 41))}، پلاک {int(rng.integers(1, 251))}"
            head = (postcode or f"{people.postcode[p]:010d}").replace("-", "")[:2]
            postcode = head + "".join(str(int(d)) for d in rng.choice([1, 3, 4, 5, 6, 7, 8, 9], size=3)) + \
                f"{int(rng.integers(0, 100_000)):05d}"
        new_rows.append({"customer_id": int(cid), "email": email, "phone": phone, "street": street,
                         "postcode": postcode})
    df = pd.DataFrame(new_rows)
    df["updated_at"] = odb.ts_text(when)
    cur = conn.cursor()
    cur.execute("create temp table _demo_changes (customer_id int, email text, phone text, street text, "
                "postcode text, updated_at timestamptz) on commit drop")
    copy_frame(conn, "_demo_changes", df)
    cur.execute("update customers c set email = d.email, phone = d.phone, street = d.street, "
                "postcode = d.postcode, updated_at = d.updated_at from _demo_changes d "
                "where c.customer_id = d.customer_id")
    return len(rows)


def generate_increment(day: dt.date, seed: int, settings: Settings | None = None, new_share: float = 0.01,
                       changed_share: float = 0.01, overwrite_external_db: bool = False) -> DemoSummary:
    """Add one day of data on top of an earlier `generate`: new customers, changed customer records,
    new orders (and status changes of open orders) with updated_at on `day`, plus new form, contact and
    kiosk files named with the day. Applying the same day twice is a no-op returning the first summary."""
    t0 = time.monotonic()
    settings = settings or get_settings()
    state = load_state(settings)
    if state is None:
        raise RuntimeError(f"no demo state in {settings.demo_dir}: run generate() first")
    check_demo_targets(settings, overwrite_external_db=overwrite_external_db,
                       orders_db=state.get("orders_db", True))
    if day.isoformat() in state["increments"]:
        log.info("demo: increment %s already applied", day)
        return DemoSummary(**state["increments"][day.isoformat()])
    as_of = dt.date.fromisoformat(state["as_of"])
    last = max([as_of] + [dt.date.fromisoformat(d) for d in state["increments"]])
    if day <= last:
        raise ValueError(f"increment day {day} must be after {last} (as_of or the last increment)")

    size, base_seed, n_old = state["size"], state["seed"], state["persons"]
    k_new = max(1, round(new_share * size))
    people = generate_people(n_old + k_new, base_seed, as_of)
    day_days = (day - EPOCH).days
    people.since[n_old:] = day_days
    lo, hi = _epoch(day, 6), _epoch(day, SNAP_HOUR)
    cat = odb.build_catalogue(base_seed, _epoch(as_of, SNAP_HOUR))
    ctx = Ctx(people=people, fresh=Fresh(state["fresh"]), as_of=day, snap=hi, counters=dict(state["counters"]),
              planted=Planted())
    rng = np.random.default_rng([seed, 9, day.toordinal()])
    rates = state["rates"]
    paths = file_paths(settings, day, increment=True)
    gt_path = settings.demo_dir / "ground_truth.csv"
    cust_person, person_cust = _orders_ground_truth(gt_path)
    gt_out = open_private(gt_path, "a", encoding="utf-8", newline="")
    import csv as _csv

    gtw = _csv.writer(gt_out, lineterminator="\n")
    counts: dict[str, int] = {"persons_new": k_new}
    max_cid_before = int(ctx.counters.get("customer", 0))

    # --- orders database ------------------------------------------------------------------------------
    new_p = np.arange(n_old, n_old + k_new, dtype=np.int64)
    cids = ctx.next_ids("customer", k_new)
    created = np.sort(lo + (rng.random(k_new) * (hi - lo)).astype(np.int64))
    cust_df = _customer_frame(ctx, rng, new_p, cids, created, created)
    for c, p in zip(cids.tolist(), new_p.tolist(), strict=True):
        person_cust[p] = c
    gtw.writerows(("orders", str(c), f"P{p + 1:07d}") for c, p in zip(cids.tolist(), new_p.tolist(), strict=True))
    n_orders_day = max(1, round(rates["orders_per_day"]))
    buyers = rng.integers(1, int(ctx.counters["customer"]) + 1, size=n_orders_day)
    ucust, n_per = np.unique(buyers, return_counts=True)
    start_oid = ctx.counters.get("order", 0) + 1
    start_iid = ctx.counters.get("order_item", 0) + 1
    block = odb.make_orders(rng, ucust, np.full(len(ucust), lo), n_per, cat, hi, start_oid, start_iid,
                            window=(lo, hi))
    ctx.counters["order"] = start_oid - 1 + len(block.orders)
    ctx.counters["order_item"] = start_iid - 1 + len(block.items)
    counts.update({"orders.customers_new": k_new, "orders.orders_new": len(block.orders),
                   "orders.order_items_new": len(block.items)})
    if state.get("orders_db", True):
        url = odb.ensure_orders_database(settings)
        with connect(url) as conn:
            conn.execute("set timezone = 'UTC'")
            cur = conn.cursor()
            copy_frame(conn, "customers", cust_df)
            copy_frame(conn, "orders", block.orders)
            copy_frame(conn, "order_items", block.items)
            counts["orders.customers_changed"] = _apply_customer_changes(
                conn, ctx, rng, cust_person, max_cid_before, max(1, round(changed_share * max_cid_before)), lo, hi)
            # open orders of earlier days move on (placed -> paid, paid -> shipped)
            n_prog = max(1, round(rates["orders_per_day"] * 0.5))
            res = cur.execute(
                "update orders set status = case status when 'placed' then 'paid' else 'shipped' end, "
                "updated_at = to_timestamp(%s + (order_id::bigint * 7919) %% %s) "
                "where order_id in (select order_id from orders where status in ('placed', 'paid') "
                "and ordered_at < to_timestamp(%s) order by order_id limit %s)", (lo, hi - lo, lo, n_prog))
            counts["orders.orders_progressed"] = res.rowcount
            conn.commit()

    # --- files: forms, contacts, kiosk -----------------------------------------------------------------
    n_forms = max(1, round(rates["forms_per_day"]))
    fp_old = rng.integers(0, n_old, size=n_forms)
    reg_new = new_p[rng.random(k_new) < 0.6]
    fp = np.concatenate([fp_old, reg_new]).astype(np.int64)
    types = np.concatenate([rng.choice(6, size=n_forms, p=[0.15, 0.25, 0.2, 0.1, 0.05, 0.25]),
                            np.zeros(len(reg_new), dtype=np.int64)])
    recs, gt = build_forms(ctx, rng, fp, np.full(len(fp), lo), hi, person_cust, None, types=types,
                           file=str(paths["forms"]))
    fo = JsonlOut(paths["forms"])
    fo.write(recs)
    fo.close()
    gtw.writerows(gt)
    n_contacts = max(1, round(rates["contacts_per_day"]))
    cp = np.concatenate([rng.integers(0, n_old, size=n_contacts), new_p[rng.random(k_new) < 0.3]])
    rows, gt = build_contacts(ctx, rng, cp.astype(np.int64), np.full(len(cp), lo), hi, person_cust,
                              str(paths["contacts"]))
    co = CsvOut(paths["contacts"], CONTACT_HEADER)
    co.write(rows)
    co.close()
    gtw.writerows(gt)
    rows = build_kiosk(ctx, rng, cat, np.arange(1, int(ctx.counters["customer"]) + 1),
                       max(1, round(rates["kiosk_per_day"])), day_days, day_days)
    ko = CsvOut(paths["order_export_kiosk"], KIOSK_HEADER)
    ko.write(rows)
    ko.close()
    gt_out.close()
    counts.update({"forms": fo.rows, "contacts": co.rows, "order_export:kiosk": ko.rows})

    summary = DemoSummary(kind="increment", size=size, seed=seed, as_of=state["as_of"], day=day.isoformat(),
                          persons=n_old + k_new, counts=counts,
                          paths={k: str(v) for k, v in paths.items()} | {"ground_truth": str(gt_path)},
                          planted=ctx.planted.as_list(), elapsed_seconds=round(time.monotonic() - t0, 2))
    state["persons"] = n_old + k_new
    state["counters"] = ctx.counters
    state["fresh"] = ctx.fresh.k
    state["customers"] = int(ctx.counters["customer"])
    state["files"] = sorted(set(state["files"]) | {str(v) for v in paths.values()})
    state["increments"][day.isoformat()] = summary.as_dict()
    _save_state(settings, state)
    log.info("demo: increment %s: %s", day, counts)
    return summary


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m crm_knowledge.demo",
                                 description="Generate the demo sources (files, orders database, ground truth).")
    ap.add_argument("--size", type=int, default=None, help="number of true persons (default CKP_DEMO_SIZE or 2000)")
    ap.add_argument("--seed", type=int, default=None, help="random seed (default CKP_DEMO_SEED or 42)")
    ap.add_argument("--as-of", type=dt.date.fromisoformat, default=DEFAULT_AS_OF, help="snapshot date (ISO)")
    ap.add_argument("--increment-day", type=dt.date.fromisoformat, default=None,
                    help="add one day of data on top of an earlier generate instead (YYYY-MM-DD)")
    ap.add_argument("--no-orders-db", action="store_true", help="write files only, leave the orders db alone")
    ap.add_argument(OVERWRITE_FLAG, dest="overwrite_external_db", action="store_true",
                    help="allow dropping and refilling the orders tables of a database named by CKP_ORDERS_URL "
                         "or WAREHOUSE_URL (only for a database created for the demo)")
    args = ap.parse_args(argv)
    settings = get_settings()

    restrict_umask()

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    seed = args.seed if args.seed is not None else settings.demo_seed
    try:
        if args.increment_day:
            summary = generate_increment(args.increment_day, seed, overwrite_external_db=args.overwrite_external_db)
        else:
            size = args.size if args.size is not None else settings.demo_size
            summary = generate(size, seed, as_of=args.as_of, write_orders_db=not args.no_orders_db,
                               overwrite_external_db=args.overwrite_external_db)
    except DemoTargetRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary.as_dict(), ensure_ascii=False, indent=2))
    return 0
