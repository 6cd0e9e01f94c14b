"""
### Customer scoring and write-back

Scheduled by the customer view's Asset. With the DAG run's logical date as the as-of date (only data
on or before it is used, so a backfill reproduces what was known then):

1. **score**: RFM segments, behavioural clusters, churn propensity, lifetime value and value tier,
   recorded in `scoring.model_runs` and `scoring.customer_scores`;
2. **dbt post-scoring models**: `marts.customer_segments` and `marts.customer_360` pick the scores up;
3. **deliver**: each destination in `config/destinations.yml` (file drop, operational database,
   webhook) receives its audience's delta, respecting consent; every delivery is in `audit.exports`;
4. **report**: the auditor's run report and Data Docs are rebuilt.
"""

from __future__ import annotations

from airflow.sdk import dag, task
from ckp_common import (
    DEFAULT_ARGS,
    EXPORTS_DELIVERED,
    MARTS_CUSTOMER_VIEW,
    SCORING_CUSTOMER_SCORES,
    START_DATE,
    dbt_build_stage,
)

# A selector of dbt_project/selectors.yml, the stage catalogue (crm_knowledge.dbt_stages).
POST_SCORING_SELECTOR = "post_scoring"


@dag(
    dag_id="customer_scoring",
    schedule=[MARTS_CUSTOMER_VIEW],
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["scoring", "exports"],
    doc_md=__doc__,
)
def customer_scoring():
    @task(outlets=[SCORING_CUSTOMER_SCORES])
    def score_customers(ds: str | None = None, dag_run=None) -> dict:
        from crm_knowledge.run_day import run_day
        from crm_knowledge.scoring.run import score_all

        return score_all(as_of=run_day(ds, dag_run.run_after))

    post_scoring = dbt_build_stage("dbt_post_scoring", POST_SCORING_SELECTOR)

    @task
    def post_scoring_quality_gate(ds: str | None = None, dag_run=None) -> dict:
        """Segments and scores are checked before anything leaves the warehouse."""
        from crm_knowledge.quality.pipeline import check_post_scoring
        from crm_knowledge.run_day import run_key

        return check_post_scoring(pipeline_run_id=run_key(ds, dag_run.run_after))

    @task(outlets=[EXPORTS_DELIVERED])
    def deliver_segments(ds: str | None = None, dag_run=None) -> list[dict]:
        from crm_knowledge.export.deliver import deliver_all
        from crm_knowledge.run_day import run_day

        return deliver_all(as_of=run_day(ds, dag_run.run_after))

    @task(trigger_rule="all_done")
    def build_reports(ds: str | None = None, dag_run=None) -> dict:
        from crm_knowledge.quality.pipeline import build_reports
        from crm_knowledge.run_day import run_key

        return build_reports(pipeline_run_id=run_key(ds, dag_run.run_after))

    (score_customers() >> post_scoring >> post_scoring_quality_gate() >> deliver_segments()
     >> build_reports())


customer_scoring()
