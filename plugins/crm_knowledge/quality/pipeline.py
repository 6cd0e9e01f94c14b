"""The quality steps as the DAGs call them (results are JSON-able dicts for XCom).

* :func:`check_new_raw_batches` (customer_warehouse, before dbt staging): validates every ``loaded``
  batch no gate has seen yet, and re-validates ``held`` batches so a fix (corrected rows, changed suite)
  releases them. Held batches do not fail the task by default: they are kept out of staging by their
  ledger status, and the other sources go on.
* :func:`check_layers` (customer_warehouse, after dbt marts): staging and marts; any critical failure
  raises after both layers were validated and recorded. Marts built after scoring are left out.
* :func:`check_post_scoring` (customer_scoring, after the post-scoring dbt models, before deliveries).
* :func:`record_dbt_task_results`: the cosmos ``callback`` of every dbt task (see ``dags/ckp_common.py``):
  files the task's ``target/run_results.json``: tests and failed builds into ``audit.dq_results``, every
  model's result into ``audit.dbt_node_runs``.
* :func:`check_source_freshness` (customer_warehouse, before the marts gate): ``dbt source freshness``,
  recorded as layer ``freshness``; a source past its ``error_after`` fails the task, so scoring and exports
  wait for it.
* :func:`build_reports`: Data Docs + the auditor's page of the run; never raises on a report problem
  that is not a database one.

Results of one day are keyed ``day-<as-of date>`` (:func:`crm_knowledge.as_of.run_key`), so the warehouse
and scoring DAG runs of a day, their GX gates and their dbt tests form one report.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from crm_knowledge.as_of import as_of_date, run_key
from crm_knowledge.ingest import field_issues
from crm_knowledge.ingest.registry import KIND_TARGETS
from crm_knowledge.quality import gate, report, scope_views
from crm_knowledge.quality.gate import POST_SCORING_SUITES, CriticalDataQualityError, GateResult
from crm_knowledge.run_mode import RunMode
from crm_knowledge.settings import Settings, get_settings
from crm_knowledge.warehouse.db import connect

log = logging.getLogger(__name__)


def _run_id(pipeline_run_id: str | None) -> str:
    return pipeline_run_id or f"manual-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}"


def day_run_id_from_context(context: Mapping[str, Any] | None) -> str:
    """The key of the day an Airflow task context's run is about (:func:`crm_knowledge.as_of.as_of_date`:
    the same as-of date the run's other tasks use). Without a context: a manual run id."""
    if not context:
        return _run_id(None)
    return run_key(as_of_date(context))


def raw_table_for(source_kind: str, source_name: str) -> str | None:
    """The raw table a batch was loaded into (``orders_db`` batches are named ``<source>.<table>``)."""
    if source_kind in KIND_TARGETS:
        return KIND_TARGETS[source_kind][0]
    if source_kind == "orders_db" and "." in source_name:
        return f"raw.orders__{source_name.split('.', 1)[1]}"
    return None


def batches_to_validate(url: str, *, include_held: bool = True) -> dict[str, list[str]]:
    """Raw table -> batch ids: loaded batches never validated, plus (optionally) every held batch."""
    with connect(url) as conn:
        rows = conn.execute(
            """select b.batch_id, b.source_kind, b.source_name, b.status
                 from audit.load_batches b
                where (b.status = 'loaded'
                       and not exists (select 1 from audit.dq_runs d where d.batch_id = b.batch_id
                                         and d.layer = 'raw' and d.finished_at is not null))
                   or (%s and b.status = 'held')
                order by b.started_at, b.batch_id""", (include_held,)).fetchall()
    out: dict[str, list[str]] = {}
    for batch_id, kind, name, _status in rows:
        table = raw_table_for(kind, name)
        if table is None:
            log.warning("batch %s (%s/%s): no raw table known, not validated", batch_id, kind, name)
            continue
        out.setdefault(table, []).append(batch_id)
    return out


