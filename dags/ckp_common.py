"""Shared DAG constants: default args, the Assets that connect the DAGs (data-aware scheduling), the
two tasks every DAG has (``as_of_date`` first and ``watcher`` last), the tasks several DAGs share
(``prepare_warehouse``, loading a file source, a dbt stage) and the DAG of a source that is one file source.

Not a DAG file (listed in .airflowignore). Asset names are the warehouse tables they stand for, so
the Airflow UI's asset graph reads like the warehouse lineage.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Asset, XComArg, dag, task

from crm_knowledge.alerts import WebhookFailureNotifier
from crm_knowledge.settings import get_settings

START_DATE = pendulum.datetime(2026, 1, 1, tz="UTC")
#: The start date of the as_of_date and watcher tasks alone: Airflow creates no task whose start date is
#: after a run's logical date, and marks a run without tasks successful. These two exist in every run, so a
#: run dated before START_DATE fails, saying why (crm_knowledge.as_of.check_logical_date).
GUARD_START_DATE = pendulum.datetime(1970, 1, 1, tz="UTC")

_SETTINGS = get_settings()  # environment only: no I/O


def private_files(context) -> None:
    """Task entry: every file the task creates (archive, exports, reports, logs) is its OS user's only
    (umask 077), whoever started the worker; see crm_knowledge.privacy.file_modes."""
    from crm_knowledge.privacy.file_modes import restrict_umask

    restrict_umask()


DEFAULT_ARGS = {
    "owner": "data-platform",
    # also here (not only on the DAG): `airflow dags trigger` then refuses a logical date before it
    "start_date": START_DATE,
    "retries": _SETTINGS.task_retries,
    "retry_delay": pendulum.duration(minutes=2),
    "retry_exponential_backoff": True,
    "on_execute_callback": private_files,
    # a hung dbt build, load or delivery fails (and alerts) instead of holding its DAG forever
    "execution_timeout": pendulum.duration(minutes=_SETTINGS.task_timeout_minutes),
    # a task that failed for good is posted to the deployment's webhook (crm_knowledge.alerts)
    "on_failure_callback": [WebhookFailureNotifier()],
}
#: What every DAG of the pipeline shares besides its id, schedule, tags and doc:
#: ``@dag(dag_id=..., schedule=..., tags=[...], doc_md=__doc__, **DAG_DEFAULTS)``. One run at a time, no
#: backfill of missed intervals (each run catches up on everything pending itself).
DAG_DEFAULTS = {"start_date": START_DATE, "catchup": False, "max_active_runs": 1, "default_args": DEFAULT_ARGS}


def ingest_schedule(cron: str) -> str | None:
    """An ingestion DAG's time schedule: `cron`, or none when CKP_INGEST_SCHEDULES is off (`make run`, whose
    rounds trigger every ingest for the day they simulate: a scheduled run of the real day crossing into a
    round would give the warehouse today's as-of date)."""
    return cron if _SETTINGS.ingest_schedules else None


#: The task that decides the run's as-of date (crm_knowledge.as_of.as_of_date); every other task reads
#: its result, including dbt through the environment of its cosmos tasks (DBT_AS_OF_VAR), so no template
#: needs `ds`.
AS_OF_TASK_ID = "as_of_date"
DBT_AS_OF_VAR = "{{ ti.xcom_pull(task_ids='" + AS_OF_TASK_ID + "') }}"


def as_of_date_task(**task_kwargs) -> XComArg:
    """The run's as-of date (ISO ``YYYY-MM-DD``), as the DAG's first task.

    It starts at GUARD_START_DATE, so it exists in every run, also one whose logical date is before
    START_DATE (Airflow creates no other task there): it fails such a run, saying why, instead of letting
    it succeed empty (crm_knowledge.as_of.check_logical_date).
    """

    @task(task_id=AS_OF_TASK_ID, **task_kwargs)
    def as_of_date(**context) -> str:
        import logging

        from crm_knowledge.as_of import as_of_date, check_logical_date

        check_logical_date(context.get("logical_date"), START_DATE)
        day = as_of_date(context).isoformat()
        logging.getLogger(__name__).info("as-of date of this run: %s", day)
        return day

    result = as_of_date()
    result.operator.start_date = GUARD_START_DATE  # after the DAG clamped it to START_DATE
    return result


