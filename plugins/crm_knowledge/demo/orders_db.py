"""The operational orders database of the demo: schema, product catalogue, bulk loading with COPY.

Rows are built column-wise (numpy / pandas) per chunk of persons and streamed into PostgreSQL with
`COPY ... FROM STDIN (FORMAT csv)`. A full `generate` drops and recreates the four tables inside one
transaction, so readers see either the old or the new database, and two runs with the same seed leave
identical rows behind.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from itertools import product as cartesian

import numpy as np
import pandas as pd

from crm_knowledge.demo import names_fa as N
from crm_knowledge.warehouse.db import connect

log = logging.getLogger(__name__)

TABLES = ("customers", "products", "orders", "order_items")

CUSTOMER_COLUMNS = ["customer_id", "first_name", "last_name", "email", "phone", "national_id", "birth_date",
                    "gender", "street", "city", "province", "postcode", "company", "business_type",
                    "created_at", "updated_at"]
PRODUCT_COLUMNS = ["product_id", "sku", "name", "category", "unit_price", "updated_at"]
ORDER_COLUMNS = ["order_id", "customer_id", "ordered_at", "status", "channel", "total_amount", "currency",
                 "updated_at"]
ITEM_COLUMNS = ["order_item_id", "order_id", "product_id", "quantity", "unit_price", "line_amount", "updated_at"]

STATUSES = np.array(["placed", "paid", "shipped", "cancelled", "returned"], dtype=object)
CHANNELS = np.array(["web", "store", "phone"], dtype=object)

CREATE_TABLES = """
create table customers (
    customer_id   integer not null,
    first_name    text, last_name text, email text, phone text, national_id text,
    birth_date    date, gender text, street text, city text, province text, postcode text,
    company       text, business_type text,
    created_at    timestamptz not null,
    updated_at    timestamptz not null
);
create table products (
    product_id    integer not null,
    sku           text not null,
    name          text not null,
    category      text not null,
    unit_price    numeric(14,2) not null,
    updated_at    timestamptz not null
);
create table orders (
    order_id      integer not null,
    customer_id   integer not null,
    ordered_at    timestamptz not null,
    status        text not null,
    channel       text not null,
    total_amount  numeric(14,2) not null,
    currency      text not null default 'IRR',
    updated_at    timestamptz not null
);
create table order_items (
    order_item_id integer not null,
    order_id      integer not null,
    product_id    integer not null,
    quantity      integer not null,
    unit_price    numeric(14,2) not null,
    line_amount   numeric(14,2) not null,
    updated_at    timestamptz not null
);
"""

# Constraints and indexes are added after the bulk load (much faster than maintaining them per row).
CONSTRAINTS = """
alter table customers add primary key (customer_id);
alter table products add primary key (product_id);
alter table products add constraint products_sku_key unique (sku);
alter table orders add primary key (order_id);
alter table order_items add primary key (order_item_id);
alter table orders add constraint orders_customer_fk foreign key (customer_id) references customers (customer_id);
alter table orders add constraint orders_status_check
    check (status in ('placed', 'paid', 'shipped', 'cancelled', 'returned'));
alter table orders add constraint orders_channel_check check (channel in ('web', 'store', 'phone'));
alter table order_items add constraint order_items_order_fk foreign key (order_id) references orders (order_id);
alter table order_items add constraint order_items_product_fk
    foreign key (product_id) references products (product_id);
