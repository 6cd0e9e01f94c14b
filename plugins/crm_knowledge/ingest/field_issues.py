"""Field issues: the values of a file batch that staging cannot convert, recorded per field, set-based.

Raw holds file values as received (text); staging converts them with the util.* SQL functions and a value
that does not convert is NULL there, the record kept. This module records those values before
the quality gate lets the batch on to staging: one `audit.field_issues` row per (batch, row, column) with
the source, the file column and the reason, never the value, computed by one `INSERT ... SELECT` per raw
table with the same util.* functions and the batch's conventions (audit.batch_conventions) staging uses.

A batch where one column's share of unconvertible values is above its source's `field_issue_threshold`
(and at least MIN_FIELD_ISSUES_TO_HOLD values) is held: `status = 'held'` with `load_hold_reason`, so the
gate does not release it by itself; `ckp batches accept` does (ledger.accept_batch), or a corrected delivery
and `ckp batches retire`. Each batch is checked once (`field_issues_checked_at`); a re-check replaces its
rows. The quality pipeline calls :func:`check_new_batches` before validating new raw batches; it is the first
reader of a new batch, so it also refreshes the raw table's planner statistics (PLANNER_COLUMNS) first.
"""

from __future__ import annotations

import logging

import psycopg
from psycopg import sql

from crm_knowledge.ingest.registry import KIND_TARGETS
from crm_knowledge.normalize.values import REASONS
from crm_knowledge.warehouse.db import refresh_statistics

log = logging.getLogger(__name__)

#: Raw column -> how staging converts it: "date" (the source's calendar and format), or a key of
#: normalize.values.REASONS. Columns not listed are text in staging too (cleaned, never NULLed).
TYPED_COLUMNS: dict[str, str] = {
    "birth_date": "date", "signup_date": "date", "order_date": "date",
    "submitted_at": "timestamp", "occurred_at": "timestamp",
    "rating": "integer", "quantity": "integer",
    "amount": "decimal",
    "consent_marketing": "yes_no", "consent_profiling": "yes_no",
}
_SQL_FUNCTION = {"timestamp": "util.parse_timestamp", "integer": "util.parse_integer",
                 "decimal": "util.parse_decimal", "yes_no": "util.parse_yes_no"}

#: The columns of a raw file table whose statistics the plans over new batches depend on: the load metadata
#: (the quality gate and incremental staging find the new rows by batch and load time). The other columns'
#: statistics change little from one batch to the next; analysing them all (a raw table has ~30 text columns)
#: cost more than the COPY of a small file (autoanalyze refreshes them as the table grows).
PLANNER_COLUMNS = ["_batch_id", "_loaded_at"]
#: A share means little on a handful of rows (2 bad dates in a 36-row file are 5.6%): a column holds its batch
#: only from this many invalid values on.
MIN_FIELD_ISSUES_TO_HOLD = 5


def _issue_sql(table: str, columns: list[str]) -> sql.Composable:
    """One INSERT of every unconvertible, non-blank value of `columns` in the given batches of `table`."""
    cases = []
    for column in columns:
        kind = TYPED_COLUMNS[column]
        value = sql.SQL("r.{}").format(sql.Identifier(column))
        if kind == "date":
            converted = sql.SQL("util.parse_date({}, coalesce(c.date_calendar, 'gregorian'), c.date_format)").format(
                value)
            reason = sql.SQL("'not a ' || coalesce(c.date_calendar, 'gregorian') || ' date in format ' "
                             "|| coalesce(c.date_format, 'YYYY-MM-DD')")
        else:
            converted = sql.SQL("{}({})").format(sql.SQL(_SQL_FUNCTION[kind]), value)
            reason = sql.Literal(REASONS[kind])
        cases.append(sql.SQL("({}, {}, {} is null and util.value_text({}) is not null)").format(
            sql.Literal(column), reason, converted, value))
    schema, name = table.split(".")
    return sql.SQL("""
        insert into audit.field_issues (batch_id, source_name, source_file, row_number, column_name, source_column,
                                        reason)
        select r._batch_id, b.source_name, r._source_file, r._row_number, v.column_name,
               coalesce(c.source_columns ->> v.column_name, v.column_name), v.reason
        from {table} as r
        join audit.load_batches as b on b.batch_id = r._batch_id
        left join audit.batch_conventions as c on c.batch_id = r._batch_id
        cross join lateral (values {cases}) as v (column_name, reason, failed)
        where r._batch_id = any(%s) and v.failed""").format(
        table=sql.Identifier(schema, name), cases=sql.SQL(", ").join(cases))


