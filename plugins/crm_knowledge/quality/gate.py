"""Data quality gates: validate raw batches, staging entities and marts with their GX suites.

* :func:`validate_raw_batches` validates each given load batch of one raw table on its own
  (``where _batch_id = ...``). A critical failure sets the batch's ledger status to ``held`` (staging
  only reads rows of ``loaded`` batches, so it never reaches the customer view) and raises
  :class:`CriticalDataQualityError` naming the expectation, the column and offending row numbers. A held
  batch that passes on re-validation (rows corrected, suite changed) goes back to ``loaded``.
* :func:`validate_layer` validates every staging entity or mart; a critical failure raises, so the DAG
  stops before identity resolution / scoring / exports.
* :func:`record_dbt_results` files dbt's test results (``target/run_results.json``) next to GX's.

Cost follows the batch, not the raw table: a batch is selected through the ``_batch_id`` index, and when the
table's statistics predate the batch (the planner expects ~1 row of it) the batch column is analysed first
(:func:`_refresh_stale_statistics`), so GX's uniqueness joins are not planned as rows² nested loops. Each
check reads the scope once and fetches at most ``results.SAMPLE_SIZE`` offending rows: the row checks
(``UnexpectedRowsExpectation``, which GX runs twice) by :mod:`.row_checks`, the rest by GX (``SUMMARY``).

Warnings are recorded, never raised. Everything lands in ``audit.dq_runs`` / ``audit.dq_results``
(no PII) and in the GX Data Docs site (``<reports_dir>/data_docs/index.html``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from crm_knowledge.quality import results as res
from crm_knowledge.quality import row_checks, scope_views
from crm_knowledge.quality.context import DATASOURCE_NAME, build_context, build_data_docs
from crm_knowledge.quality.results import Outcome
from crm_knowledge.quality.suites import SuiteSpec, runtime_suite, spec_for_relation, specs_for_layer
from crm_knowledge.run_mode import CHANGED_CUSTOMERS_SQL, DBT_TESTS_SINCE_VAR, RunMode
from crm_knowledge.settings import Settings, get_settings
from crm_knowledge.warehouse.db import connect, refresh_statistics, table_exists

log = logging.getLogger(__name__)

#: Result format asked of GX: counts and percentages, and at most SAMPLE_SIZE offending rows identified by
#: the suite's row-id columns, all a report keeps. SUMMARY, not COMPLETE: with COMPLETE a column-map
#: expectation also fetches every offending value (``unexpected_list``, unbounded); with SUMMARY that query is
#: limited to `partial_unexpected_count` like the row-id one (GX's `_sqlalchemy_column_map_condition_values`
#: and `_sqlalchemy_map_condition_index`). Values GX returns are masked before anything is stored
#: (results.scrub_validation_result).
def _result_format(spec: SuiteSpec) -> dict[str, Any]:
    return {"result_format": "SUMMARY", "unexpected_index_column_names": list(spec.row_id),
            "partial_unexpected_count": res.SAMPLE_SIZE, "return_unexpected_index_query": False}


#: Marts built after scoring (dbt selector `post_scoring`): validate them after scoring, before exports.
POST_SCORING_SUITES = ("marts.customer_segments",)


class CriticalDataQualityError(RuntimeError):
    """A critical expectation failed. `result` holds everything that was validated and recorded."""

    def __init__(self, message: str, result: GateResult):
        super().__init__(message)
        self.result = result


@dataclass
class ScopeResult:
    """One suite validated on one scope: a raw batch, or a staging/mart relation."""

    dq_run_id: str
    suite: str
    layer: str
    relation: str
    batch_id: str | None
    outcomes: list[Outcome]
    action: str | None = None  # raw: passed | held | released
    row_count: int | None = None
    data_docs_page: str | None = None
    scope: str | None = None  # what the checks read (audit.dq_runs.scope): see gate_scope()

    @property
    def critical_failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.critical_failure]

    @property
    def warnings(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.warning]


@dataclass
class GateResult:
    layer: str
    pipeline_run_id: str
    scopes: list[ScopeResult] = field(default_factory=list)
    held_batches: list[str] = field(default_factory=list)
    released_batches: list[str] = field(default_factory=list)
    skipped_batches: dict[str, str] = field(default_factory=dict)  # batch_id -> why not validated
    data_docs_index: Path | None = None

    @property
    def success(self) -> bool:
        return not self.critical_failures

    @property
    def critical_failures(self) -> list[Outcome]:
        return [o for s in self.scopes for o in s.critical_failures]

    @property
    def warnings(self) -> list[Outcome]:
        return [o for s in self.scopes for o in s.warnings]

    @property
    def dq_run_ids(self) -> list[str]:
        return [s.dq_run_id for s in self.scopes]

    @property
    def checks_run(self) -> int:
        return sum(len(s.outcomes) for s in self.scopes)

    @property
    def checks_failed(self) -> int:
        return sum(not o.success for s in self.scopes for o in s.outcomes)

    def summary(self) -> str:
        return (f"{self.layer}: {len(self.scopes)} suite run(s), {self.checks_run} checks, "
                f"{len(self.critical_failures)} critical failure(s), {len(self.warnings)} warning(s)"
                + (f", held batches: {', '.join(self.held_batches)}" if self.held_batches else "")
                + (f", released batches: {', '.join(self.released_batches)}" if self.released_batches else ""))


# --- helpers ---------------------------------------------------------------------------------------

def _relation_sql(relation: str) -> sql.Composable:
    schema, _, table = relation.partition(".")
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))


def _whole_query(conn: psycopg.Connection, relation: str) -> str:
    """The query of every row of `relation`: a whole-table scope, and a whole-table row check's `{batch}`."""
    return sql.SQL("select * from {}").format(_relation_sql(relation)).as_string(conn)


