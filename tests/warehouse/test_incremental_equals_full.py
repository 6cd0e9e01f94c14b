"""An incremental daily run after a full run gives the same staging and marts as a full refresh.

The stages run directly (no Airflow), as the warehouse DAG runs them: ingest every source, dbt staging
(+ the matcher's input), identity resolution, dbt marts. On a small demo: a full first run, then one
generated day (new customers, changed customer records, orders moving on, new forms / contacts / kiosk
files) plus the cases incremental logic gets wrong first:

* late-arriving order versions, loaded today with an updated_at older than the day: one is newer than
  the version staged (it must win), one is older (it must lose);
* a batch the quality gate held at the first run and released today (held -> loaded): its rows must
  appear, although they were loaded (`_loaded_at`) before everything already staged;
* a merge: a web form of the day carries customer A's national id and customer B's e-mail (under B's name),
  so identity joins A and B into one customer and retires one of the two ids (the customer-level marts
  must recompute the surviving id and drop every row of the retired one);
* an erasure: a third customer is forgotten (privacy.erasure.erase, as `ckp erase` does) between the
  day's ingestion and its warehouse run;
* the as-of date moves: the first run is as of the day before (FIRST_AS_OF), the day's run as of the day. A
  customer whose only record is a web form of exactly a year before the first run's as-of date has nothing new
  on the day, yet the day makes them `lost` (a stage computed at read time), and a customer's revenue order
  dated exactly one decline window before the day moves from the recent to the prior window (a stored count:
  int_customers_affected_as_of must list them). Both are planted in the raw layer and taken in by a second
  run of the first day, so the day itself brings them nothing.

The first day is scored (scoring.run.score_all: the models are fitted), so customer_segments and
customer_360 carry scores. The day's scoring runs as the scoring DAG runs it (score_day: the fitted models
applied to the customers the day changed and to those whose recency moved them across an RFM edge), and
must give every customer it covers what a full re-score with the same fitted models gives.
Then every base table of `staging`, `intermediate`, `marts`, `pii` (the vault is rebuilt by every run),
`snapshots` (the dbt snapshots of the golden record and the relationship stage) and `scoring` is
snapshotted row for row (SNAPSHOT_SCHEMAS), `dbt build --full-refresh` and a full identity resolution run on
the same data, and the snapshots must be identical, except the columns that record when the pipeline ran
(PIPELINE_TIME_COLUMNS) and the model scores, compared to a tolerance (MODEL_SCORE_COLUMNS). Identity: the full
resolution must give the same clusters as the incremental one (same customer_id for every record, no merge, no
new id).

Everything runs in its own databases and CKP_HOME (WAREHOUSE_URL / CKP_ORDERS_URL point at scratch
databases of the test server), so it neither sees nor disturbs the other warehouse tests' data.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from dbt_runs import build_stages
from psycopg import sql

from crm_knowledge import dbt_stages

pytestmark = pytest.mark.warehouse

log = logging.getLogger(__name__)

SIZE = 300
SEED = 5
DAY = dt.date(2026, 11, 21)  # the day after the demo's as-of date
AS_OF = DAY.isoformat()
FIRST_AS_OF = (DAY - dt.timedelta(days=1)).isoformat()  # the first run's as-of date: the demo's
# The whole test runs within minutes: with the default 24-hour look-back the day's run would re-read every
# first-run batch. Zero keeps the day's run as selective as a real one a day later.
DBT_VARS = {"incremental_lookback_hours": 0}
DECLINE_WINDOW_DAYS = 180  # dbt var relationship_decline_window_days
LOST_AFTER_DAYS = 365  # dbt var relationship_lost_after_days

# What is compared: every base table of these schemas (the dbt layers, the pii vault, the dbt snapshots, and
# every table scoring writes). The incremental and the full run must agree on each, row for row.
SNAPSHOT_SCHEMAS = ("staging", "intermediate", "marts", "pii", "snapshots", "scoring")

# Tables that are the run's own bookkeeping, not data: left out of the comparison, each with its reason.
RUN_BOOKKEEPING_TABLES = {
    # the customers a daily run changed (the models that follow it recompute them); a full run lists everyone
    "intermediate.int_customers_affected",
    "intermediate.int_customers_affected_as_of",
    "intermediate.int_customers_affected_scored",
    # the as-of date of the build and of the build before (a full refresh of the same day has the day before it)
    "intermediate.int_as_of_date",
    # identity's kept state for daily runs: one row with the config fingerprint and when resolution last read
    # and wrote (identity/daily.py); its timestamps are the runs' own clocks
    "intermediate.identity_prepared_state",
}

# Columns that say when the pipeline ran, not what the data is: the only ones left out of the comparison.
PIPELINE_TIME_COLUMNS = {
    "staged_at",              # staging / facts: when staging (re-)wrote the row
    "customer_resolved_at",   # facts: when identity resolution last decided about the record
    "resolved_at",            # customer_identity_map: the same, from identity.record_clusters
    "scored_at",              # scoring.customer_scores: when the scoring task wrote the row
}

# The matcher's evidence for a record's link: an incremental run carries the score of a link made earlier,
# a full run re-scores it with the model re-trained on today's data, so the score may move a little while
# the clusters stay the same (identity/resolve.py). Compared with a tolerance, not exactly.
MODEL_SCORE_COLUMNS = {"match_score",
                       # scores: the same models fitted on the same marts; floats compared to the tolerance
                       "churn_probability", "p_alive", "expected_purchases", "predicted_clv"}
SCORE_TOLERANCE = 0.01

RELEASED_SOURCE = "sibling_travel"  # its first batch is held by the "gate" at the first run


# --- the isolated warehouse -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def env(warehouse, settings, tmp_path_factory) -> Iterator[dict]:
    """Scratch warehouse + orders databases and a scratch CKP_HOME; the settings of every stage point there."""
    from crm_knowledge.settings import get_settings
    from crm_knowledge.warehouse.bootstrap import apply_ddl

    admin = settings.server_url("postgres")
    suffix = uuid.uuid4().hex[:10]
    names = {"warehouse": f"t_incr_wh_{suffix}", "orders": f"t_incr_orders_{suffix}"}
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in names.values():
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    home = tmp_path_factory.mktemp("incremental_home")
    mp = pytest.MonkeyPatch()
    mp.setenv("WAREHOUSE_URL", settings.server_url(names["warehouse"]))
    mp.setenv("CKP_ORDERS_URL", settings.server_url(names["orders"]))
    mp.setenv("CKP_HOME", str(home))
    mp.delenv("CKP_LANDING_DIR", raising=False)
    try:
        s = get_settings()
        apply_ddl(s.warehouse_url)
        yield {"settings": s, "url": s.warehouse_url, "tmp": tmp_path_factory.mktemp("incremental_dbt")}
    finally:
        mp.undo()
        with psycopg.connect(admin, autocommit=True) as conn:
            for name in names.values():
                conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


def q(url: str, query: str, params=None) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


# --- the stages -----------------------------------------------------------------------------------------

def ingest_all() -> dict[str, int]:
    """Every registered source, as the ingestion DAGs do: rows loaded per source."""
    from crm_knowledge.ingest.registry import load_registry
    from crm_knowledge.ingest.tasks import ingest_file_source, ingest_orders_database, prepare_warehouse

    prepare_warehouse()
    loaded = {}
    for source in load_registry():
        summary = (ingest_orders_database(source.name) if source.kind == "orders_db"
                   else ingest_file_source(source.name))
        loaded[source.name] = summary["rows_loaded"]
    return loaded


def warehouse_run(env: dict, *, identity_mode: str, full_refresh: bool, as_of: str = AS_OF,
                  with_tests: bool = False) -> dict:
    """dbt staging -> identity resolution -> dbt marts and the post-scoring models (on the scores there are),
    as of `as_of`; returns the identity stats. `with_tests`: dbt's data and unit tests too (the day's run,
    whose tests read only the day's rows; the runs that set the stage or are compared against are the tables
    alone: their tests are the full run's, which every pipeline test runs)."""
    from crm_knowledge.identity.store import run as resolve_identities
    from crm_knowledge.run_mode import FULL, INCREMENTAL, RunMode, warehouse_now

    s, tmp = env["settings"], env["tmp"]
    # The run mode as crm_knowledge.run_mode.decide hands it to the DAG's dbt tasks, but forced: the day is a
    # daily (incremental) run whatever weekday the test runs on, so the dbt vars carry the warehouse clock at
    # the run's start and the customer-level models recompute only int_customers_affected.
    with psycopg.connect(env["url"]) as conn:
        mode = RunMode(INCREMENTAL, warehouse_now(conn)) if identity_mode == INCREMENTAL else RunMode(FULL)
    dbt_vars = {**DBT_VARS, "as_of_date": as_of, **mode.dbt_vars()}
    seconds = build_stages(s, tmp, dbt_stages.STAGING, dbt_vars=dbt_vars, full_refresh=full_refresh,
                           with_tests=with_tests)
    stats = resolve_identities(env["url"], mode=identity_mode)
    seconds += build_stages(s, tmp, dbt_stages.MARTS, dbt_stages.POST_SCORING, dbt_vars=dbt_vars,
                            full_refresh=full_refresh, with_tests=with_tests)
    stats["affected"] = {c: (changes, retired) for c, changes, retired in q(
        env["url"], "select customer_id, changes, is_retired from intermediate.int_customers_affected")}
    stats["affected_customers"] = len(stats["affected"])
    stats["affected_as_of"] = dict(q(env["url"], "select customer_id, changes"
                                                  " from intermediate.int_customers_affected_as_of"))
    stats["affected_scored"] = dict(q(env["url"], "select customer_id, changes"
                                                   " from intermediate.int_customers_affected_scored"))
    stats["stages"] = dict(q(env["url"], "select customer_id, relationship_stage from marts.customer_360"))
    stats["recent_window_orders"] = dict(q(env["url"], "select customer_id, recent_window_order_count"
                                                        " from intermediate.int_customer_activity_aggregated"))
    stats["customers_now"] = q(env["url"], "select count(distinct customer_id) from identity.record_clusters")[0][0]
    log.info("warehouse run (%s, full_refresh=%s): dbt %.1fs", identity_mode, full_refresh, seconds)
    return stats


