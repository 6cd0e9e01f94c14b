"""Campaigns end to end: `make run`'s code delivers with holdouts under the real Airflow scheduler,
then its second simulated day range (the demo's customers respond to what they were sent, with a known true
effect per audience) measures the campaigns. The measured lift must recover the planted effects within their
95% intervals, and the audience with no effect must not be reported as significant.

The module starts from an empty warehouse database and drops it again afterwards, so the planted truth is the
only campaign history and other end-to-end modules start as on a fresh home.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from crm_knowledge.demo.responses import RESPONSE_DAYS, load_planted_effects
from crm_knowledge.export.campaign_report import latest_path
from crm_knowledge.runner import PIPELINE_DAGS, run_pipeline

pytestmark = [pytest.mark.e2e, pytest.mark.warehouse]

SIZE = 3000  # above the demo default: every audience reaches the minimum sample per arm (20)
SEED = 42
AIRFLOW_PORT = os.environ.get("CKP_TEST_AIRFLOW_PORT", "8814")
WINDOW = 7  # the response range is the first window


def _drop_warehouse(settings) -> None:
    with psycopg.connect(settings.server_url("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(
            sql.Identifier(settings.warehouse_db)))


@pytest.fixture(scope="module")
def campaign_run(warehouse, settings):
    mp = pytest.MonkeyPatch()
    mp.setenv("CKP_AIRFLOW_PORT", AIRFLOW_PORT)
    _drop_warehouse(settings)
    started = time.time()
    try:
        summary = run_pipeline(size=SIZE, seed=SEED)
        truth = load_planted_effects(settings)
        with psycopg.connect(settings.warehouse_url) as conn:
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
        yield {"started": started, "summary": summary, "truth": truth, "lift": lift, "assignments": assignments,
               "knowledge": knowledge, "last_campaign": last_campaign, "model_runs": model_runs}
    finally:
        mp.undo()
        _drop_warehouse(settings)


def test_both_rounds_ran_under_the_scheduler(campaign_run):
    summary = campaign_run["summary"]
    for rounds in (summary["runs"], summary["response_range_runs"]):
        assert set(rounds) == set(PIPELINE_DAGS) and all(r["state"] == "success" for r in rounds.values())
        assert rounds["customer_scoring"]["run_type"] == "asset_triggered"


def test_held_out_customers_were_never_sent(campaign_run, settings):
    """No held-out customer was sent the audience they were held out of (in either delivery), nor recorded as
    offered it. (A customer whose segment changed may be treated in another audience: arms are per audience.)"""
    arms = {(a, c): arm for d, a, c, arm, _ in campaign_run["assignments"] if d == "marketing_campaigns"}
    held = {k for k, arm in arms.items() if arm == "holdout"}
    treated = {k for k, arm in arms.items() if arm == "treated"}
    assert held and treated
    files = [p for p in Path(settings.exports_dir, "marketing").rglob("*.csv")
             if p.stat().st_mtime >= campaign_run["started"]]  # this run's deliveries, not an earlier session's
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


def test_the_second_delivery_kept_every_arm(campaign_run):
    """The range's delivery re-selected the audiences: nobody randomised on the first day moved, newcomers
    joined under the second day's date."""
    truth = campaign_run["truth"]
    first_day = dt.date.fromisoformat(truth["delivery_day"])
    dates = {d for *_, d in campaign_run["assignments"]}
    assert first_day in dates
    assert dates <= {first_day, first_day + dt.timedelta(days=RESPONSE_DAYS)}
    keys = [(d, a, c) for d, a, c, _, _ in campaign_run["assignments"]]
    assert len(keys) == len(set(keys))


def test_planted_effects_are_recovered_within_their_intervals(campaign_run):
    truth = campaign_run["truth"]
    first_day = dt.date.fromisoformat(truth["delivery_day"])
    lift = {k: r for k, day, *r in campaign_run["lift"] if day == first_day}
    assert set(lift) == set(truth["audiences"]), (lift, truth["audiences"])
    for key, planted in truth["audiences"].items():
        value, low, high, significant, n_t, n_h, complete = lift[key]
        effect = planted["true_lift_orders_per_customer"]
        assert complete, key
        assert low is not None, f"{key}: below the minimum sample ({n_t} treated, {n_h} held out)"
        assert low <= effect <= high, f"{key}: planted {effect}, measured {value:.3f} [{low:.3f}, {high:.3f}]"
        if effect > 0:
            assert significant, f"{key}: planted {effect}, measured {value:.3f} [{low:.3f}, {high:.3f}]"


def test_the_null_audience_is_not_significant(campaign_run):
    truth = campaign_run["truth"]
    first_day = dt.date.fromisoformat(truth["delivery_day"])
    nulls = [k for k, p in truth["audiences"].items() if p["true_lift_orders_per_customer"] == 0]
    assert nulls == ["marketing_campaigns:champions"]
    for key, day, value, low, high, significant, *_ in campaign_run["lift"]:
        if key in nulls and day == first_day:
            assert not significant, f"{key}: measured {value:.3f} [{low:.3f}, {high:.3f}]"


def test_responses_flow_back_into_knowledge_and_the_360(campaign_run):
    assert campaign_run["knowledge"] > 0
    held_out_shown, responded = campaign_run["last_campaign"]
    assert held_out_shown > 0 and responded > 0
    assert campaign_run["model_runs"] > 0  # the scoring runs that selected the campaigns know it


def test_the_campaign_report_was_written(campaign_run, settings):
    page = latest_path(settings).read_text(encoding="utf-8")
    truth = campaign_run["truth"]
    for key in truth["audiences"]:
        assert f'data-campaign="{key}:{truth["delivery_day"]}"' in page
    assert 'id="lift-chart"' in page and 'id="decile-chart"' in page and "time-chart" in page
