"""
### Ingest contact-centre interactions

Loads the contact centre's interaction logs (phone, email, web chat, mail, fax, in person) with
topic, outcome and free-text notes into `raw.contact_interactions`, exactly once per file.
Publishes `warehouse.raw.contact_interactions`
when it loaded rows or quarantined a file; a run with nothing new is skipped and triggers nothing.
"""

from __future__ import annotations

from airflow.sdk import dag, task
from ckp_common import DEFAULT_ARGS, RAW_CONTACT_INTERACTIONS, START_DATE, publish_if_changed


@dag(
    dag_id="ingest_contact_channels",
    schedule="@daily",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["ingestion", "contact-centre"],
    doc_md=__doc__,
)
def ingest_contact_channels():
    @task
    def prepare_warehouse() -> list[str]:
        from crm_knowledge.ingest.run import prepare_warehouse

        return prepare_warehouse()

    @task(outlets=[RAW_CONTACT_INTERACTIONS])
    def load_interactions() -> dict:
        from crm_knowledge.ingest.run import ingest_file_source

        return publish_if_changed(ingest_file_source("contacts"))

    prepare_warehouse() >> load_interactions()


ingest_contact_channels()
