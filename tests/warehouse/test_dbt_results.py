"""dbt test results reach audit.dq_results the way Airflow runs them: through cosmos' `callback`.

The DAGs' dbt task groups get ``operator_args=dbt_operator_args()`` (dags/ckp_common.py): cosmos
(ExecutionMode.LOCAL) runs dbt in a temporary copy of the project and, before raising dbt's failure,
calls ``crm_knowledge.quality.pipeline.record_dbt_task_results`` with that copy's path and the task
context. Here the real cosmos operators run real dbt against a scratch warehouse database, with one seed
row duplicated on purpose so the seed's `unique` test fails, and the rows written are checked.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
import pytest

from crm_knowledge.settings import PROJECT_ROOT
from crm_knowledge.warehouse.bootstrap import apply_ddl

pytestmark = pytest.mark.warehouse

DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
SEED = "contact_topic_knowledge_kinds"
DAY = "2026-11-20"


def ckp_common():
    """dags/ckp_common.py, imported as Airflow does (the dags folder on sys.path)."""
    dags = str(PROJECT_ROOT / "dags")
    if dags not in sys.path:
        sys.path.append(dags)
    import ckp_common

    return ckp_common


def dbt_env(url: str) -> dict[str, str]:
    parts = urlsplit(url)
    return {"CKP_DBT_HOST": parts.hostname or "127.0.0.1", "CKP_DBT_PORT": str(parts.port or 5432),
            "CKP_DBT_USER": parts.username or "postgres", "CKP_DBT_PASSWORD": unquote(parts.password or ""),
            "CKP_DBT_DBNAME": parts.path.lstrip("/"), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}


@pytest.fixture()
def project(tmp_path) -> Path:
    """A copy of the dbt project whose topic seed has one topic twice (its `unique` test must fail)."""
    copy = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, copy, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    seed = copy / "seeds" / f"{SEED}.csv"
    lines = seed.read_text(encoding="utf-8").splitlines()
    assert lines[1].startswith("complaint,")
    seed.write_text("\n".join([*lines, lines[1]]) + "\n", encoding="utf-8")
    return copy


@pytest.fixture()
def db(scratch_db):
    apply_ddl(scratch_db)
    return scratch_db


class FakeDagRun:
    run_after = None


def run_cosmos(operator_cls, project: Path, url: str, monkeypatch, **kwargs):
    """Run one cosmos LOCAL operator as a DbtTaskGroup task would, with the DAGs' operator_args."""
    from cosmos.config import ProfileConfig

    # the callback connects through crm_knowledge.settings, as in a worker: point it at the scratch database
    monkeypatch.setenv("WAREHOUSE_URL", url)
    profile = ProfileConfig(profile_name="crm_knowledge", target_name="warehouse",
                            profiles_yml_filepath=project / "profiles.yml")
    op = operator_cls(task_id=f"t_{operator_cls.__name__}", project_dir=str(project), profile_config=profile,
                      env=dbt_env(url), install_deps=False, emit_datasets=False,
                      should_store_compiled_sql=False, vars={"as_of_date": DAY},
                      **ckp_common().dbt_operator_args(), **kwargs)
    context = {"ds": DAY, "run_id": f"scheduled__{DAY}T00:00:00+00:00", "dag_run": FakeDagRun()}
    return op.execute(context)


def dq_rows(url: str) -> tuple[list[tuple], list[tuple]]:
    with psycopg.connect(url) as conn:
        runs = conn.execute("select dq_run_id, pipeline_run_id, layer, suite, success, critical_failures, warnings "
                            "from audit.dq_runs order by suite").fetchall()
        results = conn.execute(
            """select r.suite, r.expectation, r.column_name, r.severity, r.success, r.unexpected_count,
                      r.expectation_id, r.observed_value ->> 'status', d.pipeline_run_id
                 from audit.dq_results r join audit.dq_runs d using (dq_run_id)
                order by r.expectation_id""").fetchall()
    return runs, results