def _measure(conn: psycopg.Connection, query: str, columns: list[str]) -> tuple[int, dict[str, float]]:
    """Row count and null rate of `columns` (columns that do not exist are left out), in one scan."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL("select * from ({}) q limit 0").format(sql.SQL(query)))
        present = {d.name for d in cur.description or ()}
    measured = [c for c in dict.fromkeys(columns) if c in present]
    nulls = [sql.SQL("count(*) filter (where {} is null)").format(sql.Identifier(c)) for c in measured]
    row = conn.execute(sql.SQL("select {} from ({}) q").format(
        sql.SQL(", ").join([sql.SQL("count(*)"), *nulls]), sql.SQL(query))).fetchone()
    n = row[0]
    return n, {col: (k / n) if n else 0.0 for col, k in zip(measured, row[1:], strict=True)}


#: A raw table's statistics are refreshed (ANALYZE of its batch column) when the planner expects fewer than
#: 1/STALE_STATS_RATIO of a batch's rows, for batches of at least STALE_STATS_MIN_ROWS rows.
STALE_STATS_RATIO = 10
STALE_STATS_MIN_ROWS = 1000
STATS_LOCK_TIMEOUT = "10s"


def _planned_rows(conn: psycopg.Connection, query: str) -> float:
    """The planner's row estimate for `query` (EXPLAIN only: nothing is executed)."""
    plan = conn.execute(sql.SQL("explain (format json) {}").format(sql.SQL(query))).fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return float(plan[0]["Plan"]["Plan Rows"])


def _refresh_stale_statistics(conn: psycopg.Connection, spec: SuiteSpec, query: str, row_count: int,
                              columns: list[str]) -> bool:
    """ANALYZE `columns` of the suite's table when the planner does not know the scope's rows yet (the raw
    table's batch column; a staging or marts table's ``staged_at`` on a daily run); commit.

    A batch loaded after the table was last analysed is not among the sampled ``_batch_id`` values, so the
    planner expects ~1 row of it (autoanalyze waits for 10% of the table to change: a daily batch never
    triggers it on a big table). GX's uniqueness checks join the batch to its duplicated keys; planned for
    1 row that join is a nested loop re-aggregating the whole batch per row: time grows with rows²
    (22k rows: 51 s). ANALYZE samples a bounded number of rows (300 x the statistics target), so its cost
    does not grow with the table the way that join grows with the batch. Committed at once: GX plans on
    its own connection. The same holds for the rows a daily run wrote into a staging or mart table (the 1M
    benchmark's day: the check of fct_orders' totals against their items planned for 1 of 57k orders, minutes).
    Returns whether statistics were refreshed.
    """
    if row_count < STALE_STATS_MIN_ROWS:
        return False
    planned = _planned_rows(conn, query)
    if planned * STALE_STATS_RATIO >= row_count:
        return False
    started = time.perf_counter()
    if not refresh_statistics(conn, spec.relation, columns, lock_timeout=STATS_LOCK_TIMEOUT):
        log.warning("%s: statistics are stale (planner expects %d of %d rows to check); validating with the stale "
                    "plan", spec.relation, planned, row_count)
        return False
    conn.commit()
    log.info("%s: stale statistics (planner expected %d of %d rows to check): analysed in %.2f s", spec.relation,
             planned, row_count, time.perf_counter() - started)
    return True


def _volume_bounds(conn: psycopg.Connection, spec: SuiteSpec, scope: str) -> tuple[int, int, float] | None:
    """(lowest, highest, baseline) row count the volume rule allows, from the previous accepted scope."""
    if not spec.volume:
        return None
    prev = res.previous_row_count(conn, spec.name, exclude_scope=scope)
    if not prev:
        return None
    return (math.floor(prev * float(spec.volume.get("min_ratio", 0.5))),
            math.ceil(prev * float(spec.volume.get("max_ratio", 2.0))), prev)


