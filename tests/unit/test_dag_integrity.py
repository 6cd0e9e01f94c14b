"""Every DAG imports cleanly, is wired as the pipeline expects, and follows the house rules."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from airflow_dags import DAGS_DIR, dag_bag

from crm_knowledge.runner import INGEST_DAGS, PIPELINE_DAGS
from crm_knowledge.settings import PROJECT_ROOT

DAG_FILES = sorted(p for p in DAGS_DIR.glob("*.py") if p.name != "ckp_common.py")


@pytest.fixture(scope="module")
def dagbag():
    """Parse the dags folder the way Airflow does (cosmos needs dbt's manifest: build it first)."""
    return dag_bag()


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}, dagbag.import_errors


def test_pipeline_dags_present(dagbag):
    assert set(PIPELINE_DAGS) <= set(dagbag.dag_ids)


def test_ingest_schedules_are_on_unless_the_setting_turns_them_off(dagbag, monkeypatch):
    """A deployment's ingests run on their schedules; with CKP_INGEST_SCHEDULES off (`make run`) they have
    none and run only when triggered (the runner's rounds)."""
    import dataclasses

    import ckp_common

    assert {d: dagbag.dags[d].schedule for d in INGEST_DAGS} == {
        "ingest_forms": "@hourly", "ingest_orders": "@hourly",
        "ingest_sibling_units": "@daily", "ingest_contact_channels": "@daily"}
    monkeypatch.setattr(ckp_common, "_SETTINGS", dataclasses.replace(ckp_common._SETTINGS, ingest_schedules=False))
    assert ckp_common.ingest_schedule("@hourly") is None


