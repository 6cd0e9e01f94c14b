"""
### Customer scoring and write-back

Scheduled by the customer view's Asset. The as-of date (only data on or before it is used, so a
backfill reproduces what was known then) is the `as_of_date` param when given, else the day the
warehouse built (carried in the triggering Asset event), else the run's logical date or day
(`crm_knowledge.as_of.as_of_date`). Trigger it by hand with `as_of_date` to score any past day
(`ckp score --as-of DATE` does the scoring step alone from the command line):

1. **score**: RFM segments, behavioural clusters, churn propensity, lifetime value and value tier in
   `scoring.customer_scores`. Daily, the last fitted models are applied to the customers whose inputs changed
   and to those whose recency moved them across an RFM quintile edge; the models are refitted, and every
   customer scored, on the weekly full warehouse run, when the fit is due or on drift (`config/scoring.yml`
   `refit`; the reason in `scoring.model_runs.fit_reason`);
2. **dbt post-scoring models**: `marts.customer_segments` and `marts.customer_360` pick the scores up, for
   the customers changed since the warehouse runs this run follows (`run_mode`, first: every customer when
   one of them was the weekly full run);
3. **deliver**: each destination in `config/destinations.yml` (file drop, operational database,
   webhook) receives its audience's delta, respecting consent; every delivery is in `audit.exports`;
4. **campaign report**: treated against holdout for every measured audience (`marts.campaign_lift`),
   written next to the auditor's report as `campaigns.html`;
5. **report**: the auditor's run report and Data Docs are rebuilt (also after a failure; the `watcher`
   task then fails the run).
"""

from __future__ import annotations

from airflow.sdk import Param, dag, task
from ckp_common import (
    DAG_DEFAULTS,
    EXPORTS_DELIVERED,
    MARTS_CUSTOMER_VIEW,
    RUN_MODE_TASK_ID,
    SCORING_CUSTOMER_SCORES,
    as_of_date_task,
    dbt_build_stage,
    publish,
    watcher,
)

# A selector of dbt_project/selectors.yml, the stage catalogue (crm_knowledge.dbt_stages).
POST_SCORING_SELECTOR = "post_scoring"


@dag(
    dag_id="customer_scoring",
    schedule=[MARTS_CUSTOMER_VIEW],
    tags=["scoring", "exports"],
    params={
        "as_of_date": Param(None, type=["null", "string"], format="date",
                            description="Score as of this day (YYYY-MM-DD); empty: the day the warehouse "
                                        "built, else the run's day."),
    },
    doc_md=__doc__,
    **DAG_DEFAULTS,
)
def customer_scoring():
    @task(task_id=RUN_MODE_TASK_ID)
    def run_mode() -> dict:
        """Daily or full for the post-scoring models (crm_knowledge.run_mode.post_scoring): the warehouse runs
        this one follows, decided before scoring writes."""
        from crm_knowledge.scoring.tasks import run_mode

        return run_mode()

    @task(outlets=[SCORING_CUSTOMER_SCORES])
    def score_customers(as_of: str) -> dict:
        from crm_knowledge.scoring.tasks import score_customers

        return publish(SCORING_CUSTOMER_SCORES, as_of, score_customers(as_of))

    post_scoring = dbt_build_stage("dbt_post_scoring", POST_SCORING_SELECTOR, tests_since=True)

    @task
    def post_scoring_quality_gate(as_of: str, mode: dict) -> dict:
        """Segments and scores are checked before anything leaves the warehouse."""
        from crm_knowledge.quality.tasks import post_scoring_gate

        return post_scoring_gate(as_of, mode)

    @task(outlets=[EXPORTS_DELIVERED])
    def deliver_segments(as_of: str) -> list[dict]:
        from crm_knowledge.export.tasks import deliver_segments

        deliveries = deliver_segments(as_of)
        publish(EXPORTS_DELIVERED, as_of, {})
        return deliveries

    @task
    def campaign_report(as_of: str) -> str:
        from crm_knowledge.export.tasks import campaign_report

        return campaign_report(as_of)

    @task(trigger_rule="all_done")
    def build_reports(as_of: str) -> dict:
        from crm_knowledge.quality.tasks import reports

        return reports(as_of)

    as_of = as_of_date_task()
    mode = run_mode()
    as_of >> mode
    scored = score_customers(as_of)
    mode >> scored
    (scored >> post_scoring >> post_scoring_quality_gate(as_of, mode) >> deliver_segments(as_of)
     >> campaign_report(as_of) >> build_reports(as_of))
    watcher()


customer_scoring()