def prepare_warehouse_task() -> XComArg:
    """The task that applies the warehouse's DDL, roles and grants (idempotent) before a DAG loads into it or
    erases from it: every DAG that writes raw or privacy tables starts with it."""

    @task(task_id="prepare_warehouse")
    def prepare_warehouse() -> list[str]:
        from crm_knowledge.ingest.tasks import prepare_warehouse

        return prepare_warehouse()

    return prepare_warehouse()


def source_names_task(task_id: str, kind: str) -> XComArg:
    """The task that names the sources of `kind` registered in config/sources/ (``sibling_unit``,
    ``order_export``): a load is mapped over them, so a new source is a YAML file, no code."""

    @task(task_id=task_id)
    def source_names() -> list[str]:
        from crm_knowledge.ingest.tasks import source_names

        return source_names(kind)

    return source_names()


def load_file_source_task(task_id: str, asset: Asset, **task_kwargs):
    """The task that loads a file source (config/sources/<source_name>.yml) into raw and publishes `asset` with
    the day's counts; not yet called: call it with ``source_name`` and ``as_of``, or map it over source names
    (with ``map_index_template="{{ source_label }}"`` each map index is labelled with its source)."""

    @task(task_id=task_id, outlets=[asset], **task_kwargs)
    def load_file_source(source_name: str, as_of: str) -> dict:
        from airflow.sdk import get_current_context

        from crm_knowledge.ingest.tasks import ingest_file_source

        get_current_context()["source_label"] = source_name
        return publish(asset, as_of, ingest_file_source(source_name))

    return load_file_source


def file_source_dag(dag_id: str, *, cron: str, tags: list[str], doc_md: str | None, load_task_id: str,
                    asset: Asset, source_name: str) -> DAG:
    """The DAG of a source that is one file source (config/sources/<source_name>.yml), scheduled by `cron`
    (ingest_schedule): the as-of date, the warehouse prepared, the source loaded by task `load_task_id`
    (publishing `asset` with the day's counts) and the watcher. Its DAG file passes its docstring as `doc_md`."""

    @dag(dag_id=dag_id, schedule=ingest_schedule(cron), tags=tags, doc_md=doc_md, **DAG_DEFAULTS)
    def ingest_file_source():
        load = load_file_source_task(load_task_id, asset)
        as_of = as_of_date_task()
        as_of >> prepare_warehouse_task() >> load(source_name=source_name, as_of=as_of)
        watcher()

    return ingest_file_source()


def watcher() -> None:
    """Airflow's watcher pattern: a leaf task downstream of every task, run only when one of them failed,
    and then failing itself. A DAG run takes its state from its leaf tasks, and the `all_done` report task
    succeeds after a failure; without the watcher such a run is marked successful. Call it last in a DAG.
    It starts at GUARD_START_DATE, like the as_of_date task, so a run refused for its dates fails too."""

    @task(task_id="watcher", trigger_rule="one_failed", retries=0, on_failure_callback=None)
    def watcher(**context) -> None:
        from airflow.sdk.exceptions import AirflowFailException

        failed: list[str] = []
        try:
            ti, dag_run = context["ti"], context["dag_run"]
            states = ti.get_task_states(dag_id=dag_run.dag_id, run_ids=[dag_run.run_id]).get(dag_run.run_id, {})
            failed = sorted(t for t, state in states.items() if state == "failed")
        except Exception:  # the names are a convenience; failing the run is what matters
            pass
        raise AirflowFailException(f"task(s) of this run failed: {', '.join(failed) or 'see the task states'}; "
                                   "the run is failed even though later tasks (reports) succeeded")

    guard = watcher()
    op = guard.operator
    for other in op.dag.tasks:
        if other is not op:
            other >> op
    op.start_date = GUARD_START_DATE  # after the DAG clamped it to START_DATE