@pytest.mark.parametrize("dag_id", PIPELINE_DAGS)
def test_dag_house_rules(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert dag.tags, f"{dag_id} has no tags"
    assert dag.doc_md and len(dag.doc_md) > 80, f"{dag_id} needs a docstring (its doc_md)"
    assert dag.start_date.tzinfo is not None
    assert dag.catchup is False
    for t in dag.tasks:
        assert t.owner == "data-platform", f"{dag_id}.{t.task_id} owner"
        if t.task_id != "watcher":  # the watcher only turns the run red: nothing to retry
            assert t.retries >= 1, f"{dag_id}.{t.task_id} retries"
        assert t.execution_timeout is not None, f"{dag_id}.{t.task_id} has no execution_timeout"
        callbacks = t.on_execute_callback if isinstance(t.on_execute_callback, list) else [t.on_execute_callback]
        assert any(getattr(c, "__name__", "") == "private_files" for c in callbacks), (
            f"{dag_id}.{t.task_id} does not make its files private (umask 077 at task entry)")
    # no cycles: a topological sort covers every task
    assert len(dag.topological_sort()) == len(dag.tasks)


def _asset_names(condition) -> set[str]:
    """Names of the Assets in a schedule condition (Asset, AssetAny, AssetAll, nested)."""
    if hasattr(condition, "objects"):
        return set().union(*(_asset_names(o) for o in condition.objects))
    return {condition.name} if getattr(condition, "name", None) else set()


def test_assets_chain_the_pipeline(dagbag):
    """The warehouse DAG is scheduled by the raw Assets the ingestion DAGs publish, scoring by the marts'."""
    produced = {}
    for dag_id in PIPELINE_DAGS:
        for t in dagbag.dags[dag_id].tasks:
            for o in getattr(t, "outlets", []) or []:
                produced.setdefault(getattr(o, "name", None), set()).add(dag_id)
    wh = dagbag.dags["customer_warehouse"]
    scheduled_on = _asset_names(wh.timetable.asset_condition)
    assert scheduled_on, "customer_warehouse must be scheduled by Assets"
    for asset in scheduled_on:
        assert produced.get(asset), f"nothing produces {asset}"
    assert {"ingest_forms", "ingest_orders", "ingest_sibling_units", "ingest_contact_channels"} <= set().union(
        *(produced[a] for a in scheduled_on))
    assert "customer_warehouse" in produced["warehouse.marts.customer_360"]
    assert _asset_names(dagbag.dags["customer_scoring"].timetable.asset_condition) == {
        "warehouse.marts.customer_360"}


def test_dbt_runs_as_one_task_per_stage(dagbag):
    """staging -> identity resolution -> marts -> marts gate; source freshness also gates scoring. (Every
    task also feeds the `watcher`, which fails the run when any of them failed.)"""
    wh = dagbag.dags["customer_warehouse"]

    def downstream(dag, task_id: str) -> set[str]:
        return dag.get_task(task_id).downstream_task_ids - {"watcher"}

    assert downstream(wh, "dbt_staging") == {"resolve_identities"}
    assert downstream(wh, "resolve_identities") == {"dbt_marts"}
    assert downstream(wh, "run_mode") >= {"raw_quality_gate", "resolve_identities", "marts_quality_gate"}
    assert downstream(wh, "dbt_marts") == {"marts_quality_gate"}
    assert downstream(wh, "source_freshness") == {"marts_quality_gate"}
    assert "watcher" in wh.get_task("dbt_marts").downstream_task_ids
    scoring = dagbag.dags["customer_scoring"]
    assert scoring.get_task("dbt_post_scoring").upstream_task_ids == {"score_customers"}
    # decided before scoring writes; dbt (its dbt_tests_since) and the gate (which marks it) read it
    assert downstream(scoring, "run_mode") >= {"score_customers", "post_scoring_quality_gate"}
    assert downstream(scoring, "dbt_post_scoring") == {"post_scoring_quality_gate"}


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_files_are_thin(path):
    """DAG files hold wiring only: no top-level heavy imports or database access."""
    tree = ast.parse(path.read_text())
    heavy = {"pandas", "psycopg", "sklearn", "splink", "great_expectations", "duckdb"}
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            mod = (node.module if isinstance(node, ast.ImportFrom) else node.names[0].name) or ""
            assert mod.split(".")[0] not in heavy, f"{path.name} imports {mod} at top level"
            assert not mod.startswith("crm_knowledge"), f"{path.name}: import the logic inside tasks"
    assert not path.name.startswith("dbt_"), "cosmos convention: DAG files are not named dbt_*.py"


def test_ruff_airflow_rules():
    res = subprocess.run([str(Path(sys.executable).with_name("ruff")), "check", "--select", "AIR",
                          str(DAGS_DIR), str(PROJECT_ROOT / "plugins")], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_customer_erasure_dag(dagbag):
    """The erasure DAG (not in PIPELINE_DAGS: it runs on its own) follows the house rules and is wired."""
    dag = dagbag.dags["customer_erasure"]
    assert {"privacy", "erasure"} <= set(dag.tags)
    assert dag.doc_md and "tombstone" in dag.doc_md
    assert dag.catchup is False and dag.max_active_runs == 1
    for t in dag.tasks:
        assert t.owner == "data-platform" and (t.retries >= 1 or t.task_id == "watcher"), t.task_id
    assert [t.task_id for t in dag.topological_sort()] == ["as_of_date", "prepare_warehouse", "erase_pending_requests",
                                                          "watcher"]
    # hourly, and also when web forms (which may carry erasure requests) land
    assert _asset_names(dag.timetable.asset_condition) == {"warehouse.raw.form_submissions"}


@pytest.mark.parametrize("dag_id", ["customer_warehouse", "customer_scoring"])
def test_every_dbt_task_records_its_results(dagbag, dag_id):
    """Each cosmos task hands dbt's run_results to the audit tables (quality.pipeline.record_dbt_task_results)."""
    from ckp_common import DBT_RESULTS_CALLBACK

    dbt_tasks = [t for t in dagbag.dags[dag_id].tasks if type(t).__module__.startswith("cosmos")]
    assert dbt_tasks, f"{dag_id} has no cosmos tasks"
    missing = [t.task_id for t in dbt_tasks if getattr(t, "callback", None) != DBT_RESULTS_CALLBACK]
    assert not missing, f"cosmos tasks without the results callback: {missing[:5]}"


ALL_DAGS = (*PIPELINE_DAGS, "customer_erasure")


@pytest.mark.parametrize("dag_id", ALL_DAGS)
def test_a_failed_task_fails_the_run(dagbag, dag_id):
    """The watcher: a leaf downstream of every task that runs (and fails) when any task failed, so an
    `all_done` report task after a failure cannot turn the run green. It is the DAG's only leaf."""
    dag = dagbag.dags[dag_id]
    watcher = dag.get_task("watcher")
    assert watcher.trigger_rule == "one_failed"
    assert set(watcher.upstream_task_ids) == set(dag.task_ids) - {"watcher"}
    assert [t.task_id for t in dag.tasks if not t.downstream_list] == ["watcher"]


@pytest.mark.parametrize("dag_id", ALL_DAGS)
def test_every_run_has_its_as_of_task_and_watcher(dagbag, dag_id):
    """The as_of_date task and the watcher start in 1970, so Airflow creates them even in a run whose
    logical date is before the DAG's start_date (where it creates no other task): that run fails, saying
    why, instead of succeeding empty. Checked on the serialized DAG, which is what the scheduler reads."""
    from airflow.serialization.serialized_objects import DagSerialization

    dag = dagbag.dags[dag_id]
    serialized = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    early = {t.task_id for t in serialized.tasks if t.start_date < dag.start_date}
    assert early == {"as_of_date", "watcher"}
    assert all(t.start_date == dag.start_date for t in serialized.tasks if t.task_id not in early)
    assert serialized.default_args["start_date"] == dag.start_date  # `airflow dags trigger` refuses earlier dates
    roots = [t.task_id for t in dag.tasks if not t.upstream_list]
    assert roots == ["as_of_date"], roots


@pytest.mark.parametrize("dag_id", ALL_DAGS)
def test_no_template_assumes_a_logical_date(dagbag, dag_id):
    """Asset-triggered runs have no `ds`: no rendered field may use it; dbt's as_of_date var is the
    as_of_date task's result."""
    from ckp_common import DBT_AS_OF_VAR, DBT_TESTS_SINCE_VAR

    from crm_knowledge.dbt_stages import AS_OF_ENV, TESTS_SINCE_ENV

    for t in dagbag.dags[dag_id].tasks:
        for field in t.template_fields:
            text = repr(getattr(t, field, None))
            for name in ("ds", "ds_nodash", "logical_date", "data_interval_start", "ts"):
                assert f"{{{{ {name}" not in text and f"{{{{{name}" not in text, f"{t.task_id}.{field}: {text}"
        if type(t).__module__.startswith("cosmos"):
            # the dbt tasks of both DAGs read the as-of date and the daily run's changes (the as_of_date and
            # run_mode tasks' results) from the environment, with no --vars: every task reuses one dbt parse
            # through the partial-parse cache
            assert not t.vars, t.task_id
            assert t.env == {AS_OF_ENV: DBT_AS_OF_VAR, TESTS_SINCE_ENV: DBT_TESTS_SINCE_VAR}, t.task_id
            assert t.cache_dir is not None and t.partial_parse, t.task_id


def test_every_published_asset_carries_the_as_of_date():
    """Each task with an outlet returns (or calls) publish(...), which writes the as-of date into the event."""
    for path in sorted(DAGS_DIR.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for fn in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
            outlets = [kw for d in fn.decorator_list if isinstance(d, ast.Call) for kw in d.keywords
                       if kw.arg == "outlets"]
            if not outlets:
                continue
            calls = [n for n in ast.walk(fn) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "publish"]
            assert calls, f"{path.name}:{fn.name} publishes an Asset without its as-of date"


def test_publish_writes_the_as_of_date_into_the_event(monkeypatch):
    from airflow.sdk import Asset
    from ckp_common import RAW_FORM_SUBMISSIONS, publish

    class Event:
        def __init__(self):
            self.extra = {}

    events = {RAW_FORM_SUBMISSIONS: Event()}
    monkeypatch.setattr("airflow.sdk.get_current_context", lambda: {"outlet_events": events})
    summary = {"source": "forms", "rows_loaded": 12, "quarantined": 0, "batch_ids": ["b1"]}
    assert publish(RAW_FORM_SUBMISSIONS, "2026-11-20", summary) is summary
    assert events[RAW_FORM_SUBMISSIONS].extra == {"as_of_date": "2026-11-20", "source": "forms",
                                                  "rows_loaded": 12, "quarantined": 0}
    assert isinstance(RAW_FORM_SUBMISSIONS, Asset)


def test_the_warehouse_waits_for_every_ingest(dagbag):
    """The documented rule: one warehouse run once all four raw Assets have an event since its last run."""
    from airflow.sdk import AssetAll

    condition = dagbag.dags["customer_warehouse"].timetable.asset_condition
    assert isinstance(condition, AssetAll) or type(condition).__name__ == "SerializedAssetAll", condition
    assert _asset_names(condition) == {"warehouse.raw.form_submissions", "warehouse.raw.sibling_customers",
                                       "warehouse.raw.contact_interactions", "warehouse.raw.orders"}


def test_scoring_takes_an_as_of_date_param(dagbag):
    params = dagbag.dags["customer_scoring"].params
    assert "as_of_date" in params and params["as_of_date"] is None


def test_dag_dbt_tasks_build_the_project_settings_name(tmp_path):
    """The DAGs' dbt project is the configured one (CKP_PROJECT_DIR through settings), not the folder beside the
    DAG files: a deployment of the installed package points all of the pipeline at one project."""
    (tmp_path / "dbt_project").mkdir()
    (tmp_path / "dbt_project" / "dbt_project.yml").write_text("name: configured\n", encoding="utf-8")
    env = {**os.environ, "CKP_PROJECT_DIR": str(tmp_path),
           "PYTHONPATH": os.pathsep.join([str(DAGS_DIR), str(PROJECT_ROOT / "plugins")])}
    shown = subprocess.run([sys.executable, "-c", "import ckp_common; print(ckp_common.DBT_PROJECT_DIR)"],
                           env=env, capture_output=True, text=True, timeout=120, check=True)
    assert shown.stdout.strip().splitlines()[-1] == str(tmp_path.resolve() / "dbt_project")


def test_marts_are_fully_refreshed_after_a_full_identity_resolution(dagbag):
    """The weekly full resolution also rebuilds the incremental facts (dbt --full-refresh), never a daily run."""
    import jinja2
    from ckp_common import MARTS_FULL_REFRESH
    from cosmos.operators.base import DbtBuildMixin, DbtRunMixin

    marts = dagbag.dags["customer_warehouse"].get_task("dbt_marts")
    assert isinstance(marts, (DbtRunMixin, DbtBuildMixin)) and marts.full_refresh == MARTS_FULL_REFRESH
    assert dagbag.dags["customer_warehouse"].get_task("dbt_staging").full_refresh is False

    class TI:
        def __init__(self, value):
            self.value = value

        def xcom_pull(self, task_ids):
            assert task_ids == "resolve_identities"
            return self.value

    render = jinja2.Template(MARTS_FULL_REFRESH).render
    assert render(ti=TI({"mode": "full", "records": 10})) == "True"
    assert render(ti=TI({"mode": "incremental"})) == "False"
    assert render(ti=TI(None)) == "False"


#: The tasks ckp_common makes for several DAGs that call a stage's entry point (crm_knowledge.ingest.tasks).
STAGE_TASKS_OF_CKP_COMMON = {"load_file_source_task", "prepare_warehouse_task"}
#: The DAGs ckp_common builds (for the file sources' DAG files) out of those tasks.
DAGS_OF_CKP_COMMON = {"file_source_dag"}


def test_the_stage_tasks_of_ckp_common_call_only_the_stage_entry_points():
    tree = ast.parse((DAGS_DIR / "ckp_common.py").read_text())
    factories = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    for name in STAGE_TASKS_OF_CKP_COMMON:
        imported = {node.module for node in ast.walk(factories[name])
                    if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("crm_knowledge")}
        assert imported == {"crm_knowledge.ingest.tasks"}, (name, imported)
    for name in DAGS_OF_CKP_COMMON:
        imported = {node.module for node in ast.walk(factories[name]) if isinstance(node, ast.ImportFrom)}
        called = {node.func.id for node in ast.walk(factories[name])
                  if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
        assert not imported and called & STAGE_TASKS_OF_CKP_COMMON, (name, imported, called)


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_tasks_call_only_the_stage_entry_points(path):
    """A DAG task calls its stage's `crm_knowledge.<stage>.tasks` module and nothing else of the package: one
    naming convention for every entry point (README, "Repository"), itself or through a task of ckp_common that
    does (STAGE_TASKS_OF_CKP_COMMON)."""
    tree = ast.parse(path.read_text())
    imported = {node.module for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("crm_knowledge")}
    from_common = {alias.name for node in tree.body if isinstance(node, ast.ImportFrom) and node.module == "ckp_common"
                   for alias in node.names}
    assert imported or from_common & (STAGE_TASKS_OF_CKP_COMMON | DAGS_OF_CKP_COMMON), f"{path.name} calls no stage"
    stray = sorted(m for m in imported if not re.fullmatch(r"crm_knowledge\.\w+\.tasks", m))
    assert not stray, f"{path.name} imports {stray}: call the stage's crm_knowledge.<stage>.tasks instead"