def _dynamic_expectations(conn: psycopg.Connection, spec: SuiteSpec, scope: str, *,
                          volume: bool = True) -> list[Any]:
    """Volume and null-rate expectations from the history of accepted scopes of this suite. `volume=False`:
    the row count is checked in SQL on the whole table instead (a daily run's scope is not the table)."""
    import great_expectations.expectations as gxe

    out: list[Any] = []
    bounds = _volume_bounds(conn, spec, scope) if volume else None
    if bounds:
        lo, hi, prev = bounds
        sev = spec.volume.get("severity", "warning")
        out.append(gxe.ExpectTableRowCountToBeBetween(
            min_value=lo, max_value=hi, severity=sev,
            meta={"severity": sev, "dynamic": "volume", "baseline_row_count": prev},
            notes=f"Volume anomaly: the row count must stay within {spec.volume.get('min_ratio')}x.."
                  f"{spec.volume.get('max_ratio')}x of the previous accepted run ({int(prev)} rows)."))
    if spec.null_rates:
        cfg = spec.null_rates
        tol = float(cfg.get("tolerance", 0.1))
        sev = cfg.get("severity", "warning")
        baselines = res.null_rate_baselines(conn, spec.name, list(cfg.get("columns", [])),
                                            int(cfg.get("history", 10)), exclude_scope=scope)
        for col, base in baselines.items():
            allowed = base + tol
            if allowed >= 1:
                continue
            out.append(gxe.ExpectColumnValuesToNotBeNull(
                column=col, mostly=round(1 - allowed, 6), severity=sev,
                meta={"severity": sev, "dynamic": "null_rate", "baseline_null_rate": round(base, 6)},
                notes=f"Null-rate drift: at most {allowed:.1%} nulls (historical mean {base:.1%} "
                      f"+ tolerance {tol:.0%})."))
    return out


def _null_rate_columns(spec: SuiteSpec) -> list[str]:
    return list((spec.null_rates or {}).get("columns", []))


def _asset_name(spec: SuiteSpec, scope: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.:@-]", "_", f"{spec.name}@{scope}")[:200]


def _store_for_docs(context, result, spec: SuiteSpec, pipeline_run_id: str, batch_identifier: str) -> tuple[Any, str]:
    """Store the (scrubbed) GX result so Data Docs show it; return its key and page path."""
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    run_id = RunIdentifier(run_name=pipeline_run_id, run_time=dt.datetime.now(dt.UTC))
    result.meta["run_id"] = run_id
    result.meta["pipeline_run_id"] = pipeline_run_id
    key = ValidationResultIdentifier(
        expectation_suite_identifier=ExpectationSuiteIdentifier(name=spec.name),
        run_id=run_id,
        batch_identifier=re.sub(r"[^A-Za-z0-9_.:-]", "_", batch_identifier),
    )
    context.validation_results_store.set(key, result)
    page = "validations/" + "/".join(str(p) for p in key.to_tuple()) + ".html"
    return key, page


def _failure_message(spec: SuiteSpec, scope: ScopeResult) -> str:
    where = f"batch {scope.batch_id}" if scope.batch_id else scope.relation
    head = f"{spec.name}, {where}" + (" (batch held)" if scope.action == "held" else "")
    return head + ":\n  " + "\n  ".join(o.describe() for o in scope.critical_failures)


class _Run:
    """State shared by the scopes of one gate call."""

    def __init__(self, layer: str, pipeline_run_id: str, settings: Settings | None, url: str | None):
        self.settings = settings or get_settings()
        self.url = url or self.settings.warehouse_url
        self.context = build_context(self.settings, self.url)
        self.datasource = self.context.data_sources.get(DATASOURCE_NAME)
        self.result = GateResult(layer=layer, pipeline_run_id=pipeline_run_id)
        self.doc_keys: list[Any] = []
        self.orphaned_views_dropped = False

    def validate(self, conn: psycopg.Connection, spec: SuiteSpec, *, query: str, scope: str,
                 batch_id: str | None, measured: tuple[int, dict[str, float]] | None = None,
                 scope_label: str | None = None, volume: bool = True, whole_relation: bool = False,
                 ) -> tuple[ScopeResult, int, dict[str, float]]:
        """Validate `spec`'s suite on the rows of `query`; `whole_relation`: `query` reads all of
        ``spec.relation``, which GX then reads as a table, else through a scope view (:mod:`.scope_views`)."""
        from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

        pipeline_run_id = self.result.pipeline_run_id
        dq_run_id = res.new_dq_run_id(spec.layer)
        res.start_run(conn, dq_run_id=dq_run_id, pipeline_run_id=pipeline_run_id, layer=spec.layer,
                      suite=spec.name, batch_id=batch_id, scope=scope_label)
        row_count, null_rates = measured or _measure(conn, query, _null_rate_columns(spec))
        suite = runtime_suite(self.context, spec, _dynamic_expectations(conn, spec, scope, volume=volume))
        gx_suite, row_check_configs = row_checks.split_suite(suite)  # row checks: one query each, here
        started = time.perf_counter()
        with self._table_asset(spec, scope, query, whole_relation) as asset:
            batch = asset.add_batch_definition_whole_table("whole").get_batch()
            gx_result = batch.validate(gx_suite, result_format=_result_format(spec))
        gx_seconds, started = time.perf_counter() - started, time.perf_counter()
        row_checks.merge_results(gx_result, suite, [
            row_checks.run_row_check(conn, c, _whole_query(conn, spec.relation) if row_checks.is_whole_table(c)
                                     else query, gx_result.batch_id)
            for c in row_check_configs])
        log.info("%s (%s): %d rows, GX %.2f s (%d expectations), row checks %.2f s (%d)", spec.name,
                 batch_id or scope_label or "whole table", row_count, gx_seconds,
                 len(gx_suite.expectations), time.perf_counter() - started, len(row_check_configs))
        outcomes = res.outcomes_from_validation(gx_result, suite=spec.name, row_id=spec.row_id,
                                                batch_id=batch_id)
        for o in outcomes:  # row-level SQL checks: share of the scope's rows (GX reports a count only)
            if (o.expectation == "unexpected_rows_expectation" and o.unexpected_percent is None and row_count
                    and o.unexpected_count is not None
                    and not any("check_name" in (i.get("row") or {}) for i in o.unexpected_sample)):
                o.unexpected_percent = 100.0 * o.unexpected_count / row_count
        res.scrub_validation_result(gx_result, row_id=spec.row_id)
        key, page = _store_for_docs(self.context, gx_result, spec, pipeline_run_id, batch_id or scope)
        self.doc_keys += [key, ExpectationSuiteIdentifier(name=spec.name)]
        scope_result = ScopeResult(dq_run_id=dq_run_id, suite=spec.name, layer=spec.layer,
                                   relation=spec.relation, batch_id=batch_id, outcomes=outcomes,
                                   row_count=row_count, data_docs_page=page, scope=scope_label)
        return scope_result, row_count, null_rates

    @contextmanager
    def _table_asset(self, spec: SuiteSpec, scope: str, query: str, whole_relation: bool) -> Iterator[Any]:
        """The GX table asset of a scope: the relation itself, or a view of `query` while the block runs. Never a
        query asset: GX reads a query asset's columns by fetching all of its rows (:mod:`.scope_views`)."""
        name = _asset_name(spec, scope)
        if whole_relation:
            schema, _, table = spec.relation.partition(".")
            yield self.datasource.add_table_asset(name=name, table_name=table, schema_name=schema)
            return
        if not self.orphaned_views_dropped:
            scope_views.drop_orphaned(self.url)
            self.orphaned_views_dropped = True
        with scope_views.scope_view(self.url, query) as view:
            yield self.datasource.add_table_asset(name=name, table_name=view, schema_name=scope_views.SCHEMA)

    def build_docs(self) -> None:
        try:
            self.result.data_docs_index = build_data_docs(self.context, self.settings,
                                                          resource_identifiers=self.doc_keys or None)
        except Exception:  # docs are a report, never a reason to fail a load
            log.exception("building Data Docs failed")


