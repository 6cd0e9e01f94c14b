"""Benchmark of a daily identity run: N synthetic customers resolved in full, then a day of 1% new and 1% changed
customers resolved incrementally.

    python -m crm_knowledge.bench.identity_daily setup --url postgresql://.../bench --customers 100000
    /usr/bin/time -v python -m crm_knowledge.bench.identity_daily run --url postgresql://.../bench
    python -m crm_knowledge.bench.identity_daily day --url postgresql://.../bench --customers 100000 --day 2
    python -m crm_knowledge.bench.identity_daily fill --url postgresql://.../bench --customers 1000000
    /usr/bin/time -v python -m crm_knowledge.bench.identity_daily full --url postgresql://.../bench

`fill` only fills the candidates table (what ``ckp bench --only-identity`` starts from). `setup` fills
``intermediate.int_identity_candidates`` of the (empty) database at --url with :func:`candidates`
(the demo generator's people, crm_knowledge.demo.people: its name, city and postcode distributions; about 2.1
records per customer: an orders record with contact data, a Persian-script sibling record with names swapped
half the time and a national id half the time, a form referring to the order or sharing its e-mail), runs the
full resolution
(the weekly run, which keeps the prepared state), then stages the day: the records of `new_share` more customers,
and a changed e-mail on the orders record of `changed_share` of the customers (re-staged). Copy the database
(``create database ... template ...``) to time other code on the same day. `run` runs one incremental
resolution and prints its stats and wall time as JSON; wrap it in ``/usr/bin/time -v`` for the peak memory.
`fill` only fills the candidates (no resolution, no day) and `full` runs one full resolution the same way: the weekly
run's time and peak memory alone.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import time

import pandas as pd
import psycopg

from crm_knowledge.identity.prepare import CANDIDATE_COLUMNS
from crm_knowledge.identity.synthetic import CANDIDATES_DDL
from crm_knowledge.warehouse.db import connect

log = logging.getLogger(__name__)

def _copy(conn: psycopg.Connection, frame: pd.DataFrame) -> None:
    buf = io.StringIO()
    frame[CANDIDATE_COLUMNS].to_csv(buf, index=False, header=False)
    cols = ", ".join(CANDIDATE_COLUMNS)
    with conn.cursor() as cur, cur.copy(f"copy intermediate.int_identity_candidates ({cols}) from stdin "
                                        "with (format csv)") as copy:
        copy.write(buf.getvalue())


def candidates(customers: int, seed: int = 42) -> tuple[pd.DataFrame, pd.Series]:
    """(candidate records, person index of each record) for `customers` demo people (module docstring)."""
    import datetime as dt

    import numpy as np

    from crm_knowledge.demo import names_fa as N
    from crm_knowledge.demo import people as P

    people = P.generate_people(customers, seed, dt.date(2026, 11, 20))
    rng = np.random.default_rng(seed)
    # one row of draws per person, so the first N people are the same whatever the total (a later day adds people)
    sibling, swapped, sib_nid, sib_pc, form, by_ref = (rng.random((customers, 6)) < [0.6, 0.5, 0.5, 0.8, 0.5, 0.5]).T
    rows, owner = [], []
    for i in range(customers):
        first, last = people.first_latin(i).lower(), people.last_latin(i).lower()
        bd = people.birth_date(i).isoformat()
        city = N.CITIES[people.city[i]]
        oid = str(i + 1)
        rows.append(("orders", oid, first, last, f"{first} {last}", people.email[i], f"+98{people.mobile[i]}",
                     None, bd, str(people.postcode[i]), city[1][0].lower(), None, oid))
        owner.append(i)
        if sibling[i]:
            f_fa, l_fa = P.FIRST_FA[people.first[i]], P.LAST_FA[people.last[i]]
            rows.append(("sibling:insurance", f"S{i}", l_fa if swapped[i] else f_fa, f_fa if swapped[i] else l_fa,
                         None, None, None, str(people.national_id[i]) if sib_nid[i] else None, bd,
                         str(people.postcode[i]) if sib_pc[i] else None, city[0], None, None))
            owner.append(i)
        if form[i]:
            rows.append(("forms", f"F{i}", None, None, f"{first} {last}", None if by_ref[i] else people.email[i],
                         None, None, None, None, None, oid if by_ref[i] else None, None))
            owner.append(i)
    cols = ["source_system", "source_record_id", "first_name_norm", "last_name_norm", "full_name_norm",
            "email_norm", "phone_e164", "national_id_valid", "birth_date", "postcode", "city_norm", "customer_ref",
            "order_id"]
    frame = pd.DataFrame(rows, columns=cols).drop(columns="order_id")
    frame["customer_ref"] = frame["customer_ref"].where(frame["source_system"] == "forms", None)
    for c in CANDIDATE_COLUMNS:
        if c not in frame.columns:
            frame[c] = None
    frame["seen_at"] = "2026-11-20T10:00:00+00:00"
    return frame[CANDIDATE_COLUMNS], pd.Series(owner)


def fill(url: str, frame: pd.DataFrame) -> int:
    """Create intermediate.int_identity_candidates at `url` (synthetic.CANDIDATES_DDL) holding `frame`."""
    with connect(url) as conn:
        conn.execute(CANDIDATES_DDL)
        _copy(conn, frame)
        conn.execute("analyze intermediate.int_identity_candidates")
    return len(frame)


def fill_candidates(url: str, customers: int, seed: int = 42) -> int:
    """:func:`fill` with the candidates of `customers` people, built in a subprocess so that the caller (a
    benchmark measuring its own memory next) never held them; returns the number of records."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", __name__, "fill", "--url", url, "--customers", str(customers),
                          "--seed", str(seed)], check=True, capture_output=True, text=True)
    return int(json.loads(out.stdout.strip().splitlines()[-1])["records"])


