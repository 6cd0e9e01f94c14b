"""Where a daily warehouse run counts changes from (crm_knowledge.run_mode, ``audit.warehouse_runs``).

A run that fails after writing (staging restaged, identity re-attributed, marts held by the gate) must not leave
those changes unrecomputed and unchecked: the next daily run counts from the start of the earliest run since
the last completed one.
"""

from __future__ import annotations

import datetime as dt

from crm_knowledge.run_mode import FULL, INCREMENTAL, complete, decide

WEDNESDAY = dt.date(2026, 12, 2)  # not config/identity.yml's full_resolution_weekday (sunday)


def _at(value: str | None) -> dt.datetime:
    assert value is not None
    return dt.datetime.fromisoformat(value)


def test_a_daily_run_counts_from_the_first_run_that_did_not_complete(wh, scratch_db):
    first = decide(scratch_db, WEDNESDAY)
    assert first.mode == INCREMENTAL and first.since == first.started  # nothing before it: its own start

    failed_after_writing = decide(scratch_db, WEDNESDAY)  # `first` never reached a passing marts gate
    assert _at(failed_after_writing.started) > _at(first.started)
    assert _at(failed_after_writing.since) == _at(first.started)

    retried = decide(scratch_db, WEDNESDAY)
    assert _at(retried.since) == _at(first.started)  # still from the first unfinished run
    complete(retried, scratch_db)

    after_success = decide(scratch_db, WEDNESDAY)
    assert after_success.since == after_success.started  # back to its own start

    rows = wh.execute("select mode, changes_since, completed_at is not null from audit.warehouse_runs"
                      " order by started_at").fetchall()
    assert [(mode, done) for mode, _, done in rows] == [(INCREMENTAL, False)] * 2 + [(INCREMENTAL, True),
                                                                                      (INCREMENTAL, False)]
    assert rows[1][1] == rows[2][1] == _at(first.started)


def test_a_failed_weekly_run_widens_the_next_daily_run(wh, scratch_db):
    complete(decide(scratch_db, WEDNESDAY), scratch_db)
    weekly = decide(scratch_db, WEDNESDAY, force_full=True)
    assert weekly.mode == FULL and weekly.since is None and weekly.started is not None
    assert weekly.dbt_vars() == {"dbt_tests_since": ""}  # everything counts as changed

    daily = decide(scratch_db, WEDNESDAY)  # the weekly run failed: count from its start
    assert _at(daily.since) == _at(weekly.started)


def test_a_hand_run_gate_marks_nothing(wh, scratch_db):
    from crm_knowledge.run_mode import RunMode

    run = decide(scratch_db, WEDNESDAY)
    complete(RunMode.from_value(None), scratch_db)  # no recorded run: nothing to mark
    assert wh.execute("select count(*) from audit.warehouse_runs where completed_at is not null").fetchone()[0] == 0
    complete(RunMode.from_value(run.as_dict()), scratch_db)  # the decision as the DAG hands it on (XCom)
    assert wh.execute("select count(*) from audit.warehouse_runs where completed_at is not null").fetchone()[0] == 1