# --- raw batches -----------------------------------------------------------------------------------

def validate_raw_batches(source_table: str, batch_ids: list[str] | tuple[str, ...] | str,
                         pipeline_run_id: str, *, settings: Settings | None = None, url: str | None = None,
                         build_docs: bool = True) -> GateResult:
    """Validate the given load batches of one raw table, each on its own.

    `source_table` is ``raw.<table>`` or ``<table>``. Only batches whose ledger status is ``loaded`` or
    ``held`` are validated (others are listed in ``skipped_batches``). A critical failure sets the batch
    to ``held``; a held batch without critical failure goes back to ``loaded``. Raises
    :class:`CriticalDataQualityError` after every batch was validated and recorded if any batch is held.
    """
    if isinstance(batch_ids, str):
        batch_ids = [batch_ids]
    spec = spec_for_relation(source_table, settings)
    run = _Run("raw", pipeline_run_id, settings, url)
    messages = []
    stats_refreshed = False  # at most one ANALYZE per call: every given batch is loaded already
    with connect(run.url) as conn:
        for batch_id in dict.fromkeys(batch_ids):
            row = conn.execute("select status from audit.load_batches where batch_id = %s",
                               (batch_id,)).fetchone()
            if row is None or row[0] not in ("loaded", "held"):
                run.result.skipped_batches[batch_id] = "not in the ledger" if row is None else f"status {row[0]}"
                log.warning("batch %s not validated: %s", batch_id, run.result.skipped_batches[batch_id])
                continue
            previous_status = row[0]
            query = sql.SQL("select * from {} where {} = {}").format(
                _relation_sql(spec.relation), sql.Identifier(spec.batch_column or "_batch_id"),
                sql.Literal(batch_id)).as_string(conn)
            measured = _measure(conn, query, _null_rate_columns(spec))
            if not stats_refreshed:
                stats_refreshed = _refresh_stale_statistics(conn, spec, query, measured[0],
                                                            [spec.batch_column or "_batch_id"])
            scope, row_count, null_rates = run.validate(conn, spec, query=query, scope=batch_id,
                                                        batch_id=batch_id, measured=measured)
            if scope.critical_failures:
                scope.action = "held"
                reason = "held by data quality gate: " + "; ".join(
                    o.describe() for o in scope.critical_failures)[:2000]
                conn.execute(
                    "update audit.load_batches set status = 'held', error = %s where batch_id = %s",
                    (reason, batch_id))
                run.result.held_batches.append(batch_id)
                messages.append(_failure_message(spec, scope))
            elif previous_status == "held":
                scope.action = _release(conn, batch_id)
                if scope.action == "released":
                    run.result.released_batches.append(batch_id)
                else:
                    run.result.held_batches.append(batch_id)
                    messages.append(f"{spec.name}, batch {batch_id}: passes its checks but stays held: "
                                    "held at load (too many field issues) or the same content was loaded again "
                                    "by another batch; see its ledger error")
            else:
                scope.action = "passed"
            res.record_metrics(conn, suite=spec.name, scope=batch_id, pipeline_run_id=pipeline_run_id,
                               row_count=row_count, null_rates=null_rates,
                               accepted=not scope.critical_failures)
            res.finish_run(conn, scope.dq_run_id, scope.outcomes, action=scope.action,
                           data_docs_path=scope.data_docs_page)
            conn.commit()
            run.result.scopes.append(scope)
    if build_docs:
        run.build_docs()
    log.info(run.result.summary())
    if messages:
        raise CriticalDataQualityError(
            "Critical data quality failure; batch(es) held and kept out of staging:\n" + "\n".join(messages),
            run.result)
    return run.result


