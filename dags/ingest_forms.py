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

from airflow.sdk import DAG
from ckp_common import RAW_FORM_SUBMISSIONS, file_source_dag

ingest_forms: DAG = file_source_dag(
    "ingest_forms",
    cron="@hourly",
    tags=["ingestion", "forms"],
    doc_md=__doc__,
    load_task_id="load_forms",
    asset=RAW_FORM_SUBMISSIONS,
    source_name="forms",
)
