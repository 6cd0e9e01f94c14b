"""The orders-database source on a database with its own schema, loaded by configuration alone.

A real source database whose tables, columns and types are not the demo's (a `sales` schema, Persian
transliterated names, a change timestamp without time zone, order lines behind a SQL query) is mapped by a
source YAML onto the canonical fields; deletions at the source (a soft-delete flag, a `deleted_at`
column, rows removed outright) reach raw as deletion versions and drop out of staging, except a product, which
stays flagged so that the order lines naming it keep it; a wrong name in the mapping fails up front with the
setting named and nothing loaded.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import psycopg
import pytest
from dbt_runs import as_of_vars, dbt, on_database

from crm_knowledge.ingest.orders_db import extract_orders_db
from crm_knowledge.ingest.registry import SourceConfigError, load_registry
from crm_knowledge.warehouse.bootstrap import apply_ddl

pytestmark = pytest.mark.warehouse

URL_ENV = "CKP_TEST_SHOP_ORDERS_URL"

SOURCE_DDL = """
create schema sales;
create table sales.moshtari (
    shomare bigint primary key, nam text, famil text, pest text, hamrah text, code_melli text, shahr text,
    sabt timestamptz, taghir timestamp not null, hazf boolean not null default false);
create table sales.kala (kala_id int primary key, kod text, onvan text, goruh text, gheymat numeric(14, 2),
    taghir timestamptz not null);
create table sales.sefaresh (sef_no int primary key, moshtari_no bigint, zaman timestamptz, vaziat text,
    kanal text, mablagh numeric(14, 2), taghir timestamptz not null, deleted_at timestamptz);
create table sales.radif (sef_no int, radif int, kala_id int, tedad int, fi numeric(14, 2),
    taghir timestamptz not null, primary key (sef_no, radif));
insert into sales.moshtari (shomare, nam, famil, pest, hamrah, code_melli, shahr, sabt, taghir) values
    (501, 'علی', 'کریمی', 'ali@example.com', '09121234001', '0499370899', 'تهران', '2025-01-01 08:00+00',
     '2026-01-01 10:00'),
    (502, 'Sara', 'Ahmadi', 'sara@example.org', '09350000002', null, 'Shiraz', '2025-02-01 08:00+00',
     '2026-01-02 10:00'),
    (503, 'Mina', 'Rad', 'mina@example.net', null, null, 'Tabriz', '2025-03-01 08:00+00', '2026-01-03 10:00');
insert into sales.kala values (1, 'SKU-1', 'Drill', 'Tools', 10.00, '2025-01-01 00:00+00'),
                              (2, 'SKU-2', 'Rake', 'Garden', 20.00, '2025-01-01 00:00+00');
insert into sales.sefaresh values
    (9001, 501, '2026-01-05 10:00+00', 'paid', 'web', 40.00, '2026-01-05 10:00+00', null),
    (9002, 502, '2026-01-06 10:00+00', 'shipped', 'store', 20.00, '2026-01-06 10:00+00', null),
    (9003, 503, '2026-01-07 10:00+00', 'paid', 'phone', 10.00, '2026-01-07 10:00+00', null);
insert into sales.radif values (9001, 1, 1, 2, 10.00, '2026-01-05 10:00+00'), (9001, 2, 2, 1, 20.00,
    '2026-01-05 10:00+00'), (9002, 1, 2, 1, 20.00, '2026-01-06 10:00+00'), (9003, 1, 1, 1, 10.00,
    '2026-01-07 10:00+00');