def _release(conn: psycopg.Connection, batch_id: str) -> str:
    """Held -> loaded. Fails (stays held) if another batch of the same content is loaded meanwhile, or if the
    loader held it (`load_hold_reason`: too many field issues; released only by `ckp batches accept`)."""
    try:
        with conn.transaction():
            released = conn.execute("update audit.load_batches set status = 'loaded', error = null "
                                    "where batch_id = %s and status = 'held' and load_hold_reason is null",
                                    (batch_id,)).rowcount
        return "released" if released else "held"
    except psycopg.errors.UniqueViolation:
        conn.execute("update audit.load_batches set error = %s where batch_id = %s",
                     ("passes data quality now, but the same content is already loaded by another batch",
                      batch_id))
        return "held"


# --- staging / marts ------------------------------------------------------------------------------

@dataclass(frozen=True)
class GateScope:
    """What one suite reads: `query` (GX validates its rows) and `label` (for the auditor, audit.dq_runs.scope).
    `partial`: the query is a daily slice of the relation, so uniqueness and row count are checked on the
    whole table in SQL (:func:`whole_table_checks`)."""

    query: str
    label: str
    partial: bool = False
    #: the columns the slice is chosen by, whose statistics a daily run may have to refresh
    columns: tuple[str, ...] = ()


def _columns(conn: psycopg.Connection, relation: str) -> set[str]:
    schema, _, table = relation.partition(".")
    return {c for (c,) in conn.execute("select column_name from information_schema.columns"
                                       " where table_schema = %s and table_name = %s", (schema, table))}


def gate_scope(conn: psycopg.Connection, spec: SuiteSpec, mode: RunMode) -> GateScope:
    """The rows a staging/marts suite checks: every row on a full (weekly) run; on a daily run the rows written
    since the run began: by ``staged_at`` (and ``customer_resolved_at``) where the relation has it, else the
    rows of the customers the run changed (:data:`CHANGED_CUSTOMERS_SQL`); a relation with neither (seeds,
    lookups) is small and read whole."""
    whole = _whole_query(conn, spec.relation)
    if mode.is_full or not mode.since:
        return GateScope(whole, "whole table")
    columns = _columns(conn, spec.relation)
    since = sql.SQL("cast({} as timestamptz)").format(sql.Literal(mode.since))
    if "staged_at" in columns:
        cond = [sql.SQL("staged_at >= {}").format(since)]
        if "customer_resolved_at" in columns:
            cond.append(sql.SQL("customer_resolved_at >= {}").format(since))
        query = sql.SQL("select * from {} where {}").format(_relation_sql(spec.relation), sql.SQL(" or ").join(cond))
        return GateScope(query.as_string(conn), f"rows written since {mode.since}", partial=True,
                         columns=tuple(c for c in ("staged_at", "customer_resolved_at") if c in columns))
    if "customer_id" in columns and table_exists(conn, "identity.record_clusters"):
        changed = sql.SQL(CHANGED_CUSTOMERS_SQL).format(since=since)
        query = sql.SQL("select * from {} where customer_id in ({})").format(_relation_sql(spec.relation), changed)
        return GateScope(query.as_string(conn), f"customers changed since {mode.since}", partial=True)
    return GateScope(whole, "whole table")


def whole_table_checks(conn: psycopg.Connection, spec: SuiteSpec, scope: GateScope, run_scope: str,
                       ) -> tuple[list[Outcome], int]:
    """A daily slice's whole-table checks, in SQL: the slice's keys (`row_id`) are unique in the WHOLE table
    (each key probed through the key's index: the cost follows the slice), and the whole table's row count
    is within the volume rule. Returns the outcomes and the table's row count (recorded as its metric)."""
    rel = _relation_sql(spec.relation)
    key = sql.SQL(", ").join(sql.Identifier(c) for c in spec.row_id)
    dupes = conn.execute(sql.SQL(
        "select count(*) from (select {key} from {rel} where ({key}) in (select {key} from ({q}) s)"
        " group by {key} having count(*) > 1) d").format(key=key, rel=rel, q=sql.SQL(scope.query))).fetchone()[0]
    columns = ",".join(spec.row_id)
    out = [Outcome(suite=spec.name, expectation="ckp_sql:key_unique_in_whole_table", column_name=columns,
                   severity="critical", success=dupes == 0, observed_value={"duplicated_keys": dupes},
                   unexpected_count=dupes,
                   description=f"{columns} of the rows written today is unique in the whole of {spec.relation}")]
    total = conn.execute(sql.SQL("select count(*) from {}").format(rel)).fetchone()[0]
    bounds = _volume_bounds(conn, spec, run_scope)
    if bounds:
        lo, hi, prev = bounds
        sev = spec.volume.get("severity", "warning")
        out.append(Outcome(suite=spec.name, expectation="ckp_sql:table_row_count_between", column_name=None,
                           severity=sev if sev in ("critical", "warning") else "warning",
                           success=lo <= total <= hi,
                           observed_value={"row_count": total, "min_value": lo, "max_value": hi,
                                           "baseline_row_count": prev},
                           description=f"row count of {spec.relation} within {spec.volume.get('min_ratio')}x.."
                                       f"{spec.volume.get('max_ratio')}x of the previous accepted run"))
    return out, total


