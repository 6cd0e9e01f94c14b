"""Row-level SQL checks (GX ``UnexpectedRowsExpectation``), run by the gate in one query each.

GX Core 1.x computes an ``UnexpectedRowsExpectation`` from two metrics that both run the check's query:
``unexpected_rows_query.row_count`` (``select count(*) from (<check>)``) and ``unexpected_rows_query.table``
(the check itself, every row sent to the client, 200 kept), whatever the result format
(``metric_dependencies`` of the expectation). The raw gate's parse and format checks are most of its work,
so every one of them ran twice. The gate runs them here instead, once:

    select count(*) over () as <count>, q.* from (<check, {batch} substituted>) as q limit SAMPLE_SIZE

gives the number of offending rows and the first ``SAMPLE_SIZE`` of them, all the audit tables and reports
keep. The result is an ``ExpectationValidationResult`` of GX's own shape (``observed_value`` = the count,
``details.unexpected_rows`` = the rows), merged into GX's suite result in GX's order
(:func:`merge_results`), so outcomes, the PII scrub (``results.scrub_validation_result``) and Data Docs read it
as they read GX's. A check that fails in the database is recorded as GX records one (``exception_info``,
success false), with the database's message masked (``results.scrub_db_message``).
"""

from __future__ import annotations

import copy
from typing import Any

import psycopg

from crm_knowledge.quality import results as res

ROW_CHECK = "unexpected_rows_expectation"
_COUNT_COLUMN = "__ckp_unexpected_rows"


def is_row_check(config: Any) -> bool:
    return config.type == ROW_CHECK


def is_whole_table(config: Any) -> bool:
    """A row check of a property of the whole relation (``meta.whole_table``: a share of all records, say):
    `{batch}` is then the whole relation also when the gate checks a daily slice, where the share of the
    slice would be meaningless (a day's changed customers are a few percent of all source records)."""
    return bool((config.meta or {}).get("whole_table"))


def split_suite(suite) -> tuple[Any, list[Any]]:
    """(the suite without its row checks, for GX; the row checks' configurations, in suite order)."""
    import great_expectations as gx

    configs = [e.configuration for e in suite.expectations]
    rows = [c for c in configs if is_row_check(c)]
    if not rows:
        return suite, []
    rest = gx.ExpectationSuite(name=suite.name, meta=dict(suite.meta), notes=suite.notes,
                               expectations=[c for c in configs if not is_row_check(c)])
    return rest, rows


def check_sql(check: str, batch_query: str) -> str:
    """The check with ``{batch}`` replaced as GX replaces it for a query asset: an aliased subquery
    (``subselect``), or a bare parenthesised one when the check has a JOIN (it aliases the batch itself)."""
    from great_expectations.expectations.metrics.query_metric_provider import (
        QueryMetricProvider,
        _query_has_join_clause,
    )

    batch = f"({batch_query})" if _query_has_join_clause(check) else f"({batch_query}) AS subselect"
    return QueryMetricProvider._format_query(check, batch=batch)


def run_row_check(conn: psycopg.Connection, config: Any, batch_query: str, batch_id: str | None) -> Any:
    """One row check on `batch_query`'s rows, as the ExpectationValidationResult GX would give."""
    from great_expectations.core import ExpectationValidationResult

    evaluated = copy.deepcopy(config)
    if batch_id:
        evaluated.kwargs.update({"batch_id": batch_id})
    try:
        check = check_sql(config.kwargs["unexpected_rows_query"], batch_query)
        query = f"select count(*) over () as {_COUNT_COLUMN}, q.* from ({check}) as q limit {int(res.SAMPLE_SIZE)}"
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(query)
            names = [d.name for d in cur.description or ()]
            fetched = cur.fetchall()
    except (psycopg.Error, ValueError) as exc:  # ValueError: a brace GX could not substitute either
        message = res.scrub_db_message(str(exc))
        # The "traceback" is the message again: Data Docs render it as text and fail on None (the whole
        # site build fails, for the very run an auditor opens); a Python traceback says nothing of the SQL.
        return ExpectationValidationResult(
            success=False, expectation_config=evaluated,
            exception_info={"raised_exception": True, "exception_traceback": message,
                            "exception_message": message})
    count = int(fetched[0][0]) if fetched else 0
    rows = [dict(zip(names[1:], r[1:], strict=True)) for r in fetched]
    return ExpectationValidationResult(
        success=count == 0, expectation_config=evaluated,
        result={"observed_value": count, "details": {"unexpected_rows": rows}})


def _gx_order(configs: list[Any]) -> list[Any]:
    """`configs` in the order GX evaluates and reports them: grouped by column, groups in order of first
    appearance (``Validator.process_expectations_for_validation``); row checks have no column kwarg."""
    groups: dict[str, list[Any]] = {}
    for c in configs:
        column = c.kwargs.get("column")
        groups.setdefault(column if isinstance(column, str) else "", []).append(c)
    return [c for group in groups.values() for c in group]


def merge_results(gx_result, full_suite, row_results: list[Any]) -> None:
    """Put the row checks' results into GX's suite result, where GX would have reported them, and
    recompute its statistics and success as GX does (``calc_validation_statistics``)."""
    from great_expectations.validator.validation_statistics import calc_validation_statistics

    if not row_results:
        return
    own = iter(row_results)
    by_gx = iter(gx_result.results)
    merged = []
    for config in _gx_order([e.configuration for e in full_suite.expectations]):
        item = next(own if is_row_check(config) else by_gx, None)
        if item is not None:
            merged.append(item)
    merged += list(by_gx)  # anything GX reported beyond the suite (never expected)
    gx_result.results = merged
    stats = calc_validation_statistics(merged)
    gx_result.success = stats.success
    gx_result.statistics = {
        "evaluated_expectations": stats.evaluated_expectations,
        "successful_expectations": stats.successful_expectations,
        "unsuccessful_expectations": stats.unsuccessful_expectations,
        "success_percent": stats.success_percent,
    }
