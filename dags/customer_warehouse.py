"""
### Customer warehouse: staging → identity resolution → unified customer view

Runs once all four ingestion DAGs have landed raw data since its last run (every ingest publishes its
raw Asset, with the run's as-of date, when it succeeds; `AssetAll`). An Asset-triggered run has no
logical date: its as-of date is the latest one the triggering events carry (`crm_knowledge.as_of.as_of_date`).

0. **run mode**: daily or weekly, decided once (`crm_knowledge.run_mode`, identity's schedule below): a daily
   run's dbt tests on large tables and its staging / marts checks read the rows the run wrote; the weekly
   run re-resolves every record, rebuilds the marts and checks every row;
1. **raw quality gate**: Great Expectations checks every newly loaded raw batch; a batch with a
   critical failure is held (it never reaches staging) and reported;
2. **dbt staging** (selector `identity_input`: staging + `int_identity_candidates`): typed, normalised,
   latest version of each record; incremental models re-read only the keys touched since the last run
   (late and released batches too);
3. **identity resolution**: deterministic rules and Splink's probabilistic matching assign every
   customer-bearing source record to one stable `customer_id`. Daily it is *incremental* (the day's new
   and changed records are matched against the existing customers); on the weekday set in
   `config/identity.yml` (`full_resolution_weekday`, by the run's as-of date; the day's first run) it
   re-resolves every record. Trigger with the param `full_identity_resolution: true` to force a full run
   on any day;
4. **dbt marts** (selector `post_identity`): the unified customer view (`dim_customers`), facts, the
   customer knowledge repository and the `pii` vault (`customer_360` and the segments are built after
   scoring); after a full identity resolution with `--full-refresh`, so the incremental facts are rebuilt
   from scratch once a week;
5. **marts quality gate**: a critical failure here stops scoring and exports; so does a source past the
   `error_after` of its declared freshness (**source freshness**, `dbt source freshness`, run alongside).
   It publishes the marts Asset (with the as-of date) only when everything before it succeeded.

Each dbt stage is one task (astronomer-cosmos, `dbt build --selector <stage>` of
`dbt_project/selectors.yml`); its log lists every model's and test's result, also recorded in
`audit.dbt_node_runs` and `audit.dq_results`.

Any failed task fails the run (the `watcher` task), also though `build_reports` runs after it.
"""

from __future__ import annotations

from airflow.sdk import AssetAll, Param, dag, task
from ckp_common import (
    DAG_DEFAULTS,
    MARTS_CUSTOMER_VIEW,
    MARTS_FULL_REFRESH,
    RAW_ASSETS,
    RUN_MODE_TASK_ID,
    as_of_date_task,
    dbt_build_stage,
    publish,
    watcher,
)

# What each dbt task builds is a selector of dbt_project/selectors.yml (the stage catalogue,
# crm_knowledge.dbt_stages); tests/unit/test_dbt_stages.py checks the DAGs against it.
STAGING_SELECTOR = "identity_input"
MARTS_SELECTOR = "post_identity"


@dag(
    dag_id="customer_warehouse",
    schedule=AssetAll(*RAW_ASSETS),
    tags=["warehouse", "dbt", "identity"],
    params={
        "full_identity_resolution": Param(False, type="boolean",
                                          description="Re-resolve every record today, whatever the weekday."),
    },
    doc_md=__doc__,
    **DAG_DEFAULTS,
)
def customer_warehouse():
    @task(task_id=RUN_MODE_TASK_ID)
    def run_mode(as_of: str, params: dict | None = None) -> dict:
        """Daily or weekly, decided once (crm_knowledge.run_mode): identity, dbt tests and the gates follow it."""
        from crm_knowledge.identity.tasks import run_mode

        return run_mode(as_of, force_full=bool((params or {}).get("full_identity_resolution", False)))

    @task
    def raw_quality_gate(as_of: str) -> dict:
        from crm_knowledge.quality.tasks import raw_gate

        return raw_gate(as_of)

    staging = dbt_build_stage("dbt_staging", STAGING_SELECTOR, tests_since=True)

    @task
    def resolve_identities(as_of: str, mode: dict) -> dict:
        """Full exactly when the run mode is (the configured weekday's first run, or forced), else incremental."""
        from crm_knowledge.identity.tasks import resolve_identities

        return resolve_identities(as_of, force_full=mode.get("mode") == "full")

    marts = dbt_build_stage("dbt_marts", MARTS_SELECTOR, full_refresh=MARTS_FULL_REFRESH, tests_since=True)

    @task
    def source_freshness(as_of: str) -> dict:
        """`dbt source freshness`, recorded for the report; a source past its error_after stops scoring."""
        from crm_knowledge.quality.tasks import source_freshness

        return source_freshness(as_of)

    @task(outlets=[MARTS_CUSTOMER_VIEW])
    def marts_quality_gate(as_of: str, mode: dict) -> dict:
        """Daily: the rows this run wrote (+ whole-table uniqueness and row counts in SQL); weekly: every row."""
        from crm_knowledge.quality.tasks import marts_gate

        return publish(MARTS_CUSTOMER_VIEW, as_of, marts_gate(as_of, mode))

    @task(trigger_rule="all_done")
    def build_reports(as_of: str) -> dict:
        """The auditor's report is written whatever happened: a failed run is what auditors need most."""
        from crm_knowledge.quality.tasks import reports

        return reports(as_of)

    as_of = as_of_date_task()
    mode = run_mode(as_of)
    gate = marts_quality_gate(as_of, mode)
    source_freshness(as_of) >> gate
    resolved = resolve_identities(as_of, mode)
    mode >> raw_quality_gate(as_of) >> staging >> resolved >> marts >> gate >> build_reports(as_of)
    watcher()


customer_warehouse()
