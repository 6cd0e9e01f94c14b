"""Demo orders database on the real (embedded) Postgres: counts, integrity, idempotency, increments."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from crm_knowledge.demo import generate, generate_increment
from crm_knowledge.demo.orders_db import checksum_all
from crm_knowledge.demo.people import generate_people

pytestmark = pytest.mark.warehouse

AS_OF = dt.date(2026, 11, 20)
SIZE = 300


@pytest.fixture()
def demo_settings(settings, warehouse, scratch_db, tmp_path):
    """Settings whose landing zone / demo dir are private to the test and whose orders db is a scratch db."""
    return dataclasses.replace(settings, home=tmp_path, landing_dir=tmp_path / "landing",
                               external_warehouse_url=warehouse, external_orders_url=scratch_db)


def _one(url: str, q: str, *args):
    with psycopg.connect(url) as conn:
        conn.execute("set timezone = 'UTC'")
        return conn.execute(q, args or None).fetchone()


def test_orders_db_counts_integrity_and_totals(demo_settings):
    s = generate(SIZE, seed=42, settings=demo_settings, overwrite_external_db=True)
    url = demo_settings.orders_url
    c = s.counts
    for table, key in (("customers", "orders.customers"), ("products", "orders.products"),
                       ("orders", "orders.orders"), ("order_items", "orders.order_items")):
        assert _one(url, f"select count(*) from {table}")[0] == c[key], table
    assert c["orders.products"] == 300
    assert _one(url, "select count(distinct category) from products")[0] == 12
    # the ~70% / ~5 orders / ~12 items per person volumes
    assert 0.6 * SIZE < c["orders.customers"] < 0.8 * SIZE
    assert 3 * SIZE < c["orders.orders"] < 7 * SIZE
    assert 8 * SIZE < c["orders.order_items"] < 16 * SIZE

    # declared foreign keys and updated_at indexes, and no orphans
    fks = _one(url, "select count(*) from pg_constraint where contype = 'f' and connamespace = 'public'::regnamespace")
    assert fks[0] == 3
    idx = _one(url, "select count(*) from pg_indexes where schemaname = 'public' and indexdef like '%(updated_at)%'")
    assert idx[0] == 4
    assert _one(url, "select count(*) from orders o left join customers c using (customer_id) "
                     "where c.customer_id is null")[0] == 0
    assert _one(url, "select count(*) from order_items i left join orders o using (order_id) "
                     "where o.order_id is null")[0] == 0

    # totals are the sum of their items; amounts in realistic IRR magnitudes
    assert _one(url, "select count(*) from orders o join (select order_id, sum(line_amount) s from order_items "
                     "group by order_id) i using (order_id) where o.total_amount <> i.s")[0] == 0
    assert _one(url, "select count(*) from order_items where line_amount <> quantity * unit_price")[0] == 0
    assert _one(url, "select count(*) from orders where order_id not in (select order_id from order_items)")[0] == 0
    avg_total = float(_one(url, "select avg(total_amount) from orders")[0])
    assert 1_000_000 < avg_total < 2_000_000_000
    assert _one(url, "select count(*) from orders where currency <> 'IRR'")[0] == 0
    with psycopg.connect(url) as conn:
        statuses = {r for (r,) in conn.execute("select distinct status from orders").fetchall()}
    assert {"shipped", "cancelled", "returned"} <= statuses <= {"placed", "paid", "shipped", "cancelled", "returned"}

    # timestamps: updated_at between the creation and the as_of snapshot
    snap = dt.datetime(2026, 11, 20, 20, 0, tzinfo=dt.UTC)
    assert _one(url, "select count(*) from orders where updated_at < ordered_at or updated_at > %s", snap)[0] == 0
    assert _one(url, "select count(*) from customers where updated_at < created_at or updated_at > %s", snap)[0] == 0
    assert _one(url, "select count(*) from orders o join customers c using (customer_id) "
                     "where o.ordered_at < c.created_at")[0] == 0
    assert _one(url, "select max(updated_at) from products")[0] <= snap

    # ground truth: an orders customer's person has the birth date the row shows
    gt = pd.read_csv(demo_settings.demo_dir / "ground_truth.csv", dtype=str)
    person = {rid: int(pid[1:]) - 1 for sys, rid, pid in gt.itertuples(index=False) if sys == "orders"}
    assert len(person) == c["orders.customers"]
    people = generate_people(SIZE, 42, AS_OF)
    with psycopg.connect(url) as conn:
        rows = conn.execute("select customer_id, birth_date from customers where birth_date is not null").fetchall()
    assert len(rows) > 0.6 * c["orders.customers"]
    assert all(people.birth_date(person[str(cid)]) == bd for cid, bd in rows)


def test_second_generate_leaves_database_and_files_identical(demo_settings):
    s1 = generate(SIZE, seed=42, settings=demo_settings, overwrite_external_db=True)
    url = demo_settings.orders_url
    before = checksum_all(url)
    files1 = {k: hashlib.sha256(Path(p).read_bytes()).hexdigest() for k, p in s1.paths.items()}
    s2 = generate(SIZE, seed=42, settings=demo_settings, overwrite_external_db=True)
    assert checksum_all(url) == before
    assert {k: hashlib.sha256(Path(p).read_bytes()).hexdigest() for k, p in s2.paths.items()} == files1
    generate(SIZE, seed=43, settings=demo_settings, overwrite_external_db=True)
    assert checksum_all(url)["customers"] != before["customers"]


def test_increment_adds_a_day(demo_settings):
    base = generate(SIZE, seed=42, settings=demo_settings, overwrite_external_db=True)
    url = demo_settings.orders_url
    day = dt.date(2026, 11, 21)
    gt_before = len(pd.read_csv(demo_settings.demo_dir / "ground_truth.csv"))
    inc = generate_increment(day, seed=42, settings=demo_settings, overwrite_external_db=True)
    c = inc.counts
    on_day = "(updated_at at time zone 'UTC')::date = %s"
    assert c["persons_new"] == 3  # 1% of 300
    n_cust_day = _one(url, f"select count(*) from customers where {on_day}", day)[0]
    assert n_cust_day == c["orders.customers_new"] + c["orders.customers_changed"]
    assert c["orders.customers_changed"] == 2  # 1% of ~210 customers
    assert _one(url, "select count(*) from customers")[0] == base.counts["orders.customers"] + 3
    assert _one(url, "select count(*) from orders where (ordered_at at time zone 'UTC')::date = %s", day)[0] \
        == c["orders.orders_new"] >= 1
    assert _one(url, f"select count(*) from order_items where {on_day}", day)[0] == c["orders.order_items_new"]
    assert _one(url, "select count(*) from customers where updated_at > %s",
                dt.datetime(2026, 11, 21, 23, 59, tzinfo=dt.UTC))[0] == 0
    # changed customers keep their id and get a newer updated_at; totals still match items
    assert _one(url, "select count(*) from orders o join (select order_id, sum(line_amount) s from order_items "
                     "group by order_id) i using (order_id) where o.total_amount <> i.s")[0] == 0
    # new day files next to the base files, ground truth extended
    for key in ("forms", "contacts", "order_export_kiosk"):
        p = Path(inc.paths[key])
        assert p.exists() and "2026-11-21" in p.name
        assert Path(base.paths[key]).exists()
    gt = pd.read_csv(demo_settings.demo_dir / "ground_truth.csv", dtype=str)
    assert len(gt) == gt_before + c["orders.customers_new"] + c["forms"] + c["contacts"]
    assert not gt.duplicated(["source_system", "source_record_id"]).any()
    assert {"P0000301", "P0000302", "P0000303"} <= set(gt.person_id)
    # applying the same day again changes nothing; an earlier day is refused
    snapshot = checksum_all(url)
    again = generate_increment(day, seed=42, settings=demo_settings, overwrite_external_db=True)
    assert again.counts == inc.counts and checksum_all(url) == snapshot
    with pytest.raises(ValueError):
        generate_increment(dt.date(2026, 11, 19), seed=42, settings=demo_settings, overwrite_external_db=True)
    # a full generate afterwards removes the increment files and restores the base database
    generate(SIZE, seed=42, settings=demo_settings, overwrite_external_db=True)
    assert not Path(inc.paths["forms"]).exists()
    assert _one(url, f"select count(*) from customers where {on_day}", day)[0] == 0
