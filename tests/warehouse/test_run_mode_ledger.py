"""Where a daily warehouse run counts changes from (crm_knowledge.run_mode, ``audit.warehouse_runs``).

A run that fails after writing (staging restaged, identity re-attributed, marts held by the gate) must not leave
those changes unrecomputed and unchecked: the next daily run counts from the start of the earliest run since
the last completed one.
"""

from __future__ import annotations

import datetime as dt

from crm_knowledge.run_mode import FULL, INCREMENTAL, complete, complete_post_scoring, decide, post_scoring

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


def test_post_scoring_counts_from_the_warehouse_runs_no_scoring_run_picked_up(wh, scratch_db):
    """The scoring DAG's post-scoring models (customer_segments, the 360) follow the completed warehouse runs
    not yet picked up: all of them after a failed scoring run, everyone after a full one or on a warehouse
    whose post-scoring models never recorded a build."""
    first = decide(scratch_db, WEDNESDAY)
    complete(first, scratch_db)
    never_picked_up = post_scoring(scratch_db)
    assert never_picked_up.mode == FULL and never_picked_up.dbt_vars() == {"dbt_tests_since": ""}
    complete_post_scoring(never_picked_up, scratch_db)

    second = decide(scratch_db, WEDNESDAY)
    complete(second, scratch_db)
    failed_scoring = post_scoring(scratch_db)  # its gate never passes: nothing is marked
    assert failed_scoring.mode == INCREMENTAL and _at(failed_scoring.since) == _at(second.since)
    unfinished_warehouse = decide(scratch_db, WEDNESDAY)  # failed: not complete, not followed by scoring
    third = decide(scratch_db, WEDNESDAY)
    complete(third, scratch_db)
    catching_up = post_scoring(scratch_db)
    assert _at(catching_up.since) == _at(second.since)  # the failed scoring run's warehouse run too
    assert _at(catching_up.started) == _at(third.started)
    complete_post_scoring(catching_up, scratch_db)

    by_hand = post_scoring(scratch_db)  # no warehouse run since: the scores it writes and the as-of day's moves
    assert by_hand.mode == INCREMENTAL and by_hand.started is None
    assert _at(by_hand.since) > _at(third.started)
    complete_post_scoring(by_hand, scratch_db)  # marks nothing

    weekly = decide(scratch_db, WEDNESDAY, force_full=True)
    complete(weekly, scratch_db)
    assert post_scoring(scratch_db).mode == FULL
    rows = wh.execute("select started_at, post_scoring_at is not null from audit.warehouse_runs"
                      " order by started_at").fetchall()
    assert [done for _, done in rows] == [True, True, False, True, False]
    assert rows[2][0] == _at(unfinished_warehouse.started)  # never completed, so never picked up
