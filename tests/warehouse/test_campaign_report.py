"""The campaign report renders in a real headless Chromium and shows lift, arms over time and deciles.

Chromium and the DOM helpers are the auditor's report test's (tests/warehouse/test_report_renders.py).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

import psycopg
import pytest
from test_report_renders import render_dom, rows_of

from crm_knowledge.export.campaign_report import build_campaign_report, latest_path
from crm_knowledge.warehouse.bootstrap import apply_ddl

pytestmark = pytest.mark.warehouse

DELIVERED = dt.date(2026, 3, 1)
AS_OF = DELIVERED + dt.timedelta(days=7)

MARTS = """
create schema if not exists marts;
create table marts.fct_orders (order_id text, customer_id text, is_revenue_order boolean, order_date date);
create table marts.fct_campaign_responses (campaign_id text, customer_id text, destination text, audience text,
    campaign_date date, arm text, predicted_churn_probability double precision, predicted_churn_decile int,
    window_days int, observed_days int, order_count int);
create table marts.campaign_lift (campaign_lift_id text, campaign_id text, destination text, audience text,
    campaign_date date, window_days int, observed_days int, is_window_complete boolean, metric text,
    treated_customers bigint, holdout_customers bigint, has_minimum_sample boolean, treated_mean double precision,
    holdout_mean double precision, lift double precision, relative_lift double precision,
    standard_error double precision, degrees_of_freedom double precision, ci_low double precision,
    ci_high double precision, is_significant boolean);
"""


@pytest.fixture()
def campaigns(scratch_db, settings, tmp_path):
    """Two campaigns of 40 + 40 customers: `loyal` (treated customers order twice on day 2, the held-out
    once on day 5) and `champions` (both arms order once on day 3), and one too small to judge."""
    apply_ddl(scratch_db)
    with psycopg.connect(scratch_db) as conn:
        conn.execute(MARTS)
        for audience in ("loyal", "champions"):
            cid = f"mkt:{audience}:{DELIVERED}"
            for i in range(80):
                arm = "treated" if i < 40 else "holdout"
                customer = f"cust-{audience}-{i:02d}"
                churn = (i % 40) / 40
                if audience == "loyal":
                    days = [2, 2] if arm == "treated" else [5]
                else:
                    days = [3]
                for window in (7, 30):
                    conn.execute("insert into marts.fct_campaign_responses values (%s, %s, 'mkt', %s, %s, %s, %s, "
                                 "%s, %s, 7, %s)", (cid, customer, audience, DELIVERED, arm, churn,
                                                    1 + (i % 40) // 4, window, len(days)))
                for j, day in enumerate(days):
                    conn.execute("insert into marts.fct_orders values (%s, %s, true, %s)",
                                 (f"o-{customer}-{j}", customer, DELIVERED + dt.timedelta(days=day)))
            for window, complete in ((7, True), (30, False)):
                lift, low, high, sig = ((1.0, 0.8, 1.2, True) if audience == "loyal" else (0.0, -0.2, 0.2, False))
                conn.execute(
                    "insert into marts.campaign_lift values (md5(%s), %s, 'mkt', %s, %s, %s, 7, %s, 'orders', 40, 40, "
                    "true, %s, %s, %s, null, 0.1, 70, %s, %s, %s)",
                    (f"{cid}{window}", cid, audience, DELIVERED, window, complete,
                     2.0 if audience == "loyal" else 1.0, 1.0, lift, low, high, sig))
        conn.execute("insert into marts.campaign_lift values ('x', 'mkt:tiny:2026-03-01', 'mkt', 'tiny', %s, 7, 7, "
                     "true, 'orders', 5, 2, false, 1, 0.5, 0.5, 1, 0.4, 5, null, null, false)", (DELIVERED,))
        conn.execute("insert into scoring.model_runs (model_run_id, model, model_version, as_of_date) "
                     "values ('churn-1', 'churn', 'v1', %s)", (DELIVERED,))
        conn.execute("insert into scoring.model_run_campaigns (model_run_id, model, destination, audience, "
                     "campaign_date, assigned_customers, holdout_customers) values "
                     "('churn-1', 'churn', 'mkt', 'loyal', %s, 80, 40)", (DELIVERED,))
    return scratch_db, dataclasses.replace(settings, home=tmp_path / "home")


def test_campaign_report_renders_lift_arms_over_time_and_deciles(campaigns, tmp_path):
    url, settings = campaigns
    page = build_campaign_report(AS_OF, settings=settings, url=url)
    assert page.parent.parent == latest_path(settings).parent and latest_path(settings).exists()
    assert latest_path(settings).stat().st_mode & 0o077 == 0
    dom, png = render_dom(page, tmp_path)

    # the lift table: every campaign and window with its verdict; the small campaign is not judged
    lift_rows = rows_of(dom, "campaign-lift")
    assert len(lift_rows) == 5
    loyal = [r for r in lift_rows if " loyal " in f" {r} " and " 7 " in r][0]
    assert "1.000" in loyal and "[0.800, 1.200]" in loyal and "significant" in loyal and "not" not in loyal
    assert any("champions" in r and "not significant" in r for r in lift_rows)
    assert any("tiny" in r and "below minimum sample" in r for r in lift_rows)
    assert any("(running)" in r for r in lift_rows)

    # the forest chart: one interval per campaign and window with an interval (not the tiny one)
    assert len(re.findall(r'<g class="interval"', dom)) == 4

    # treated vs holdout over time: one chart per campaign, cumulative orders per customer on the last day
    charts = re.findall(r'<svg class="chart time-chart" data-campaign="([^"]+)".*?</svg>', dom, re.S)
    assert sorted(charts) == [f"mkt:champions:{DELIVERED}", f"mkt:loyal:{DELIVERED}"]
    loyal_chart = re.search(rf'time-chart" data-campaign="mkt:loyal:{DELIVERED}".*?</svg>', dom, re.S).group(0)
    assert 'class="arm-treated" data-final="2.0000"' in loyal_chart
    assert 'class="arm-holdout" data-final="1.0000"' in loyal_chart

    # deciles: realised lift by predicted churn decile (loyal: +1 order, champions: 0, so +0.5 pooled)
    bars = dict(re.findall(r'data-decile="(\d+)" data-lift="([-0-9.]+)"', dom))
    assert sorted(int(d) for d in bars) == list(range(1, 11))
    assert all(abs(float(v) - 0.5) < 1e-9 for v in bars.values())
    assert len(rows_of(dom, "decile-lift")) == 10

    # the model run that selected the loyal campaign, with its realised lift
    (model_row,) = rows_of(dom, "model-campaigns")
    assert "churn-1" in model_row and "loyal" in model_row and "1.000" in model_row

    assert "cust-" not in dom  # no customer on the page
    assert png.stat().st_size > 10_000  # Chromium painted it


def test_campaign_report_without_campaigns_says_so(scratch_db, settings, tmp_path):
    apply_ddl(scratch_db)
    page = build_campaign_report(AS_OF, settings=dataclasses.replace(settings, home=tmp_path / "home"),
                                 url=scratch_db)
    assert "No campaign measured yet" in page.read_text(encoding="utf-8")
