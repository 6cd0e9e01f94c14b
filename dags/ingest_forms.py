"""
### Ingest web forms

Loads the JSON Lines drops of the web forms (registration, order form, feedback, complaint, idea,
newsletter consent) from the landing zone into `raw.form_submissions`, exactly once per file.
Unreadable files go to quarantine, bad rows to `raw.load_rejects`; every file is in
`audit.load_batches`. Every successful run publishes `warehouse.raw.form_submissions` (with its as-of
date and row counts in the event), also when nothing new arrived: the warehouse waits for every
source's report of the day.
"""

from __future__ import annotations

from airflow.sdk import dag
from ckp_common import (
    DAG_DEFAULTS,
    RAW_FORM_SUBMISSIONS,
    as_of_date_task,
    ingest_schedule,
    load_file_source_task,
    prepare_warehouse_task,
    watcher,
)


@dag(
    dag_id="ingest_forms",
    schedule=ingest_schedule("@hourly"),
    tags=["ingestion", "forms"],
    doc_md=__doc__,
    **DAG_DEFAULTS,
)
def ingest_forms():
    load_forms = load_file_source_task("load_forms", RAW_FORM_SUBMISSIONS)
    as_of = as_of_date_task()
    as_of >> prepare_warehouse_task() >> load_forms(source_name="forms", as_of=as_of)
    watcher()


ingest_forms()
