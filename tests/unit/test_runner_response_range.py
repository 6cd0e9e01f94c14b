"""make run's first round for a past day (before its simulated day range): every ingest DAG is triggered with
that as-of date, before it is unpaused and on its due run's logical date, so the scheduler starts no second
run of today. A small recording stand-in for the Airflow REST client; the real API is driven end to end by
tests/e2e/test_pipeline.py."""

from __future__ import annotations

import datetime as dt

from crm_knowledge.runner import INGEST_DAGS, PIPELINE_DAGS, start_ingestion

SINCE = dt.datetime(2026, 12, 6, 4, 20, tzinfo=dt.UTC)
DUE = "2026-12-06T04:00:00Z"


class RecordingApi:
    def __init__(self, runs: dict[str, list[dict]] | None = None) -> None:
        self.calls: list[tuple] = []
        self.runs = runs or {}

    def dag_runs(self, dag_id):
        return self.runs.get(dag_id, [])

    def trigger(self, dag_id, logical_date=None, conf=None):
        self.calls.append(("trigger", dag_id, logical_date, conf))
        return {}

    def set_paused(self, dag_id, paused):
        self.calls.append(("paused", dag_id, paused))


def _dags(paused: bool) -> dict[str, dict]:
    return {d: {"is_paused": paused, "next_dagrun_run_after": DUE, "next_dagrun_logical_date": DUE}
            for d in PIPELINE_DAGS}


def test_a_past_day_triggers_every_ingest_on_its_due_logical_date_before_unpausing():
    api = RecordingApi()
    start_ingestion(api, _dags(paused=True), SINCE, as_of=dt.date(2026, 11, 28))
    due = dt.datetime(2026, 12, 6, 4, tzinfo=dt.UTC)
    for dag_id in INGEST_DAGS:
        trigger = api.calls.index(("trigger", dag_id, due, {"as_of_date": "2026-11-28"}))
        assert api.calls.index(("paused", dag_id, False)) == trigger + 1
    assert not [c for c in api.calls if c[0] == "trigger" and c[1] not in INGEST_DAGS]
    assert {c[1] for c in api.calls if c[0] == "paused"} == set(PIPELINE_DAGS)


def test_already_unpaused_ingests_are_triggered_for_the_day_without_a_logical_date():
    api = RecordingApi()
    start_ingestion(api, _dags(paused=False), SINCE, as_of=dt.date(2026, 11, 28))
    assert [c for c in api.calls if c[0] == "trigger"] == [
        ("trigger", d, None, {"as_of_date": "2026-11-28"}) for d in INGEST_DAGS]
    assert not [c for c in api.calls if c[0] == "paused"]


def test_without_a_day_the_scheduler_starts_the_due_runs():
    api = RecordingApi()
    start_ingestion(api, _dags(paused=True), SINCE)
    assert [c for c in api.calls if c[0] == "trigger"] == []


def test_a_due_run_an_earlier_round_took_is_triggered_by_hand():
    """A second `make run` the same day: the first one's first round was triggered on the due run's logical
    date, so the scheduler will never start that run; waiting for it would hang until the run timeout."""
    taken = {d: [{"dag_run_id": f"manual__{d}", "logical_date": DUE}] for d in INGEST_DAGS[2:]}
    api = RecordingApi(taken)
    start_ingestion(api, _dags(paused=True), SINCE)
    assert [c[1] for c in api.calls if c[0] == "trigger"] == list(INGEST_DAGS[2:])
    assert [c[2] for c in api.calls if c[0] == "trigger"] == [None] * len(INGEST_DAGS[2:])
