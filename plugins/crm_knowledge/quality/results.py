"""Validation outcomes: from GX results to `audit.dq_runs` / `audit.dq_results`, without PII.

GX puts offending *values* in its results (``partial_unexpected_list``, ``unexpected_index_list``, the rows
of an ``UnexpectedRowsExpectation``). Bad e-mails, phones and national ids are personal data, so:

* the audit tables keep, per failed expectation, a sample of offending rows identified by their row
  number (raw) or entity key, plus the *shape* of the value (letters -> ``x``, digits -> ``9``, other
  characters kept: ``xxxx.xxx@xxxx`` tells why an e-mail failed without telling whose it is);
  values of columns known to be non-personal (statuses, amounts, dates of events, system ids) are kept;
* the GX validation result written to the Data Docs store is scrubbed the same way
  (:func:`scrub_validation_result`) before it is stored.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import re
import unicodedata
import uuid
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from crm_knowledge.quality.suites import column_of, severity_of

SAMPLE_SIZE = 20

#: Columns whose values are not personal data: kept as they are in samples. Anything else is masked.
NON_PERSONAL_COLUMNS = frozenset({
    "_row_number", "_batch_id", "_source_file", "_loaded_at",
    "form_type", "channel", "outcome", "topic", "status", "currency", "rating", "unit", "shop", "sku",
    "category", "quantity", "item_quantity", "amount", "total_amount", "line_amount", "unit_price",
    "items", "match_score", "match_rule", "rfm_segment", "value_tier", "churn_probability", "p_alive",
    "r_score", "f_score", "m_score", "predicted_clv", "monetary", "frequency", "recency_days",
    "order_count", "total_revenue", "source_record_count", "source_system", "order_source",
    "submission_id", "interaction_id", "order_id", "order_item_id", "product_id", "customer_id",
    "orders_customer_id", "shop_order_id", "source_record_id", "customer_source_id", "customer_ref",
    "order_ref", "agent_id", "submitted_at", "occurred_at", "ordered_at", "order_date", "created_at",
    "updated_at", "first_seen_at", "last_seen_at", "consent_marketing", "consent_profiling",
    "check_name",
})


def mask_value(value: Any) -> Any:
    """The shape of a value: letters -> x, digits -> 9, anything else kept; at most 40 characters."""
    if value is None:
        return None
    text = str(value)
    out = []
    for ch in text[:40]:
        cat = unicodedata.category(ch)
        out.append("x" if cat.startswith("L") else "9" if cat.startswith("N") else ch)
    return "".join(out) + ("…" if len(text) > 40 else "")


_DB_KEY_VALUES = re.compile(r"(Key \(([^()]*)\)=\()([^\n]*?)(\)( already exists| is not present|\s*$))", re.M)
_DB_QUOTED = re.compile(r'((?:syntax|value|input)[^"\n]{0,40}:\s*)"([^"\n]*)"', re.I)


def scrub_db_message(message: str | None) -> str | None:
    """A database/dbt error message without the row values it may quote (``Key (email)=(...)``,
    ``invalid input syntax for type integer: "..."``): those are replaced by their masked shape."""
    if not message:
        return message
    message = _DB_KEY_VALUES.sub(lambda m: f"{m.group(1)}{mask_value(m.group(3))}{m.group(4)}", message)
    return _DB_QUOTED.sub(lambda m: f'{m.group(1)}"{mask_value(m.group(2))}"', message)


def safe_value(column: str | None, value: Any, row_id: tuple[str, ...] = ()) -> Any:
    """`value` itself for row ids and non-personal columns, its masked shape otherwise."""
    if column is not None and (column in row_id or column in NON_PERSONAL_COLUMNS):
        return jsonable(value)
    return mask_value(value)


def jsonable(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _safe_row(row: Any, column: str | None, row_id: tuple[str, ...]) -> Any:
    if isinstance(row, dict):
        return {k: safe_value(k, v, row_id) for k, v in row.items()}
    return safe_value(column, row, row_id)


@dataclass
class Outcome:
    """One evaluated expectation (or dbt test)."""

    suite: str
    expectation: str
    column_name: str | None
    severity: str
    success: bool
    observed_value: Any = None
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    unexpected_sample: list[Any] = field(default_factory=list)
    batch_id: str | None = None
    expectation_id: str | None = None
    description: str | None = None

    @property
    def critical_failure(self) -> bool:
        return not self.success and self.severity == "critical"

    @property
    def warning(self) -> bool:
        return not self.success and self.severity == "warning"

    def sample_refs(self, limit: int = 10) -> list[str]:
        """Row numbers / keys of offending rows, e.g. ``['_row_number=4', ...]`` (no personal values)."""
        refs = []
        for item in self.unexpected_sample[:limit]:
            row = item.get("row") if isinstance(item, dict) else None
            if row:
                refs.append(", ".join(f"{k}={v}" for k, v in row.items()))
        return refs

    def describe(self) -> str:
        what = self.expectation + (f" ({self.description})" if self.description else "")
        col = f" on column {self.column_name}" if self.column_name else ""
        count = ""
        if self.unexpected_count is not None:
            pct = f" ({self.unexpected_percent:.2f}%)" if self.unexpected_percent is not None else ""
            count = f": {self.unexpected_count} offending row(s){pct}"
        elif self.observed_value is not None:
            count = f": observed {json.dumps(jsonable(self.observed_value), ensure_ascii=False)[:200]}"
        refs = self.sample_refs()
        rows = f"; e.g. {'; '.join(refs)}" if refs else ""
        return f"[{self.severity}] {what}{col}{count}{rows}"


def _exception_message(evr) -> str | None:
    info = getattr(evr, "exception_info", None) or {}
    if isinstance(info, dict):
        if info.get("raised_exception"):
            return info.get("exception_message") or "exception"
        for v in info.values():  # keyed by metric id in some GX paths
            if isinstance(v, dict) and v.get("raised_exception"):
                return v.get("exception_message") or "exception"
    return None


def outcomes_from_validation(result, *, suite: str, row_id: tuple[str, ...],
                             batch_id: str | None) -> list[Outcome]:
    """Outcomes of an ExpectationSuiteValidationResult, with PII-free samples."""
    outcomes = []
    for evr in result.results:
        cfg = evr.expectation_config.to_json_dict()
        res = evr.result or {}
        column = column_of(cfg)
        single_col = cfg.get("kwargs", {}).get("column")
        error = _exception_message(evr)
        observed = res.get("observed_value")
        count = res.get("unexpected_count")
        pct = res.get("unexpected_percent")
        sample: list[Any] = []
        if cfg["type"] == "unexpected_rows_expectation":
            count = observed if isinstance(observed, int) else count
            for row in (res.get("details") or {}).get("unexpected_rows") or []:
                if len(sample) >= SAMPLE_SIZE:
                    break
                if isinstance(row, dict):
                    ids = {k: jsonable(v) for k, v in row.items() if k in row_id or k == "check_name"}
                    rest = {k: safe_value(k, v, row_id) for k, v in row.items() if k not in ids}
                    sample.append({"row": ids or rest, **({"values": rest} if ids and rest else {})})
        else:
            for item in res.get("partial_unexpected_index_list") or []:
                if len(sample) >= SAMPLE_SIZE:
                    break
                if isinstance(item, dict):
                    ids = {k: jsonable(v) for k, v in item.items() if k in row_id}
                    vals = {k: safe_value(k, v, row_id) for k, v in item.items() if k not in row_id}
                    sample.append({"row": ids, "value": next(iter(vals.values())) if len(vals) == 1 else vals})
            if not sample:
                for v in (res.get("partial_unexpected_list") or [])[:SAMPLE_SIZE]:
                    sample.append({"value": _safe_row(v, single_col, row_id)})
        if error:
            observed = {"error": error[:500]}
        outcomes.append(Outcome(
            suite=suite,
            expectation=cfg["type"],
            column_name=column,
            severity=severity_of(cfg),
            success=bool(evr.success),
            observed_value=jsonable(observed) if observed is not None else None,
            unexpected_count=int(count) if isinstance(count, (int, float)) else None,
            unexpected_percent=float(pct) if isinstance(pct, (int, float)) else None,
            unexpected_sample=sample,
            batch_id=batch_id,
            expectation_id=cfg.get("id"),
            description=cfg.get("description") or (cfg.get("meta") or {}).get("description"),
        ))
    return outcomes


def scrub_validation_result(result, *, row_id: tuple[str, ...]) -> None:
    """Mask personal values in a GX ExpectationSuiteValidationResult in place (before it is stored)."""
    for evr in result.results:
        res = evr.result
        if not res:
            continue
        column = (evr.expectation_config.kwargs or {}).get("column")
        for key in ("partial_unexpected_list", "unexpected_list"):
            if key in res and res[key] is not None:
                res[key] = [_safe_row(v, column, row_id) for v in res[key][:SAMPLE_SIZE]]
        if res.get("partial_unexpected_counts"):
            res["partial_unexpected_counts"] = [
                {**c, "value": _safe_row(c.get("value"), column, row_id)} for c in res["partial_unexpected_counts"]
            ]
        for key in ("partial_unexpected_index_list", "unexpected_index_list"):
            if res.get(key):
                res[key] = [_safe_row(v, column, row_id) for v in res[key][:SAMPLE_SIZE]]
        details = res.get("details")
        if isinstance(details, dict) and details.get("unexpected_rows"):
            details["unexpected_rows"] = [_safe_row(r, None, row_id)
                                          for r in details["unexpected_rows"][:SAMPLE_SIZE]]


# --- audit tables -------------------------------------------------------------------------------

def new_dq_run_id(layer: str) -> str:
    return f"dq-{layer}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def start_run(conn: psycopg.Connection, *, dq_run_id: str, pipeline_run_id: str, layer: str, suite: str,
              batch_id: str | None, if_missing: bool = False, scope: str | None = None) -> None:
    """Open a dq run. `if_missing`: keep an existing row of that id (dbt results accumulate per model).
    `scope`: what the checks read, for the auditor (``batch <id>``, ``whole table``, ``rows written since
    ...``); default: the batch when there is one, else the whole table."""
    scope = scope or (f"batch {batch_id}" if batch_id else "whole table")
    conn.execute(
        """insert into audit.dq_runs (dq_run_id, pipeline_run_id, layer, suite, batch_id, scope, started_at)
           values (%s, %s, %s, %s, %s, %s, now())"""
        + (" on conflict (dq_run_id) do nothing" if if_missing else ""),
        (dq_run_id, pipeline_run_id, layer, suite, batch_id, scope),
    )


def _insert_results(conn: psycopg.Connection, dq_run_id: str, outcomes: list[Outcome]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            """insert into audit.dq_results (dq_run_id, suite, expectation, column_name, severity, success,
                   observed_value, unexpected_count, unexpected_percent, unexpected_sample, batch_id,
                   expectation_id, description)
               values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            [(dq_run_id, o.suite, o.expectation, o.column_name, o.severity, o.success,
              Jsonb(jsonable(o.observed_value)) if o.observed_value is not None else None,
              o.unexpected_count, o.unexpected_percent,
              Jsonb(jsonable(o.unexpected_sample)) if o.unexpected_sample else None,
              o.batch_id, o.expectation_id, o.description) for o in outcomes],
        )