def _summary(result: GateResult) -> dict[str, Any]:
    return {
        "layer": result.layer,
        "pipeline_run_id": result.pipeline_run_id,
        "suites_run": len(result.scopes),
        "checks_run": result.checks_run,
        "checks_failed": result.checks_failed,
        "critical_failures": [o.describe() for o in result.critical_failures],
        "warnings": len(result.warnings),
        "held_batches": result.held_batches,
        "released_batches": result.released_batches,
        "skipped_batches": result.skipped_batches,
        "scopes": {s.suite: s.scope for s in result.scopes if s.scope and not s.batch_id},
        "data_docs": str(result.data_docs_index) if result.data_docs_index else None,
    }


def check_new_raw_batches(pipeline_run_id: str | None = None, *, include_held: bool = True,
                          raise_on_held: bool = False, settings: Settings | None = None,
                          url: str | None = None) -> dict[str, Any]:
    settings = settings or get_settings()
    url = url or settings.warehouse_url
    run_id = _run_id(pipeline_run_id)
    out: dict[str, Any] = {"pipeline_run_id": run_id, "tables": {}, "held_batches": [], "released_batches": []}
    errors = []
    # first in every warehouse run, before its dbt stages: a scope view a killed gate left depends on its
    # relation, and dbt could not drop a column of that relation while the view exists
    out["orphaned_scope_views_dropped"] = len(scope_views.drop_orphaned(url))
    # values staging cannot convert, per field, and the per-source threshold that holds a batch
    with connect(url, autocommit=True) as conn:
        out["held_for_field_issues"] = list(field_issues.check_new_batches(conn))
    for table, batch_ids in batches_to_validate(url, include_held=include_held).items():
        try:
            result = gate.validate_raw_batches(table, batch_ids, run_id, settings=settings, url=url)
        except CriticalDataQualityError as exc:
            result = exc.result
            errors.append(str(exc))
            log.error("%s", exc)
        out["tables"][table] = _summary(result)
        out["held_batches"] += result.held_batches
        out["released_batches"] += result.released_batches
    if errors and raise_on_held:
        raise CriticalDataQualityError("\n".join(errors), GateResult(layer="raw", pipeline_run_id=run_id))
    return out


def check_layers(layers: list[str] | tuple[str, ...] = ("staging", "marts"), pipeline_run_id: str | None = None,
                 *, exclude: tuple[str, ...] = POST_SCORING_SUITES, settings: Settings | None = None,
                 url: str | None = None, mode: RunMode | None = None) -> dict[str, Any]:
    """Validate each layer (all recorded), then raise if any had a critical failure. `mode`: the run's
    daily/weekly mode (:mod:`crm_knowledge.run_mode`; default: weekly, every row)."""
    settings = settings or get_settings()
    run_id = _run_id(pipeline_run_id)
    out: dict[str, Any] = {"pipeline_run_id": run_id, "layers": {}}
    failed = []
    for layer in layers:
        result = gate.validate_layer(layer, run_id, exclude=exclude, settings=settings, url=url,
                                     raise_on_critical=False, mode=mode)
        out["layers"][layer] = _summary(result)
        if result.critical_failures:
            failed.append(result)
    if failed:
        lines = [f"{r.layer}: {o.suite}: {o.describe()}" for r in failed for o in r.critical_failures]
        raise CriticalDataQualityError(
            "Critical data quality failure; scoring and exports must not run:\n  " + "\n  ".join(lines[:50]),
            failed[0])
    return out


def check_post_scoring(pipeline_run_id: str | None = None, *, settings: Settings | None = None,
                       url: str | None = None) -> dict[str, Any]:
    """Validate the marts built after scoring (customer_segments) before anything is delivered."""
    result = gate.validate_layer("marts", _run_id(pipeline_run_id), suites=list(POST_SCORING_SUITES),
                                 settings=settings, url=url)
    return _summary(result)


_DBT_FAILED_STATUSES = {"error", "fail", "runtime error"}


def _task_tests_since(context: Mapping[str, Any] | None) -> str | None:
    """The run's start the dbt task handed dbt in its environment (``dbt_stages.TESTS_SINCE_ENV``, rendered
    into the operator's ``env`` before it ran), or None."""
    from crm_knowledge.dbt_stages import TESTS_SINCE_ENV

    env = getattr((context or {}).get("task"), "env", None)
    return (env.get(TESTS_SINCE_ENV) or None) if isinstance(env, Mapping) else None


