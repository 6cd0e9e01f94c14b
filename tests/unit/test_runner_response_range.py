"""make run's first round for a past day (before its simulated day range): every ingest DAG is triggered with
that as-of date, before it is unpaused and on its due run's logical date, so the scheduler starts no second
run of today. A small recording stand-in for the Airflow REST client; the real API is driven end to end by
tests/e2e/test_pipeline.py."""

from __future__ import annotations

import datetime as dt

import pytest

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


def _unscheduled(paused: bool) -> dict[str, dict]:
    """The DAGs as `make run` has them: ingests without a time schedule (CKP_INGEST_SCHEDULES off), so Airflow
    reports no next run."""
    return {d: {"is_paused": paused, "next_dagrun_run_after": None, "next_dagrun_logical_date": None}
            for d in PIPELINE_DAGS}


@pytest.mark.parametrize("as_of", [dt.date(2026, 11, 28), None])
def test_unscheduled_ingests_are_each_triggered_once_before_unpausing(as_of):
    api = RecordingApi()
    start_ingestion(api, _unscheduled(paused=True), SINCE, as_of=as_of)
    conf = {"as_of_date": as_of.isoformat()} if as_of else None
    triggers = [c for c in api.calls if c[0] == "trigger"]
    assert [c[1] for c in triggers] == list(INGEST_DAGS)
    assert {(c[2], str(c[3])) for c in triggers} == {(None, str(conf))}
    if as_of:  # before unpausing, as on a due run; without a day the run is queued after unpausing
        for dag_id in INGEST_DAGS:
            assert (api.calls.index(("paused", dag_id, False))
                    == api.calls.index(("trigger", dag_id, None, conf)) + 1)


def test_make_run_turns_the_ingest_schedules_off_and_a_deployment_keeps_them(monkeypatch, tmp_path):
    from crm_knowledge.runner import airflow_env
    from crm_knowledge.settings import get_settings

    monkeypatch.delenv("CKP_INGEST_SCHEDULES", raising=False)
    monkeypatch.setenv("CKP_HOME", str(tmp_path))
    monkeypatch.setenv("WAREHOUSE_URL", "postgresql://ckp@127.0.0.1:1/warehouse")  # never connected to
    settings = get_settings()
    assert settings.ingest_schedules
    assert airflow_env(settings, demo=True)["CKP_INGEST_SCHEDULES"] == "off"
    assert airflow_env(settings, demo=False)["CKP_INGEST_SCHEDULES"] == "on"
    monkeypatch.setenv("CKP_INGEST_SCHEDULES", "on")  # an operator's choice wins
    assert airflow_env(settings, demo=True)["CKP_INGEST_SCHEDULES"] == "on"