def finish_run(conn: psycopg.Connection, dq_run_id: str, outcomes: list[Outcome], *, action: str | None = None,
               data_docs_path: str | None = None) -> None:
    crit = sum(o.critical_failure for o in outcomes)
    warn = sum(o.warning for o in outcomes)
    _insert_results(conn, dq_run_id, outcomes)
    conn.execute(
        """update audit.dq_runs set finished_at = now(), success = %s, critical_failures = %s, warnings = %s,
                  action = %s, data_docs_path = %s
            where dq_run_id = %s""",
        (crit == 0, crit, warn, action, data_docs_path, dq_run_id),
    )


def replace_results(conn: psycopg.Connection, dq_run_id: str, expectation_ids: list[str],
                    outcomes: list[Outcome]) -> bool:
    """Replace the rows of `expectation_ids` in an existing dq run by `outcomes`; recount the run.

    The run row is locked first, so parallel writers of one run (dbt test tasks of one model) serialise.
    A run left without any result is deleted. Returns whether the run exists afterwards.
    """
    if conn.execute("select 1 from audit.dq_runs where dq_run_id = %s for update", (dq_run_id,)).fetchone() is None:
        return False
    conn.execute("delete from audit.dq_results where dq_run_id = %s and expectation_id = any(%s)",
                 (dq_run_id, expectation_ids))
    _insert_results(conn, dq_run_id, outcomes)
    total, crit, warn = conn.execute(
        """select count(*), count(*) filter (where not success and severity = 'critical'),
                  count(*) filter (where not success and severity = 'warning')
             from audit.dq_results where dq_run_id = %s""", (dq_run_id,)).fetchone()
    if total == 0:
        conn.execute("delete from audit.dq_runs where dq_run_id = %s", (dq_run_id,))
        return False
    conn.execute(
        """update audit.dq_runs set finished_at = now(), success = %s, critical_failures = %s, warnings = %s
            where dq_run_id = %s""", (crit == 0, crit, warn, dq_run_id))
    return True


