"""Daily or weekly (crm_knowledge.run_mode): one decision handed from task to task, and what dbt is told."""

from __future__ import annotations

import pytest

from crm_knowledge.quality.gate import dbt_outcomes, dbt_test_scope, dbt_tests_since
from crm_knowledge.run_mode import FULL, INCREMENTAL, RunMode

SINCE = "2026-11-21T02:00:00+00:00"
WHERE = "staged_at >= __ckp_tests_since__ or customer_resolved_at >= __ckp_tests_since__"


def test_the_mode_travels_as_a_dict_and_defaults_to_checking_everything():
    daily = RunMode(INCREMENTAL, SINCE)
    assert RunMode.from_value(daily.as_dict()) == daily and not daily.is_full
    assert daily.dbt_vars() == {"dbt_tests_since": SINCE}
    assert RunMode.from_value(None).is_full  # a hand-run gate checks every row
    weekly = RunMode.from_value({"mode": FULL, "since": SINCE})
    assert weekly.is_full and weekly.since is None and weekly.dbt_vars() == {"dbt_tests_since": ""}
    with pytest.raises(ValueError, match="run mode"):
        RunMode.from_value({"mode": "sometimes"})


def test_dbt_results_say_which_rows_each_test_read():
    nodes = {
        "test.p.not_null_fct_orders_status.1": {"config": {"where": WHERE}, "attached_node": "model.p.fct_orders",
                                                "original_file_path": "models/marts/fct_orders.yml"},
        "test.p.unique_fct_orders_order_id.2": {"config": {}, "attached_node": "model.p.fct_orders",
                                                "original_file_path": "models/marts/fct_orders.yml"},
    }
    doc = {"args": {"vars": {"as_of_date": "2026-11-21", "dbt_tests_since": SINCE}},
           "results": [{"unique_id": uid, "status": "pass"} for uid in nodes]}
    assert dbt_tests_since(doc) == SINCE and dbt_tests_since({"args": {"vars": {"dbt_tests_since": ""}}}) is None
    ids, outcomes = dbt_outcomes(doc, nodes)["dbt.fct_orders"]
    scopes = {o.expectation_id: o.observed_value["scope"] for o in outcomes}
    assert scopes == {"test.p.not_null_fct_orders_status.1": f"rows written since {SINCE}",
                      "test.p.unique_fct_orders_order_id.2": "whole table"}
    assert dbt_test_scope(nodes["test.p.not_null_fct_orders_status.1"], None) == "whole table"  # weekly
    # a DAG's dbt task hands the run's start in the environment (dbt_stages.TESTS_SINCE_ENV), not in --vars
    in_env = {"args": {"vars": {"as_of_date": "2026-11-21"}}, "results": doc["results"]}
    scopes = {o.expectation_id: o.observed_value["scope"]
              for o in dbt_outcomes(in_env, nodes, tests_since=SINCE)["dbt.fct_orders"][1]}
    assert scopes["test.p.not_null_fct_orders_status.1"] == f"rows written since {SINCE}"
    weekly = {o.expectation_id: o.observed_value["scope"]
              for o in dbt_outcomes(in_env, nodes, tests_since="")["dbt.fct_orders"][1]}
    assert weekly["test.p.not_null_fct_orders_status.1"] == "whole table"
    # a var set in --vars wins over the environment, as in the macro changed_since() (even an empty one)
    weekly_var = {"args": {"vars": {"dbt_tests_since": ""}}, "results": doc["results"]}
    scopes = {o.expectation_id: o.observed_value["scope"]
              for o in dbt_outcomes(weekly_var, nodes, tests_since=SINCE)["dbt.fct_orders"][1]}
    assert scopes["test.p.not_null_fct_orders_status.1"] == "whole table"
    assert dbt_test_scope({"config": {"where": "amount > 0"}}, SINCE) == "rows where amount > 0"
    # a customer-level model's test limited to the customers the daily run recomputed
    recomputed = {"config": {"where": "customer_id in __ckp_recomputed_customers__"}}
    assert dbt_test_scope(recomputed, SINCE) == f"rows of the customers recomputed by the run begun {SINCE}"
    assert dbt_test_scope(recomputed, None) == "whole table"
    # a relationships test between two of them reads the customers recomputed in either
    referring = {**recomputed, "test_metadata": {"name": "relationships"}}
    assert dbt_test_scope(referring, SINCE) == (f"rows of the customers recomputed by the run begun {SINCE}, "
                                                "here or in the model referred to")
    assert dbt_test_scope(referring, None) == "whole table"


def test_the_dbt_callback_reads_the_run_start_its_task_handed_dbt():
    """Cosmos calls the results callback with the Airflow context: its task is the operator, whose `env` was
    rendered before dbt ran (the run_mode task's `since`)."""
    from types import SimpleNamespace

    from crm_knowledge.dbt_stages import TESTS_SINCE_ENV
    from crm_knowledge.quality.pipeline import _task_tests_since

    assert _task_tests_since({"task": SimpleNamespace(env={TESTS_SINCE_ENV: SINCE})}) == SINCE
    assert _task_tests_since({"task": SimpleNamespace(env={TESTS_SINCE_ENV: ""})}) is None  # weekly
    assert _task_tests_since({"task": SimpleNamespace(env=None)}) is None  # a dbt task without it
    assert _task_tests_since(None) is None  # a hand-run recording
