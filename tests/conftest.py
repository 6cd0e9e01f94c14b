"""Shared fixtures.

Warehouse tests run against a real PostgreSQL: the embedded server (started here under its own
CKP_HOME and port so it never touches the data of `make run`) or the server named by WAREHOUSE_URL.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from crm_knowledge.settings import PROJECT_ROOT

TEST_HOME = Path(os.environ.get("CKP_TEST_HOME", PROJECT_ROOT / "var" / "test"))

# Tests get their own home and port, chosen before anything reads settings.
os.environ.setdefault("CKP_HOME", str(TEST_HOME))
os.environ.setdefault("CKP_WAREHOUSE_PORT", os.environ.get("CKP_TEST_WAREHOUSE_PORT", "54339"))
os.environ.setdefault("CKP_WEBHOOK_PORT", os.environ.get("CKP_TEST_WEBHOOK_PORT", "8775"))
os.environ.setdefault("CKP_DEMO_MODE", "1")
# Airflow reads its home at import: point it at the test home before anything imports airflow.
os.environ.setdefault("AIRFLOW_HOME", str(Path(os.environ["CKP_HOME"]) / "airflow"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")


@pytest.fixture(scope="session")
def settings():
    from crm_knowledge.settings import get_settings

    return get_settings()


@pytest.fixture(scope="session")
def warehouse(settings) -> Iterator[str]:
    """URL of a running warehouse (started if embedded); left running for the next session."""
    from crm_knowledge.warehouse import server

    url = server.start(settings)
    yield url


@pytest.fixture()
def scratch_db_factory(warehouse, settings) -> Iterator:
    """Call it to get the URL of a fresh, empty database on the warehouse server; all dropped afterwards."""
    import psycopg
    from psycopg import sql

    admin = settings.server_url("postgres")
    made: list[str] = []

    def make() -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        made.append(name)
        return settings.server_url(name)

    try:
        yield make
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            for name in made:
                conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


@pytest.fixture()
def scratch_db(scratch_db_factory) -> str:
    """A fresh, empty database on the warehouse server for one test; dropped afterwards."""
    return scratch_db_factory()