def publish(asset: Asset, as_of: str, summary: dict) -> dict:
    """Return a task's `summary`, with the run's as-of date (and the summary's counts) in the ``extra`` of
    the `asset` event the task publishes: the DAG it triggers works on that day (crm_knowledge.as_of)."""
    from airflow.sdk import get_current_context

    from crm_knowledge.as_of import AS_OF_KEY

    extra = {AS_OF_KEY: as_of}
    extra.update({k: v for k, v in summary.items() if k in ("source", "rows_loaded", "quarantined")
                  and isinstance(v, (int, str))})
    get_current_context()["outlet_events"][asset].extra.update(extra)
    return summary

RAW_FORM_SUBMISSIONS = Asset("warehouse.raw.form_submissions")
RAW_SIBLING_CUSTOMERS = Asset("warehouse.raw.sibling_customers")
RAW_CONTACT_INTERACTIONS = Asset("warehouse.raw.contact_interactions")
RAW_ORDERS = Asset("warehouse.raw.orders")  # orders db tables + shop order exports
MARTS_CUSTOMER_VIEW = Asset("warehouse.marts.customer_360")
SCORING_CUSTOMER_SCORES = Asset("warehouse.scoring.customer_scores")
EXPORTS_DELIVERED = Asset("exports.customer_segments")

# Quality results and the auditor's report are keyed on the run's as-of date ("what happened on day X"),
# so the checks of the warehouse and scoring DAG runs of one day form one report.
RAW_ASSETS = [RAW_FORM_SUBMISSIONS, RAW_SIBLING_CUSTOMERS, RAW_CONTACT_INTERACTIONS, RAW_ORDERS]


# --- dbt through astronomer-cosmos ------------------------------------------------------------
# One cosmos task per stage of the catalogue (dbt_project/selectors.yml): `dbt build --selector <stage>`.
# Parsing a DAG never runs dbt or touches the warehouse. dbt's profile comes from the Airflow connection
# `warehouse` (AIRFLOW_CONN_WAREHOUSE), which deployments derive from WAREHOUSE_URL
# (crm_knowledge.warehouse.cosmos_profile: a password is optional, libpq parameters are kept).
# The project is found through settings (CKP_PROJECT_DIR, else the checkout the package was loaded from), as every
# other part of the pipeline finds it, so DAGs over an installed package use the configured project.
DBT_PROJECT_DIR = _SETTINGS.dbt_project_dir


def dbt_profile():
    """The dbt profile every dbt task uses, built from the Airflow connection `warehouse`."""
    from cosmos import ProfileConfig

    from crm_knowledge.warehouse.cosmos_profile import WarehouseProfileMapping
    from crm_knowledge.warehouse.dbt_connection import DBT_PROFILE, DBT_TARGET

    return ProfileConfig(
        profile_name=DBT_PROFILE,
        target_name=DBT_TARGET,
        # any reachable warehouse: password optional (trust, peer, .pgpass), the URL's libpq parameters kept;
        # threads: a stage is one `dbt build`; independent models run side by side in the warehouse
        profile_mapping=WarehouseProfileMapping(conn_id="warehouse", profile_args={"threads": 4}),
    )


#: The warehouse DAG's `run_mode` task (crm_knowledge.run_mode): daily runs hand dbt the warehouse clock at the
#: run's start, so tests configured with __ckp_tests_since__ read the rows written since; weekly runs hand an
#: empty string: every test reads its whole table (dbt_project/macros/tests_on_new_rows.sql).
RUN_MODE_TASK_ID = "run_mode"
DBT_TESTS_SINCE_VAR = "{{ (ti.xcom_pull(task_ids='" + RUN_MODE_TASK_ID + "') or {}).get('since') or '' }}"