def test_cosmos_callback_records_every_dbt_test_with_the_failure(db, project, monkeypatch):
    from cosmos.exceptions import CosmosDbtRunError
    from cosmos.operators.local import DbtSeedLocalOperator, DbtTestLocalOperator

    # the seeds build: a successful build writes no quality row
    run_cosmos(DbtSeedLocalOperator, project, db, monkeypatch, select=SEED)
    assert dq_rows(db) == ([], [])
    with psycopg.connect(db) as conn:
        assert conn.execute(f"select count(*) from seeds.{SEED} where topic = 'complaint'").fetchone()[0] == 2

    # the seed's tests, as the after_each test task runs them: dbt fails the task, results are recorded first
    with pytest.raises(CosmosDbtRunError, match=f"unique_{SEED}_topic"):
        run_cosmos(DbtTestLocalOperator, project, db, monkeypatch, select=SEED)

    runs, results = dq_rows(db)
    assert runs == [(f"dq-dbt-day-{DAY}-dbt.{SEED}", f"day-{DAY}", "dbt", f"dbt.{SEED}", False, 1, 0)]
    # one row per data test of the seed (unique + not_null on topic, not_null + accepted_values on kind, ...)
    assert len(results) >= 5
    assert {r[8] for r in results} == {f"day-{DAY}"}
    assert all(r[6].startswith("test.crm_knowledge.") for r in results)  # the test's unique_id
    failed = [r for r in results if not r[4]]
    assert [(r[0], r[1], r[2], r[3], r[5], r[7]) for r in failed] == [
        (f"dbt.{SEED}", "dbt:unique", "topic", "critical", 1, "fail")]
    assert failed[0][6].startswith(f"test.crm_knowledge.unique_{SEED}_topic.")
    assert all(r[7] == "pass" and r[5] == 0 for r in results if r[4])
    assert not (project / "target" / "run_results.json").exists()  # cosmos ran dbt in a temporary copy

    # Airflow retries the failed task: the same tests are replaced, not counted twice
    with pytest.raises(CosmosDbtRunError, match=f"unique_{SEED}_topic"):
        run_cosmos(DbtTestLocalOperator, project, db, monkeypatch, select=SEED)
    assert dq_rows(db) == (runs, results)

    # the seed is fixed and the task re-run: the failure is replaced by a pass
    seed = project / "seeds" / f"{SEED}.csv"
    seed.write_text("\n".join(seed.read_text(encoding="utf-8").splitlines()[:-1]) + "\n", encoding="utf-8")
    run_cosmos(DbtSeedLocalOperator, project, db, monkeypatch, select=SEED)
    run_cosmos(DbtTestLocalOperator, project, db, monkeypatch, select=SEED)
    runs, fixed = dq_rows(db)
    assert runs == [(f"dq-dbt-day-{DAY}-dbt.{SEED}", f"day-{DAY}", "dbt", f"dbt.{SEED}", True, 0, 0)]
    assert len(fixed) == len(results) and all(r[4] for r in fixed)


def test_auditor_page_shows_dbt_tests_next_to_gx(db, project, monkeypatch, settings, tmp_path):
    """The day's report lists the dbt layer with its failing test next to the GX layers."""
    from cosmos.exceptions import CosmosDbtRunError
    from cosmos.operators.local import DbtSeedLocalOperator, DbtTestLocalOperator

    from crm_knowledge.quality import pipeline

    run_cosmos(DbtSeedLocalOperator, project, db, monkeypatch, select=SEED)
    with pytest.raises(CosmosDbtRunError, match=f"unique_{SEED}_topic"):
        run_cosmos(DbtTestLocalOperator, project, db, monkeypatch, select=SEED)
    qsettings = dataclasses.replace(settings, home=tmp_path / "home")
    out = pipeline.build_reports(f"day-{DAY}", settings=qsettings, url=db)

    page = Path(out["report"]).read_text(encoding="utf-8")
    assert out["report"].endswith(f"runs/day-{DAY}/index.html")
    assert "<td>dbt</td>" in page
    assert f"dbt.{SEED}" in page and "dbt:unique" in page
    assert "BLOCKED: 1 critical failure(s)" in page