"""

CONFIG = f"""
name: shop_orders
kind: orders_db
description: An order system with its own schema.
connection_env: {URL_ENV}
lookback_minutes: 0
tables:
  products:
    table: sales.kala
    primary_key: kala_id
    updated_at: taghir
    reconcile_deletes: true
    columns: {{kala_id: product_id, kod: sku, onvan: name, goruh: category, gheymat: unit_price}}
  customers:
    table: sales.moshtari
    primary_key: shomare
    updated_at: taghir
    soft_delete_column: hazf
    reconcile_deletes: true
    columns:
      shomare: customer_id
      nam: first_name
      famil: last_name
      pest: email
      hamrah: phone
      code_melli: national_id
      shahr: city
      sabt: created_at
  orders:
    table: sales.sefaresh
    primary_key: sef_no
    updated_at: taghir
    soft_delete_column: deleted_at
    columns: {{sef_no: order_id, moshtari_no: customer_id, zaman: ordered_at, vaziat: status, kanal: channel,
               mablagh: total_amount}}
  order_items:
    query: >-
      select sef_no * 1000 + radif as line_id, sef_no, kala_id, tedad, fi, tedad * fi as jam, taghir
      from sales.radif
    primary_key: line_id
    updated_at: taghir
    reconcile_deletes: true
    columns: {{line_id: order_item_id, sef_no: order_id, kala_id: product_id, tedad: quantity, fi: unit_price,
               jam: line_amount}}
