"""How `make run` / `make up` configure Airflow's components, and how a failed task's error is read back."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from crm_knowledge.airflow_stack import error_of, metadata_db_url, stack_env
from crm_knowledge.settings import get_settings


def test_every_component_finds_the_api_server_it_was_given(monkeypatch, tmp_path):
    """Task processes report to the execution API: its URL must follow the port, or they look on 8080."""
    monkeypatch.delenv("AIRFLOW__API_AUTH__JWT_SECRET", raising=False)
    # an external warehouse: no embedded server needs to be running for the metadata database's URL
    settings = dataclasses.replace(get_settings(), external_warehouse_url="postgresql://u@db.internal/w", home=tmp_path)
    env = stack_env(settings, {"PATH": "/usr/bin"}, 8814)
    assert env["AIRFLOW__API__PORT"] == "8814"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8814/execution/"
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert len(env["AIRFLOW__API_AUTH__JWT_SECRET"]) >= 32  # one shared secret, never Airflow's per-process one
    assert env["PATH"].split(":")[0] == str(Path(__import__("sys").executable).parent)  # airflow/dbt on PATH


def test_metadata_database(monkeypatch, tmp_path):
    monkeypatch.delenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", raising=False)
    settings = get_settings()
    external = dataclasses.replace(settings, external_warehouse_url="postgresql://u@db.internal/w", home=tmp_path)
    # an external warehouse is the user's: Airflow's tables do not go there uninvited
    assert metadata_db_url(external) == f"sqlite:///{tmp_path / 'airflow' / 'airflow.db'}"
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "postgresql+psycopg2://a@meta/airflow")
    assert metadata_db_url(external) == "postgresql+psycopg2://a@meta/airflow"


def test_the_error_of_a_failed_task_is_read_from_its_structured_log():
    log = [
        {"event": "::group::Log message source details", "level": "info"},
        {"event": "dbt build started", "level": "info"},
        {"event": "Task failed with exception", "level": "error",
         "error_detail": [{"exc_type": "OperationalError", "exc_value": "connection refused", "frames": []},
                          {"exc_type": "RuntimeError", "exc_value": "Cannot connect to the warehouse at db:5432/w",
                           "frames": [{"filename": "run.py", "lineno": 3}]}]},
        "plain text line",
    ]
    assert error_of(log) == "RuntimeError: Cannot connect to the warehouse at db:5432/w"
    assert error_of([{"event": "done", "level": "info"}]) == "(no error in the task log)"
    assert error_of([{"event": "QUARANTINED f.csv: missing columns", "level": "error"}]) == \
        "QUARANTINED f.csv: missing columns"
