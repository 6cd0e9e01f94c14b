"""
### Customer erasure: the right to be forgotten

Runs hourly, and whenever web forms land (an `erasure_request` form is one way to ask). Picks up every
pending request — `erasure_request` web forms in `raw.form_submissions` and request files dropped in
`<landing>/erasure_requests/` (`*.jsonl` or `*.csv` with `email, phone, national_id, reason`; deleted once
done) — and, as the pipeline role, for each one:

1. finds every matching customer through the identity map (normalised email / phone / national ID);
2. writes a tombstone (keyed pseudonyms of their identifiers and the date, no PII) so old or
   re-delivered source files never re-create them;
3. sends every destination that received them a removal (file drop, database, webhook);
4. deletes their records from raw, staging, intermediate, marts, `pii`, identity, scoring and snapshots,
   masks any left-over identifier elsewhere, and removes their rows from earlier export files;
5. rewrites the archived source files they were loaded from without their rows, and masks their
   identifiers in quarantined files (a file that cannot be redacted is named in the audit row);
6. records the completed request in `audit.erasure_requests`.

Idempotent: a request already completed changes nothing. `ckp erase` runs the same code for one request
from the command line. No personal data passes through XCom: tasks return counts only.
"""

from __future__ import annotations

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, dag, task
from ckp_common import DAG_DEFAULTS, RAW_FORM_SUBMISSIONS, as_of_date_task, prepare_warehouse_task, watcher


@dag(
    dag_id="customer_erasure",
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("0 * * * *", timezone="UTC"),
                                 assets=[RAW_FORM_SUBMISSIONS]),
    tags=["privacy", "erasure"],
    doc_md=__doc__,
    **DAG_DEFAULTS,
)
def customer_erasure():
    @task
    def erase_pending_requests(as_of: str) -> dict:
        from crm_knowledge.privacy.tasks import erase_pending_requests

        return erase_pending_requests(as_of)

    as_of = as_of_date_task()
    as_of >> prepare_warehouse_task() >> erase_pending_requests(as_of)
    watcher()


customer_erasure()