"""

#: the orders-database staging models and the incremental facts they feed (with what those need upstream), and
#: dim_products, so that fct_order_items' relationships test to it runs
MODELS = ["--select", "stg_orders__customers", "+fct_orders", "+fct_order_items", "dim_products",
          "--indirect-selection", "cautious"]


def write_config(tmp_path: Path, text: str) -> Path:
    (tmp_path / "sources").mkdir(parents=True, exist_ok=True)
    (tmp_path / "sources" / "shop_orders.yml").write_text(text, encoding="utf-8")
    return tmp_path


@pytest.fixture()
def shop(scratch_db_factory, settings, tmp_path, monkeypatch):
    """(warehouse URL, source URL, settings pointing at that warehouse, config dir)."""
    wh_url, src_url = scratch_db_factory(), scratch_db_factory()
    apply_ddl(wh_url)
    with psycopg.connect(src_url, autocommit=True) as src:
        src.execute(SOURCE_DDL)
    monkeypatch.setenv(URL_ENV, src_url)
    wh_settings = dataclasses.replace(settings, external_warehouse_url=wh_url)
    return wh_url, src_url, wh_settings, write_config(tmp_path / "config", CONFIG)


def q(url: str, query: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()


def extract(shop) -> dict:
    _, _, wh_settings, config_dir = shop
    (cfg,) = load_registry(config_dir)
    return {(r.table, r.batch_id is not None and "reconciliation" in q(
        wh_settings.warehouse_url, f"select source_file from audit.load_batches where batch_id = '{r.batch_id}'"
    )[0][0]): r for r in extract_orders_db(cfg, settings=wh_settings) if r.batch_id}


def test_a_foreign_schema_loads_by_configuration(shop):
    wh, _, _, _ = shop
    results = extract(shop)
    assert {t: r.rows_loaded for (t, _), r in results.items()} == {
        "products": 2, "customers": 3, "orders": 3, "order_items": 4}
    assert q(wh, "select customer_id, first_name, last_name, email, phone, city, street, created_at::text, "
                 "updated_at::text, _deleted_at_source from raw.orders__customers where customer_id = 501") == [
        (501, "علی", "کریمی", "ali@example.com", "09121234001", "تهران", None, "2025-01-01 08:00:00+00",
         "2026-01-01 10:00:00+00", False)]
    assert q(wh, "select order_id, customer_id, status, channel, total_amount::text, currency "
                 "from raw.orders__orders order by order_id") == [
        (9001, 501, "paid", "web", "40.00", None), (9002, 502, "shipped", "store", "20.00", None),
        (9003, 503, "paid", "phone", "10.00", None)]
    assert q(wh, "select order_item_id, order_id, product_id, quantity, line_amount::text "
                 "from raw.orders__order_items order by 1") == [
        (9001001, 9001, 1, 2, "20.00"), (9001002, 9001, 2, 1, "20.00"), (9002001, 9002, 2, 1, "20.00"),
        (9003001, 9003, 1, 1, "10.00")]
    # The watermark follows the source's change-timestamp column (no time zone: read as UTC).
    assert dict(q(wh, "select table_name, high_watermark::text from audit.watermarks "
                      "where table_name not like '%:keys'")) == {
        "customers": "2026-01-03 10:00:00+00", "products": "2025-01-01 00:00:00+00",
        "orders": "2026-01-07 10:00:00+00", "order_items": "2026-01-07 10:00:00+00"}
    # A re-run finds nothing new and records no batch.
    before = q(wh, "select count(*) from audit.load_batches")
    assert extract(shop) == {}
    assert q(wh, "select count(*) from audit.load_batches") == before


def test_deletions_at_the_source_leave_staging(shop, tmp_path, settings):
    wh, src, _, _ = shop

    def dbt_build(url: str, tmp: Path, *select: str) -> None:
        dbt(on_database(settings, url), tmp, "build", "--vars", json.dumps(as_of_vars("2026-03-31")), *select)

    extract(shop)
    dbt_build(wh, tmp_path / "first", *MODELS)
    assert q(wh, "select count(*) from staging.stg_orders__customers") == [(3,)]
    assert q(wh, "select count(*) from staging.stg_orders__orders") == [(3,)]
    assert q(wh, "select count(*), count(distinct order_id) from marts.fct_order_items") == [(4, 3)]

    with psycopg.connect(src, autocommit=True) as conn:
        # soft delete (flag), soft delete (deleted_at), and rows removed outright
        conn.execute("update sales.moshtari set hazf = true, taghir = '2026-02-01 10:00' where shomare = 502")
        conn.execute("update sales.sefaresh set deleted_at = '2026-02-01 10:00+00', taghir = '2026-02-01 10:00+00'"
                     " where sef_no = 9002")
        conn.execute("delete from sales.radif where sef_no = 9003")
        conn.execute("delete from sales.sefaresh where sef_no = 9003")
        conn.execute("delete from sales.moshtari where shomare = 503")
        conn.execute("delete from sales.kala where kala_id = 2")  # a product its order lines still name
    results = extract(shop)
    assert results[("customers", False)].rows_deleted == 1       # the hazf flag
    assert results[("orders", False)].rows_deleted == 1          # deleted_at
    assert results[("customers", True)].rows_deleted == 1        # 503 gone: key reconciliation
    assert results[("order_items", True)].rows_deleted == 1      # line of 9003 gone from the query's result
    assert results[("products", True)].rows_deleted == 1         # product 2 gone: key reconciliation
    # Order 9003 is gone from the source but its entity has no reconciliation configured: still held.
    assert ("orders", True) not in results
    assert q(wh, "select customer_id, updated_at::text, email from raw.orders__customers "
                 "where _deleted_at_source order by 1") == [
        (502, "2026-02-01 10:00:00+00", "sara@example.org"),
        (503, q(wh, "select high_watermark::text from audit.watermarks where table_name = 'customers:keys'")[0][0],
         "mina@example.net")]
    ledger = q(wh, "select source_name, status, rows_read, rows_loaded from audit.load_batches "
                   "where source_file like '%key reconciliation%' order by 1")
    assert ledger == [("shop_orders.customers", "loaded", 1, 1), ("shop_orders.order_items", "loaded", 1, 1),
                      ("shop_orders.products", "loaded", 1, 1)]

    dbt_build(wh, tmp_path / "second", *MODELS)  # incremental: the deleted keys must leave; green (dbt() asserts)
    assert q(wh, "select orders_customer_id from staging.stg_orders__customers order by 1") == [(501,)]
    assert q(wh, "select order_id from staging.stg_orders__orders order by 1") == [(9001,), (9003,)]
    assert q(wh, "select order_item_id from staging.stg_orders__order_items order by 1") == [
        (9001001,), (9001002,), (9002001,)]
    assert q(wh, "select entity, record_key from staging.stg_orders__deletions order by 1, 2") == [
        ("customers", "502"), ("customers", "503"), ("order_items", "9003001"), ("orders", "9002"),
        ("products", "2")]
    # The deleted product stays, flagged, with its last attributes: its order line keeps it (and the relationships
    # test of fct_order_items.product_id to dim_products passed in that build)
    for table in ("staging.stg_orders__products", "marts.dim_products"):
        assert q(wh, f"select product_id, sku, category, is_deleted_at_source from {table} order by 1") == [
            (1, "SKU-1", "tools", False), (2, "SKU-2", "garden", True)], table
    assert q(wh, "select product_id, category from marts.fct_order_items where order_item_id = 'orders:9001002'") == [
        (2, "garden")]
    # The incremental facts no longer count them either (not only after the weekly full refresh).
    assert q(wh, "select order_id from marts.fct_orders order by 1") == [("orders:9001",), ("orders:9003",)]
    assert q(wh, "select order_item_id from marts.fct_order_items order by 1") == [
        ("orders:9001001",), ("orders:9001002",)]

    # A reconciliation finds nothing new the next time, and a key re-created at the source comes back.
    with psycopg.connect(src, autocommit=True) as conn:
        conn.execute("update sales.moshtari set hazf = false, taghir = '2026-03-01 10:00' where shomare = 502")
        # re-created after the reconciliation that marked it deleted: a change time after that reconciliation's
        conn.execute("insert into sales.kala values (2, 'SKU-2', 'Rake', 'Garden', 22.00, now())")
    results = extract(shop)
    assert set(results) == {("customers", False), ("products", False)}
    assert results[("customers", False)].rows_deleted == results[("products", False)].rows_deleted == 0
    dbt_build(wh, tmp_path / "third", *MODELS)
    assert q(wh, "select orders_customer_id from staging.stg_orders__customers order by 1") == [(501,), (502,)]
    assert q(wh, "select product_id, unit_price::text, is_deleted_at_source from marts.dim_products order by 1") == [
        (1, "10.00", False), (2, "22.00", False)]


@pytest.mark.parametrize(("edit", "setting", "says"), [
    (("pest: email", "peste: email"), "tables.customers.columns.peste",
     "column 'peste' does not exist in table 'sales.moshtari'"),
    (("table: sales.sefaresh", "table: sales.sefaresh_old"), "tables.orders.table",
     "table 'sales.sefaresh_old' does not exist"),
    (("updated_at: taghir\n    soft_delete_column: deleted_at",
      "updated_at: zaman_x\n    soft_delete_column: deleted_at"),
     "tables.orders.updated_at", "column 'zaman_x' does not exist"),
    (("from sales.radif", "from sales.radif_x"), "tables.order_items.query", "cannot be read"),
    (("updated_at: taghir\n    soft_delete_column: hazf", "updated_at: hazf\n    soft_delete_column: hazf"),
     "tables.customers.updated_at", "must be a timestamp"),
])
def test_a_wrong_name_fails_with_the_setting_and_loads_nothing(shop, edit, setting, says):
    wh, _, wh_settings, config_dir = shop
    assert CONFIG.count(edit[0]) == 1
    write_config(config_dir, CONFIG.replace(*edit))
    (cfg,) = load_registry(config_dir)
    with pytest.raises(SourceConfigError) as err:
        extract_orders_db(cfg, settings=wh_settings)
    message = str(err.value)
    assert f"shop_orders.yml: key '{setting}'" in message and says in message, message
    assert q(wh, "select count(*) from audit.load_batches") == [(0,)]
    assert q(wh, "select count(*) from raw.orders__customers") == [(0,)]


@pytest.mark.parametrize(("edit", "setting", "says"), [
    (("pest: email", "pest: e_mail"), "tables.customers.columns.pest", "'e_mail' is not a field of"),
    (("sef_no: order_id, moshtari_no", "sef_no: currency, moshtari_no"), "tables.orders.primary_key",
     "not the key field 'order_id'"),
    (("  order_items:\n", "  order_lines:\n"), "tables.order_lines", "unknown entity"),
    (("reconcile_deletes: true\n    columns: {{line_id", "reconcile_deletes: yes please\n    columns: {{line_id"),
     "tables.order_items.reconcile_deletes", "must be true or false"),
])
def test_a_mapping_onto_no_canonical_field_fails_when_read(tmp_path, edit, setting, says):
    text = CONFIG.replace("{{", "{").replace("}}", "}")
    old, new = edit[0].replace("{{", "{"), edit[1].replace("{{", "{")
    assert text.count(old) == 1
    with pytest.raises(SourceConfigError) as err:
        load_registry(write_config(tmp_path, text.replace(old, new)))
    assert f"shop_orders.yml: key '{setting}'" in str(err.value) and says in str(err.value), str(err.value)