def check_batches(conn: psycopg.Connection, batch_ids: list[str]) -> dict[str, str]:
    """Record the field issues of file batches (loaded, not yet checked) and hold those over their threshold;
    returns batch id -> hold reason for the batches held. Runs in one transaction per raw table."""
    rows = conn.execute(
        """select b.batch_id, b.source_kind, b.source_name, b.rows_loaded, c.field_issue_threshold
             from audit.load_batches b join audit.batch_conventions c on c.batch_id = b.batch_id
            where b.batch_id = any(%s) and b.status = 'loaded'""", (batch_ids,)).fetchall()
    by_kind: dict[str, list[tuple[str, str, int, float]]] = {}
    for batch_id, kind, source, loaded, threshold in rows:
        if kind in KIND_TARGETS:
            by_kind.setdefault(kind, []).append((batch_id, source, loaded, float(threshold)))
    held: dict[str, str] = {}
    for kind, batches in by_kind.items():
        table, business_columns = KIND_TARGETS[kind]
        columns = [c for c in business_columns if c in TYPED_COLUMNS]
        ids = [b[0] for b in batches]
        # the first reader of the new batches refreshes the statistics the plans over them need (the loader
        # does not: it cost as much as a small file's COPY, once per source rather than once per table)
        refresh_statistics(conn, table, PLANNER_COLUMNS)
        with conn.transaction():
            conn.execute("delete from audit.field_issues where batch_id = any(%s)", (ids,))
            if columns:
                conn.execute(_issue_sql(table, columns), (ids,))
            counts = {(b, c): n for b, c, n in conn.execute(
                "select batch_id, column_name, count(*) from audit.field_issues where batch_id = any(%s) "
                "group by 1, 2", (ids,)).fetchall()}
            rows_with = dict(conn.execute(
                "select batch_id, count(distinct row_number) from audit.field_issues where batch_id = any(%s) "
                "group by 1", (ids,)).fetchall())
            for batch_id, source, loaded, threshold in batches:
                reason = hold_reason(source, loaded, threshold,
                                     {c: n for (b, c), n in counts.items() if b == batch_id})
                conn.execute(
                    "update audit.load_batches set rows_field_issues = %s, status = case when %s then 'held' "
                    "else status end, load_hold_reason = %s, error = coalesce(%s, error) "
                    "where batch_id = %s and status = 'loaded'",
                    (rows_with.get(batch_id, 0), reason is not None, reason, reason, batch_id))
                conn.execute("update audit.batch_conventions set field_issues_checked_at = now() where batch_id = %s",
                             (batch_id,))
                if rows_with.get(batch_id):
                    log.warning("%s: batch %s: %s row(s) with a value staging cannot convert (NULL there; "
                                "audit.field_issues)", source, batch_id, rows_with[batch_id])
                if reason:
                    held[batch_id] = reason
                    log.error("%s: batch %s %s", source, batch_id, reason)
    return held


def hold_reason(source: str, rows_loaded: int, threshold: float, per_column: dict[str, int]) -> str | None:
    """The reason to hold a batch when one column's share of unconvertible values exceeds the threshold."""
    if not rows_loaded:
        return None
    over = [(c, n) for c, n in sorted(per_column.items())
            if n >= MIN_FIELD_ISSUES_TO_HOLD and n / rows_loaded > threshold]
    if not over:
        return None
    parts = ", ".join(f"{c} invalid in {n} of {rows_loaded} rows ({n / rows_loaded:.1%})" for c, n in over)
    return (f"held at load: {parts}, above the source's field_issue_threshold of {threshold:.1%} "
            f"({source}); the rows are in raw as received, those fields NULL in staging, see audit.field_issues. "
            "Fix the source and re-deliver (then `ckp batches retire` this one), or accept it with "
            "`ckp batches accept`")


def check_new_batches(conn: psycopg.Connection) -> dict[str, str]:
    """:func:`check_batches` over every loaded file batch not checked yet."""
    ids = [b for (b,) in conn.execute(
        """select c.batch_id from audit.batch_conventions c join audit.load_batches b on b.batch_id = c.batch_id
            where c.field_issues_checked_at is null and b.status = 'loaded' order by b.started_at""").fetchall()]
    return check_batches(conn, ids) if ids else {}