def dbt_build_stage(task_id: str, selector: str, *, tests_since: bool = False, **operator_args):
    """The task that runs one stage of the catalogue: `dbt build --selector <selector>` (models, seeds,
    snapshots and their tests, in dependency order, on dbt's threads).

    One task per stage rather than one per model: at 2,000 customers the dbt work of a stage takes seconds,
    while each Airflow task costs seconds of start-up (README, "dbt in Airflow": the measurements and the
    choice). A failing model or test fails the task (dbt exits non-zero and skips what depends on it), so
    the pipeline stops as before. Every model's and test's result is in the task log and, through the
    callback, in `audit.dbt_node_runs` and `audit.dq_results`. `tests_since`: hand dbt the run mode's
    `dbt_tests_since` (DBT_TESTS_SINCE_VAR; only in a DAG with the `run_mode` task). The run's as-of date and
    `dbt_tests_since` reach dbt as environment variables (`dbt_stages.AS_OF_ENV`, `TESTS_SINCE_ENV`), not
    `--vars`: changed vars make dbt parse the whole project again, so with none every task reuses the parse
    (`dbt_parse_cache_dir`) and re-parses only the files that read a changed variable.
    """
    from cosmos.operators.local import DbtBuildLocalOperator

    from crm_knowledge.dbt_stages import AS_OF_ENV, TESTS_SINCE_ENV

    env = {AS_OF_ENV: DBT_AS_OF_VAR, **({TESTS_SINCE_ENV: DBT_TESTS_SINCE_VAR} if tests_since else {})}
    return DbtBuildLocalOperator(task_id=task_id, project_dir=str(DBT_PROJECT_DIR), profile_config=dbt_profile(),
                                 selector=selector, env=env, install_deps=False,
                                 cache_dir=dbt_parse_cache_dir(), **{**dbt_operator_args(), **operator_args})


def dbt_parse_cache_dir():
    """Where the dbt tasks keep dbt's partial-parse file between them (cosmos copies the newest of it and the
    project's own `target/partial_parse.msgpack` into each task's temporary project copy, and the task's back
    after dbt ran): without it every task parsed the whole project (5 s at the demo's size). Under cosmos'
    cache folder (AIRFLOW__COSMOS__CACHE_DIR, crm_knowledge.runner.airflow_env); created by cosmos on first
    use, not when a DAG file is parsed."""
    from pathlib import Path

    from cosmos import settings as cosmos_settings

    return Path(cosmos_settings.cache_dir) / "dbt_partial_parse"


#: Cosmos calls this after the dbt command of a task (LOCAL mode), with the path of the task's temporary
#: project copy, before it raises dbt's failure: it files the task's run_results.json (each model's
#: status, time and rows into audit.dbt_node_runs; each test's pass/warn/fail/error and failures count
#: into audit.dq_results, next to the Great Expectations results) under `day-<as-of>`. An import path, not a
#: function: resolved in the worker at run time, so parsing a DAG imports nothing of crm_knowledge.
DBT_RESULTS_CALLBACK = "crm_knowledge.quality.pipeline.record_dbt_task_results"


def dbt_operator_args() -> dict:
    """Arguments of every cosmos dbt task: dbt's results land in the audit tables.

    A new dict per call: cosmos keeps per-operator state in `callback_args`.
    """
    return {"callback": DBT_RESULTS_CALLBACK}


#: `full_refresh` of the marts' dbt tasks: true when this run's identity resolution was the weekly full one
#: (identity.store.decide_mode). The incremental facts keep a row whose upstream key disappeared and read a
#: changed seed only for new rows (macros/incremental_facts.sql), and the customer-level models recompute
#: only the customers changed since the run began (macros/affected_customers.sql); rebuilding them from
#: scratch the day every customer is re-resolved anyway keeps them exact. Rendered by Airflow at run time;
#: cosmos reads the string.
MARTS_FULL_REFRESH = ("{{ ((ti.xcom_pull(task_ids='resolve_identities') or {}).get('mode') == 'full')"
                      " | string }}")