SCORE_KEYS = ("recency_days", "frequency", "monetary", "r_score", "f_score", "m_score", "rfm_segment",
              "behaviour_cluster", "behaviour_profile", "value_tier")
SCORE_FLOATS = ("churn_probability", "expected_purchases", "p_alive", "predicted_clv")


def day_scores(url: str, day: dt.date) -> dict[str, dict]:
    cols = ", ".join(("customer_id", *SCORE_KEYS, *SCORE_FLOATS))
    with psycopg.connect(url) as conn:
        rows = conn.execute(f"select {cols} from scoring.customer_scores where as_of_date = %s", (day,)).fetchall()
    names = (*SCORE_KEYS, *SCORE_FLOATS)
    return {r[0]: dict(zip(names, r[1:], strict=True)) for r in rows}


def latest_rfm(url: str) -> dict[str, tuple]:
    with psycopg.connect(url) as conn:
        return {c: (r, f, m) for c, r, f, m in conn.execute(
            "select distinct on (customer_id) customer_id, r_score, f_score, m_score from scoring.customer_scores"
            " order by customer_id, as_of_date desc").fetchall()}


def score_the_day(env: dict) -> dict:
    """Scoring as the two DAGs run it: the models fitted on the first day, applied on the day to the customers
    it changed (a config that never refits, so the daily path runs), then a full re-score of the day with the
    same fitted models; the day's rows are then removed again, so the warehouse comparison below sees the
    first day's scores on both sides."""
    import dataclasses

    from crm_knowledge.scoring.config import RefitConfig, load_scoring_config
    from crm_knowledge.scoring.run import apply_fitted, score_day

    url, s = env["url"], env["settings"]
    never_refit = dataclasses.replace(load_scoring_config(), refit=RefitConfig(every_days=3650,
                                                                               max_changed_share=1.0))
    daily = score_day(DAY, url, never_refit, s)
    incremental = day_scores(url, DAY)
    incremental_rfm = latest_rfm(url)
    full = apply_fitted(DAY, url, never_refit, s, everyone=True)
    out = {"daily": daily, "full": full, "incremental": incremental, "full_scores": day_scores(url, DAY),
           "incremental_rfm": incremental_rfm}
    with psycopg.connect(url) as conn:
        conn.execute("delete from scoring.customer_scores where as_of_date = %s", (DAY,))
    return out


