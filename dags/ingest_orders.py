"""
### Ingest orders

Two paths into the raw layer:

* the operational orders database (customers, products, orders, order items), read incrementally over
  a real connection by an `updated_at` watermark kept in `audit.watermarks`, so a run reads only
  what changed;
* shops that can only export: order CSV files (one mapped task per `order_export` source).

Every successful run publishes `warehouse.raw.orders` (with its as-of date and row counts in the event),
also when nothing new arrived: the warehouse waits for every source's report of the day.
"""

from __future__ import annotations

from airflow.sdk import dag, task
from ckp_common import (
    DAG_DEFAULTS,
    RAW_ORDERS,
    as_of_date_task,
    ingest_schedule,
    load_file_source_task,
    prepare_warehouse_task,
    publish,
    source_names_task,
    watcher,
)


@dag(
    dag_id="ingest_orders",
    schedule=ingest_schedule("@hourly"),
    tags=["ingestion", "orders"],
    doc_md=__doc__,
    **DAG_DEFAULTS,
)
def ingest_orders():
    @task(outlets=[RAW_ORDERS])
    def extract_orders_database(as_of: str) -> dict:
        from crm_knowledge.ingest.tasks import ingest_orders_database

        return publish(RAW_ORDERS, as_of, ingest_orders_database("orders"))

    load_order_export = load_file_source_task("load_order_export", RAW_ORDERS, map_index_template="{{ source_label }}")

    as_of = as_of_date_task()
    ready = prepare_warehouse_task()
    as_of >> ready >> extract_orders_database(as_of)
    exports = source_names_task("list_order_exports", "order_export")
    ready >> exports
    load_order_export.partial(as_of=as_of).expand(source_name=exports)
    watcher()


ingest_orders()