def record_dbt_task_results(project_dir: str | Path, context: Mapping[str, Any] | None = None, *,
                            pipeline_run_id: str | None = None, settings: Settings | None = None,
                            url: str | None = None, **_: Any) -> dict[str, Any] | None:
    """Cosmos ``callback``: record the dbt results of the task that just ran into ``audit.dq_results``.

    Cosmos (ExecutionMode.LOCAL) runs each stage's `dbt build` in a temporary copy of the project and calls this
    with that copy's path after dbt finished, before it raises dbt's failure, so failing tests are
    recorded too; the copy (and its ``run_results.json``) is deleted right after. The run is keyed
    :func:`day_run_id_from_context` unless `pipeline_run_id` is given.

    A recording error fails the task when dbt itself succeeded (Airflow retries; recording is idempotent)
    and is only logged when dbt failed, so dbt's own error stays the one the task reports.
    """
    target = Path(project_dir) / "target"
    run_results = target / "run_results.json"
    if not run_results.is_file():
        log.warning("no %s: dbt wrote no results (it failed before running anything); nothing recorded",
                    run_results)
        return None
    run_id = pipeline_run_id or day_run_id_from_context(context)
    try:
        statuses = {(r.get("status") or "").lower()
                    for r in json.loads(run_results.read_text(encoding="utf-8")).get("results", [])}
    except (OSError, ValueError):
        statuses = set()
    dbt_failed = bool(statuses & _DBT_FAILED_STATUSES)
    try:
        result = gate.record_dbt_results(run_results, run_id, manifest_path=target / "manifest.json",
                                         settings=settings, url=url, tests_since=_task_tests_since(context))
    except Exception:
        log.exception("recording dbt results of %s into audit.dq_results for %s failed", run_results, run_id)
        if not dbt_failed:
            raise
        return None
    return _summary(result)


def check_source_freshness(pipeline_run_id: str | None = None, *, settings: Settings | None = None) -> dict[str, Any]:
    """``dbt source freshness`` on every source that declares a freshness, recorded for the report (see
    :mod:`crm_knowledge.quality.freshness`); raises StaleSourceError naming the tables past ``error_after``.

    A source past ``warn_after`` only is recorded as a warning and does not fail the task.
    """
    from crm_knowledge.quality.freshness import StaleSourceError, record_freshness
    from crm_knowledge.runner import dbt_process_env, run_dbt

    settings = settings or get_settings()
    run_id = _run_id(pipeline_run_id)
    # a target folder of its own (the check never writes into the project's), seeded with the project's
    # partial-parse state (`dbt parse` of `make run` / the image) so dbt re-parses only what changed
    work = settings.home / "dbt_freshness"
    (work / "target").mkdir(parents=True, exist_ok=True)
    parsed = settings.dbt_project_dir / "target" / "partial_parse.msgpack"
    if parsed.is_file():
        shutil.copyfile(parsed, work / "target" / "partial_parse.msgpack")
    sources_json = work / "target" / "sources.json"
    sources_json.unlink(missing_ok=True)  # never record an earlier check's file
    result = run_dbt(["source", "freshness"], dbt_process_env(settings), settings, target_path=work / "target",
                     log_path=work / "logs", check=False)
    if not sources_json.is_file():  # dbt failed before checking anything (no connection, bad project)
        raise StaleSourceError(result.failure_message())
    summary = record_freshness(sources_json, run_id, url=settings.warehouse_url)
    if summary["errors"]:
        raise StaleSourceError(
            f"{len(summary['errors'])} source table(s) past their freshness error_after (or not measurable); "
            f"scoring and exports wait for them: {', '.join(summary['errors'])}. Details: the run report "
            f"({run_id}) and dbt_project/models/staging/_<source>__sources.yml for the thresholds.")
    return summary


def build_reports(pipeline_run_id: str | None = None, *, settings: Settings | None = None,
                  url: str | None = None) -> dict[str, str]:
    settings = settings or get_settings()
    run_id = _run_id(pipeline_run_id)
    page = report.build_run_report(run_id, settings=settings, url=url)
    return {"pipeline_run_id": run_id, "report": str(page), "latest": str(report.latest_report_path(settings)),
            "data_docs": str(settings.reports_dir / "data_docs" / "index.html")}
