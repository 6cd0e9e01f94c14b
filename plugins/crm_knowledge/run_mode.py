"""Daily or weekly: how much of the warehouse a run rebuilds, checks and re-scores.

The pipeline has one notion of a full (weekly) run, and it is identity's: the first warehouse run of the
configured weekday (``config/identity.yml`` ``full_resolution_weekday``), or any run triggered with the
``full_identity_resolution`` param, re-resolves every record (``crm_knowledge.identity.store.mode_for``),
and the marts are then rebuilt with ``--full-refresh``. Everything else follows that one decision:

=================  ==========================================  ==========================================
                   daily (``incremental``)                     weekly (``full``)
=================  ==========================================  ==========================================
dbt tests          tests configured with ``__ckp_tests_since__``  every test on the whole table
                   read the rows written since the run began
                   (var ``dbt_tests_since``)
customer-level     the customers int_customers_affected lists      ``--full-refresh``: every customer
models             (records, facts, deliveries or identity
                   changed since the run began, both ids of a
                   merge; var ``dbt_tests_since``,
                   dbt_project/macros/affected_customers.sql)
GX staging/marts   the rows written since the run began          every row
                   (``staged_at`` / changed customers), plus
                   whole-table uniqueness and row count in SQL
scoring            models applied to the changed customers;      models refitted, every customer scored
                   refitted only when due or drifting
=================  ==========================================  ==========================================

The warehouse DAG's ``run_mode`` task decides it once (:func:`decide`), before dbt staging, and hands it on;
identity resolution is forced full exactly when it says full. Scoring, a DAG of its own, reads what the
warehouse did for the day from ``identity.resolution_runs`` (:func:`day_was_full`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import psycopg

from crm_knowledge.warehouse.db import connect, table_exists

FULL = "full"
INCREMENTAL = "incremental"
#: The dbt var a daily run sets to the warehouse clock at its start: dbt tests read the rows written since
#: (macros/tests_on_new_rows.sql), the customer-level models recompute the customers changed since
#: (macros/affected_customers.sql). Empty on a weekly run.
DBT_TESTS_SINCE_VAR = "dbt_tests_since"


@dataclass(frozen=True)
class RunMode:
    """`mode`: ``full`` (weekly) or ``incremental`` (daily). `since`: the warehouse's clock when the run
    began (ISO timestamp): a daily run's checks cover the rows written at or after it; None on a full run."""

    mode: str
    since: str | None = None

    @property
    def is_full(self) -> bool:
        return self.mode == FULL

    def as_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "since": self.since}

    @classmethod
    def from_value(cls, value: RunMode | dict[str, Any] | None) -> RunMode:
        """From a task's XCom (:meth:`as_dict`); None (no decision handed on: a hand-run check) is full."""
        if isinstance(value, RunMode):
            return value
        if not value:
            return cls(FULL)
        mode = value.get("mode") or FULL
        if mode not in (FULL, INCREMENTAL):
            raise ValueError(f"run mode must be {FULL!r} or {INCREMENTAL!r}, got {mode!r}")
        return cls(mode, None if mode == FULL else value.get("since"))

    def dbt_vars(self) -> dict[str, str]:
        return {DBT_TESTS_SINCE_VAR: self.since or ""}


#: The customers a run changed since `{since}` (a timestamptz SQL expression or placeholder): identity
#: (re-)attributed one of their records, or one of their facts was (re-)staged or re-attributed. Every probe is
#: an index range scan (resolved_at, staged_at, customer_resolved_at), so the cost follows the change. The
#: daily quality gate checks these customers' rows; daily scoring re-scores them.
CHANGED_CUSTOMERS_SQL = """
    select customer_id from identity.record_clusters where resolved_at >= {since}
    union select customer_id from marts.fct_orders where staged_at >= {since} or customer_resolved_at >= {since}
    union select customer_id from marts.fct_order_items
     where staged_at >= {since} or customer_resolved_at >= {since}
    union select customer_id from marts.fct_interactions where staged_at >= {since} or customer_resolved_at >= {since}
    union select customer_id from marts.fct_form_submissions
     where staged_at >= {since} or customer_resolved_at >= {since}
"""


def warehouse_now(conn: psycopg.Connection) -> str:
    """The warehouse's clock (rows are stamped with it: staged_at, resolved_at), ISO with offset."""
    return conn.execute("select now()").fetchone()[0].isoformat()


def decide(url: str, day: dt.date, *, force_full: bool = False) -> RunMode:
    """The mode of the warehouse run for `day` (identity's schedule, see the module docstring) and, for a
    daily run, the warehouse clock now: what the run writes from here on is what its checks cover."""
    from crm_knowledge.identity.store import last_full_day, mode_for

    with connect(url) as conn:
        mode = mode_for(day, force_full=force_full, last_full_day=last_full_day(conn))
        return RunMode(mode, None if mode == FULL else warehouse_now(conn))


def day_was_full(conn: psycopg.Connection, day: dt.date) -> bool:
    """Whether a full (weekly) identity resolution ran for the pipeline day `day`."""
    if not table_exists(conn, "identity.resolution_runs"):
        return False
    return bool(conn.execute("select exists (select 1 from identity.resolution_runs where run_day = %s"
                             " and mode = 'full')", (day,)).fetchone()[0])