def deliver_after_scoring(env: dict) -> dict:
    """What the scoring DAG does after scoring the first day: the post-scoring models (customer_segments now
    carries the scores) and the deliveries, here the measured campaign (config/destinations.yml
    `marketing_campaigns`: a file, half of each audience held out). The day's run then finds deliveries made
    since the previous run (the customers it lists for `deliveries`) and campaigns whose response windows the
    day moves (`as_of_campaigns`). Returns the delivery's record."""
    from crm_knowledge.export.deliver import deliver_all
    from crm_knowledge.run_mode import INCREMENTAL, RunMode, warehouse_now

    with psycopg.connect(env["url"]) as conn:
        mode = RunMode(INCREMENTAL, warehouse_now(conn))
    build_stages(env["settings"], env["tmp"], dbt_stages.POST_SCORING,
                 dbt_vars={**DBT_VARS, "as_of_date": FIRST_AS_OF, **mode.dbt_vars()}, full_refresh=False,
                 with_tests=False)
    (result,) = deliver_all(dt.date.fromisoformat(FIRST_AS_OF), env["settings"], only=["marketing_campaigns"])
    assert result["status"] == "delivered" and int(result["rows_added"]) > 0, result
    return result


#: The customer-level tables whose row versions (xmin) the day's run is checked against: which customers it
#: rewrote. Activity follows activity_changes() (no delivery), the knowledge follows every reason.
VERSIONED_TABLES = ("intermediate.int_customer_activity_aggregated", "intermediate.int_customers_described",
                    "marts.customer_segments", "marts.customer_knowledge")


#: The incremental intermediate models (macros/incremental_facts.sql) by their key (an SQL expression).
RECORD_KEY = "source_system || '|' || source_record_id"
INCREMENTAL_INTERMEDIATE = {"intermediate.int_orders_unioned": "order_id",
                            "intermediate.int_order_items_unioned": "order_item_id",
                            "intermediate.int_interactions_classified": "interaction_id",
                            "intermediate.int_customer_records_unioned": RECORD_KEY,
                            "intermediate.int_identity_candidates": RECORD_KEY}


def row_versions(url: str) -> dict[str, dict[str, set[str]]]:
    """Per table of VERSIONED_TABLES: customer_id -> the transaction ids that wrote its rows (xmin); per table of
    INCREMENTAL_INTERMEDIATE: key -> the transaction id that wrote its row."""
    out: dict[str, dict[str, set[str]]] = {}
    for table in VERSIONED_TABLES:
        out[table] = {}
        for customer_id, xmin in q(url, f"select customer_id, xmin::text from {table}"):
            out[table].setdefault(customer_id, set()).add(xmin)
    for table, key in INCREMENTAL_INTERMEDIATE.items():
        out[table] = {k: {xmin} for k, xmin in q(url, f"select {key}, xmin::text from {table}")}
    return out


# --- the planted cases ----------------------------------------------------------------------------------

def hold_batch(url: str, source_name: str) -> str:
    """What the raw gate does to a batch with a critical failure (quality/gate.py): status held, recorded."""
    with psycopg.connect(url) as conn:
        batch_id = conn.execute("select batch_id from audit.load_batches where source_name = %s and status = 'loaded'"
                                " order by started_at limit 1", (source_name,)).fetchone()[0]
        conn.execute("update audit.load_batches set status = 'held', error = 'held by the test' where batch_id = %s",
                     (batch_id,))
        conn.execute("insert into audit.dq_runs (dq_run_id, pipeline_run_id, layer, suite, batch_id, finished_at,"
                     " success, critical_failures, action) values (%s, 'test', 'raw', %s, %s, now(), false, 1, 'held')",
                     (uuid.uuid4().hex, source_name, batch_id))
    return batch_id


def release_batch(url: str, batch_id: str) -> None:
    """What the raw gate does when a held batch passes on a re-check."""
    with psycopg.connect(url) as conn:
        conn.execute("update audit.load_batches set status = 'loaded', error = null where batch_id = %s", (batch_id,))
        conn.execute("insert into audit.dq_runs (dq_run_id, pipeline_run_id, layer, suite, batch_id, finished_at,"
                     " success, critical_failures, action) values (%s, 'test', 'raw', 'released', %s, now(), true, 0,"
                     " 'released')", (uuid.uuid4().hex, batch_id))


def load_late_order_versions(url: str) -> dict[int, str]:
    """A batch of two order versions that arrive late (loaded now, updated_at before the day): for order A
    newer than its staged version (wins), for order B older than its staged version (loses). Returns
    order id -> the status staging must show."""
    with psycopg.connect(url) as conn:
        a, b = conn.execute(
            # settled orders: the day's own status changes touch open (placed / paid) orders only
            "select order_id from staging.stg_orders__orders where status = 'shipped' order by order_id desc limit 2"
        ).fetchall()
        batch_id = f"late-orders-{uuid.uuid4().hex[:8]}"
        conn.execute("insert into audit.load_batches (batch_id, source_name, source_kind, status, rows_read,"
                     " rows_loaded, finished_at) values (%s, 'orders.orders', 'orders_db', 'loaded', 2, 2, now())",
                     (batch_id,))
        expected = {}
        for (order_id,), delta, status in ((a, "1 hour", "cancelled"), (b, "-1 hour", "returned")):
            conn.execute(
                f"""insert into raw.orders__orders (order_id, customer_id, ordered_at, status, channel, total_amount,
                        currency, updated_at, _batch_id, _source_file, _loaded_at, _row_number, _record_hash)
                    select order_id, orders_customer_id, ordered_at, %s, channel, total_amount, currency,
                           updated_at + interval '{delta}', %s, 'late', now(), 1, md5(random()::text)
                    from staging.stg_orders__orders where order_id = %s""",
                (status, batch_id, order_id))
            expected[order_id] = status
        # B's winning version stays the staged one
        expected[b[0]] = conn.execute("select status from staging.stg_orders__orders where order_id = %s",
                                      (b[0],)).fetchone()[0]
    return expected


