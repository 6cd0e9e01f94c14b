"""
### Ingest sibling units' customer files

One mapped task per sibling unit registered in `config/sources/` (kind `sibling_unit`): adding a unit
is a new YAML file, no code. Each file is read in its own format, encoding, delimiter and calendar
(e.g. Windows-1256 with Solar Hijri dates), mapped onto the canonical customer fields, and loaded
into `raw.sibling_customers`. Publishes `warehouse.raw.sibling_customers`
when it loaded rows or quarantined a file; a run with nothing new is skipped and triggers nothing.
"""

from __future__ import annotations

from airflow.sdk import dag, task
from ckp_common import DEFAULT_ARGS, RAW_SIBLING_CUSTOMERS, START_DATE, publish_if_changed


@dag(
    dag_id="ingest_sibling_units",
    schedule="@daily",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["ingestion", "sibling-units"],
    doc_md=__doc__,
)
def ingest_sibling_units():
    @task
    def list_units() -> list[str]:
        from crm_knowledge.ingest.run import prepare_warehouse, source_names

        prepare_warehouse()
        return source_names("sibling_unit")

    @task(outlets=[RAW_SIBLING_CUSTOMERS], map_index_template="{{ source_label }}")
    def load_unit(source_name: str) -> dict:
        from airflow.sdk import get_current_context

        from crm_knowledge.ingest.run import ingest_file_source

        get_current_context()["source_label"] = source_name
        return publish_if_changed(ingest_file_source(source_name))

    load_unit.expand(source_name=list_units())


ingest_sibling_units()
