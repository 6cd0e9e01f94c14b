"""`make run` as deployed, end to end: its code starts the real Airflow scheduler, DAG processor, triggerer and
API server; ingestion runs, and the warehouse and scoring DAGs are started by Asset events; then its second
simulated day range (the demo's customers respond to what they were sent, with a known true effect per
audience) runs the pipeline again and measures the campaigns.

One run of both rounds serves every test here (the scheduler's chaining of the DAGs, the layers, privacy,
`ckp score` / `ckp serve` over what it built, and the campaigns). Then `ckp run` (the entry point of `make
run`) runs again with one dbt model broken: the warehouse run fails, scoring never starts, the failure is
alerted and the command exits non-zero; that second run also shows that loading everything again adds
nothing.

Campaigns: the delivery with holdouts happens under the scheduler; the measured lift must recover the planted
effects within their 95% intervals, and the audience with no effect must not be reported as significant.

The module starts from an empty warehouse database and drops it again afterwards, so the planted truth is the
only campaign history and other modules start as on a fresh home.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import shutil
from pathlib import Path
from urllib.parse import urlencode

import psycopg
import pytest
from alert_webhook import alert_inbox_server
from ckp_cli import ckp_env, run_ckp
from psycopg import sql

from crm_knowledge.demo.responses import RESPONSE_DAYS, load_planted_effects
from crm_knowledge.export.campaign_report import latest_path
from crm_knowledge.runner import INGEST_DAGS, PIPELINE_DAGS, run_pipeline
from crm_knowledge.settings import PROJECT_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.warehouse]

SIZE = 3000  # above the demo default: every campaign audience reaches the minimum sample per arm (20)
SEED = 42
AIRFLOW_PORT = os.environ.get("CKP_TEST_AIRFLOW_PORT", "8814")
BROKEN_MODEL = "stg_contacts__interactions"
WINDOW = 7  # the response range is the campaigns' first window
RAW_TABLES = ("form_submissions", "sibling_customers", "contact_interactions", "order_exports", "orders__customers",
              "orders__orders", "orders__order_items", "orders__products")


def _drop_warehouse(settings) -> None:
    with psycopg.connect(settings.server_url("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(
            sql.Identifier(settings.warehouse_db)))


@pytest.fixture(scope="module")
def pipeline(warehouse, settings):
    """`make run`'s two rounds on an empty warehouse, and what the tests read right after it."""
    mp = pytest.MonkeyPatch()
    mp.setenv("CKP_AIRFLOW_PORT", AIRFLOW_PORT)
    _drop_warehouse(settings)
    started = dt.datetime.now(dt.UTC)
    try:
        summary = run_pipeline(size=SIZE, seed=SEED)
        truth = load_planted_effects(settings)
        with psycopg.connect(settings.warehouse_url) as conn:
            raw = {t: conn.execute(f"select count(*) from raw.{t}").fetchone()[0] for t in RAW_TABLES}
            ids = dict(conn.execute(
                "select source_system || ':' || source_record_id, customer_id from identity.record_clusters"
            ).fetchall())
            scored_days = {r[0] for r in conn.execute(
                "select distinct as_of_date from scoring.model_runs where created_at >= %s", (started,)).fetchall()}
            dq_keys = {r[0] for r in conn.execute("select distinct pipeline_run_id from audit.dq_runs").fetchall()}
            merges = conn.execute("select count(*) from identity.customer_id_merges").fetchone()[0]
            lift = conn.execute(
                "select destination || ':' || audience, campaign_date, lift, ci_low, ci_high, is_significant, "
                "treated_customers, holdout_customers, is_window_complete from marts.campaign_lift "
                "where metric = 'orders' and window_days = %s", (WINDOW,)).fetchall()
            assignments = conn.execute(
                "select destination, audience, customer_id, arm, campaign_date from scoring.campaign_assignments"
            ).fetchall()
            knowledge = conn.execute(
                "select count(*) from marts.customer_knowledge where kind = 'campaign_response' and flow = 'from'"
            ).fetchone()[0]
            last_campaign = conn.execute(
                "select count(*) filter (where last_campaign_arm = 'holdout'), "
                "count(*) filter (where has_responded_to_last_campaign) from marts.customer_360").fetchone()
            model_runs = conn.execute(
                "select count(distinct m.model_run_id) from scoring.model_run_campaigns m "
                "join scoring.model_runs r using (model_run_id)").fetchone()[0]
        mp.undo()
        yield {"started": started, "summary": summary, "raw": raw, "ids": ids, "merges": merges,
               "scored_days": scored_days,
               "dq_keys": dq_keys, "truth": truth, "lift": lift, "assignments": assignments,
               "knowledge": knowledge, "last_campaign": last_campaign, "model_runs": model_runs}
    finally:
        mp.undo()
        _drop_warehouse(settings)


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
    text = model.read_text(encoding="utf-8")
    assert text.rstrip().endswith("select * from final")
    model.write_text(text.rstrip() + "\nwhere 1 = cast('broken on purpose by the test' as integer)\n",
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
    # the same demo as the module's run (same size, seed and first-round day), both rounds as `make run` has them:
    # the first round's warehouse run fails, so the second never starts
    res = run_ckp("run", "--size", str(SIZE), "--seed", str(SEED), env=env, timeout=3600)
    with psycopg.connect(settings.server_url("airflow")) as conn:
        runs = conn.execute("select dag_id, run_type, state from dag_run where queued_at >= %s order by queued_at",
                            (since,)).fetchall()
    return res, runs, received


# --- campaigns: the delivery with holdouts, and the response range's measurement ---------------------------

def test_held_out_customers_were_never_sent(pipeline, settings):
    """No held-out customer was sent the audience they were held out of (in either delivery), nor recorded as
    offered it. (A customer whose segment changed may be treated in another audience: arms are per audience.)"""
    arms = {(a, c): arm for d, a, c, arm, _ in pipeline["assignments"] if d == "marketing_campaigns"}
    held = {k for k, arm in arms.items() if arm == "holdout"}
    treated = {k for k, arm in arms.items() if arm == "treated"}
    assert held and treated
    started = pipeline["started"].timestamp()
    files = [p for p in Path(settings.exports_dir, "marketing").rglob("*.csv")
             if p.stat().st_mtime >= started]  # this run's deliveries, not an earlier session's
    assert files
    sent: set[tuple[str, str]] = set()
    for path in files:
        with open(path, newline="", encoding="utf-8") as fh:
            sent |= {(r["audience"], r["customer_id"]) for r in csv.DictReader(fh) if r["change_type"] != "removed"}
    assert treated <= sent  # both deliveries' files together
    assert not held & sent
    with psycopg.connect(settings.warehouse_url) as conn:
        offered = set(conn.execute(
            "select audience, customer_id from scoring.communications where destination = 'marketing_campaigns' "
            "and kind = 'offer_made'").fetchall())
    assert not held & offered


def test_the_second_delivery_kept_every_arm(pipeline):
    """The range's delivery re-selected the audiences: nobody randomised on the first day moved, newcomers
    joined under the second day's date."""
    truth = pipeline["truth"]
    first_day = dt.date.fromisoformat(truth["delivery_day"])
    dates = {d for *_, d in pipeline["assignments"]}
    assert first_day in dates
    assert dates <= {first_day, first_day + dt.timedelta(days=RESPONSE_DAYS)}
    keys = [(d, a, c) for d, a, c, _, _ in pipeline["assignments"]]
    assert len(keys) == len(set(keys))


def test_planted_effects_are_recovered_within_their_intervals(pipeline):
    truth = pipeline["truth"]
    first_day = dt.date.fromisoformat(truth["delivery_day"])
    lift = {k: r for k, day, *r in pipeline["lift"] if day == first_day}
    assert set(lift) == set(truth["audiences"]), (lift, truth["audiences"])
    for key, planted in truth["audiences"].items():
        value, low, high, significant, n_t, n_h, complete = lift[key]
        effect = planted["true_lift_orders_per_customer"]
        assert complete, key
        assert low is not None, f"{key}: below the minimum sample ({n_t} treated, {n_h} held out)"
        assert low <= effect <= high, f"{key}: planted {effect}, measured {value:.3f} [{low:.3f}, {high:.3f}]"
        if effect > 0:
            assert significant, f"{key}: planted {effect}, measured {value:.3f} [{low:.3f}, {high:.3f}]"


def test_the_null_audience_is_not_significant(pipeline):
    truth = pipeline["truth"]
    first_day = dt.date.fromisoformat(truth["delivery_day"])
    nulls = [k for k, p in truth["audiences"].items() if p["true_lift_orders_per_customer"] == 0]
    assert nulls == ["marketing_campaigns:champions"]
    for key, day, value, low, high, significant, *_ in pipeline["lift"]:
        if key in nulls and day == first_day:
            assert not significant, f"{key}: measured {value:.3f} [{low:.3f}, {high:.3f}]"


def test_responses_flow_back_into_knowledge_and_the_360(pipeline):
    assert pipeline["knowledge"] > 0
    held_out_shown, responded = pipeline["last_campaign"]
    assert held_out_shown > 0 and responded > 0
    assert pipeline["model_runs"] > 0  # the scoring runs that selected the campaigns know it


def test_the_campaign_report_was_written(pipeline, settings):
    page = latest_path(settings).read_text(encoding="utf-8")
    truth = pipeline["truth"]
    for key in truth["audiences"]:
        assert f'data-campaign="{key}:{truth["delivery_day"]}"' in page
    assert 'id="lift-chart"' in page and 'id="decile-chart"' in page and "time-chart" in page


# --- the pipeline ----------------------------------------------------------------------------------------

def test_the_scheduler_chains_the_dags_through_asset_events(pipeline, settings):
    """In each round ingestion ran once, triggered for the round's day; the warehouse and scoring runs were
    created by Asset events and succeeded. No scheduled ingest run of the real day was created (under `make
    run` the ingests have no time schedule: one crossing into a round would change the warehouse's as-of
    date)."""
    summary = pipeline["summary"]
    for runs in (summary["runs"], summary["response_range_runs"]):
        assert set(runs) == set(PIPELINE_DAGS)
        assert all(r["state"] == "success" for r in runs.values()), runs
        assert runs["customer_warehouse"]["run_type"] == "asset_triggered"
        assert runs["customer_scoring"]["run_type"] == "asset_triggered"
        assert {runs[d]["run_type"] for d in INGEST_DAGS} == {"manual"}
    with psycopg.connect(settings.server_url("airflow")) as conn:
        scheduled = conn.execute("select count(*) from dag_run where dag_id = any(%s) and run_type = 'scheduled' "
                                 "and queued_at >= %s", (list(INGEST_DAGS), pipeline["started"])).fetchone()[0]
    assert scheduled == 0


def test_scoring_scored_the_day_the_warehouse_built(pipeline):
    """The as-of date travelled with the Asset events: in each round ingests -> warehouse -> scoring, all the
    same day: the first round's (the campaigns' delivery day, in the past) and the response range's last day.
    (One round on the day of the ingests' due run: tests/e2e/test_external_warehouse.py.)"""
    first_round = dt.date.fromisoformat(pipeline["truth"]["delivery_day"])
    today = dt.datetime.now(dt.UTC).date()
    assert first_round == today - dt.timedelta(days=RESPONSE_DAYS + 1)
    days = {first_round, first_round + dt.timedelta(days=RESPONSE_DAYS)}
    assert pipeline["scored_days"] == days, pipeline["scored_days"]
    for day in days:
        assert f"day-{day.isoformat()}" in pipeline["dq_keys"], pipeline["dq_keys"]


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
    first, raw = pipeline["summary"], pipeline["raw"]
    layers = first["layers"]
    assert all(n > 0 for n in raw.values()), raw
    for schema in ("staging", "marts", "pii", "identity", "scoring", "audit"):
        assert sum(layers.get(schema, {}).values()) > 0, f"{schema} is empty: {layers.get(schema)}"
    # the unified view: fewer customers than source records, but a good share of the demo's persons
    assert 0 < first["customers_unified"] < first["source_records_resolved"]
    assert first["customers_scored"] > 0


def test_second_run_adds_nothing_and_keeps_ids(pipeline, failed_run, settings):
    """The failed run loaded everything again first (its ingests succeeded): nothing was added; identity
    resolution re-run directly (the warehouse DAG's task body) moves no customer_id and merges none (the
    response range's new records may have merged customers: those merges are the run's, not the re-run's)."""
    from crm_knowledge.identity.store import run as resolve_identities

    raw, ids = pipeline["raw"], pipeline["ids"]
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
    assert merges == pipeline["merges"]
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


def test_no_demo_customer_identifier_outside_the_pii_vault(pipeline):
    """The privacy promise, scanned: no email, phone, national ID or name of a demo customer in any non-pii
    schema (raw/staging/intermediate are pipeline-locked working layers) or any export, by make run's own scan."""
    summary = pipeline["summary"]
    # on failure: where and what kind (never the values; privacy/pii_scan.Finding)
    assert summary["pii_scan_findings"] == 0, summary["pii_scan"]["findings"]
    result = summary["pii_scan"]  # make run's own scan, after both rounds (a scan of 3,000 customers takes a minute)
    assert result["columns_scanned"] > 50 and result["files_scanned"] > 0 and result["needles"] > 300
    assert result["findings"] == [], result["findings"]