def delete_at_source(url: str, spare_customers: set[str], spare_orders: set[int]) -> dict:
    """Deletions at the orders database, as ingestion records them (a version of the key with
    `_deleted_at_source`, in a batch of its own): a whole order with its lines, one line of another order (the
    order stays, one unit short), an orders-database customer who is also known from another source (the
    customer stays; the orders database's orders lose their buyer); and a product moved to another category
    (its lines follow). None of `spare_customers` / `spare_orders`. Returns the keys and what the order that lost
    a line held before."""
    spare = sorted(spare_customers)
    with psycopg.connect(url) as conn:
        (order_id,) = conn.execute("""
            select o.order_id from staging.stg_orders__orders o
            join intermediate.int_orders_unioned u on u.order_id = 'orders:' || o.order_id
            where o.status = 'shipped' and o.order_id <> all(%s) and coalesce(u.customer_id, '') <> all(%s)
            order by o.order_id limit 1""", (sorted(spare_orders), spare)).fetchone()
        short_order_id, order_item_id, quantity_before = conn.execute("""
            select u.source_order_id::int, min(i.order_item_id), u.item_quantity
            from intermediate.int_orders_unioned u
            join staging.stg_orders__order_items i on 'orders:' || i.order_id = u.order_id
            where u.order_source = 'orders' and u.status = 'shipped' and u.source_order_id::int <> all(%s)
              and u.source_order_id::int <> %s and coalesce(u.customer_id, '') <> all(%s)
            group by u.source_order_id, u.item_quantity having count(*) >= 2
            order by 1 limit 1""", (sorted(spare_orders), order_id, spare)).fetchone()
        orders_customer, customer_id = conn.execute("""
            select c.source_record_id, c.customer_id from identity.record_clusters c
            where c.source_system = 'orders' and c.customer_id <> all(%s)
              and exists (select 1 from identity.record_clusters o
                          where o.customer_id = c.customer_id and o.source_system <> 'orders')
              and exists (select 1 from intermediate.int_orders_unioned u
                          where u.source_customer_id = c.source_record_id
                            and u.source_order_id::int not in (%s, %s))
            order by c.source_record_id limit 1""", (spare, order_id, short_order_id)).fetchone()
        line_ids = [r[0] for r in conn.execute(
            "select order_item_id from staging.stg_orders__order_items where order_id = %s", (order_id,))]
        # the two products of fewest lines, not on the orders above: one moves category, one is deleted
        product_id, deleted_product_id = (r[0] for r in conn.execute("""
            select product_id from intermediate.int_order_items_unioned
            where product_id is not null
            group by product_id
            having bool_and(order_id not in ('orders:' || %s::text, 'orders:' || %s::text))
            order by count(*), product_id limit 2""", (order_id, short_order_id)))
        batch_id = f"deleted-at-source-{uuid.uuid4().hex[:8]}"
        conn.execute("insert into audit.load_batches (batch_id, source_name, source_kind, status, rows_read,"
                     " rows_loaded, finished_at) values (%s, 'orders.orders', 'orders_db', 'loaded', 0, 0, now())",
                     (batch_id,))
        for table, key, keys in (("orders__orders", "order_id", [order_id]),
                                 ("orders__order_items", "order_item_id", [*line_ids, order_item_id]),
                                 ("orders__customers", "customer_id", [int(orders_customer)]),
                                 ("orders__products", "product_id", [deleted_product_id])):
            columns = [c for (c,) in conn.execute(
                "select column_name from information_schema.columns where table_schema = 'raw' and table_name = %s"
                " and column_name not like '\\_%%' and column_name <> 'updated_at' order by ordinal_position",
                (table,))]
            listed = ", ".join(columns)
            marked = conn.execute(
                f"""insert into raw.{table} ({listed}, updated_at, _batch_id, _source_file, _loaded_at, _row_number,
                        _record_hash, _deleted_at_source)
                    select distinct on ({key}) {listed}, updated_at + interval '1 hour', %s, 'deleted at the source',
                           now(), 1, md5(random()::text), true
                    from raw.{table} where {key} = any(%s)
                    order by {key}, updated_at desc nulls last, _loaded_at desc""", (batch_id, keys)).rowcount
            assert marked == len(set(keys)), (table, marked, keys)
        # and a product moved to another category (a new version)
        moved = conn.execute(
            """insert into raw.orders__products (product_id, sku, name, category, unit_price, updated_at, _batch_id,
                    _source_file, _loaded_at, _row_number, _record_hash)
                select distinct on (product_id) product_id, sku, name, 'moved-category', unit_price,
                       updated_at + interval '1 hour', %s, 'category changed', now(), 1, md5(random()::text)
                from raw.orders__products where product_id = %s
                order by product_id, updated_at desc nulls last, _loaded_at desc""", (batch_id, product_id)).rowcount
        assert moved == 1, product_id
    return {"order": order_id, "short_order": short_order_id, "line": order_item_id,
            "quantity_before": quantity_before, "orders_customer": orders_customer, "customer": customer_id,
            "product": product_id, "deleted_product": deleted_product_id}


def plant_merge(url: str, landing_dir) -> tuple[str, str]:
    """A web form of the day that joins two customers: customer A's national id (a national-id match needs
    no name agreement) and customer B's e-mail under B's name (an e-mail match does, config/identity.yml
    name_guard). B has no national id, so the one-per-person guard does not stop the join. Written to the
    forms landing folder, ingested by the day's run like any form. Returns (A, B)."""
    import json

    a_id, national_id, b_id, email, first_name, last_name = q(url, """
        with a as (
            select customer_id, min(national_id_valid) as national_id from pii.pii_source_identities
            group by customer_id having count(distinct national_id_valid) = 1
        ),
        b as (
            select customer_id, min(email_norm) as email, min(first_name_norm) as first_name,
                   min(last_name_norm) as last_name
            from pii.pii_source_identities
            group by customer_id
            having count(national_id_valid) = 0 and count(distinct email_norm) = 1
               and count(distinct first_name_norm) = 1 and count(distinct last_name_norm) = 1
        )
        select a.customer_id, a.national_id, b.customer_id, b.email, b.first_name, b.last_name
        from a join b on a.customer_id < b.customer_id
        where not exists (select 1 from pii.pii_source_identities o
                          where o.email_norm = b.email and o.customer_id <> b.customer_id)
        order by a.customer_id, b.customer_id limit 1""")[0]
    folder = landing_dir / "forms"
    folder.mkdir(parents=True, exist_ok=True)
    record = {"submission_id": "F-MERGE-0001", "form_type": "registration",
              "submitted_at": f"{AS_OF}T10:00:00+03:30", "first_name": first_name, "last_name": last_name,
              "email": email, "national_id": national_id}
    (folder / f"submissions_{AS_OF}_merge.jsonl").write_text(json.dumps(record, ensure_ascii=False) + "\n",
                                                            encoding="utf-8")
    return a_id, b_id


