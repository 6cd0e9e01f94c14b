"""Every dbt task cosmos renders with the DAGs' operator_args records its results (no database)."""

from __future__ import annotations

import pytest
from airflow_dags import dags_importable
from dbt_runs import parse_project

from crm_knowledge.settings import get_settings


@pytest.fixture(scope="module")
def ckp_common():
    """dags/ckp_common.py as Airflow imports it, with dbt's manifest built (cosmos renders from it)."""
    parse_project(get_settings())
    dags_importable()
    import ckp_common

    return ckp_common


def test_every_dbt_task_gets_the_results_callback(ckp_common):
    import pendulum
    from airflow.sdk import DAG
    from cosmos.operators.local import AbstractDbtLocalBase, DbtBuildLocalOperator

    from crm_knowledge.quality.pipeline import record_dbt_task_results

    with DAG("wiring_check", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
        ckp_common.dbt_build_stage("stage_a", "post_scoring")
        ckp_common.dbt_build_stage("stage_b", "post_identity", full_refresh="True")
    a, b = dag.get_task("stage_a"), dag.get_task("stage_b")
    assert isinstance(a, DbtBuildLocalOperator) and a.selector == "post_scoring" and b.full_refresh == "True"
    assert a.callback == b.callback == ckp_common.DBT_RESULTS_CALLBACK
    # the as-of date travels to dbt in the environment, with no --vars (one dbt parse for every task)
    assert a.env["CKP_DBT_AS_OF_DATE"] == ckp_common.DBT_AS_OF_VAR and not a.vars
    assert AbstractDbtLocalBase._resolve_callback(ckp_common.DBT_RESULTS_CALLBACK) is record_dbt_task_results
    # a new dict per task: cosmos writes the task context into callback_args
    assert ckp_common.dbt_operator_args() is not ckp_common.dbt_operator_args()
    assert a.callback_args is not b.callback_args


def test_day_run_id_keys_a_day():
    import datetime as dt

    from crm_knowledge.quality.pipeline import day_run_id_from_context

    class DagRun:
        run_after = dt.datetime(2026, 11, 21, 1, 0, tzinfo=dt.UTC)

    logical = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
    assert day_run_id_from_context({"logical_date": logical, "dag_run": DagRun()}) == "day-2026-11-20"
    assert day_run_id_from_context({"dag_run": DagRun()}) == "day-2026-11-21"