# --- metric history (volume and null-rate baselines) ----------------------------------------------

def record_metrics(conn: psycopg.Connection, *, suite: str, scope: str, pipeline_run_id: str,
                   row_count: int | None, null_rates: dict[str, float], accepted: bool) -> None:
    rows = []
    if row_count is not None:
        rows.append(("row_count", "", float(row_count)))
    rows += [("null_rate", col, float(rate)) for col, rate in null_rates.items()]
    with conn.cursor() as cur:
        cur.executemany(
            """insert into audit.dq_metric_history
                   (suite, scope, pipeline_run_id, metric, column_name, value, accepted, recorded_at)
               values (%s, %s, %s, %s, %s, %s, %s, now())
               on conflict (suite, scope, metric, column_name) do update
                  set value = excluded.value, accepted = excluded.accepted,
                      pipeline_run_id = excluded.pipeline_run_id, recorded_at = excluded.recorded_at""",
            [(suite, scope, pipeline_run_id, m, c, v, accepted) for m, c, v in rows],
        )


def previous_row_count(conn: psycopg.Connection, suite: str, exclude_scope: str) -> float | None:
    """Row count of the most recent accepted scope (batch or run) of `suite` other than `exclude_scope`."""
    row = conn.execute(
        """select value from audit.dq_metric_history
            where suite = %s and metric = 'row_count' and accepted and scope <> %s
            order by recorded_at desc limit 1""",
        (suite, exclude_scope),
    ).fetchone()
    return row[0] if row else None


def null_rate_baselines(conn: psycopg.Connection, suite: str, columns: list[str], history: int,
                        exclude_scope: str) -> dict[str, float]:
    """Mean null rate per column over the last `history` accepted scopes (columns without history omitted)."""
    out = {}
    for col in columns:
        row = conn.execute(
            """select avg(value), count(*) from (
                   select value from audit.dq_metric_history
                    where suite = %s and metric = 'null_rate' and column_name = %s and accepted and scope <> %s
                    order by recorded_at desc limit %s) h""",
            (suite, col, exclude_scope, history),
        ).fetchone()
        if row and row[1]:
            out[col] = float(row[0])
    return out