def setup(url: str, customers: int, new_share: float = 0.01, changed_share: float = 0.01, seed: int = 42) -> dict:
    """Fill, resolve in full, stage the day (module docstring); returns what was staged."""
    from crm_knowledge.identity.store import run

    extra = max(1, round(customers * new_share))
    people, owner = candidates(customers + extra, seed=seed)
    person = owner.to_numpy()
    fill(url, people[person < customers])
    started = time.perf_counter()
    full = run(url, "full")
    full_seconds = time.perf_counter() - started
    changed = [str(p + 1) for p in range(0, customers, max(1, round(1 / changed_share)))]
    with connect(url) as conn:
        _copy(conn, people[person >= customers])
        conn.execute("update intermediate.int_identity_candidates set email_norm = 'new.' || email_norm, "
                     "staged_at = clock_timestamp() where source_system = 'orders' and source_record_id = any(%s)",
                     (changed,))
        conn.execute("analyze intermediate.int_identity_candidates")
    return {"customers": customers, "records": int((person < customers).sum()), "full_seconds": round(full_seconds, 1),
            "full_records": full["records"], "new_records": int((person >= customers).sum()),
            "changed_records": len(changed)}


def stage_day(url: str, customers: int, day: int, new_share: float = 0.01, changed_share: float = 0.01,
              seed: int = 42) -> dict:
    """Stage day number `day` (2, 3, ...) on a warehouse :func:`setup` filled: the next `new_share` of people, and
    a changed e-mail on the orders record of another `changed_share` of the customers."""
    extra = max(1, round(customers * new_share))
    people, owner = candidates(customers + day * extra, seed=seed)
    person = owner.to_numpy()
    step = max(1, round(1 / changed_share))
    changed = [str(p + 1) for p in range(day % step, customers, step)]
    with connect(url) as conn:
        _copy(conn, people[person >= customers + (day - 1) * extra])
        conn.execute("update intermediate.int_identity_candidates set email_norm = 'day' || %s || '.' || email_norm, "
                     "staged_at = clock_timestamp() where source_system = 'orders' and source_record_id = any(%s)",
                     (day, changed))
        conn.execute("analyze intermediate.int_identity_candidates")
    return {"day": day, "new_records": int((person >= customers + (day - 1) * extra).sum()),
            "changed_records": len(changed)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("step", choices=("setup", "day", "run", "fill", "full"))
    p.add_argument("--day", type=int, default=2)
    p.add_argument("--url", required=True)
    p.add_argument("--customers", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.step == "fill":  # only the candidates of --customers people (ckp bench --only-identity)
        print(json.dumps({"records": fill(args.url, candidates(args.customers, seed=args.seed)[0])}))
        return
    if args.step == "setup":
        print(json.dumps(setup(args.url, args.customers)))
        return
    if args.step == "day":
        print(json.dumps(stage_day(args.url, args.customers, args.day)))
        return
    from crm_knowledge.identity.store import run

    started = time.perf_counter()
    stats = run(args.url, "full" if args.step == "full" else "incremental")
    out = {k: stats.get(k) for k in ("mode", "records", "new_records", "neighbourhood_records", "customers",
                                     "merges", "new_customer_ids", "daily_phases")}
    out["seconds"] = round(time.perf_counter() - started, 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