def erase_one(url: str, settings, spare: set[str]) -> str:
    """Forget a customer (not one of `spare`) by their e-mail, as `ckp erase --email` does: the purge
    deletes their rows from every layer before the day's warehouse run. A customer known from web forms
    only, so the day's staging still grows in the tables test_the_day_changed_something counts. Returns
    their customer_id."""
    from crm_knowledge.privacy.erasure import ErasureRequest, erase

    customer_id, email = q(url, """
        select customer_id, min(email_norm) from pii.pii_source_identities
        where customer_id <> all(%s) group by customer_id
        having count(distinct email_norm) = 1 and bool_and(email_norm is not null)
           and bool_and(source_system = 'forms')
           and not exists (select 1 from pii.pii_source_identities o
                           where o.email_norm = min(pii_source_identities.email_norm)
                             and o.customer_id <> pii_source_identities.customer_id)
        order by customer_id limit 1""", (sorted(spare),))[0]
    result = erase(ErasureRequest(email=email, reason="incremental-equals-full test"), settings=settings,
                   as_of=DAY, url=url)
    assert result.status == "completed" and result.customers_erased == 1, result
    return customer_id


def plant_boundary_crossings(url: str) -> dict[str, str]:
    """Two customers the day moves across a boundary without any input of theirs changing, planted in the raw
    layer after the first run (rows re-stamped `_loaded_at` now, so the first day's second run takes them in):
    `lost`: a customer known from one web form only (no order, contact or other record), whose form is moved to
    noon UTC exactly LOST_AFTER_DAYS before the first as-of date: `developing` as of that date, `lost` a day
    later; `window`: a customer with one order from the orders database, moved to noon UTC exactly
    DECLINE_WINDOW_DAYS before the day: in the recent decline window as of the first date, in the prior one as
    of the day. Returns {"lost": customer_id, "window": customer_id}."""
    first = dt.date.fromisoformat(FIRST_AS_OF)
    lost_id, submission_id = q(url, """
        select c.customer_id, min(c.source_record_id) from identity.record_clusters c
        where not exists (select 1 from intermediate.int_orders_unioned o where o.customer_id = c.customer_id)
          and not exists (select 1 from intermediate.int_interactions_classified i where i.customer_id = c.customer_id)
        group by c.customer_id
        having count(*) = 1 and bool_and(c.source_system = 'forms')
        order by c.customer_id desc limit 1""")[0]
    window_id, order_id = q(url, """
        select customer_id, min(source_order_id) from intermediate.int_orders_unioned
        where order_source = 'orders' and customer_id is not null
        group by customer_id having count(*) = 1 and bool_and(is_revenue_order)
        order by customer_id desc limit 1""")[0]
    with psycopg.connect(url) as conn:
        moved = conn.execute("update raw.form_submissions set submitted_at = %s, _loaded_at = now()"
                             " where submission_id = %s",
                             (f"{first - dt.timedelta(days=LOST_AFTER_DAYS)}T12:00:00+00:00", submission_id)).rowcount
        assert moved >= 1, submission_id
        moved = conn.execute("update raw.orders__orders set ordered_at = %s, _loaded_at = now()"
                             " where order_id = %s",
                             (dt.datetime.combine(DAY - dt.timedelta(days=DECLINE_WINDOW_DAYS), dt.time(12),
                                                  tzinfo=dt.UTC), int(order_id))).rowcount
        assert moved >= 1, order_id
    return {"lost": lost_id, "window": window_id}


# --- snapshots ------------------------------------------------------------------------------------------

def snapshot(url: str) -> dict[str, list[tuple]]:
    """Every base table of staging and marts: its rows (as text, ordered), pipeline-time columns left out;
    model scores under "<table>#<column>" as {rest of the row: score}."""
    out: dict = {}
    with psycopg.connect(url) as conn:
        # and the views of intermediate and marts: dim_customers, customer_360 and the relationship stage compute
        # their as-of columns at read time (the staging views show identity's and scoring's own tables)
        tables = conn.execute("select table_schema, table_name from information_schema.tables"
                              " where table_schema = any(%s) and (table_type = 'BASE TABLE'"
                              " or (table_type = 'VIEW' and table_schema in ('intermediate', 'marts')))"
                              " order by 1, 2", (list(SNAPSHOT_SCHEMAS),)).fetchall()
        for schema, table in tables:
            if f"{schema}.{table}" in RUN_BOOKKEEPING_TABLES:
                continue
            all_cols = [c for (c,) in conn.execute(
                "select column_name from information_schema.columns where table_schema = %s and table_name = %s"
                " order by ordinal_position", (schema, table)).fetchall() if c not in PIPELINE_TIME_COLUMNS]
            cols = [c for c in all_cols if c not in MODEL_SCORE_COLUMNS]
            listed = sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in cols)
            rows = conn.execute(sql.SQL("select {} from {}.{} order by {}").format(
                listed, sql.Identifier(schema), sql.Identifier(table),
                sql.SQL(", ").join(sql.SQL(str(i + 1)) for i in range(len(cols))))).fetchall()
            out[f"{schema}.{table}"] = [tuple(cols)] + rows
            for score in set(all_cols) & MODEL_SCORE_COLUMNS:
                pairs = conn.execute(sql.SQL("select {}, {} from {}.{}").format(
                    listed, sql.Identifier(score), sql.Identifier(schema), sql.Identifier(table))).fetchall()
                out[f"{schema}.{table}#{score}"] = {tuple(r[:-1]): r[-1] for r in pairs}
    return out


def clusters(url: str) -> dict[tuple[str, str], str]:
    return {(s, r): c for s, r, c in q(url, "select source_system, source_record_id, customer_id"
                                            " from identity.record_clusters")}


def describe_difference(name: str, a: list[tuple], b: list[tuple]) -> str:
    only_a = sorted(set(a[1:]) - set(b[1:]))[:5]
    only_b = sorted(set(b[1:]) - set(a[1:]))[:5]
    return (f"{name}: {len(a) - 1} rows incremental vs {len(b) - 1} full refresh; columns {a[0]}\n"
            f"  only incremental: {only_a}\n  only full refresh: {only_b}")


