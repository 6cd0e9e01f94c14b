"""The dbt project, built for real against PostgreSQL on a handful of hand-written raw rows.

A fresh database gets the warehouse DDL, raw rows for four people spread over every source (with the
messiness staging must undo: Arabic letter variants, Persian digits, odd phone formats, stale record
versions), and identity.record_clusters rows standing in for the identity task. Then `dbt build` runs
and the tests assert what the models mean: one customer per person, no direct PII in marts, revenue
that adds up, survivorship, consent, knowledge, and that the incremental facts follow re-attribution.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from dbt_runs import as_of_vars, dbt_build_all, on_database
from pipeline_world import scratch_database

from crm_knowledge.settings import PROJECT_ROOT

pytestmark = pytest.mark.warehouse

DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"

AS_OF = "2026-03-31"

ALI, SARA, MINA, REZA = "C000000001", "C000000002", "C000000003", "C000000004"

# Direct identifiers of the people below, in every spelling they arrive in: none may reach marts.
PII_VALUES = [
    "Karimi", "كريمي", "کریمی", "Ahmadi", "احمدی", "Rezaei",
    "ali.karimi@example.com", "sara@example.org", "reza.r@example.net",
    "09121234001", "+989121234001", "9121234001", "09350000002", "+989350000002", "+989121110004",
    "0499370899", "۰۴۹۹۳۷۰۸۹۹", "0013542419",
    "Vali-Asr", "ولیعصر", "1411713111", "7134567890",
]

META = "'b1', 'test', %s, %s, md5(random()::text)"


def _orders_customer(cur, customer_id, first, last, email, phone, nid, birth, gender, street, city, province,
                     postcode, created, updated, loaded, row):
    cur.execute(
        "insert into raw.orders__customers (customer_id, first_name, last_name, email, phone, national_id,"
        " birth_date, gender, street, city, province, postcode, company, business_type, created_at, updated_at,"
        f" _batch_id, _source_file, _loaded_at, _row_number, _record_hash) values"
        f" (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, null, null, %s, %s, {META})",
        (customer_id, first, last, email, phone, nid, birth, gender, street, city, province, postcode, created,
         updated, loaded, row),
    )


def _form(cur, sid, form_type, submitted, loaded, row, *, first=None, last=None, email=None, phone=None,
          nid=None, customer_ref=None, order_ref=None, message=None, rating=None, interest=None,
          marketing=None, profiling=None):
    cur.execute(
        "insert into raw.form_submissions (submission_id, form_type, submitted_at, customer_ref, order_ref,"
        " product_interest, message, rating, consent_marketing, consent_profiling, first_name, last_name, email,"
        f" phone, national_id, _batch_id, _source_file, _loaded_at, _row_number, _record_hash) values"
        f" (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, {META})",
        (sid, form_type, submitted, customer_ref, order_ref, interest, message, rating, marketing, profiling,
         first, last, email, phone, nid, loaded, row),
    )


def _order(cur, order_id, customer_id, ordered, status, channel, amount, updated, loaded, row):
    cur.execute(
        "insert into raw.orders__orders (order_id, customer_id, ordered_at, status, channel, total_amount,"
        f" currency, updated_at, _batch_id, _source_file, _loaded_at, _row_number, _record_hash) values"
        f" (%s, %s, %s, %s, %s, %s, 'IRR', %s, {META})",
        (order_id, customer_id, ordered, status, channel, amount, updated, loaded, row),
    )


def _cluster(cur, source_system, record_id, customer_id, rule, resolved="2026-03-31 01:00+00"):
    cur.execute(
        "insert into identity.record_clusters (source_system, source_record_id, customer_id, match_rule,"
        " match_score, resolved_at) values (%s, %s, %s, %s, null, %s)"
        " on conflict (source_system, source_record_id) do update"
        " set customer_id = excluded.customer_id, match_rule = excluded.match_rule,"
        " resolved_at = excluded.resolved_at",
        (source_system, record_id, customer_id, rule, resolved),
    )


def seed_raw(url: str) -> None:
    import psycopg

    t0 = "2026-03-30 22:00+00"
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        # Staging reads only rows of batches the ledger has as loaded.
        cur.execute("insert into audit.load_batches (batch_id, source_name, source_kind, status)"
                    " values ('b1', 'test', 'test', 'loaded') on conflict do nothing")
        # Ali: orders account (an old version in Karaj, the latest in Tehran, Arabic letter variants),
        # a registration and a complaint form, a bank record (Persian digits), a contact-centre call.
        _orders_customer(cur, 1, "علي", "كريمي", "Ali.Karimi@Example.com", "0912-123-4001", "0499370899",
                         "1990-05-01", "M", "Vali-Asr 12", "Karaj", "Alborz", "7134567890",
                         "2024-01-10 08:00+00", "2024-01-10 08:00+00", "2026-03-01 00:00+00", 1)
        _orders_customer(cur, 1, "علي", "كريمي", "Ali.Karimi@Example.com", "0912-123-4001", "0499370899",
                         "1990-05-01", "M", "ولیعصر ۱۲", "تهران", "تهران", "1411713111",
                         "2024-01-10 08:00+00", "2026-02-01 08:00+00", t0, 1)
        _orders_customer(cur, 2, "Sara", "Ahmadi", "sara@example.org", "0935 000 0002", None, "1995-07-07", "f",
                         None, "Shiraz", "Fars", None, "2026-02-01 08:00+00", "2026-02-01 08:00+00", t0, 2)
        _orders_customer(cur, 3, "Mina", None, None, None, None, None, "f", None, "Tabriz", None, None,
                         "2025-06-01 08:00+00", "2025-06-01 08:00+00", t0, 3)
        _orders_customer(cur, 4, "Reza", "Rezaei", "reza.r@example.net", "09121110004", None, None, "m", None,
                         "Rasht", None, None, "2025-01-01 08:00+00", "2025-01-01 08:00+00", t0, 4)

        _form(cur, "F1", "registration", "2026-01-10 10:00+00", t0, 1, first="Ali", last="Karimi",
              email=" ali.karimi@example.com ", phone="+98 912 123 4001", customer_ref="1",
              marketing=True, profiling=True)
        _form(cur, "F2", "complaint", "2026-02-01 09:00+00", t0, 2, email="ali.karimi@example.com",
              customer_ref="1", order_ref="13", message="Order is late! Call me on 09121234001 please", rating=1)
        _form(cur, "F3", "newsletter_consent", "2026-03-01 09:00+00", t0, 3, email="SARA@example.org",
              marketing=False)
        _form(cur, "F4", "feedback", "2026-03-02 09:00+00", t0, 4, email="sara@example.org",
              message="Lovely shop", rating=5, interest="Garden tools")
        _form(cur, "F5", "erasure_request", "2026-03-05 09:00+00", t0, 5, email="reza.r@example.net",
              first="Reza", last="Rezaei")

        cur.execute(
            "insert into raw.sibling_customers (unit, source_record_id, first_name, last_name, national_id,"
            " phone, city, _batch_id, _source_file, _loaded_at, _row_number, _record_hash) values"
            f" ('bank_fa', 'B100', 'علی', 'کریمی', '۰۴۹۹۳۷۰۸۹۹', '۰۹۱۲۱۲۳۴۰۰۱', 'تهران', {META})",
            (t0, 1),
        )
        cur.execute(
            "insert into raw.contact_interactions (interaction_id, channel, occurred_at, customer_name, email,"
            " phone, customer_ref, topic, outcome, notes, agent_id, _batch_id, _source_file, _loaded_at,"
            f" _row_number, _record_hash) values"
            f" ('I1', 'phone', '2026-02-02 10:00+00', 'Ali Karimi', null, '0912 123 4001', '1', 'complaint',"
            f"  'follow_up', 'Angry about late order, wrote from ali.karimi@example.com', 'A7', {META}),"
            f" ('I2', 'web_chat', '2026-02-03 10:00+00', null, null, null, null, 'product_question',"
            f"  'resolved', 'asked about drills', 'A8', {META})",
            (t0, 1, t0, 2),
        )

        cur.execute(
            "insert into raw.orders__products (product_id, sku, name, category, unit_price, updated_at,"
            f" _batch_id, _source_file, _loaded_at, _row_number, _record_hash) values"
            f" (100, 'SKU-A', 'Drill', 'tools', 10.00, '2024-01-01+00', {META}),"
            f" (101, 'sku-b', 'Rake', 'garden', 20.00, '2024-01-01+00', {META})",
            (t0, 1, t0, 2),
        )
        _order(cur, 10, 1, "2026-01-05 10:00+00", "paid", "web", 100.00, "2026-01-05 10:00+00", t0, 1)
        _order(cur, 11, 1, "2026-01-20 10:00+00", "cancelled", "web", 50.00, "2026-01-21 10:00+00", t0, 2)
        _order(cur, 12, 2, "2026-02-10 10:00+00", "placed", "store", 180.00, "2026-02-10 10:00+00", t0, 3)
        _order(cur, 12, 2, "2026-02-10 10:00+00", "shipped", "store", 200.00, "2026-02-11 10:00+00", t0, 4)
        _order(cur, 13, 1, "2026-03-01 10:00+00", "paid", "web", 300.00, "2026-03-01 10:00+00", t0, 5)
        _order(cur, 14, 3, "2025-06-02 10:00+00", "paid", "phone", 10.00, "2025-06-02 10:00+00", t0, 6)
        cur.execute(
            "insert into raw.orders__order_items (order_item_id, order_id, product_id, quantity, unit_price,"
            f" line_amount, updated_at, _batch_id, _source_file, _loaded_at, _row_number, _record_hash) values"
            f" (1000, 10, 100, 2, 10.00, 20.00, '2026-01-05 10:00+00', {META}),"
            f" (1001, 10, 101, 4, 20.00, 80.00, '2026-01-05 10:00+00', {META}),"
            f" (1002, 13, 100, 30, 10.00, 300.00, '2026-03-01 10:00+00', {META})",
            (t0, 1, t0, 2, t0, 3),
        )
        cur.execute(
            "insert into raw.order_exports (shop, order_id, customer_source_id, order_date, quantity, amount,"
            f" items, _batch_id, _source_file, _loaded_at, _row_number, _record_hash) values"
            f" ('kiosk', 'K1', '2', '2026-03-10', 3, 70.00, 'SKU-A:1|SKU-B:2', {META})",
            (t0, 1),
        )

        # What the identity task would write: one customer per person; I2 has no identifier.
        for system, record, customer, rule in [
            ("orders", "1", ALI, "singleton"), ("forms", "F1", ALI, "customer_ref"),
            ("forms", "F2", ALI, "customer_ref"), ("sibling:bank_fa", "B100", ALI, "national_id"),
            ("contacts", "I1", ALI, "customer_ref"),
            ("orders", "2", SARA, "singleton"), ("forms", "F3", SARA, "email"), ("forms", "F4", SARA, "email"),
            ("orders", "3", MINA, "singleton"),
            ("orders", "4", REZA, "singleton"), ("forms", "F5", REZA, "email"),
        ]:
            _cluster(cur, system, record, customer, rule)
        cur.execute("insert into identity.unresolved values ('contacts', 'I2', 'no usable identifier', %s)",
                    ("2026-02-03 10:00+00",))


def dbt_build(settings, url: str, tmp_path: Path, *extra: str) -> None:
    """`dbt build` of the whole project (every stage at once: no identity or scoring step runs between them
    here, their output is seeded) on the database at ``url``, as of AS_OF."""
    dbt_build_all(on_database(settings, url), tmp_path, as_of_vars(AS_OF), *extra)


@pytest.fixture(scope="module")
def built(tmp_path_factory, warehouse, settings):
    """A scratch database with the raw rows above and the dbt project built on it (shared by the module)."""
    from crm_knowledge.warehouse.bootstrap import apply_ddl

    tmp = tmp_path_factory.mktemp("dbt")
    with scratch_database(settings, "t_dbt") as url:
        apply_ddl(url)
        seed_raw(url)
        dbt_build(settings, url, tmp)
        yield url, tmp


def q(url: str, query: str, params=None) -> list[tuple]:
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


def test_one_customer_per_person(built):
    url, _ = built
    assert q(url, "select customer_id from marts.dim_customers order by 1") == [(ALI,), (SARA,), (MINA,), (REZA,)]
    assert q(url, "select count(*), count(distinct customer_id) from marts.customer_identity_map") == [(11, 4)]
    ali = q(url, "select source_systems, sibling_units, source_record_count from marts.dim_customers"
                 " where customer_id = %s", (ALI,))
    assert ali == [(["contacts", "forms", "orders", "sibling:bank_fa"], ["bank_fa"], 5)]
    # the unresolved contact belongs to nobody
    assert q(url, "select customer_id from marts.fct_interactions where interaction_id = 'I2'") == [(None,)]
    assert q(url, "select count(*) from marts.customer_360") == [(4,)]


def test_no_direct_pii_in_marts(built):
    url, _ = built
    tables = [r[0] for r in q(url, "select table_name from information_schema.tables where table_schema = 'marts'")]
    assert {"dim_customers", "customer_360", "customer_knowledge", "fct_orders"} <= set(tables)
    for table in tables:
        for value in PII_VALUES:
            hits = q(url, f'select count(*) from marts."{table}" t where t::text ilike %s', (f"%{value}%",))
            assert hits == [(0,)], f"{value!r} found in marts.{table}"
    forbidden = {"first_name", "last_name", "full_name", "email", "phone", "phone_e164", "national_id", "street",
                 "postcode", "birth_date", "notes", "message"}
    cols = q(url, "select table_name, column_name from information_schema.columns where table_schema = 'marts'")
    assert [c for c in cols if c[1] in forbidden] == []
    # ... while the pii vault does hold them
    assert q(url, "select count(*) from pii.pii_customer_profiles where email = 'ali.karimi@example.com'") == [(1,)]


def test_revenue_totals(built):
    url, _ = built
    assert q(url, "select count(*), sum(total_amount), sum(total_amount) filter (where is_revenue_order)"
                  " from marts.fct_orders") == [(6, 730, 680)]
    per_customer = dict(q(url, "select customer_id, total_revenue from marts.dim_customers"))
    assert per_customer == {ALI: 400, SARA: 270, MINA: 10, REZA: 0}
    assert q(url, "select order_count, avg_order_value from marts.dim_customers where customer_id = %s",
             (ALI,)) == [(2, 200)]
    # the latest version of order 12 counts; the kiosk export is attributed through the orders account
    assert q(url, "select status, total_amount from marts.fct_orders where order_id = 'orders:12'") == [
        ("shipped", 200)]
    assert q(url, "select customer_id, channel from marts.fct_orders where order_id = 'export:kiosk:K1'") == [
        (SARA, "store")]
    # exported lines share the order amount in proportion to list value (1 x 10 : 2 x 20)
    assert q(url, "select sku, line_amount from marts.fct_order_items where order_id = 'export:kiosk:K1'"
                  " order by sku") == [("SKU-A", 14), ("SKU-B", 56)]


def test_golden_record_and_normalisation(built):
    url, _ = built
    profile = q(url, "select first_name, last_name, email, phone, national_id, street, postcode, birth_date::text"
                     " from pii.pii_customer_profiles where customer_id = %s", (ALI,))
    # orders (most trusted) wins over forms and the bank for names; its latest version for the street
    assert profile == [("علی", "کریمی", "ali.karimi@example.com", "+989121234001", "0499370899", "ولیعصر 12",
                        "1411713111", "1990-05-01")]
    dim = q(url, "select gender, city, province, birth_year, age_band from marts.dim_customers"
                 " where customer_id = %s", (ALI,))
    assert dim == [("m", "تهران", "تهران", 1990, "35-44")]
    # one canonical city whatever the script: Sara's orders account says Shiraz / Fars in Latin letters
    sara = q(url, "select city, city_name_en, province, province_name_en from marts.dim_customers"
                  " where customer_id = %s", (SARA,))
    assert sara == [("شیراز", "Shiraz", "فارس", "Fars")]
    candidates = q(url, "select email_norm, phone_e164, national_id_valid from intermediate.int_identity_candidates"
                        " where source_system = 'sibling:bank_fa'")
    assert candidates == [(None, "+989121234001", "0499370899")]


def test_consent_forgetting_and_knowledge(built):
    url, _ = built
    consent = dict((r[0], r[1:]) for r in q(
        url, "select customer_id, has_marketing_consent, has_profiling_opt_out, is_forgotten"
             " from marts.dim_customers"))
    assert consent[ALI] == (True, False, False)
    assert consent[SARA] == (False, False, False)
    assert consent[REZA] == (False, True, True)  # an erasure request withdraws consent and forgets
    assert q(url, "select count(*) from pii.pii_customer_profiles where customer_id = %s", (REZA,)) == [(0,)]
    assert q(url, "select count(*) from marts.customer_knowledge where customer_id = %s", (REZA,)) == [(0,)]

    kinds = q(url, "select flow, kind, source from marts.customer_knowledge where customer_id = %s"
                   " order by observed_at, kind", (ALI,))
    assert ("from", "complaint", "forms") in kinds and ("from", "complaint", "contacts") in kinds
    assert ("about", "purchase_pattern", "orders") in kinds and ("about", "preference", "orders") in kinds
    complaint = q(url, "select content from marts.customer_knowledge where source_record_id = 'F2'")[0][0]
    assert "[number]" in complaint and "(rating 1/5)" in complaint
    assert q(url, "select content from marts.customer_knowledge where customer_id = %s and kind = 'purchase_pattern'",
             (ALI,)) == [("favourite category: tools (32 items in 2 orders)",)]

    c360 = q(url, "select relationship_stage, open_complaints, recency_days, jsonb_array_length(latest_knowledge_items)"
                  " from marts.customer_360 where customer_id = %s", (ALI,))
    assert c360 == [("developing", 2, 30, 4)]
    assert q(url, "select relationship_stage from marts.customer_360 where customer_id = %s", (SARA,)) == [("new",)]


def test_incremental_facts_follow_new_versions_and_reattribution(built, settings):
    url, tmp = built
    import psycopg

    with psycopg.connect(url) as conn, conn.cursor() as cur:
        # order 13 is returned; identity resolution merges Mina's account into Sara
        _order(cur, 13, 1, "2026-03-01 10:00+00", "returned", "web", 300.00, "2026-03-20 10:00+00",
               "2026-03-31 02:00+00", 1)
        _cluster(cur, "orders", "3", SARA, "probabilistic", resolved="2026-03-31 03:00+00")
        cur.execute("insert into identity.customer_id_merges values (%s, %s, '2026-03-31 03:00+00')", (MINA, SARA))
    dbt_build(settings, url, tmp)
    assert q(url, "select status, is_revenue_order from marts.fct_orders where order_id = 'orders:13'") == [
        ("returned", False)]
    assert q(url, "select customer_id from marts.fct_orders where order_id = 'orders:14'") == [(SARA,)]
    assert q(url, "select customer_id from marts.fct_order_items where order_id = 'orders:13' limit 1") == [(ALI,)]
    per_customer = dict(q(url, "select customer_id, total_revenue from marts.dim_customers"))
    assert per_customer == {ALI: 100, SARA: 280, REZA: 0}


def _yml_descriptions(model_yml: Path) -> tuple[str, dict[str, str]]:
    import yaml

    (model,) = yaml.safe_load(model_yml.read_text(encoding="utf-8"))["models"]
    return model["description"], {c["name"]: c["description"] for c in model["columns"]}


def test_descriptions_are_table_and_column_comments_for_bi_tools(built):
    url, _ = built
    for schema, model in (("marts", "dim_customers"), ("marts", "fct_orders"), ("pii", "pii_customer_profiles")):
        table_doc, column_docs = _yml_descriptions(DBT_PROJECT_DIR / "models" / schema / f"{model}.yml")
        relation = f"{schema}.{model}"
        assert q(url, "select obj_description(%s::regclass, 'pg_class')", (relation,)) == [(table_doc,)]
        comments = dict(q(url, "select a.attname, col_description(a.attrelid, a.attnum) from pg_attribute a "
                               "where a.attrelid = %s::regclass and a.attnum > 0 and not a.attisdropped",
                          (relation,)))
        assert comments == column_docs, relation


def test_exposures_declare_what_the_marts_feed(built):
    _, tmp = built
    manifest = json.loads((tmp / "target" / "manifest.json").read_text(encoding="utf-8"))
    exposures = {e["name"]: e for e in manifest["exposures"].values()}
    assert {"customer_360_dashboard", "sales_and_products_dashboard", "data_quality_audit_report",
            "segment_activation"} <= set(exposures)
    assert exposures["customer_360_dashboard"]["type"] == "dashboard"
    assert "model.crm_knowledge.customer_360" in exposures["customer_360_dashboard"]["depends_on"]["nodes"]
    for exposure in exposures.values():
        assert exposure["owner"]["email"] and exposure["description"]
        # BI uses read marts only (what a ckp_bi_reader login can see) or the audit tables (ckp_auditor)
        for node in exposure["depends_on"]["nodes"]:
            schema = (manifest["nodes"].get(node) or manifest["sources"][node])["schema"]
            assert schema in ("marts", "audit"), (exposure["name"], node)


def _test_status(built, settings, model: str, test: str, since: str) -> str:
    """The status of the dbt test whose id contains `test` when `dbt test` runs on `model` with the run's start
    `since` ('' : the weekly run), handed to dbt as the DAGs' dbt tasks hand it: in the environment (one parse
    shared by every call of a module, where a changed `--vars` would make dbt parse the project again)."""
    from crm_knowledge.dbt_stages import vars_and_env
    from crm_knowledge.runner import dbt_process_env, run_dbt

    url, tmp = built
    local = on_database(settings, url)
    _, run_env = vars_and_env({"as_of_date": AS_OF, "dbt_tests_since": since})
    result = run_dbt(["test", "--select", model], {**dbt_process_env(local), **run_env}, local,
                     target_path=tmp / "target_tests", log_path=tmp / "logs", check=False)
    statuses = {r["unique_id"]: r["status"] for r in result.run_results() if test in r["unique_id"]}
    assert len(statuses) == 1, result.failure_message()
    return next(iter(statuses.values()))


@contextmanager
def _affected_lists_emptied(url: str, *lists: str) -> Iterator[None]:
    """The daily lists of affected customers (`lists`) emptied for the block, where a test lists whom it needs,
    and restored after it."""
    import psycopg

    with psycopg.connect(url) as conn:
        listed = {t: conn.execute(f"select customer_id, changes from {t}").fetchall() for t in lists}
        for t in lists:
            conn.execute(f"delete from {t}")
    try:
        yield
    finally:
        with psycopg.connect(url) as conn:
            for t in lists:
                conn.execute(f"delete from {t}")
                with conn.cursor() as cur:
                    cur.executemany(f"insert into {t} (customer_id, changes) values (%s, %s)", listed[t])


def _checked_weekly_but_not_for_orders(status_test, url: str, customer_id: str, now: str) -> None:
    """The opening of the customer-level scope tests, with a bad row of `customer_id` planted and no customer
    listed: the daily test passes (the row is an old one), the weekly one fails (every row), and the daily one
    still passes once the customer is listed for its orders (the models these tests read do not follow them)."""
    import psycopg

    assert status_test(now) == "pass"
    assert status_test("") == "fail"
    with psycopg.connect(url) as conn:
        conn.execute("insert into intermediate.int_customers_affected (customer_id, changes) values (%s, %s)",
                     (customer_id, "orders"))
    assert status_test(now) == "pass"


def test_fact_tests_read_only_new_rows_on_a_daily_run(built, settings):
    """The facts' tests configured with __ckp_tests_since__ read the rows written since `dbt_tests_since` on a
    daily run and the whole table without it (macros/tests_on_new_rows.sql): an old bad row fails the weekly
    test only; the same row re-staged today fails the daily one too."""
    import psycopg

    url, _ = built

    def status_test(since: str) -> str:
        return _test_status(built, settings, "fct_orders", "accepted_values_fct_orders_status", since)

    with psycopg.connect(url) as conn:
        order_id, status, staged = conn.execute("select order_id, status, staged_at from marts.fct_orders"
                                                " order by order_id limit 1").fetchone()
        now = conn.execute("select now()").fetchone()[0].isoformat()
        conn.execute("update marts.fct_orders set status = 'bogus' where order_id = %s", (order_id,))
    try:
        assert status_test(now) == "pass"   # daily: the bad row was written before the run began
        assert status_test("") == "fail"    # weekly: every row
        with psycopg.connect(url) as conn:
            conn.execute("update marts.fct_orders set staged_at = now() where order_id = %s", (order_id,))
        assert status_test(now) == "fail"   # daily: written during the run, so checked
    finally:
        with psycopg.connect(url) as conn:
            conn.execute("update marts.fct_orders set status = %s, staged_at = %s where order_id = %s",
                         (status, staged, order_id))


def test_customer_tests_read_only_the_recomputed_customers_on_a_daily_run(built, settings):
    """A customer-level model's tests configured with __ckp_recomputed_customers__ read, on a daily run, only the
    rows of the customers the model recomputed (its list, for the changes it follows) and the whole table
    without the var (macros/tests_on_new_rows.sql): a bad row of a customer the day did not recompute fails
    the weekly test only; listed for a change the model does not follow (orders), still only the weekly one;
    listed for a record change, the daily one too."""
    import psycopg

    url, _ = built

    def status_test(since: str) -> str:
        return _test_status(built, settings, "int_customer_attributes_ranked",
                            "accepted_values_int_customer_attributes_ranked_attribute_name", since)

    with psycopg.connect(url) as conn:
        customer_id, attribute_name, record_id = conn.execute(
            "select customer_id, attribute_name, source_record_id from intermediate.int_customer_attributes_ranked"
            " order by customer_id, attribute_name limit 1").fetchone()
        now = conn.execute("select now()").fetchone()[0].isoformat()
    with _affected_lists_emptied(url, "intermediate.int_customers_affected"):
        with psycopg.connect(url) as conn:
            conn.execute("update intermediate.int_customer_attributes_ranked set attribute_name = 'bogus' "
                         "where customer_id = %s and attribute_name = %s and source_record_id = %s",
                         (customer_id, attribute_name, record_id))
        try:
            _checked_weekly_but_not_for_orders(status_test, url, customer_id, now)
            with psycopg.connect(url) as conn:
                conn.execute("update intermediate.int_customers_affected set changes = 'identity,orders'")
            assert status_test(now) == "fail"   # listed for its records: recomputed, so checked
        finally:
            with psycopg.connect(url) as conn:
                conn.execute("update intermediate.int_customer_attributes_ranked set attribute_name = %s "
                             "where customer_id = %s and attribute_name = 'bogus' and source_record_id = %s",
                             (attribute_name, customer_id, record_id))


def test_a_relationship_between_customer_models_reads_the_customers_either_recomputed(built, settings):
    """pii_source_identities -> dim_customers on a daily run reads the rows of the customers recomputed in the
    vault (its list, for record changes and forms) or in dim_customers (int_customers_described's list, for
    activity changes): a parent row gone for a customer neither recomputed fails the weekly test only; gone for
    one the parent recomputed (a merged-away or erased id), or whose vault rows were rewritten, the daily one
    too (macros/tests_on_new_rows.sql)."""
    import psycopg

    url, _ = built

    def status_test(since: str) -> str:
        return _test_status(built, settings, "pii_source_identities",
                            "relationships_pii_source_identities_customer_id", since)

    with psycopg.connect(url) as conn:
        customer_id = conn.execute("select customer_id from pii.pii_source_identities order by customer_id limit 1"
                                   ).fetchone()[0]
        now = conn.execute("select now()").fetchone()[0].isoformat()
    with _affected_lists_emptied(url, "intermediate.int_customers_affected",
                                 "intermediate.int_customers_affected_as_of"):
        # the golden record's row gone (moved aside): the vault's rows of this customer point at nothing
        with psycopg.connect(url) as conn:
            conn.execute("update intermediate.int_customers_described set customer_id = customer_id || '-aside' "
                         "where customer_id = %s", (customer_id,))
        try:
            _checked_weekly_but_not_for_orders(status_test, url, customer_id, now)
            with psycopg.connect(url) as conn:
                conn.execute("insert into intermediate.int_customers_affected_as_of (customer_id, changes) "
                             "values (%s, %s)", (customer_id, "merged_away"))
            assert status_test(now) == "fail"   # the parent recomputed them (and left no row): checked
            with psycopg.connect(url) as conn:
                conn.execute("delete from intermediate.int_customers_affected_as_of")
                conn.execute("update intermediate.int_customers_affected set changes = 'identity'")
            assert status_test(now) == "fail"   # the vault recomputed them: checked
        finally:
            with psycopg.connect(url) as conn:
                conn.execute("update intermediate.int_customers_described set customer_id = %s "
                             "where customer_id = %s || '-aside'", (customer_id, customer_id))
