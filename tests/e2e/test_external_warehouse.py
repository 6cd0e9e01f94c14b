"""The whole pipeline, run by Airflow, on a warehouse reached ONLY through WAREHOUSE_URL: a second,
separately started PostgreSQL of another major version than the embedded one, that lets the pipeline's
role in without a password (trust), with libpq parameters in the URL. Every component (psycopg, dbt through
cosmos, Great Expectations, scoring, exports) has to get there with what the URL says."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest

from crm_knowledge.runner import run_pipeline

pytestmark = [pytest.mark.e2e, pytest.mark.warehouse]

SIZE = 150


@pytest.fixture(scope="module")
def external_run(passwordless_postgres, tmp_path_factory):
    pg = passwordless_postgres
    url = (f"postgresql://{pg['user']}@{pg['host']}:{pg['port']}/warehouse"
           "?sslmode=disable&application_name=ckp-e2e-external&connect_timeout=10")
    home = tmp_path_factory.mktemp("external-warehouse-home")
    mp = pytest.MonkeyPatch()
    mp.setenv("WAREHOUSE_URL", url)
    mp.setenv("CKP_HOME", str(home))
    mp.setenv("HOME", str(home))  # no ~/.pgpass of this machine's user
    for var in ("CKP_ORDERS_URL", "CKP_LANDING_DIR", "PGPASSWORD", "PGPASSFILE", "AIRFLOW_CONN_WAREHOUSE"):
        mp.delenv(var, raising=False)
    try:
        # the databases are this test's own: the demo may fill them
        # one round (`ckp run --no-response-range`): make run's two rounds are tests/e2e/test_pipeline.py's
        summary = run_pipeline(size=SIZE, seed=7, overwrite_external_db=True, response_range=False)
    finally:
        mp.undo()
    return url, summary


def test_it_is_the_second_server_and_no_password_was_used(external_run, passwordless_postgres):
    url, _ = external_run
    assert ":" not in url.split("@")[0].removeprefix("postgresql://")  # no password in the URL
    with psycopg.connect(url) as conn:
        version = int(conn.execute("show server_version_num").fetchone()[0])
        superuser = conn.execute("select rolsuper from pg_roles where rolname = current_user").fetchone()[0]
    assert version == passwordless_postgres["version"] and version // 10000 == 15
    assert superuser is False  # the pipeline's role owns its databases, nothing more


def test_every_layer_was_built_on_it(external_run):
    url, summary = external_run
    layers = summary["layers"]
    for schema in ("raw", "staging", "intermediate", "marts", "pii", "identity", "scoring", "audit"):
        assert sum(layers.get(schema, {}).values()) > 0, f"{schema} is empty: {layers.get(schema)}"
    assert 0 < summary["customers_unified"] < summary["source_records_resolved"]
    assert summary["customers_scored"] > 0
    assert summary["pii_scan_findings"] == 0
    with psycopg.connect(url) as conn:
        # dbt (through cosmos) built the marts
        assert conn.execute("select count(*) from marts.customer_360").fetchone()[0] > 0
        assert conn.execute("select count(*) from audit.load_batches where status = 'loaded'").fetchone()[0] > 0
        exports = conn.execute("select count(*) from audit.exports").fetchone()[0]
    assert exports > 0


def test_the_round_scored_the_day_its_ingests_were_due(external_run):
    """One round: the as-of date of the ingests' due run (or of a run queued now) travelled with the Asset
    events: ingests -> warehouse -> scoring, all the same day."""
    url, _ = external_run
    with psycopg.connect(url) as conn:
        days = {r[0] for r in conn.execute("select distinct as_of_date from scoring.model_runs").fetchall()}
        keys = {r[0] for r in conn.execute("select distinct pipeline_run_id from audit.dq_runs").fetchall()}
    today = dt.datetime.now(dt.UTC).date()
    assert len(days) == 1 and days <= {today, today - dt.timedelta(days=1)}, days
    (day,) = days
    assert f"day-{day.isoformat()}" in keys, keys