def test_callback_without_run_results_records_nothing(db, tmp_path):
    from crm_knowledge.quality.pipeline import record_dbt_task_results

    assert record_dbt_task_results(tmp_path, {"ds": DAY}, url=db) is None
    assert dq_rows(db) == ([], [])


def node_runs(url: str) -> dict[str, tuple]:
    with psycopg.connect(url) as conn:
        return {r[0]: r[1:] for r in conn.execute(
            "select unique_id, pipeline_run_id, resource_type, status, rows_affected, message "
            "from audit.dbt_node_runs").fetchall()}


def test_a_stage_is_one_build_that_fails_on_a_failing_model_or_test_and_records_every_node(
        db, project, monkeypatch, settings, tmp_path):
    """A stage task (ckp_common.dbt_build_stage: cosmos' DbtBuildLocalOperator with a selector) runs one
    `dbt build`: a model that errors and a test that fails both fail the task, and every node's result is in
    audit.dbt_node_runs (tests in audit.dq_results) before the task fails."""
    from cosmos.exceptions import CosmosDbtRunError
    from cosmos.operators.local import DbtBuildLocalOperator

    broken_sql = '{{ config(materialized="table") }}\nselect 1 / 0 as boom\n'
    (project / "models" / "zz_broken.sql").write_text(broken_sql, encoding="utf-8")
    with (project / "selectors.yml").open("a", encoding="utf-8") as fh:
        fh.write("\n  - name: ckp_test_stage\n    definition:\n      union:\n"
                 f"        - method: fqn\n          value: {SEED}\n"
                 "        - method: fqn\n          value: zz_broken\n")

    with pytest.raises(CosmosDbtRunError) as failed:
        run_cosmos(DbtBuildLocalOperator, project, db, monkeypatch, selector="ckp_test_stage")
    assert "dbt invocation completed with errors" in str(failed.value)

    nodes = node_runs(db)
    assert nodes[f"seed.crm_knowledge.{SEED}"][:3] == (f"day-{DAY}", "seed", "success")
    broken = nodes["model.crm_knowledge.zz_broken"]
    assert broken[:3] == (f"day-{DAY}", "model", "error") and "division by zero" in broken[4]
    runs, results = dq_rows(db)
    assert (f"dbt.{SEED}", "dbt:unique", "topic", "critical", False) in {r[:5] for r in results}
    assert ("dbt.zz_broken", "dbt:model_build", None, "critical", False) in {r[:5] for r in results}

    # the auditor's page lists every node, the failed one first
    from crm_knowledge.quality import pipeline

    out = pipeline.build_reports(f"day-{DAY}", settings=dataclasses.replace(settings, home=tmp_path / "home"), url=db)
    page = Path(out["report"]).read_text(encoding="utf-8")
    nodes_table = page[page.index('<table id="dbt-nodes">'):]
    assert nodes_table.index("model.crm_knowledge.zz_broken") < nodes_table.index(f"seed.crm_knowledge.{SEED}")
    assert "2 models, seeds and snapshots: 1 error, 1 success" in page

    # fixed and re-run (Airflow's retry, or the next day): the same rows are replaced, the task succeeds
    (project / "models" / "zz_broken.sql").write_text(broken_sql.replace("1 / 0", "1"), encoding="utf-8")
    seed = project / "seeds" / f"{SEED}.csv"
    seed.write_text("\n".join(seed.read_text(encoding="utf-8").splitlines()[:-1]) + "\n", encoding="utf-8")
    run_cosmos(DbtBuildLocalOperator, project, db, monkeypatch, selector="ckp_test_stage")
    nodes = node_runs(db)
    assert len(nodes) == 2 and nodes["model.crm_knowledge.zz_broken"][2:4] == ("success", 1)
    assert all(r[4] for r in dq_rows(db)[1])
