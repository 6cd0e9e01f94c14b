"""
### Customer warehouse: staging → identity resolution → unified customer view

Runs once every ingestion DAG has reported since the warehouse's last run (`AssetAll` of the four raw
Assets; an ingest publishes its Asset on every successful run, also when nothing new arrived): a build
waits for the day's ingests, and a failed ingest holds the build (and alerts) until it is re-run. The
as-of date is the latest one the triggering events carry (`crm_knowledge.schedule.as_of_date`).

1. **raw quality gate**: Great Expectations checks every newly loaded raw batch; a batch with a
   critical failure is held (it never reaches staging) and reported;
2. **dbt staging** (+ `int_identity_candidates`): typed, normalised, latest version of each record;
   incremental models re-read only the keys touched since the last run (late and released batches too);
3. **identity resolution**: deterministic rules and Splink's probabilistic matching assign every
   customer-bearing source record to one stable `customer_id`. Daily it is *incremental* (the day's new
   and changed records are matched against the existing customers); on the weekday set in
   `config/identity.yml` (`full_resolution_weekday`, by the run's as-of date; the day's first run) it
   re-resolves every record. Trigger with the param `full_identity_resolution: true` to force a full run
   on any day;
4. **dbt marts**: the unified customer view (`dim_customers`, `customer_360`), facts, the customer
   knowledge repository and the `pii` vault; after a full identity resolution with `--full-refresh`, so
   the incremental facts are rebuilt from scratch once a week;
5. **marts quality gate**: a critical failure here stops scoring and exports; it publishes the marts
   Asset (with the as-of date) only when everything before it succeeded.

Any failed task fails the run (the `watcher` task), also though `build_reports` runs after it.

Each dbt model and its tests are separate tasks (astronomer-cosmos, rendered from dbt's manifest).
"""

from __future__ import annotations

from airflow.sdk import AssetAll, Param, dag, task
from ckp_common import (
    DEFAULT_ARGS,
    MARTS_CUSTOMER_VIEW,
    MARTS_FULL_REFRESH,
    RAW_ASSETS,
    START_DATE,
    as_of_date_task,
    dbt_configs,
    dbt_operator_args,
    dbt_test_behavior,
    publish,
    watcher,
)
from cosmos import DbtTaskGroup, RenderConfig
from cosmos.constants import LoadMode

PROJECT, PROFILE, EXECUTION = dbt_configs()

STAGING_SELECT = ["path:seeds", "path:models/staging", "tag:identity_input"]
MARTS_SELECT = ["path:models/intermediate", "path:models/marts", "path:models/pii", "path:snapshots"]


@dag(
    dag_id="customer_warehouse",
    schedule=AssetAll(*RAW_ASSETS),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["warehouse", "dbt", "identity"],
    params={
        "full_identity_resolution": Param(False, type="boolean",
                                          description="Re-resolve every record today, whatever the weekday."),
    },
    doc_md=__doc__,
)
def customer_warehouse():
    @task
    def raw_quality_gate(as_of: str) -> dict:
        import datetime as dt

        from crm_knowledge.quality.pipeline import check_new_raw_batches
        from crm_knowledge.schedule import run_key

        return check_new_raw_batches(pipeline_run_id=run_key(dt.date.fromisoformat(as_of)))

    staging = DbtTaskGroup(
        group_id="dbt_staging",
        project_config=PROJECT,
        profile_config=PROFILE,
        execution_config=EXECUTION,
        operator_args=dbt_operator_args(),
        render_config=RenderConfig(load_method=LoadMode.DBT_MANIFEST, select=STAGING_SELECT,
                                   test_behavior=dbt_test_behavior(),
                                   should_detach_multiple_parents_tests=True),
    )

    @task
    def resolve_identities(as_of: str, params: dict | None = None) -> dict:
        """Incremental, or full on the configured weekday / when forced; decided on the run's as-of date,
        never on the wall clock."""
        import datetime as dt

        from crm_knowledge.identity.store import decide_mode, run
        from crm_knowledge.settings import get_settings

        url = get_settings().warehouse_url
        day = dt.date.fromisoformat(as_of)
        mode = decide_mode(url, day, force_full=bool((params or {}).get("full_identity_resolution", False)))
        return run(url, mode=mode, day=day)

    marts = DbtTaskGroup(
        group_id="dbt_marts",
        project_config=PROJECT,
        profile_config=PROFILE,
        execution_config=EXECUTION,
        operator_args={**dbt_operator_args(), "full_refresh": MARTS_FULL_REFRESH},
        render_config=RenderConfig(load_method=LoadMode.DBT_MANIFEST, select=MARTS_SELECT,
                                   exclude=["tag:identity_input"], test_behavior=dbt_test_behavior(),
                                   should_detach_multiple_parents_tests=True),
    )

    @task(outlets=[MARTS_CUSTOMER_VIEW])
    def marts_quality_gate(as_of: str) -> dict:
        import datetime as dt

        from crm_knowledge.quality.pipeline import check_layers
        from crm_knowledge.schedule import run_key

        result = check_layers(["staging", "marts"], pipeline_run_id=run_key(dt.date.fromisoformat(as_of)))
        return publish(MARTS_CUSTOMER_VIEW, as_of, result)

    @task(trigger_rule="all_done")
    def build_reports(as_of: str) -> dict:
        """The auditor's report is written whatever happened: a failed run is what auditors need most."""
        import datetime as dt

        from crm_knowledge.quality.pipeline import build_reports
        from crm_knowledge.schedule import run_key

        return build_reports(pipeline_run_id=run_key(dt.date.fromisoformat(as_of)))

    as_of = as_of_date_task()
    gate = marts_quality_gate(as_of)
    raw_quality_gate(as_of) >> staging >> resolve_identities(as_of) >> marts >> gate >> build_reports(as_of)
    watcher()


customer_warehouse()