def validate_layer(layer: str, pipeline_run_id: str, *, suites: list[str] | None = None,
                   exclude: list[str] | tuple[str, ...] = (), settings: Settings | None = None,
                   url: str | None = None, build_docs: bool = True,
                   raise_on_critical: bool = True, mode: RunMode | None = None) -> GateResult:
    """Validate every suite of `layer` ("staging" or "marts").

    `mode` (:mod:`crm_knowledge.run_mode`; default full): a full run checks every row; a daily run checks the
    rows it wrote (:func:`gate_scope`) with GX, and uniqueness and row count on the whole table in SQL
    (:func:`whole_table_checks`). Each suite's scope is recorded in ``audit.dq_runs.scope``.

    `suites` restricts to those suite names, `exclude` leaves some out (e.g. :data:`POST_SCORING_SUITES`
    before scoring). A missing relation is a critical failure. Raises :class:`CriticalDataQualityError`
    on any critical failure unless `raise_on_critical` is false.
    """
    mode = mode or RunMode("full")
    if layer not in ("staging", "marts"):
        raise ValueError(f"validate_layer validates staging or marts, not {layer!r}")
    specs = [s for s in specs_for_layer(layer, settings)
             if (suites is None or s.name in suites) and s.name not in exclude]
    if suites is not None:
        unknown = set(suites) - {s.name for s in specs} - set(exclude)
        if unknown:
            raise LookupError(f"no {layer} suite named {', '.join(sorted(unknown))}")
    run = _Run(layer, pipeline_run_id, settings, url)
    messages = []
    with connect(run.url) as conn:
        for spec in specs:
            if not table_exists(conn, spec.relation):
                dq_run_id = res.new_dq_run_id(layer)
                res.start_run(conn, dq_run_id=dq_run_id, pipeline_run_id=pipeline_run_id, layer=layer,
                              suite=spec.name, batch_id=None)
                outcome = Outcome(suite=spec.name, expectation="relation_exists", column_name=None,
                                  severity="critical", success=False,
                                  observed_value={"error": f"relation {spec.relation} does not exist"},
                                  description=f"{spec.relation} exists")
                scope = ScopeResult(dq_run_id, spec.name, layer, spec.relation, None, [outcome])
                res.finish_run(conn, dq_run_id, [outcome])
                conn.commit()
                run.result.scopes.append(scope)
                messages.append(_failure_message(spec, scope))
                continue
            scoped = gate_scope(conn, spec, mode)
            measured = None
            if scoped.columns:  # a daily slice by write time: rows the statistics may not know yet
                measured = _measure(conn, scoped.query, _null_rate_columns(spec))
                _refresh_stale_statistics(conn, spec, scoped.query, measured[0], list(scoped.columns))
            scope, row_count, null_rates = run.validate(conn, spec, query=scoped.query, scope=pipeline_run_id,
                                                        batch_id=None, scope_label=scoped.label,
                                                        volume=not scoped.partial, whole_relation=not scoped.partial,
                                                        measured=measured)
            if scoped.partial:
                extra, row_count = whole_table_checks(conn, spec, scoped, pipeline_run_id)
                scope.outcomes += extra
            res.record_metrics(conn, suite=spec.name, scope=pipeline_run_id, pipeline_run_id=pipeline_run_id,
                               row_count=row_count, null_rates=null_rates,
                               accepted=not scope.critical_failures)
            res.finish_run(conn, scope.dq_run_id, scope.outcomes, data_docs_path=scope.data_docs_page)
            conn.commit()
            run.result.scopes.append(scope)
            if scope.critical_failures:
                messages.append(_failure_message(spec, scope))
    if build_docs:
        run.build_docs()
    log.info(run.result.summary())
    if messages and raise_on_critical:
        raise CriticalDataQualityError(f"Critical data quality failure in {layer}; downstream tasks must not "
                                       "run:\n" + "\n".join(messages), run.result)
    return run.result


# --- dbt tests ------------------------------------------------------------------------------------

_DBT_FAILED = {"fail": "critical", "error": "critical", "warn": "warning", "runtime error": "critical"}
_DBT_BUILT = ("model", "seed", "snapshot")


def dbt_run_id(pipeline_run_id: str, suite: str) -> str:
    """The one ``audit.dq_runs`` row per pipeline run and dbt model (suite ``dbt.<model>``)."""
    return f"dq-dbt-{pipeline_run_id}-{suite}"


def model_layer(node: dict[str, Any]) -> str | None:
    """The dbt layer (``staging``, ``intermediate``, ``marts``, ``pii``) a node is defined in: the folder under
    ``models/`` of its file (a test's yml sits next to its model), so the auditor's report can show the dbt
    tests of each layer next to that layer's Great Expectations checks."""
    parts = Path(node.get("original_file_path") or "").parts
    return parts[1] if len(parts) > 2 and parts[0] == "models" else None


