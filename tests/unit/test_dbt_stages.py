"""The stage catalogue (dbt_project/selectors.yml, named by crm_knowledge.dbt_stages) is what the DAGs build.

Every dbt task of the DAGs is `dbt build --selector <stage>` (cosmos), as are the benchmark's and the tests'
builds. These tests fail when a DAG's dbt task selects anything else, when a DAG runs dbt outside the
catalogue or a stage is missing from the DAGs, and when a model is in no stage or in two.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest
from airflow_dags import dag_bag
from dbt_runs import offline_env

from crm_knowledge import dbt_stages
from crm_knowledge.runner import run_dbt
from crm_knowledge.settings import get_settings

BUILT = ("model", "seed", "snapshot")


@pytest.fixture(scope="module")
def dbt_target(tmp_path_factory) -> Path:
    """This module's own dbt target folder: its `dbt ls` calls parse the project once between them, and never
    read or write dbt_project/target, the DAGs' manifest an end-to-end run on the other xdist worker may be
    writing at that moment."""
    return tmp_path_factory.mktemp("dbt_ls_target")


@cache
def dbt_ls(target: Path, *args: str) -> frozenset[str]:
    """unique_ids of the models, seeds and snapshots `dbt ls` selects (once per selection)."""
    settings = get_settings()
    res = run_dbt(["ls", *args, "--resource-type", *BUILT, "--output", "json", "--output-keys", "unique_id"],
                  offline_env(settings), settings, target_path=target, log_path=target / "logs")
    return frozenset(json.loads(line)["unique_id"] for line in res.stdout.splitlines() if line.startswith("{"))


@pytest.fixture(scope="module")
def dagbag():
    """The dags folder parsed as Airflow does."""
    bag = dag_bag(parse_dbt=False)
    assert bag.import_errors == {}
    return bag


def _dbt_tasks(dagbag) -> dict[tuple[str, str], object]:
    """(dag_id, task_id) -> every task of every DAG that runs dbt through cosmos."""
    from cosmos.operators.base import AbstractDbtBase

    return {(dag_id, t.task_id): t for dag_id, dag in dagbag.dags.items() for t in dag.tasks
            if isinstance(t, AbstractDbtBase)}


def test_stages_build_every_resource_exactly_once(dbt_target):
    per_stage = {s.selector: dbt_ls(dbt_target, "--selector", s.selector) for s in dbt_stages.STAGES}
    manifest = json.loads((dbt_target / "manifest.json").read_text())
    everything = {uid for uid, node in manifest["nodes"].items() if node["resource_type"] in BUILT}
    for name, nodes in per_stage.items():
        assert nodes, f"selector {name} selects nothing"
    built = [n for nodes in per_stage.values() for n in nodes]
    twice = {n for n in built if built.count(n) > 1}
    assert not twice, f"built by more than one stage: {sorted(twice)}"
    assert set(built) == everything, f"in no stage: {sorted(everything - set(built))}"
    # the identity matcher's input is staged before resolution, what reads identity.* after it
    assert "model.crm_knowledge.int_identity_candidates" in per_stage["identity_input"]
    assert "model.crm_knowledge.stg_identity__record_clusters" in per_stage["post_identity"]
    assert "model.crm_knowledge.customer_segments" in per_stage["post_scoring"]


def test_every_dag_builds_exactly_its_catalogue_stages(dagbag, dbt_target):
    """Every dbt task of every DAG is one catalogue stage, selected by its selector and nothing else, and
    every stage is built by exactly the task the catalogue names."""
    from cosmos.operators.base import DbtBuildMixin

    tasks = _dbt_tasks(dagbag)
    expected = {(s.dag_id, s.task_id): s for s in dbt_stages.STAGES}
    assert set(tasks) == set(expected), "the DAGs' dbt tasks and the stage catalogue differ"
    for key, stage in expected.items():
        task = tasks[key]
        assert isinstance(task, DbtBuildMixin), f"{key}: a stage is one `dbt build`"
        assert task.selector == stage.selector, f"{key} builds selector {task.selector!r}, not {stage.selector!r}"
        assert not task.select and not task.exclude, f"{key}: a stage selects by its catalogue selector only"
        assert dbt_ls(dbt_target, "--selector", task.selector), f"{key}: selector {task.selector} selects nothing"


def test_stages_run_in_catalogue_order(dagbag):
    """Within a DAG, a later stage runs downstream of an earlier one (identity resolution between them)."""
    for earlier, later in zip(dbt_stages.STAGES, dbt_stages.STAGES[1:], strict=False):
        if earlier.dag_id != later.dag_id:
            continue
        dag = dagbag.dags[earlier.dag_id]
        assert earlier.task_id in dag.get_task(later.task_id).get_flat_relative_ids(upstream=True)


def test_build_args():
    assert dbt_stages.build_args(dbt_stages.MARTS) == ["build", "--selector", "post_identity"]
    args = dbt_stages.build_args(dbt_stages.STAGING, full_refresh=True, dbt_vars={"as_of_date": "2026-03-31"},
                                 with_tests=False, extra=("--threads", "2"))
    assert args == ["build", "--selector", "identity_input", "--full-refresh", "--vars",
                    '{"as_of_date": "2026-03-31"}', "--exclude-resource-type", "test",
                    "--exclude-resource-type", "unit_test", "--threads", "2"]


def test_the_as_of_date_and_the_run_start_travel_in_the_environment():
    """As the DAGs' dbt tasks hand them (ckp_common.dbt_build_stage): a daily start in --vars would make dbt
    parse the project again every day; unset, each is '' (today, every row), so an exported variable of the
    caller's shell cannot turn a weekly build into a daily one."""
    rest, env = dbt_stages.vars_and_env({"as_of_date": "2026-03-31", "dbt_tests_since": "2026-04-01T02:00:00+00:00",
                                         "incremental_lookback_hours": 0})
    assert rest == {"incremental_lookback_hours": 0}
    assert env == {dbt_stages.AS_OF_ENV: "2026-03-31", dbt_stages.TESTS_SINCE_ENV: "2026-04-01T02:00:00+00:00"}
    assert dbt_stages.vars_and_env(None) == ({}, {dbt_stages.AS_OF_ENV: "", dbt_stages.TESTS_SINCE_ENV: ""})
    weekly = dbt_stages.vars_and_env({"dbt_tests_since": ""})
    assert weekly == ({}, {dbt_stages.AS_OF_ENV: "", dbt_stages.TESTS_SINCE_ENV: ""})
