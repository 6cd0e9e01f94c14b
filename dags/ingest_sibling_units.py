"""
### Ingest sibling units' customer files

One mapped task per sibling unit registered in `config/sources/` (kind `sibling_unit`): adding a unit
is a new YAML file, no code. Each file is read in its own format, encoding, delimiter and calendar
(e.g. Windows-1256 with Solar Hijri dates), mapped onto the canonical customer fields, and loaded
into `raw.sibling_customers`. Every successful run publishes `warehouse.raw.sibling_customers` (with its
as-of date and row counts in the event), also when nothing new arrived: the warehouse waits for every
source's report of the day.
"""

from __future__ import annotations

from airflow.sdk import dag
from ckp_common import (
    DAG_DEFAULTS,
    RAW_SIBLING_CUSTOMERS,
    as_of_date_task,
    ingest_schedule,
    load_file_source_task,
    prepare_warehouse_task,
    source_names_task,
    watcher,
)


@dag(
    dag_id="ingest_sibling_units",
    schedule=ingest_schedule("@daily"),
    tags=["ingestion", "sibling-units"],
    doc_md=__doc__,
    **DAG_DEFAULTS,
)
def ingest_sibling_units():
    load_unit = load_file_source_task("load_unit", RAW_SIBLING_CUSTOMERS, map_index_template="{{ source_label }}")

    as_of = as_of_date_task()
    units = source_names_task("list_units", "sibling_unit")
    as_of >> prepare_warehouse_task() >> units
    load_unit.partial(as_of=as_of).expand(source_name=units)
    watcher()


ingest_sibling_units()
