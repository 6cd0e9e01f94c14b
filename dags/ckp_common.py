"""Shared DAG constants: default args and the Assets that connect the DAGs (data-aware scheduling).

Not a DAG file (listed in .airflowignore). Asset names are the warehouse tables they stand for, so
the Airflow UI's asset graph reads like the warehouse lineage.
"""

from __future__ import annotations

from pathlib import Path

import pendulum
from airflow.sdk import Asset

START_DATE = pendulum.datetime(2026, 1, 1, tz="UTC")


def private_files(context) -> None:
    """Task entry: every file the task creates (archive, exports, reports, logs) is its OS user's only
    (umask 077), whoever started the worker; see crm_knowledge.privacy.file_modes."""
    from crm_knowledge.privacy.file_modes import restrict_umask

    restrict_umask()


DEFAULT_ARGS = {
    "owner": "data-platform",
    "retries": 2,
    "retry_delay": pendulum.duration(minutes=2),
    "retry_exponential_backoff": True,
    "on_execute_callback": private_files,
}

RAW_FORM_SUBMISSIONS = Asset("warehouse.raw.form_submissions")
RAW_SIBLING_CUSTOMERS = Asset("warehouse.raw.sibling_customers")
RAW_CONTACT_INTERACTIONS = Asset("warehouse.raw.contact_interactions")
RAW_ORDERS = Asset("warehouse.raw.orders")  # orders db tables + shop order exports
MARTS_CUSTOMER_VIEW = Asset("warehouse.marts.customer_360")
SCORING_CUSTOMER_SCORES = Asset("warehouse.scoring.customer_scores")
EXPORTS_DELIVERED = Asset("exports.customer_segments")

# Quality results and the auditor's report are keyed on the logical date ("what happened on day X"), so
# the checks of the warehouse and scoring DAG runs of one day form one report.
RAW_ASSETS = [RAW_FORM_SUBMISSIONS, RAW_SIBLING_CUSTOMERS, RAW_CONTACT_INTERACTIONS, RAW_ORDERS]


def publish_if_changed(summary: dict) -> dict:
    """Return a load task's summary; skip the task when the load changed nothing, so it publishes no Asset
    event. An Asset event starts the warehouse DAG (and erasure), and the loads run hourly: without this,
    every hour with no new file would rebuild the warehouse. A quarantined file counts as a change (the
    day's report must show it)."""
    if summary.get("rows_loaded") or summary.get("quarantined"):
        return summary
    from airflow.sdk.exceptions import AirflowSkipException

    raise AirflowSkipException(f"{summary.get('source')}: nothing new loaded; no Asset event ({summary})")


# --- dbt through astronomer-cosmos ------------------------------------------------------------
# One cosmos task per stage of the catalogue (dbt_project/selectors.yml): `dbt build --selector <stage>`.
# Parsing a DAG never runs dbt or touches the warehouse. dbt's profile comes from the Airflow connection
# `warehouse` (AIRFLOW_CONN_WAREHOUSE), which deployments derive from WAREHOUSE_URL
# (crm_knowledge.warehouse.cosmos_profile: a password is optional, libpq parameters are kept).
DBT_PROJECT_DIR = Path(__file__).resolve().parents[1] / "dbt_project"
DBT_MANIFEST = DBT_PROJECT_DIR / "target" / "manifest.json"


def dbt_configs():
    """(project, profile) configs shared by every dbt task."""
    from cosmos import ProfileConfig, ProjectConfig

    from crm_knowledge.warehouse.cosmos_profile import WarehouseProfileMapping

    project = ProjectConfig(
        dbt_project_path=DBT_PROJECT_DIR,
        manifest_path=DBT_MANIFEST,
        install_dbt_deps=False,
        dbt_vars={"as_of_date": "{{ ds }}"},
    )
    profile = ProfileConfig(
        profile_name="crm_knowledge",
        target_name="warehouse",
        # any reachable warehouse: password optional (trust, peer, .pgpass), the URL's libpq parameters kept;
        # threads: a stage is one `dbt build`; independent models run side by side in the warehouse
        profile_mapping=WarehouseProfileMapping(conn_id="warehouse", profile_args={"schema": "public", "threads": 4}),
    )
    return project, profile


def dbt_build_stage(task_id: str, selector: str, **operator_args):
    """The task that runs one stage of the catalogue: `dbt build --selector <selector>` (models, seeds,
    snapshots and their tests, in dependency order, on dbt's threads).

    One task per stage rather than one per model: at 2,000 customers the dbt work of a stage takes seconds,
    while each Airflow task costs seconds of start-up (README, "dbt in Airflow": the measurements and the
    choice). A failing model or test fails the task (dbt exits non-zero and skips what depends on it), so
    the pipeline stops as before. Every model's and test's result is in the task log and, through the
    callback, in `audit.dbt_node_runs` and `audit.dq_results`.
    """
    from cosmos.operators.local import DbtBuildLocalOperator

    project, profile = dbt_configs()
    return DbtBuildLocalOperator(task_id=task_id, project_dir=str(DBT_PROJECT_DIR), profile_config=profile,
                                 selector=selector, vars=project.dbt_vars, install_deps=False,
                                 **{**dbt_operator_args(), **operator_args})


#: Cosmos calls this after the dbt command of a task (LOCAL mode), with the path of the task's temporary
#: project copy, before it raises dbt's failure: it files the task's run_results.json (each model's
#: status, time and rows into audit.dbt_node_runs; each test's pass/warn/fail/error and failures count
#: into audit.dq_results, next to the Great Expectations results) under `day-<ds>`. An import path, not a
#: function: resolved in the worker at run time, so parsing a DAG imports nothing of crm_knowledge.
DBT_RESULTS_CALLBACK = "crm_knowledge.quality.pipeline.record_dbt_task_results"


def dbt_operator_args() -> dict:
    """Arguments of every cosmos dbt task: dbt's results land in the audit tables.

    A new dict per call: cosmos keeps per-operator state in `callback_args`.
    """
    return {"callback": DBT_RESULTS_CALLBACK}


#: `full_refresh` of the marts' dbt tasks: true when this run's identity resolution was the weekly full one
#: (identity.store.decide_mode). The incremental facts keep a row whose upstream key disappeared and read a
#: changed seed only for new rows (macros/incremental_facts.sql); rebuilding them from scratch the day every
#: customer is re-resolved anyway keeps them exact. Rendered by Airflow at run time; cosmos reads the string.
MARTS_FULL_REFRESH = ("{{ ((ti.xcom_pull(task_ids='resolve_identities') or {}).get('mode') == 'full')"
                      " | string }}")
