"""The stage catalogue (dbt_project/selectors.yml, named by crm_knowledge.dbt_stages) is what the DAGs render.

`dbt ls --selector` is the truth for every `dbt build --selector` (benchmark, tests, hand-run builds); the
DAGs render the same selectors through cosmos, which parses them itself. These tests fail when the two
disagree, when a DAG renders a dbt group that is not in the catalogue, or when a model is in no stage or
in two.
"""

from __future__ import annotations

import json
import os
import sys
from functools import cache

import pytest

from crm_knowledge import dbt_stages
from crm_knowledge.runner import run_dbt
from crm_knowledge.settings import PROJECT_ROOT, get_settings

DAGS_DIR = PROJECT_ROOT / "dags"
BUILT = ("model", "seed", "snapshot")
#: dbt needs a profile to list nodes, never a connection: `dbt ls` does not connect.
OFFLINE_PROFILE = {"CKP_DBT_HOST": "127.0.0.1", "CKP_DBT_PORT": "5432", "CKP_DBT_USER": "x",
                   "CKP_DBT_PASSWORD": "x", "CKP_DBT_DBNAME": "x", "DO_NOT_TRACK": "1"}


@cache
def dbt_ls(*args: str) -> frozenset[str]:
    """unique_ids of the models, seeds and snapshots `dbt ls` selects (once per selection)."""
    settings = get_settings()
    env = {**os.environ, **OFFLINE_PROFILE, "DBT_PROFILES_DIR": str(settings.dbt_project_dir)}
    res = run_dbt(["ls", *args, "--resource-type", *BUILT, "--output", "json", "--output-keys", "unique_id"],
                  env, settings)
    return frozenset(json.loads(line)["unique_id"] for line in res.stdout.splitlines() if line.startswith("{"))


@pytest.fixture(scope="module")
def dagbag():
    """The dags folder parsed as Airflow does, on a fresh manifest (cosmos renders from it)."""
    settings = get_settings()
    run_dbt(["parse"], {**os.environ, **OFFLINE_PROFILE, "DBT_PROFILES_DIR": str(settings.dbt_project_dir)},
            settings)
    if str(DAGS_DIR) not in sys.path:
        sys.path.append(str(DAGS_DIR))
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_DIR))
    assert bag.import_errors == {}
    return bag


def _dbt_groups(dag) -> dict:
    """group_id -> DbtTaskGroup of every cosmos task group in a DAG (nested groups included)."""
    from cosmos import DbtTaskGroup

    found, todo = {}, [dag.task_group]
    while todo:
        group = todo.pop()
        for child in getattr(group, "children", {}).values():
            if isinstance(child, DbtTaskGroup):
                found[child.group_id] = child
            if hasattr(child, "children"):
                todo.append(child)
    return found


def test_stages_build_every_resource_exactly_once():
    everything = dbt_ls()
    per_stage = {s.selector: dbt_ls("--selector", s.selector) for s in dbt_stages.STAGES}
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


def test_every_dag_renders_exactly_its_catalogue_stage(dagbag):
    """Each cosmos group renders its stage's selector, and cosmos selects what `dbt ls --selector` lists."""
    rendered = {}
    for dag_id, dag in dagbag.dags.items():
        for group_id, group in _dbt_groups(dag).items():
            rendered[(dag_id, group_id)] = group
    expected = {(s.dag_id, s.task_group): s for s in dbt_stages.STAGES}
    assert set(rendered) == set(expected), "DAG dbt groups and the stage catalogue differ"
    for key, stage in expected.items():
        group = rendered[key]
        assert group.dbt_graph.render_config.selector == stage.selector, key
        assert not group.dbt_graph.render_config.select and not group.dbt_graph.render_config.exclude, (
            f"{key}: a dbt group selects by its catalogue selector only")
        cosmos_nodes = {uid for uid, node in group.dbt_graph.filtered_nodes.items()
                        if node.resource_type.value in BUILT}
        dbt_nodes = dbt_ls("--selector", stage.selector)
        assert cosmos_nodes == dbt_nodes, (
            f"{key}: cosmos renders {sorted(cosmos_nodes - dbt_nodes)} that dbt does not select, and misses "
            f"{sorted(dbt_nodes - cosmos_nodes)}")
        task_ids = " ".join(dagbag.dags[key[0]].task_ids)
        missing = [uid for uid in dbt_nodes if uid.split(".")[-1] not in task_ids]
        assert not missing, f"{key}: no task shows {missing}"


def test_build_args():
    assert dbt_stages.build_args(dbt_stages.MARTS) == ["build", "--selector", "post_identity"]
    args = dbt_stages.build_args(dbt_stages.STAGING, full_refresh=True, dbt_vars={"as_of_date": "2026-03-31"},
                                 with_tests=False, extra=("--threads", "2"))
    assert args == ["build", "--selector", "identity_input", "--full-refresh", "--vars",
                    '{"as_of_date": "2026-03-31"}', "--exclude-resource-type", "test",
                    "--exclude-resource-type", "unit_test", "--threads", "2"]