create index customers_updated_at_idx on customers (updated_at);
create index products_updated_at_idx on products (updated_at);
create index orders_updated_at_idx on orders (updated_at);
create index orders_customer_id_idx on orders (customer_id);
create index order_items_updated_at_idx on order_items (updated_at);
create index order_items_order_id_idx on order_items (order_id);
"""


# --- product catalogue ---------------------------------------------------------------------------
@dataclass
class Catalogue:
    product_id: np.ndarray   # int
    sku: np.ndarray          # object
    name: np.ndarray         # object
    category: np.ndarray     # object (English category)
    price: np.ndarray        # int64 IRR
    max_qty: np.ndarray      # int
    p: np.ndarray            # popularity (sums to 1)
    updated_at: np.ndarray   # int64 epoch seconds

    def __len__(self) -> int:
        return len(self.product_id)


PER_CATEGORY = 25


def build_catalogue(seed: int, as_of_epoch: int) -> Catalogue:
    """~300 products in 12 categories, Persian + English names, realistic IRR prices."""
    rng = np.random.default_rng([seed, 2])
    skus, names, cats, prices, maxq, weights = [], [], [], [], [], []
    for code, _cat_fa, cat_en, (lo, hi), max_q, cat_w, items, variants in N.CATEGORIES:
        combos = list(cartesian(items, variants))
        order = rng.permutation(len(combos))
        chosen = [combos[i] for i in order[:PER_CATEGORY]]
        k = 2
        while len(chosen) < PER_CATEGORY:  # small categories get numbered models
            (ifa, ien), (vfa, ven) = combos[len(chosen) % len(combos)]
            chosen.append(((ifa, ien), (f"{vfa} مدل {k}", f"{ven} model {k}")))
            k += 1
        pop = 1.0 / (np.arange(PER_CATEGORY) + 2.0)
        pop = pop / pop.sum() * cat_w
        for j, ((ifa, ien), (vfa, ven)) in enumerate(chosen):
            skus.append(f"{code}-{j + 1:04d}")
            names.append(f"{ifa} {vfa} / {ien} ({ven})")
            cats.append(cat_en)
            price = np.exp(rng.uniform(np.log(lo), np.log(hi)))
            step = 10_000 if price < 50_000_000 else 100_000
            prices.append(int(round(price / step) * step))
            maxq.append(max_q)
            weights.append(pop[j])
    n = len(skus)
    p = np.array(weights)
    p = p / p.sum()
    # catalogue rows were last touched some time in the year before as_of
    updated = as_of_epoch - 2 * 3600 - rng.integers(0, 365 * 86400, size=n)
    return Catalogue(product_id=np.arange(1, n + 1), sku=np.array(skus, dtype=object),
                     name=np.array(names, dtype=object), category=np.array(cats, dtype=object),
                     price=np.array(prices, dtype=np.int64), max_qty=np.array(maxq), p=p,
                     updated_at=updated.astype(np.int64))


# --- timestamps and CSV text for COPY ------------------------------------------------------------
def ts_text(epoch: np.ndarray) -> np.ndarray:
    """Epoch seconds -> ISO-8601 UTC text ('2026-11-20T10:00:00Z')."""
    return np.datetime_as_string(np.asarray(epoch, dtype="datetime64[s]"), unit="s", timezone="UTC")


def date_text(days: np.ndarray) -> np.ndarray:
    """Days since epoch (NO_DAY = missing) -> ISO date text or None."""
    from crm_knowledge.demo.messiness import NO_DAY

    days = np.asarray(days)
    out = np.datetime_as_string(days.astype("datetime64[D]"), unit="D").astype(object)
    out[days == NO_DAY] = None
    return out


def products_frame(cat: Catalogue) -> pd.DataFrame:
    return pd.DataFrame({
        "product_id": cat.product_id, "sku": cat.sku, "name": cat.name, "category": cat.category,
        "unit_price": cat.price, "updated_at": ts_text(cat.updated_at),
    })


# --- orders and items ----------------------------------------------------------------------------
@dataclass
class OrdersBlock:
    orders: pd.DataFrame
    items: pd.DataFrame
    order_customer: np.ndarray   # customer_id per order
    order_ids: np.ndarray
    ordered: np.ndarray          # epoch seconds per order


def make_orders(rng: np.random.Generator, customer_ids: np.ndarray, created: np.ndarray, n_orders: np.ndarray,
                cat: Catalogue, snap: int, next_order_id: int, next_item_id: int,
                window: tuple[int, int] | None = None) -> OrdersBlock:
    """Orders for customers (n_orders each) placed between created and `snap` (or inside `window`)."""
    cust = np.repeat(customer_ids, n_orders)
    start = np.repeat(created, n_orders)
    m = len(cust)
    if window is None:
        ordered = start + (rng.random(m) * (snap - start)).astype(np.int64)
    else:
        lo, hi = window
        ordered = lo + (rng.random(m) * (hi - lo)).astype(np.int64)
    order = np.argsort(ordered, kind="stable")
    cust, ordered = cust[order], ordered[order]
    order_ids = np.arange(next_order_id, next_order_id + m, dtype=np.int64)
    age = snap - ordered
    u = rng.random(m)
    status = np.where(age < 86400, np.where(u < 0.5, 0, 1),
                      np.where(age < 4 * 86400, np.where(u < 0.3, 1, np.where(u < 0.9, 2, 3)),
                               np.where(u < 0.85, 2, np.where(u < 0.93, 3, 4))))
    delay = np.select(
        [status == 0, status == 1, status == 2, status == 3, status == 4],
        [np.zeros(m), rng.uniform(300, 3600, m), rng.uniform(86400, 4 * 86400, m),
         rng.uniform(600, 2 * 86400, m), rng.uniform(7 * 86400, 25 * 86400, m)],
    ).astype(np.int64)
    updated = np.minimum(ordered + delay, snap)
    updated = np.maximum(updated, ordered)
    channel = rng.choice(3, size=m, p=[0.6, 0.3, 0.1])

    n_items = 1 + rng.poisson(1.4, size=m)
    k = int(n_items.sum())
    item_order = np.repeat(np.arange(m), n_items)
    prod = rng.choice(len(cat), size=k, p=cat.p)
    maxq = cat.max_qty[prod]
    qty = 1 + rng.binomial(np.maximum(maxq - 1, 0), 0.25)
    price = cat.price[prod]
    line = qty * price
    total = np.bincount(item_order, weights=line, minlength=m).astype(np.int64)
    # exact integer sum (bincount goes through float64; amounts stay far below 2^53, so this is exact)
    item_updated = np.where(status[item_order] >= 3, updated[item_order], ordered[item_order])

    orders = pd.DataFrame({
        "order_id": order_ids, "customer_id": cust, "ordered_at": ts_text(ordered),
        "status": STATUSES[status], "channel": CHANNELS[channel], "total_amount": total, "currency": "IRR",
        "updated_at": ts_text(updated),
    })
    items = pd.DataFrame({
        "order_item_id": np.arange(next_item_id, next_item_id + k, dtype=np.int64),
        "order_id": order_ids[item_order], "product_id": cat.product_id[prod], "quantity": qty,
        "unit_price": price, "line_amount": line, "updated_at": ts_text(item_updated),
    })
    return OrdersBlock(orders=orders, items=items, order_customer=cust, order_ids=order_ids, ordered=ordered)


# --- database lifecycle --------------------------------------------------------------------------
def ensure_orders_database(settings) -> str:
    """Create the orders database when it runs on the (embedded) warehouse server; return its URL."""
    from crm_knowledge.warehouse import server

    if settings.external_orders_url:
        return settings.external_orders_url
    if settings.embedded:
        server.start(settings)
    server.ensure_database(settings.server_url("postgres"), "orders")
    return settings.orders_url


def recreate_schema(cur) -> None:
    cur.execute("drop table if exists order_items, orders, products, customers cascade")
    cur.execute(CREATE_TABLES)


def add_constraints(cur) -> None:
    cur.execute(CONSTRAINTS)
    for t in TABLES:
        cur.execute(f"analyze {t}")


def table_checksum(conn, table: str, key: str) -> tuple[int, str]:
    """Row count and md5 over all rows in key order (for tests and for `generate` idempotency checks)."""
    row = conn.execute(
        f"select count(*), md5(coalesce(string_agg(t::text, '|' order by {key}), '')) from {table} t"
    ).fetchone()
    return int(row[0]), row[1]


def checksum_all(url: str) -> dict[str, tuple[int, str]]:

    keys = {"customers": "customer_id", "products": "product_id", "orders": "order_id",
            "order_items": "order_item_id"}
    with connect(url) as conn:
        conn.execute("set timezone = 'UTC'")
        return {t: table_checksum(conn, t, k) for t, k in keys.items()}