# --- the test -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runs(env) -> dict:
    from crm_knowledge.demo.generate import generate, generate_increment

    url = env["url"]
    generate(SIZE, seed=SEED, overwrite_external_db=True)  # scratch databases of this test
    first_loaded = ingest_all()
    held = hold_batch(url, RELEASED_SOURCE)
    first = warehouse_run(env, identity_mode="full", full_refresh=False, as_of=FIRST_AS_OF)
    crossings = plant_boundary_crossings(url)
    first = warehouse_run(env, identity_mode="incremental", full_refresh=False, as_of=FIRST_AS_OF)
    from crm_knowledge.scoring.run import score_all

    first_scoring = score_all(DAY - dt.timedelta(days=1), env["url"], settings=env["settings"])  # fits the models
    first_delivery = deliver_after_scoring(env)
    staged_before = {t: q(url, f"select count(*) from staging.{t}")[0][0]
                     for t in ("stg_orders__orders", "stg_siblings__customers", "stg_contacts__interactions")}
    held_rows_staged = q(url, "select count(*) from staging.stg_siblings__customers s join raw.sibling_customers r"
                              " on r._batch_id = %s and s.source_record_id = btrim(r.source_record_id)"
                              " and s.source_system = 'sibling:' || lower(btrim(r.unit))", (held,))[0][0]

    generate_increment(DAY, seed=SEED, overwrite_external_db=True)
    merged = plant_merge(url, env["settings"].landing_dir)
    day_loaded = ingest_all()
    release_batch(url, held)
    late = load_late_order_versions(url)
    deleted = delete_at_source(url, set(merged) | set(crossings.values()), set(late))
    erased = erase_one(url, env["settings"], set(merged) | set(crossings.values()))
    versions_before = row_versions(url)
    day = warehouse_run(env, identity_mode="incremental", full_refresh=False, with_tests=True)
    versions_after = row_versions(url)
    incremental = snapshot(url)
    incremental_clusters = clusters(url)
    scoring = score_the_day(env)

    view_bases_before = view_base_oids(url)
    full = warehouse_run(env, identity_mode="full", full_refresh=True)
    return {
        "view_bases_before": view_bases_before, "view_bases_after": view_base_oids(url),
        "first_loaded": first_loaded, "day_loaded": day_loaded, "first": first, "day": day, "full": full,
        "staged_before": staged_before, "held": held, "held_rows_staged": held_rows_staged, "late": late,
        "merged": merged, "erased": erased, "crossings": crossings, "deleted": deleted,
        "incremental": incremental, "incremental_clusters": incremental_clusters,
        "first_scoring": first_scoring, "scoring": scoring, "first_delivery": first_delivery,
        "versions_before": versions_before, "versions_after": versions_after,
        "full_snapshot": snapshot(url), "full_clusters": clusters(url),
    }


#: The tables the views BI tools read (dim_customers, customer_360, the relationship stages) select from.
VIEW_BASES = ("intermediate.int_customers_described", "intermediate.int_customer_360_assembled",
              "intermediate.int_customer_activity_aggregated")


def view_base_oids(url: str) -> dict[str, int]:
    return {t: q(url, "select %s::regclass::oid", (t,))[0][0] for t in VIEW_BASES}


def test_the_weekly_full_refresh_never_drops_the_views_bi_tools_read(runs):
    """A `--full-refresh` swaps a rebuilt table in and drops the old one with cascade, with every view on it,
    until dbt creates the views again: BI queries in between would fail. The tables under the views are
    recomputed in place instead (macros/affected_customers.sql, read_through_views), so each is the same
    relation (same oid) after the weekly run. (dbt replaces a view by create, rename and drop in one
    transaction: no gap.) Their rows equal the full refresh's (compared below)."""
    assert runs["view_bases_after"] == runs["view_bases_before"]


def test_the_day_changed_something(runs):
    """Guard against a vacuous comparison: the day brought new and changed rows of every kind."""
    assert runs["day"]["mode"] == "incremental" and runs["full"]["mode"] == "full"
    # identity matched the day's new and changed records only, not all of them again
    assert 0 < runs["day"]["new_records"] < runs["day"]["records"] / 2, runs["day"]
    # the customer-level models recomputed the customers the day affected, not everyone
    assert 0 < runs["day"]["affected_customers"] < runs["day"]["customers_now"] / 2, runs["day"]
    # a full run lists every customer (and the ids merges retired)
    assert runs["full"]["affected_customers"] >= runs["full"]["customers_now"], runs["full"]
    assert runs["day_loaded"]["orders"] > 0 and runs["day_loaded"]["forms"] > 0
    assert runs["day_loaded"]["contacts"] > 0
    assert runs["held_rows_staged"] == 0, "a held batch reached staging"
    inc = runs["incremental"]
    deleted_at_source = {"stg_orders__orders": 1}  # delete_at_source: one whole order
    for table, before in runs["staged_before"].items():
        assert len(inc[f"staging.{table}"]) - 1 + deleted_at_source.get(table, 0) > before, table


def test_late_and_released_rows(runs, env):
    url = env["url"]
    statuses = dict(q(url, "select order_id, status from staging.stg_orders__orders where order_id = any(%s)",
                      (list(runs["late"]),)))
    assert statuses == runs["late"]
    fct = dict(q(url, "select source_order_id::int, status from marts.fct_orders where order_source = 'orders'"
                      " and source_order_id::int = any(%s)", (list(runs["late"]),)))
    assert fct == runs["late"]
    released = q(url, "select count(*) from raw.sibling_customers where _batch_id = %s", (runs["held"],))[0][0]
    staged = q(url, "select count(*) from staging.stg_siblings__customers s where exists (select 1 from"
                    " raw.sibling_customers r where r._batch_id = %s and s.source_record_id = btrim(r.source_record_id)"
                    " and s.source_system = 'sibling:' || lower(btrim(r.unit)))", (runs["held"],))[0][0]
    assert released > 0 and staged == released


def test_the_day_merged_two_customers_and_erased_one(runs, env):
    """The planted merge happened (one of A, B retired into the other) and the erased customer is gone: the
    incremental marts hold the surviving id and none of the retired or erased one (the full refresh, compared
    below, too)."""
    url = env["url"]
    a, b = runs["merged"]
    merges = q(url, "select old_customer_id, new_customer_id from identity.customer_id_merges"
                    " where old_customer_id = any(%s)", ([a, b],))
    assert len(merges) == 1 and set(merges[0]) == {a, b}, merges
    retired, surviving = merges[0]
    customers = {r[0] for r in runs["incremental"]["marts.dim_customers"][1:]}
    assert surviving in customers and retired not in customers and runs["erased"] not in customers
    # the daily run listed both ids of the merge, the retired one as retired
    assert runs["day"]["affected"][retired] == ("merged_away", True), runs["day"]["affected"].get(retired)
    changes, is_retired = runs["day"]["affected"][surviving]
    assert "merged_into" in changes.split(",") and not is_retired, (changes, is_retired)
    assert runs["erased"] not in runs["day"]["affected"]  # the purge removed them; nothing to recompute
    # the customer-level layers; scoring keeps the retired id's earlier scores (customer_segments reads them
    # as is_from_merged_customer) and the snapshots close its versions, both by design
    for name, rows in runs["incremental"].items():
        if "#" in name or "customer_id" not in rows[0] or name.split(".")[0] not in ("intermediate", "marts", "pii"):
            continue
        i = rows[0].index("customer_id")
        assert not {r[i] for r in rows[1:]} & {retired, runs["erased"]}, name


