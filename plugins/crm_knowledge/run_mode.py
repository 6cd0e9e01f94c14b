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

"Since the run began" means since the earliest warehouse run after the last *completed* one (its marts
quality gate passed; ``audit.warehouse_runs``): after a failed run, the next daily run recomputes and checks
what the failed one wrote too.

The warehouse DAG's ``run_mode`` task decides it once (:func:`decide`), before dbt staging, and hands it on;
identity resolution is forced full exactly when it says full; the marts gate marks the run complete
(:func:`complete`). Scoring, a DAG of its own, reads what the
warehouse did for the day from ``identity.resolution_runs`` (:func:`day_was_full`); its post-scoring models
count from the completed warehouse runs no scoring run has picked up yet (:func:`post_scoring`, marked by the
post-scoring gate with :func:`complete_post_scoring`).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

import psycopg

from crm_knowledge.warehouse.db import connect, table_exists

log = logging.getLogger(__name__)

FULL = "full"
INCREMENTAL = "incremental"
#: The dbt var a daily run sets to the warehouse clock at its start: dbt tests read the rows written since
#: (macros/tests_on_new_rows.sql), the customer-level models recompute the customers changed since
#: (macros/affected_customers.sql). Empty on a weekly run.
DBT_TESTS_SINCE_VAR = "dbt_tests_since"


@dataclass(frozen=True)
class RunMode:
    """`mode`: ``full`` (weekly) or ``incremental`` (daily). `since` (ISO timestamp; None on a full run): a
    daily run's checks and customer models cover what was written at or after it: the warehouse's clock when
    the run began or, after runs that did not complete, when the earliest of those began (:func:`decide`)."""

    mode: str
    since: str | None = None
    #: This run's key in ``audit.warehouse_runs`` (its start, ISO), marked complete when its marts gate
    #: passes (:func:`complete`); None for a hand-run check.
    started: str | None = None

    @property
    def is_full(self) -> bool:
        return self.mode == FULL

    def as_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "since": self.since, "started": self.started}

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
        return cls(mode, None if mode == FULL else value.get("since"), value.get("started"))

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
    """The mode of the warehouse run for `day` (identity's schedule, see the module docstring), recorded in
    ``audit.warehouse_runs``. A daily run counts what was written from the warehouse clock now, or from the
    start of the earliest run since the last completed one: a run that failed after writing (staging restaged,
    identity re-attributed, the marts gate held) left those changes unrecomputed or unchecked, and a `since`
    of this run's own start would never look at them again."""
    from crm_knowledge.identity.store import last_full_day, mode_for

    with connect(url) as conn:
        mode = mode_for(day, force_full=force_full, last_full_day=last_full_day(conn))
        started = warehouse_now(conn)
        since = None
        if mode != FULL:
            unfinished = _earliest_unfinished_start(conn)
            since = unfinished.isoformat() if unfinished else started
            if unfinished:
                log.warning("a warehouse run since the last completed one did not complete: this run counts "
                            "changes from %s, when the earliest of them began", since)
        conn.execute("insert into audit.warehouse_runs (started_at, run_day, mode, changes_since)"
                     " values (%s, %s, %s, %s)", (started, day, mode, since))
        return RunMode(mode, since, started)


def _earliest_unfinished_start(conn: psycopg.Connection) -> dt.datetime | None:
    """When the earliest warehouse run began that started after the last completed one (None: there is none)."""
    return conn.execute(
        """select min(started_at) from audit.warehouse_runs
            where completed_at is null
              and started_at > coalesce((select max(started_at) from audit.warehouse_runs
                                          where completed_at is not null), '-infinity')""").fetchone()[0]


def complete(mode: RunMode, url: str | None = None) -> None:
    """Mark the run of `mode` complete (its marts quality gate passed): later daily runs count from their own
    start again. A hand-run gate (no recorded run) marks nothing. `url`: the configured warehouse by default."""
    if mode.started is None:
        return
    with connect(url) as conn:
        conn.execute("update audit.warehouse_runs set completed_at = now() where started_at = %s",
                     (mode.started,))


def post_scoring(url: str) -> RunMode:
    """The mode of a scoring run's post-scoring models (customer_segments, int_customer_360_assembled), which
    a scoring run builds after the warehouse run(s) it follows. They count changes from the `since` of the
    earliest completed warehouse run no post-scoring build has picked up yet (a scoring run that failed left
    its warehouse run's changes for the next one), and recompute everyone when one of those runs was full or
    none was ever picked up (a new or upgraded warehouse). With no such run (scoring triggered by hand) they
    count from now: the scores this run writes, and the as-of day's moves. ``started``: the latest of those
    warehouse runs, marked picked up by :func:`complete_post_scoring`."""
    with connect(url) as conn:
        now = warehouse_now(conn)
        last_picked_up = conn.execute("select max(started_at) from audit.warehouse_runs"
                                      " where post_scoring_at is not null").fetchone()[0]
        pending = conn.execute(
            """select mode, changes_since, started_at from audit.warehouse_runs
                where completed_at is not null and post_scoring_at is null
                  and started_at > coalesce(%s, '-infinity'::timestamptz)
                order by started_at""", (last_picked_up,)).fetchall()
    if not pending:
        return RunMode(INCREMENTAL, now, None)
    latest = pending[-1][2].isoformat()
    if last_picked_up is None or any(mode == FULL for mode, _, _ in pending):
        return RunMode(FULL, None, latest)
    return RunMode(INCREMENTAL, min(since for _, since, _ in pending).isoformat(), latest)


def complete_post_scoring(mode: RunMode, url: str | None = None) -> None:
    """Mark the completed warehouse runs up to ``mode.started`` picked up by the post-scoring models (the
    post-scoring quality gate passed). Nothing when the build followed no warehouse run."""
    if mode.started is None:
        return
    with connect(url) as conn:
        conn.execute("update audit.warehouse_runs set post_scoring_at = now() where completed_at is not null"
                     " and post_scoring_at is null and started_at <= %s", (mode.started,))


def day_was_full(conn: psycopg.Connection, day: dt.date) -> bool:
    """Whether a full (weekly) identity resolution ran for the pipeline day `day`."""
    if not table_exists(conn, "identity.resolution_runs"):
        return False
    return bool(conn.execute("select exists (select 1 from identity.resolution_runs where run_day = %s"
                             " and mode = 'full')", (day,)).fetchone()[0])
