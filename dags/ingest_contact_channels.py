"""
### Ingest contact-centre interactions

Loads the contact centre's interaction logs (phone, email, web chat, mail, fax, in person) with
topic, outcome and free-text notes into `raw.contact_interactions`, exactly once per file.
Every successful run publishes `warehouse.raw.contact_interactions` (with its as-of date and row counts
in the event), also when nothing new arrived: the warehouse waits for every source's report of the day.
"""

from __future__ import annotations

from airflow.sdk import dag
from ckp_common import (
    DAG_DEFAULTS,
    RAW_CONTACT_INTERACTIONS,
    as_of_date_task,
    ingest_schedule,
    load_file_source_task,
    prepare_warehouse_task,
    watcher,
)


@dag(
    dag_id="ingest_contact_channels",
    schedule=ingest_schedule("@daily"),
    tags=["ingestion", "contact-centre"],
    doc_md=__doc__,
    **DAG_DEFAULTS,
)
def ingest_contact_channels():
    load_interactions = load_file_source_task("load_interactions", RAW_CONTACT_INTERACTIONS)
    as_of = as_of_date_task()
    as_of >> prepare_warehouse_task() >> load_interactions(source_name="contacts", as_of=as_of)
    watcher()


ingest_contact_channels()
