"""Every DAG imports cleanly, is wired as the pipeline expects, and follows the house rules."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crm_knowledge.runner import PIPELINE_DAGS
from crm_knowledge.settings import PROJECT_ROOT

DAGS_DIR = PROJECT_ROOT / "dags"
DAG_FILES = sorted(p for p in DAGS_DIR.glob("*.py") if p.name != "ckp_common.py")


@pytest.fixture(scope="module")
def dagbag():
    """Parse the dags folder the way Airflow does (cosmos needs dbt's manifest: build it first)."""
    project = PROJECT_ROOT / "dbt_project"
    env = dict(os.environ, CKP_DBT_HOST="127.0.0.1", CKP_DBT_PORT="5432", CKP_DBT_USER="x",
               CKP_DBT_PASSWORD="x", CKP_DBT_DBNAME="x", DBT_PROFILES_DIR=str(project))
    res = subprocess.run([str(Path(sys.executable).with_name("dbt")), "parse", "--project-dir", str(project),
                          "--quiet"], env=env, capture_output=True, text=True, cwd=project)
    assert res.returncode == 0, f"dbt parse failed: {res.stdout[-2000:]} {res.stderr[-2000:]}"
    if str(DAGS_DIR) not in sys.path:  # Airflow puts the dags folder on sys.path; so do we
        sys.path.append(str(DAGS_DIR))
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}, dagbag.import_errors


def test_pipeline_dags_present(dagbag):
    assert set(PIPELINE_DAGS) <= set(dagbag.dag_ids)


@pytest.mark.parametrize("dag_id", PIPELINE_DAGS)
def test_dag_house_rules(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert dag.tags, f"{dag_id} has no tags"
    assert dag.doc_md and len(dag.doc_md) > 80, f"{dag_id} needs a docstring (its doc_md)"
    assert dag.start_date.tzinfo is not None
    assert dag.catchup is False
    for t in dag.tasks:
        assert t.owner == "data-platform", f"{dag_id}.{t.task_id} owner"
        assert t.retries >= 1, f"{dag_id}.{t.task_id} retries"
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
    """staging -> identity resolution -> marts -> marts gate; source freshness also gates scoring."""
    wh = dagbag.dags["customer_warehouse"]
    assert wh.get_task("dbt_staging").downstream_task_ids == {"resolve_identities"}
    assert wh.get_task("resolve_identities").downstream_task_ids == {"dbt_marts"}
    assert wh.get_task("dbt_marts").downstream_task_ids == {"marts_quality_gate"}
    assert wh.get_task("source_freshness").downstream_task_ids == {"marts_quality_gate"}
    scoring = dagbag.dags["customer_scoring"]
    assert scoring.get_task("dbt_post_scoring").upstream_task_ids == {"score_customers"}
    assert scoring.get_task("dbt_post_scoring").downstream_task_ids == {"post_scoring_quality_gate"}


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
        assert t.owner == "data-platform" and t.retries >= 1, t.task_id
    assert [t.task_id for t in dag.topological_sort()] == ["prepare_warehouse", "erase_pending_requests"]
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


@pytest.mark.parametrize(("summary", "publishes"), [
    ({"source": "forms", "rows_loaded": 12, "quarantined": 0}, True),
    ({"source": "forms", "rows_loaded": 0, "quarantined": 1}, True),   # the day's report must show it
    ({"source": "forms", "rows_loaded": 0, "quarantined": 0, "skipped": 2}, False),
    ({"source": "orders", "rows_loaded": 0, "tables": {}}, False),
])
def test_a_load_that_changed_nothing_publishes_no_asset_event(summary, publishes):
    """The loads run hourly and any raw Asset event starts the warehouse DAG: an empty load must skip."""
    from airflow.sdk.exceptions import AirflowSkipException
    from ckp_common import publish_if_changed

    if publishes:
        assert publish_if_changed(summary) is summary
    else:
        with pytest.raises(AirflowSkipException, match="nothing new loaded"):
            publish_if_changed(summary)


def test_every_raw_asset_is_published_only_through_publish_if_changed():
    """Each ingest task with a raw outlet returns publish_if_changed(...) (read from the DAG sources)."""
    for path in sorted(DAGS_DIR.glob("ingest_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for fn in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
            outlets = [kw for d in fn.decorator_list if isinstance(d, ast.Call) for kw in d.keywords
                       if kw.arg == "outlets"]
            if not outlets:
                continue
            returns = [n for n in ast.walk(fn) if isinstance(n, ast.Return)]
            assert returns and all(isinstance(r.value, ast.Call) and getattr(r.value.func, "id", None)
                                   == "publish_if_changed" for r in returns), f"{path.name}:{fn.name}"


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
