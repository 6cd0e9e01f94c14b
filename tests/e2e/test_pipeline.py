"""The whole pipeline as deployed, on a small demo: `make run`'s code starts the real Airflow scheduler, DAG
processor, triggerer and API server, ingestion runs once, and the warehouse and scoring DAGs are started by
Asset events. Then `ckp run` (the entry point of `make run`) runs again with one dbt model broken: the
warehouse run fails, scoring never starts, the failure is alerted and the command exits non-zero; that
second run also shows that loading everything again adds nothing.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path
from urllib.parse import urlencode

import psycopg
import pytest
from alert_webhook import alert_inbox_server
from ckp_cli import ckp_env, run_ckp

from crm_knowledge.runner import PIPELINE_DAGS, run_pipeline
from crm_knowledge.settings import PROJECT_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.warehouse]

SIZE = 150
AIRFLOW_PORT = os.environ.get("CKP_TEST_AIRFLOW_PORT", "8814")
BROKEN_MODEL = "stg_contacts__interactions"


@pytest.fixture(scope="module")
def pipeline(warehouse, settings):
    mp = pytest.MonkeyPatch()
    mp.setenv("CKP_AIRFLOW_PORT", AIRFLOW_PORT)
    started = dt.datetime.now(dt.UTC)  # a re-run of the suite meets the rows of earlier runs (and ckp score's)
    # one round: the second simulated day range (campaign responses) is tests/e2e/test_campaigns.py's
    first = run_pipeline(size=SIZE, seed=7, response_range=False)
    first = {**first, "started_at": started}
    with psycopg.connect(settings.warehouse_url) as conn:
        raw_after_first = {t: conn.execute(f"select count(*) from raw.{t}").fetchone()[0]
                           for t in ("form_submissions", "sibling_customers", "contact_interactions",
                                     "order_exports", "orders__customers", "orders__orders",
                                     "orders__order_items", "orders__products")}
        ids_after_first = dict(conn.execute(
            "select source_system || ':' || source_record_id, customer_id from identity.record_clusters"
        ).fetchall())
    mp.undo()
    return first, None, raw_after_first, ids_after_first


@pytest.fixture(scope="module")
def alert_inbox():
    """A loopback HTTP server standing in for the deployment's alert webhook (tests/alert_webhook.py)."""
    with alert_inbox_server() as inbox:
        yield inbox