#: The placeholder of a dbt test's `where` that limits it to a daily run's new rows
#: (dbt_project/macros/tests_on_new_rows.sql).
TESTS_SINCE_PLACEHOLDER = "__ckp_tests_since__"
#: The placeholder of a dbt test's `where` that limits it to the customers a daily run recomputed in a model that
#: follows the affected customers (the same macro file).
RECOMPUTED_CUSTOMERS_PLACEHOLDER = "__ckp_recomputed_customers__"


def dbt_tests_since(doc: dict[str, Any]) -> str | None:
    """The `dbt_tests_since` var a dbt invocation ran with (run_results.json ``args.vars``): None when unset or
    empty, i.e. every test read its whole table unless the environment said otherwise (a DAG's dbt task hands
    it in ``dbt_stages.TESTS_SINCE_ENV``, which run_results.json does not record: :func:`dbt_outcomes`)."""
    return _run_vars(doc).get(DBT_TESTS_SINCE_VAR) or None


def _run_vars(doc: dict[str, Any]) -> dict[str, Any]:
    """The ``--vars`` of the invocation a run_results doc is of ({} when none or unreadable)."""
    dbt_vars = (doc.get("args") or {}).get("vars") or {}
    if isinstance(dbt_vars, str):
        try:
            dbt_vars = json.loads(dbt_vars)
        except ValueError:
            return {}
    return dbt_vars if isinstance(dbt_vars, dict) else {}


def dbt_test_scope(node: dict[str, Any], since: str | None) -> str:
    """What a dbt test read: the rows written since `since` (or those of the customers the run recomputed) when
    its `where` has a placeholder and the run set the var, else its whole table (or the `where` it is
    configured with)."""
    where = str((node.get("config") or {}).get("where") or "")
    if RECOMPUTED_CUSTOMERS_PLACEHOLDER in where:
        if not since:
            return "whole table"
        if (node.get("test_metadata") or {}).get("name") == "relationships":
            return f"rows of the customers recomputed by the run begun {since}, here or in the model referred to"
        return f"rows of the customers recomputed by the run begun {since}"
    if TESTS_SINCE_PLACEHOLDER in where:
        return f"rows written since {since}" if since else "whole table"
    return f"rows where {where}" if where else "whole table"


def dbt_outcomes(doc: dict[str, Any], nodes: dict[str, Any], *,
                 tests_since: str | None = None) -> dict[str, tuple[set[str], list[Outcome]]]:
    """Suite (``dbt.<model>``) -> (unique_ids this invocation ran, outcomes to record) from a run_results doc.

    Every test that ran gives an outcome (pass, warn, fail, error); a model/seed/snapshot gives one only
    when its build failed, but its unique_id is listed so a later successful build clears that failure.
    `tests_since`: the run's start the invocation had in its environment (``dbt_stages.TESTS_SINCE_ENV``),
    when its ``--vars`` did not set `dbt_tests_since` (the var wins, as in the macro `changed_since()`).
    """
    invocation = (doc.get("metadata") or {}).get("invocation_id")
    since = dbt_tests_since(doc) if DBT_TESTS_SINCE_VAR in _run_vars(doc) else (tests_since or None)
    out: dict[str, tuple[set[str], list[Outcome]]] = {}
    for r in doc.get("results", []):
        uid = r.get("unique_id", "")
        status = (r.get("status") or "").lower()
        node = nodes.get(uid, {})
        kind = uid.split(".", 1)[0]
        message = res.scrub_db_message((r.get("message") or "")[:500] or None)
        observed = {"status": status, "message": message, "unique_id": uid, "invocation_id": invocation,
                    "model_layer": model_layer(node)}
        if kind == "test":
            observed["scope"] = dbt_test_scope(node, since)
        if kind == "test":
            if status == "skipped":
                continue
            parent = node.get("attached_node") or next(
                (n for n in (node.get("depends_on") or {}).get("nodes", []) if n.split(".")[0] in _DBT_BUILT), "")
            model = parent.split(".")[-1] or None
            suite = f"dbt.{model}" if model else "dbt"
            configured = ((node.get("config") or {}).get("severity") or "error").lower()
            severity = _DBT_FAILED.get(status) or ("warning" if configured == "warn" else "critical")
            test_name = (node.get("test_metadata") or {}).get("name") or node.get("name") or uid
            failures = r.get("failures")
            outcome = Outcome(
                suite=suite,
                expectation=f"dbt:{test_name}",
                column_name=node.get("column_name"),
                severity=severity,
                success=status == "pass",
                observed_value=observed,
                unexpected_count=int(failures) if isinstance(failures, int) else None,
                expectation_id=uid,
                description=node.get("name") or uid,
            )
            ids, outcomes = out.setdefault(suite, (set(), []))
            ids.add(uid)
            outcomes.append(outcome)
        elif kind in _DBT_BUILT:
            suite = f"dbt.{uid.split('.')[-1]}"
            ids, outcomes = out.setdefault(suite, (set(), []))
            ids.add(uid)
            if status == "error":
                outcomes.append(Outcome(
                    suite=suite, expectation=f"dbt:{kind}_build", column_name=None, severity="critical",
                    success=False, observed_value=observed, expectation_id=uid,
                    description=f"{kind} {uid.split('.')[-1]} builds"))
    return out