def test_customers_listed_only_for_a_delivery_are_recomputed_only_where_deliveries_show(runs):
    """The campaign delivered after the first day lists its customers on the day: those sent an offer for the
    delivery (`deliveries`), the campaign's customers for its open response window (`as_of_campaigns`). Their
    knowledge (the offers made) is recomputed; their activity, description and segment, which no delivery
    changes, keep the rows the first day wrote (same xmin), while customers listed for changes of their own get
    new rows. Both equal the full refresh (test_incremental_equals_full_refresh)."""
    day, before, after = runs["day"], runs["versions_before"], runs["versions_after"]
    only_deliveries = {c for c, changes in day["affected_as_of"].items()
                       if set(changes.split(",")) <= {"deliveries", "as_of_campaigns"}}
    delivered = {c for c, (changes, _) in day["affected"].items() if "deliveries" in changes.split(",")}
    assert only_deliveries & delivered, (len(only_deliveries), len(delivered))
    # the scored list keeps the reasons, so customer_segments can leave them out
    assert all("deliveries" in day["affected_scored"][c].split(",") for c in only_deliveries & delivered)
    own_changes = {c for c, changes in day["affected_as_of"].items()
                   if set(changes.split(",")) & {"identity", "orders", "interactions", "forms"}}
    for table in ("intermediate.int_customer_activity_aggregated", "intermediate.int_customers_described",
                  "marts.customer_segments"):
        kept = {c for c in only_deliveries if c in before[table]}
        assert kept and all(after[table].get(c) == before[table][c] for c in kept), table
        rewritten = {c for c in own_changes & set(before[table]) & set(after[table])
                     if after[table][c] != before[table][c]}
        assert rewritten, f"{table}: no customer with changes of their own was recomputed"
    knowledge = "marts.customer_knowledge"
    with_knowledge = {c for c in only_deliveries & delivered if c in after[knowledge]}
    recomputed = {c for c in with_knowledge if after[knowledge][c] != before[knowledge].get(c)}
    assert with_knowledge and recomputed == with_knowledge, sorted(with_knowledge - recomputed)[:5]


def test_deletions_at_the_source_reach_the_orders_on_the_day(runs, env):
    """The day's run drops the deleted order (and its lines), re-writes the order that lost a line (one line
    fewer, fewer units, in the intermediate orders and fct_orders alike), leaves the deleted buyer's other
    orders without a customer, and moves the lines of the product whose category changed; the full refresh
    agrees (test_incremental_equals_full_refresh)."""
    url, deleted = env["url"], runs["deleted"]
    inc = runs["incremental"]

    def rows(table: str, column: str, value: str) -> list[dict]:
        header, *body = inc[table]
        i = header.index(column)
        return [dict(zip(header, r, strict=True)) for r in body if r[i] == value]

    gone = f"orders:{deleted['order']}"
    for table in ("intermediate.int_orders_unioned", "marts.fct_orders", "intermediate.int_order_items_unioned",
                  "marts.fct_order_items"):
        assert rows(table, "order_id", gone) == [], table
    short = f"orders:{deleted['short_order']}"
    assert rows("intermediate.int_order_items_unioned", "order_item_id", f"orders:{deleted['line']}") == []
    lines = rows("intermediate.int_order_items_unioned", "order_id", short)
    (order,) = rows("intermediate.int_orders_unioned", "order_id", short)
    (fact,) = rows("marts.fct_orders", "order_id", short)
    assert lines and int(order["item_quantity"]) == sum(int(r["quantity"]) for r in lines)
    assert int(order["item_quantity"]) < deleted["quantity_before"]
    assert fact["item_quantity"] == order["item_quantity"]
    bought = rows("intermediate.int_orders_unioned", "source_customer_id", deleted["orders_customer"])
    assert bought and all(r["customer_id"] is None for r in bought), bought
    for r in bought:
        (fact,) = rows("marts.fct_orders", "order_id", r["order_id"])
        assert fact["customer_id"] is None, fact
    assert q(url, "select count(*) from identity.record_clusters where customer_id = %s",
             (deleted["customer"],))[0][0] > 0, "the buyer's customer is known from another source"
    # the lines of the product moved to another category follow it, in the intermediate lines and the fact alike
    for table in ("intermediate.int_order_items_unioned", "marts.fct_order_items"):
        lines = rows(table, "product_id", str(deleted["product"]))
        assert lines and all(r["category"] == "moved-category" for r in lines), (table, lines)
    # the product deleted at the source stays, flagged, and its lines keep it and its category
    (product,) = rows("marts.dim_products", "product_id", str(deleted["deleted_product"]))
    assert product["is_deleted_at_source"] == "true" and product["category"], product
    for table in ("intermediate.int_order_items_unioned", "marts.fct_order_items"):
        lines = rows(table, "product_id", str(deleted["deleted_product"]))
        assert lines and all(r["category"] == product["category"] for r in lines), (table, lines)


def test_the_intermediate_orders_and_interactions_rewrote_only_the_day_s_rows(runs):
    """int_orders_unioned, int_order_items_unioned, int_interactions_classified and the identity input
    (int_customer_records_unioned, int_identity_candidates) are incremental: the day rewrote the rows it changed
    (new orders, the late versions, the re-attributed ones, the changed records), kept the others as the first day
    wrote them (same xmin), added its new ones and deleted the records gone (the orders-database buyer deleted at
    the source); their rows equal the full refresh's (compared in test_incremental_equals_full_refresh)."""
    before, after = runs["versions_before"], runs["versions_after"]
    for table in INCREMENTAL_INTERMEDIATE:
        kept = [k for k in before[table] if after[table].get(k) == before[table][k]]
        rewritten = [k for k in before[table] if k in after[table] and after[table][k] != before[table][k]]
        added = set(after[table]) - set(before[table])
        assert len(kept) > 0.8 * len(before[table]), (table, len(kept), len(before[table]))
        assert added and (rewritten or table.endswith("interactions_classified")), (table, rewritten, added)
    late = {f"orders:{order_id}" for order_id in runs["late"]}
    orders = "intermediate.int_orders_unioned"
    assert all(after[orders][k] != before[orders][k] for k in late)  # the late version that won, and lost
    gone = f"orders|{runs['deleted']['orders_customer']}"
    for table in ("intermediate.int_customer_records_unioned", "intermediate.int_identity_candidates"):
        assert gone in before[table] and gone not in after[table], table


