"""
### Ingest contact-centre interactions

Loads the contact centre's interaction logs (phone, email, web chat, mail, fax, in person) with
topic, outcome and free-text notes into `raw.contact_interactions`, exactly once per file.
Every successful run publishes `warehouse.raw.contact_interactions` (with its as-of date and row counts
in the event), also when nothing new arrived: the warehouse waits for every source's report of the day.
"""

from __future__ import annotations

from airflow.sdk import DAG
from ckp_common import RAW_CONTACT_INTERACTIONS, file_source_dag

ingest_contact_channels: DAG = file_source_dag(
    "ingest_contact_channels",
    cron="@daily",
    tags=["ingestion", "contact-centre"],
    doc_md=__doc__,
    load_task_id="load_interactions",
    asset=RAW_CONTACT_INTERACTIONS,
    source_name="contacts",
)