def dbt_node_runs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per model, seed and snapshot of a run_results doc: status, seconds, rows, masked message."""
    invocation = (doc.get("metadata") or {}).get("invocation_id")
    rows = []
    for r in doc.get("results", []):
        uid = r.get("unique_id", "")
        kind = uid.split(".", 1)[0]
        if kind not in _DBT_BUILT:
            continue
        rows_affected = (r.get("adapter_response") or {}).get("rows_affected")
        rows.append({"unique_id": uid, "resource_type": kind, "status": (r.get("status") or "").lower(),
                     "execution_seconds": r.get("execution_time"),
                     # dbt reports -1 for a view (nothing written): unknown, not a count
                     "rows_affected": rows_affected if isinstance(rows_affected, int) and rows_affected >= 0
                     else None,
                     "message": res.scrub_db_message((r.get("message") or "")[:500] or None),
                     "invocation_id": invocation})
    return rows


def record_dbt_node_runs(conn: psycopg.Connection, doc: dict[str, Any], pipeline_run_id: str) -> list[dict]:
    """Upsert every built node's result into ``audit.dbt_node_runs`` (a re-run replaces the day's row) and
    log them, one line per node: a stage is one task, and this is where each model's result shows."""
    rows = dbt_node_runs(doc)
    with conn.cursor() as cur:
        cur.executemany(
            """insert into audit.dbt_node_runs (pipeline_run_id, unique_id, resource_type, status,
                   execution_seconds, rows_affected, message, invocation_id)
               values (%s, %s, %s, %s, %s, %s, %s, %s)
               on conflict (pipeline_run_id, unique_id) do update set resource_type = excluded.resource_type,
                   status = excluded.status, execution_seconds = excluded.execution_seconds,
                   rows_affected = excluded.rows_affected, message = excluded.message,
                   invocation_id = excluded.invocation_id, recorded_at = now()""",
            [(pipeline_run_id, r["unique_id"], r["resource_type"], r["status"], r["execution_seconds"],
              r["rows_affected"], r["message"], r["invocation_id"]) for r in rows])
    for r in rows:
        seconds = r["execution_seconds"]
        log.info("dbt %-8s %-7s %6s s %8s rows  %s%s", r["resource_type"], r["status"],
                 f"{seconds:.2f}" if seconds is not None else "-",
                 r["rows_affected"] if r["rows_affected"] is not None else "-", r["unique_id"],
                 f"  ({r['message']})" if r["status"] not in ("success", "pass") and r["message"] else "")
    return rows


def record_dbt_results(run_results_path: str | Path, pipeline_run_id: str, *,
                       manifest_path: str | Path | None = None, settings: Settings | None = None,
                       url: str | None = None, tests_since: str | None = None) -> GateResult:
    """Record dbt's test results (and failed builds) of one dbt invocation as layer ``dbt``, and every
    model's, seed's and snapshot's result in ``audit.dbt_node_runs`` (:func:`record_dbt_node_runs`).

    Reads ``run_results.json`` and, for models, column names and severities, ``manifest.json`` beside it.
    Results are grouped per model: one ``audit.dq_runs`` row per pipeline run and model (suite
    ``dbt.<model>``), with one ``audit.dq_results`` row per test (``expectation_id`` = the test's
    unique_id). Recording is idempotent per test: a retry or re-run of the same pipeline run replaces
    that test's earlier row (so a task retried twice is not counted three times), and a successful
    rebuild clears a model's earlier build failure. Never raises on failures: dbt decides whether its
    command failed. `tests_since`: see :func:`dbt_outcomes`.
    """
    settings = settings or get_settings()
    path = Path(run_results_path)
    doc = json.loads(path.read_text(encoding="utf-8"))
    manifest_file = Path(manifest_path) if manifest_path else path.with_name("manifest.json")
    nodes: dict[str, Any] = {}
    if manifest_file.exists():
        nodes = json.loads(manifest_file.read_text(encoding="utf-8")).get("nodes", {})
    else:
        log.warning("%s not found: dbt results recorded without model/column/severity details", manifest_file)
    groups = dbt_outcomes(doc, nodes, tests_since=tests_since)
    result = GateResult(layer="dbt", pipeline_run_id=pipeline_run_id)
    with connect(url or settings.warehouse_url) as conn:
        record_dbt_node_runs(conn, doc, pipeline_run_id)
        for suite in sorted(groups):  # a fixed order: concurrent test tasks lock run rows alike
            ids, outcomes = groups[suite]
            dq_run_id = dbt_run_id(pipeline_run_id, suite)
            if outcomes:
                scopes = sorted({(o.observed_value or {}).get("scope") or "whole table" for o in outcomes})
                res.start_run(conn, dq_run_id=dq_run_id, pipeline_run_id=pipeline_run_id, layer="dbt",
                              suite=suite, batch_id=None, if_missing=True, scope="; ".join(scopes))
            if not res.replace_results(conn, dq_run_id, sorted(ids), outcomes):
                continue
            result.scopes.append(ScopeResult(dq_run_id, suite, "dbt", suite.removeprefix("dbt."), None, outcomes))
    log.info("dbt results of %s recorded for %s: %s", path, pipeline_run_id, result.summary())
    return result