def test_the_as_of_date_moved_customers_across_boundaries(runs):
    """A day with nothing new for two customers still moves them: the planted `lost` customer's stage is
    computed at read time (customer_360 is a view over stored dates), so no table row of theirs is recomputed;
    the `window` customer's order moved from the recent to the prior decline window, a stored count, so the
    as-of list recomputed them for that reason alone. Both equal the full refresh (compared below)."""
    lost, window = runs["crossings"]["lost"], runs["crossings"]["window"]
    first, day = runs["first"], runs["day"]
    assert lost not in day["affected"] and window not in day["affected"], "the day changed a planted customer"
    assert (first["stages"][lost], day["stages"][lost]) == ("developing", "lost")
    assert lost not in day["affected_as_of"], day["affected_as_of"].get(lost)
    assert day["affected_as_of"][window] == "as_of_windows"
    assert (first["recent_window_orders"][window], day["recent_window_orders"][window]) == (1, 0)
    # the day's as-of lists follow the day, not everyone; the scored list adds no one without new scores
    assert 0 < len(day["affected_as_of"]) < day["customers_now"] / 2
    assert set(day["affected_as_of"]) <= set(day["affected_scored"])


def test_incremental_identity_gives_the_full_clusters(runs):
    inc, full = runs["incremental_clusters"], runs["full_clusters"]
    moved = {k: (inc.get(k), full.get(k)) for k in set(inc) | set(full) if inc.get(k) != full.get(k)}
    assert moved == {}, f"{len(moved)} records differ (incremental, full): {sorted(moved.items())[:10]}"
    assert runs["full"]["merges"] == 0 and runs["full"]["new_customer_ids"] == 0


def test_incremental_equals_full_refresh(runs):
    inc, full = runs["incremental"], runs["full_snapshot"]
    assert set(inc) == set(full)
    assert {"staging.stg_orders__orders", "marts.fct_orders", "marts.dim_customers", "scoring.customer_scores",
            "marts.customer_segments", "marts.customer_360"} <= set(inc)
    # the marts that carry scores carry the first day's (scoring.customer_scores is compared too)
    assert runs["first_scoring"]["customers_scored"] > 0
    assert len(inc["scoring.customer_scores"]) - 1 == runs["first_scoring"]["customers_scored"]
    tables = [name for name in sorted(inc) if "#" not in name]
    differing = [describe_difference(name, inc[name], full[name]) for name in tables if inc[name] != full[name]]
    assert not differing, "\n".join(differing)
    for name in (n for n in sorted(inc) if "#" in n):
        assert inc[name].keys() == full[name].keys(), name
        moved = {k: (inc[name][k], full[name][k]) for k in inc[name]
                 if abs((inc[name][k] or 0) - (full[name][k] or 0)) > SCORE_TOLERANCE}
        assert moved == {}, f"{name}: scores moved by more than {SCORE_TOLERANCE}: {list(moved.items())[:5]}"


def test_daily_scoring_equals_a_full_rescore_with_the_same_models(runs):
    """The day's scoring covered the customers it changed (not everyone), and each of them got exactly the
    segment, tier, cluster and R/F/M a full re-score with the same fitted models gives (floats to tolerance);
    R/F/M of every customer (latest row) equal the full re-score's: an edge crossing was not missed."""
    scoring = runs["scoring"]
    daily, full = scoring["daily"], scoring["full"]
    assert daily["mode"] == "daily" and daily["fit_reason"] is None, daily
    assert daily["models_of"] == (DAY - dt.timedelta(days=1)).isoformat()
    inc, everyone = scoring["incremental"], scoring["full_scores"]
    assert 0 < len(inc) < len(everyone) == full["customers_scored"], (len(inc), len(everyone))
    assert set(inc) <= set(everyone)
    differing = {}
    for cid, row in inc.items():
        ref = everyone[cid]
        keys = {k: (row[k], ref[k]) for k in SCORE_KEYS if row[k] != ref[k]}
        floats = {k: (row[k], ref[k]) for k in SCORE_FLOATS
                  if (row[k] is None) != (ref[k] is None)
                  or (row[k] is not None and abs(float(row[k]) - float(ref[k])) > SCORE_TOLERANCE)}
        if keys or floats:
            differing[cid] = {**keys, **floats}
    assert differing == {}, f"{len(differing)} covered customers differ: {sorted(differing.items())[:5]}"
    full_rfm = {c: (r["r_score"], r["f_score"], r["m_score"]) for c, r in everyone.items()}
    missed = {c: (v, full_rfm[c]) for c, v in scoring["incremental_rfm"].items() if c in full_rfm and v != full_rfm[c]}
    assert missed == {}, f"R/F/M not re-scored after crossing an edge: {sorted(missed.items())[:5]}"


def test_refit_reasons(runs, env):
    """Daily scoring refits, and says why, when the warehouse ran its weekly full resolution that day, when
    the fit is due, or on drift; the first day's fit is recorded with its reason and its fitted models file."""
    import dataclasses

    from crm_knowledge.scoring.config import RefitConfig, load_scoring_config
    from crm_knowledge.scoring.run import latest_fit, refit_reason

    url = env["url"]
    config = load_scoring_config()
    with psycopg.connect(url) as conn:
        fit = latest_fit(conn, DAY)
        assert fit["as_of_date"] == DAY - dt.timedelta(days=1)
        assert q(url, "select distinct fit_reason from scoring.model_runs") == [("requested",)]
        assert q(url, "select count(*) from scoring.model_runs where fitted_models_sha256 = %s",
                 (fit["sha256"],))[0][0] == len(runs["first_scoring"]["model_runs"])
        full_day = q(url, "select max(run_day) from identity.resolution_runs where mode = 'full'")[0][0]
        assert refit_reason(conn, full_day, config, latest_fit(conn, full_day)) == "weekly"
        due = dataclasses.replace(config, refit=RefitConfig(every_days=1, max_changed_share=1.0))
        assert refit_reason(conn, DAY, due, fit) == "due"
        # the full refresh re-staged every row since the fit: every scored customer changed
        drifting = dataclasses.replace(config, refit=RefitConfig(every_days=3650, max_changed_share=0.5))
        assert refit_reason(conn, DAY, drifting, fit) == "drift"
        assert refit_reason(conn, DAY, drifting, None) == "first"