def _project_copy_with_a_broken_model(tmp: Path) -> Path:
    """The repository's code, DAGs, dbt project and config, with one staging model failing in the database
    (a constant cast Postgres evaluates even when no row is selected)."""
    ignore = shutil.ignore_patterns("var", ".git", ".venv", "target", "logs", "__pycache__", "results")
    root = tmp / "project"
    for name in ("plugins", "dags", "dbt_project", "config", "expectations"):
        shutil.copytree(PROJECT_ROOT / name, root / name, ignore=ignore)
    model = root / "dbt_project" / "models" / "staging" / f"{BROKEN_MODEL}.sql"
    sql = model.read_text(encoding="utf-8")
    assert sql.rstrip().endswith("select * from final")
    model.write_text(sql.rstrip() + "\nwhere 1 = cast('broken on purpose by the test' as integer)\n",
                     encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def failed_run(pipeline, settings, alert_inbox, tmp_path_factory):
    url, received = alert_inbox
    root = _project_copy_with_a_broken_model(tmp_path_factory.mktemp("broken"))
    # `ckp run` (make run's entry point) as a user starts it, on the copy with the broken model
    env = dict(os.environ, PYTHONPATH=str(root / "plugins"), CKP_AIRFLOW_PORT=AIRFLOW_PORT,
               CKP_ALERT_WEBHOOK_URL=url)
    since = dt.datetime.now(dt.UTC)
    res = run_ckp("run", "--size", str(SIZE), "--seed", "7", "--no-response-range", env=env, timeout=3600)
    with psycopg.connect(settings.server_url("airflow")) as conn:
        runs = conn.execute("select dag_id, run_type, state from dag_run where queued_at >= %s order by queued_at",
                            (since,)).fetchall()
    return res, runs, received


def test_the_scheduler_chains_the_dags_through_asset_events(pipeline):
    """Ingestion ran once; the warehouse and scoring runs were created by Asset events and succeeded."""
    first, *_ = pipeline
    runs = first["runs"]
    assert set(runs) == set(PIPELINE_DAGS)
    assert all(r["state"] == "success" for r in runs.values()), runs
    assert runs["customer_warehouse"]["run_type"] == "asset_triggered"
    assert runs["customer_scoring"]["run_type"] == "asset_triggered"
    assert {runs[d]["run_type"] for d in PIPELINE_DAGS[:4]} <= {"scheduled", "manual"}


def test_scoring_scored_the_day_the_warehouse_built(pipeline, settings):
    """The as-of date travelled with the Asset events: ingests -> warehouse -> scoring, all the same day."""
    first, *_ = pipeline
    with psycopg.connect(settings.warehouse_url) as conn:
        days = {r[0] for r in conn.execute("select distinct as_of_date from scoring.model_runs where created_at >= %s",
                                           (first["started_at"],)).fetchall()}
        keys = {r[0] for r in conn.execute("select distinct pipeline_run_id from audit.dq_runs").fetchall()}
    # the day `make run`'s ingest runs are for: their latest due run or a run queued now (runner docstring)
    today = dt.datetime.now(dt.UTC).date()
    assert len(days) == 1 and days <= {today, today - dt.timedelta(days=1)}, days
    (day,) = days
    assert f"day-{day.isoformat()}" in keys, keys


def test_ckp_score_scores_a_day_before_the_dags_start_date(pipeline, settings):
    """`ckp score --as-of` reaches back before 2026-01-01 (the DAGs' start date), as a subprocess."""
    with psycopg.connect(settings.warehouse_url) as conn:
        first_order = conn.execute("select min(ordered_at)::date from marts.fct_orders").fetchone()[0]
    day = max(first_order + dt.timedelta(days=60), dt.date(2025, 1, 1))
    assert day < dt.date(2026, 1, 1)
    res = run_ckp("score", "--as-of", day.isoformat(), timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    with psycopg.connect(settings.warehouse_url) as conn:
        scored = conn.execute("select count(*) from scoring.customer_scores where as_of_date = %s",
                              (day,)).fetchone()[0]
    assert scored > 0
    too_early = run_ckp("score", "--as-of", "1990-01-01", timeout=900)
    assert too_early.returncode == 1 and "nothing to score" in too_early.stderr


def test_ckp_serve_answers_on_the_embedded_warehouse_after_make_run(pipeline, settings):
    """`ckp serve` (a subprocess) over what `make run` built: a demo customer found by phone, then their profile."""
    from serve_world import call, start_service, stop_service

    res = run_ckp("api-keys", "create", "--role", "agent", "--name", "e2e desk")
    assert res.returncode == 0, res.stderr[-2000:]
    with psycopg.connect(settings.warehouse_url) as conn:
        customer_id, phone = conn.execute(
            "select p.customer_id, p.phone from pii.pii_customer_profiles as p join marts.customer_360 as c "
            "using (customer_id) where p.phone is not null order by p.customer_id limit 1").fetchone()
    proc = start_service(ckp_env())
    try:
        status, body, _ = call("GET", "/customers/lookup?" + urlencode({"phone": phone}), res.stdout.strip())
        assert status == 200 and customer_id in [c["customer_id"] for c in body["candidates"]]
        status, profile, _ = call("GET", f"/customers/{customer_id}", res.stdout.strip())
        assert status == 200 and profile["next_best_action"]["action"]
    finally:
        stop_service(proc)


def test_a_failing_dbt_model_fails_the_run_and_make_run(failed_run):
    res, runs, _ = failed_run
    out = res.stdout + res.stderr
    assert res.returncode != 0, out[-3000:]
    assert "dbt_staging" in out and BROKEN_MODEL in out, out[-3000:]
    assert "broken on purpose by the test" in out, out[-3000:]
    states = {(dag_id, run_type): state for dag_id, run_type, state in runs}
    assert states.get(("customer_warehouse", "asset_triggered")) == "failed", runs


def test_scoring_never_runs_on_marts_that_did_not_build(failed_run):
    _, runs, _ = failed_run
    assert not [r for r in runs if r[0] == "customer_scoring"], runs


def test_the_failure_was_alerted_to_the_webhook(failed_run):
    _, _, received = failed_run
    alerts = [a for a in received if a["dag_id"] == "customer_warehouse"
              and a["task_id"] == "dbt_staging"]
    assert alerts, received
    alert = alerts[0]
    assert "broken on purpose by the test" in alert["error"] and alert["run_type"] == "asset_triggered"


def test_every_layer_has_rows(pipeline):
    first, _, raw, _ = pipeline
    layers = first["layers"]
    assert all(n > 0 for n in raw.values()), raw
    for schema in ("staging", "marts", "pii", "identity", "scoring", "audit"):
        assert sum(layers.get(schema, {}).values()) > 0, f"{schema} is empty: {layers.get(schema)}"
    # the unified view: fewer customers than source records, but a good share of the demo's persons
    assert 0 < first["customers_unified"] < first["source_records_resolved"]
    assert first["customers_scored"] > 0


def test_second_run_adds_nothing_and_keeps_ids(pipeline, failed_run, settings):
    """The failed run loaded everything again first (its ingests succeeded): nothing was added; identity
    resolution re-run directly (the warehouse DAG's task body) moves no customer_id."""
    from crm_knowledge.identity.store import run as resolve_identities

    _, _, raw, ids = pipeline
    resolve_identities(settings.warehouse_url, mode="full")
    with psycopg.connect(settings.warehouse_url) as conn:
        for table, n in raw.items():
            assert conn.execute(f"select count(*) from raw.{table}").fetchone()[0] == n, table
        now = dict(conn.execute(
            "select source_system || ':' || source_record_id, customer_id from identity.record_clusters"
        ).fetchall())
        merges = conn.execute("select count(*) from identity.customer_id_merges").fetchone()[0]
        ledger_ok = conn.execute(
            "select bool_and(rows_read = rows_loaded + rows_rejected + rows_duplicate) from audit.load_batches "
            "where status = 'loaded'").fetchone()[0]
    assert now == ids, "a second run must not change any customer_id"
    assert merges == 0
    assert ledger_ok


def test_identity_map_mart_matches_resolution(pipeline, settings):
    with psycopg.connect(settings.warehouse_url) as conn:
        missing = conn.execute(
            """select count(*) from identity.record_clusters r
                where not exists (select 1 from marts.customer_identity_map m
                                   where m.source_system = r.source_system
                                     and m.source_record_id = r.source_record_id
                                     and m.customer_id = r.customer_id)""").fetchone()[0]
    assert missing == 0


def test_planted_bad_file_quarantined(pipeline, settings):
    """The planted corrupt file is quarantined; the demo's bad values load as received and are field issues
    (only structurally broken rows are rejected at load)."""
    with psycopg.connect(settings.warehouse_url) as conn:
        n = conn.execute("select count(*) from audit.load_batches where status = 'quarantined'").fetchone()[0]
        issues = conn.execute("select count(*) from audit.field_issues").fetchone()[0]
    assert n >= 1 and issues >= 1


def test_no_demo_customer_identifier_outside_the_pii_vault(pipeline, settings):
    """The privacy promise, scanned: no email, phone, national ID or name of a demo customer in any non-pii
    schema (raw/staging/intermediate are pipeline-locked working layers) or any export."""
    from crm_knowledge.privacy.pii_scan import scan

    first, *_ = pipeline
    assert first["pii_scan_findings"] == 0
    result = scan(settings)
    assert result.columns_scanned > 50 and result.files_scanned > 0 and result.needles > 300
    assert result.findings == [], [f.as_dict() for f in result.findings]
