"""The campaign report: did the campaigns work? One offline HTML page next to the auditor's report.

Written to ``<reports_dir>/campaigns/day-<as_of>.html`` and copied to ``<reports_dir>/campaigns.html`` (the
auditor's page is ``<reports_dir>/latest.html``). Plain HTML, inline CSS and inline SVG charts: no script, no
external asset, so it opens from a file share or an e-mail attachment. It reads the campaign marts and the
scoring registry only (pseudonymous, aggregated; no customer appears on the page):

* **lift per audience** (``marts.campaign_lift``): treated minus holdout per campaign and window, with the 95%
  Welch t-interval, sample sizes and whether the result may be called significant (never below the minimum
  sample) -- as a table and as a forest chart of intervals around zero;
* **treated vs holdout over time**: cumulative revenue orders per customer by day since the delivery, one chart
  per campaign (``marts.fct_campaign_responses`` with ``marts.fct_orders``);
* **response by predicted decile**: realised lift in orders per customer by decile of the churn probability
  that selected the customers (does a higher predicted churn mean more saved by the campaign?);
* **models judged in the field**: each scoring model run, the campaigns its scores selected
  (``scoring.model_run_campaigns``) and those campaigns' realised lift.
"""

from __future__ import annotations

import datetime as dt
import html
import logging
import shutil
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from crm_knowledge.privacy.file_modes import write_private_text
from crm_knowledge.report_html import BASE_CSS, cell_text
from crm_knowledge.settings import Settings, get_settings
from crm_knowledge.warehouse.db import connect, table_exists

log = logging.getLogger(__name__)

#: The metric the charts show: revenue orders per customer.
CHART_METRIC = "orders"
TREATED, HOLDOUT = "#1f6feb", "#d1495b"

CSS = BASE_CSS + """
h3{font-size:1rem;margin:.6rem 0 .3rem 0}
.sig{color:#0e5814;font-weight:700}.nsig{color:#7b8794}
.charts{display:flex;flex-wrap:wrap;gap:1rem} figure{margin:0} figcaption{font-size:.85rem;color:#52606d}
svg text{font-family:system-ui,sans-serif;font-size:11px;fill:#334e68}
.legend span{display:inline-block;width:.8rem;height:.8rem;margin:0 .3rem 0 .8rem;vertical-align:middle}
"""


def report_path(as_of: dt.date, settings: Settings | None = None) -> Path:
    return (settings or get_settings()).reports_dir / "campaigns" / f"day-{as_of.isoformat()}.html"


def latest_path(settings: Settings | None = None) -> Path:
    return (settings or get_settings()).reports_dir / "campaigns.html"


_e = cell_text


def _f(value: Any, digits: int = 3) -> str:
    return _e(None if value is None else f"{float(value):,.{digits}f}")


# --- data ------------------------------------------------------------------------------------------------

def collect(conn: psycopg.Connection) -> dict[str, Any]:
    """Everything the page shows (empty lists while no campaign has been measured)."""
    cur = conn.cursor(row_factory=dict_row)
    data: dict[str, Any] = {"lift": [], "daily": [], "arms": [], "deciles": [], "models": []}
    if not table_exists(conn, "marts.campaign_lift"):
        return data
    data["lift"] = cur.execute(
        "select * from marts.campaign_lift order by destination, audience, campaign_date, window_days, "
        "metric").fetchall()
    # per campaign: its arms over the longest window observed so far
    data["arms"] = cur.execute(
        """select campaign_id, arm, count(*) as customers, max(observed_days) as observed_days
             from marts.fct_campaign_responses r
            where window_days = (select max(window_days) from marts.fct_campaign_responses x
                                  where x.campaign_id = r.campaign_id)
            group by campaign_id, arm order by 1, 2""").fetchall()
    data["daily"] = cur.execute(
        """with c as (
               select distinct on (campaign_id, customer_id) campaign_id, customer_id, arm, campaign_date,
                      observed_days
                 from marts.fct_campaign_responses order by campaign_id, customer_id, window_days desc)
           select c.campaign_id, c.arm, o.order_date - c.campaign_date as day_number, count(*) as orders
             from c join marts.fct_orders o on o.customer_id = c.customer_id and o.is_revenue_order
                  and o.order_date > c.campaign_date and o.order_date <= c.campaign_date + c.observed_days
            group by 1, 2, 3 order by 1, 2, 3""").fetchall()
    # realised lift by predicted churn decile, over each campaign's shortest window (every campaign has it
    # first), all campaigns together
    data["deciles"] = cur.execute(
        """select predicted_churn_decile as decile, arm, count(*) as customers, avg(order_count) as orders_mean,
                  min(predicted_churn_probability) as churn_from, max(predicted_churn_probability) as churn_to
             from marts.fct_campaign_responses
            where window_days = (select min(window_days) from marts.fct_campaign_responses)
            group by 1, 2 order by 1, 2""").fetchall()
    if table_exists(conn, "scoring.model_run_campaigns"):
        data["models"] = cur.execute(
            """select m.model_run_id, m.model, r.model_version, r.as_of_date as trained_as_of,
                      m.destination, m.audience, m.campaign_date, m.assigned_customers, m.holdout_customers,
                      l.window_days, l.lift, l.ci_low, l.ci_high, l.is_significant
                 from scoring.model_run_campaigns m
                 left join scoring.model_runs r on r.model_run_id = m.model_run_id
                 left join lateral (
                      select * from marts.campaign_lift l
                       where l.destination = m.destination and l.audience = m.audience
                         and l.campaign_date = m.campaign_date and l.metric = 'orders'
                       order by l.is_window_complete desc, l.window_days desc limit 1) l on true
                order by m.model, m.campaign_date, m.destination, m.audience""").fetchall()
    return data


# --- charts (inline SVG) ----------------------------------------------------------------------------------

def forest_chart(rows: list[dict]) -> str:
    """Lift with its 95% interval per campaign and window, around a zero line."""
    rows = [r for r in rows if r["ci_low"] is not None]
    if not rows:
        return '<p class="muted">No campaign has the minimum sample in both arms yet: no interval to draw.</p>'
    width, left, right, row_h, top = 900, 360, 30, 26, 24
    lo = min(0.0, *(float(r["ci_low"]) for r in rows))
    hi = max(0.0, *(float(r["ci_high"]) for r in rows))
    span = (hi - lo) or 1.0
    lo, hi = lo - 0.05 * span, hi + 0.05 * span

    def x(v: float) -> float:
        return left + (float(v) - lo) / (hi - lo) * (width - left - right)

    height = top + row_h * len(rows) + 30
    parts = [f'<svg id="lift-chart" class="chart" width="{width}" height="{height}" role="img" '
             f'aria-label="lift per audience with 95% intervals" xmlns="http://www.w3.org/2000/svg">',
             f'<line x1="{x(0):.1f}" y1="{top - 10}" x2="{x(0):.1f}" y2="{height - 24}" stroke="#9aa5b1" '
             'stroke-dasharray="4 3"/>',
             f'<text x="{x(0):.1f}" y="{height - 8}" text-anchor="middle">0</text>',
             f'<text x="{x(lo):.1f}" y="{height - 8}">{lo:.2f}</text>',
             f'<text x="{x(hi):.1f}" y="{height - 8}" text-anchor="end">{hi:.2f}</text>']
    for i, r in enumerate(rows):
        y = top + i * row_h
        colour = "#0e5814" if r["is_significant"] else "#7b8794"
        label = f"{r['audience']} · {r['destination']} · {r['campaign_date']} · {r['window_days']} d"
        parts.append(f'<g class="interval" data-campaign="{html.escape(r["campaign_id"])}" '
                     f'data-window="{r["window_days"]}">'
                     f'<text x="{left - 8}" y="{y + 4}" text-anchor="end">{html.escape(label)}</text>'
                     f'<line x1="{x(r["ci_low"]):.1f}" y1="{y}" x2="{x(r["ci_high"]):.1f}" y2="{y}" '
                     f'stroke="{colour}" stroke-width="2"/>'
                     f'<circle cx="{x(r["lift"]):.1f}" cy="{y}" r="4" fill="{colour}"/></g>')
    parts.append("</svg>")
    return "".join(parts)


def cumulative_series(daily: list[dict], arms: list[dict]) -> dict[str, dict[str, list[float]]]:
    """{campaign_id: {arm: [cumulative orders per customer on day 1..observed]}}."""
    sizes = {(a["campaign_id"], a["arm"]): (a["customers"], a["observed_days"]) for a in arms}
    counts: dict[tuple[str, str], dict[int, int]] = {}
    for d in daily:
        counts.setdefault((d["campaign_id"], d["arm"]), {})[int(d["day_number"])] = int(d["orders"])
    out: dict[str, dict[str, list[float]]] = {}
    for (campaign, arm), (n, observed) in sorted(sizes.items()):
        per_day = counts.get((campaign, arm), {})
        total, series = 0, []
        for day in range(1, int(observed) + 1):
            total += per_day.get(day, 0)
            series.append(total / n)
        out.setdefault(campaign, {})[arm] = series
    return out


def time_chart(campaign: str, series: dict[str, list[float]]) -> str:
    width, height, pad = 340, 200, 34
    days = max((len(s) for s in series.values()), default=0)
    top = max((max(s) for s in series.values() if s), default=0.0) or 1.0

    def pt(i: int, v: float) -> str:
        return f"{pad + i / max(days - 1, 1) * (width - 2 * pad):.1f},{height - pad - v / top * (height - 2 * pad):.1f}"

    parts = [f'<svg class="chart time-chart" data-campaign="{html.escape(campaign)}" width="{width}" '
             f'height="{height}" role="img" xmlns="http://www.w3.org/2000/svg">',
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#9aa5b1"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#9aa5b1"/>',
             f'<text x="{pad - 4}" y="{pad + 4}" text-anchor="end">{top:.2f}</text>',
             f'<text x="{width - pad}" y="{height - pad + 16}" text-anchor="end">day {days}</text>',
             f'<text x="{pad}" y="{height - pad + 16}">day 1</text>']
    for arm, colour in (("treated", TREATED), ("holdout", HOLDOUT)):
        s = series.get(arm)
        if not s:
            continue
        points = " ".join(pt(i, v) for i, v in enumerate(s))
        parts.append(f'<polyline class="arm-{arm}" data-final="{s[-1]:.4f}" points="{points}" fill="none" '
                     f'stroke="{colour}" stroke-width="2"/>')
    parts.append("</svg>")
    return "".join(parts)


def decile_chart(lifts: list[tuple[int, float | None]]) -> str:
    """Bars of realised lift (orders per customer) per predicted-churn decile."""
    width, height, pad = 520, 220, 34
    values = [v for _, v in lifts if v is not None]
    if not values:
        return '<p class="muted">No decile has customers in both arms yet.</p>'
    lo, hi = min(0.0, *values), max(0.0, *values)
    span = (hi - lo) or 1.0

    def y(v: float) -> float:
        return pad + (hi - v) / span * (height - 2 * pad)

    bw = (width - 2 * pad) / 10
    parts = [f'<svg id="decile-chart" class="chart" width="{width}" height="{height}" role="img" '
             'xmlns="http://www.w3.org/2000/svg">',
             f'<line x1="{pad}" y1="{y(0):.1f}" x2="{width - pad}" y2="{y(0):.1f}" stroke="#9aa5b1"/>']
    for decile, v in lifts:
        xpos = pad + (decile - 1) * bw
        parts.append(f'<text x="{xpos + bw / 2:.1f}" y="{height - 8}" text-anchor="middle">{decile}</text>')
        if v is None:
            continue
        top, bottom = (y(v), y(0)) if v >= 0 else (y(0), y(v))
        parts.append(f'<rect class="decile-bar" data-decile="{decile}" data-lift="{v:.4f}" x="{xpos + 3:.1f}" '
                     f'y="{top:.1f}" width="{bw - 6:.1f}" height="{max(bottom - top, 0.5):.1f}" fill="{TREATED}"/>')
    parts.append("</svg>")
    return "".join(parts)


# --- page ------------------------------------------------------------------------------------------------

def decile_lifts(deciles: list[dict]) -> list[dict]:
    by: dict[int, dict[str, dict]] = {}
    for d in deciles:
        by.setdefault(int(d["decile"]), {})[d["arm"]] = d
    out = []
    for decile in range(1, 11):
        arms = by.get(decile, {})
        t, h = arms.get("treated"), arms.get("holdout")
        lift = float(t["orders_mean"]) - float(h["orders_mean"]) if t and h else None
        churn = [x for a in arms.values() for x in (a["churn_from"], a["churn_to"]) if x is not None]
        out.append({"decile": decile, "treated": t["customers"] if t else 0, "holdout": h["customers"] if h else 0,
                    "treated_mean": t["orders_mean"] if t else None, "holdout_mean": h["orders_mean"] if h else None,
                    "lift": lift, "churn_from": min(churn) if churn else None,
                    "churn_to": max(churn) if churn else None})
    return out


def render(data: dict[str, Any], as_of: dt.date) -> str:
    lift = data["lift"]
    chart_rows = [r for r in lift if r["metric"] == CHART_METRIC]
    rows = []
    for r in lift:
        verdict = ('<span class="sig">significant</span>' if r["is_significant"] else
                   '<span class="nsig">below minimum sample</span>' if not r["has_minimum_sample"] else
                   '<span class="nsig">not significant</span>')
        digits = 0 if r["metric"] == "revenue" else 3  # IRR amounts: whole rials
        interval = (f"[{_f(r['ci_low'], digits)}, {_f(r['ci_high'], digits)}]" if r["ci_low"] is not None
                    else _e(None))
        rows.append(
            f'<tr data-campaign="{_e(r["campaign_id"])}" data-window="{r["window_days"]}" '
            f'data-metric="{_e(r["metric"])}">'
            f'<td>{_e(r["destination"])}</td><td>{_e(r["audience"])}</td><td>{_e(r["campaign_date"])}</td>'
            f'<td class="num">{r["window_days"]}</td><td class="num">{r["observed_days"]}'
            f'{"" if r["is_window_complete"] else " (running)"}</td><td>{_e(r["metric"])}</td>'
            f'<td class="num">{r["treated_customers"]}</td><td class="num">{r["holdout_customers"]}</td>'
            f'<td class="num">{_f(r["treated_mean"], digits)}</td><td class="num">{_f(r["holdout_mean"], digits)}</td>'
            f'<td class="num">{_f(r["lift"], digits)}</td><td class="num">{interval}</td><td>{verdict}</td></tr>')
    lift_table = (
        '<table id="campaign-lift"><tr><th>destination</th><th>audience</th><th>delivered</th>'
        '<th class="num">window (days)</th><th class="num">observed</th><th>metric</th>'
        '<th class="num">treated n</th><th class="num">holdout n</th><th class="num">treated mean</th>'
        '<th class="num">holdout mean</th><th class="num">lift</th><th class="num">95% interval</th>'
        '<th>verdict</th></tr>' + "".join(rows) + "</table>") if rows else \
        '<p class="muted">No campaign measured yet: a campaign is measured from the day after its delivery.</p>'

    series = cumulative_series(data["daily"], data["arms"])
    time_charts = "".join(
        f"<figure>{time_chart(c, s)}<figcaption>{_e(c)}</figcaption></figure>" for c, s in series.items())
    deciles = decile_lifts(data["deciles"])
    decile_rows = "".join(
        f'<tr><td class="num">{d["decile"]}</td><td class="num">{_f(d["churn_from"], 2)} – {_f(d["churn_to"], 2)}</td>'
        f'<td class="num">{d["treated"]}</td><td class="num">{d["holdout"]}</td>'
        f'<td class="num">{_f(d["treated_mean"])}</td><td class="num">{_f(d["holdout_mean"])}</td>'
        f'<td class="num">{_f(d["lift"])}</td></tr>' for d in deciles if d["treated"] or d["holdout"])
    model_rows = "".join(
        f'<tr><td>{_e(m["model"])}</td><td><code>{_e(m["model_run_id"])}</code></td>'
        f'<td>{_e(m["model_version"])}</td><td>{_e(m["trained_as_of"])}</td>'
        f'<td>{_e(m["audience"])} @ {_e(m["destination"])} {_e(m["campaign_date"])}</td>'
        f'<td class="num">{m["assigned_customers"]}</td><td class="num">{m["holdout_customers"]}</td>'
        f'<td class="num">{_f(m["lift"])}</td><td class="num">'
        f'{"[" + _f(m["ci_low"]) + ", " + _f(m["ci_high"]) + "]" if m["ci_low"] is not None else _e(None)}</td>'
        "</tr>" for m in data["models"])
    legend = (f'<p class="legend small"><span style="background:{TREATED}"></span>treated (sent)'
              f'<span style="background:{HOLDOUT}"></span>holdout (not sent)</p>')
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Campaign report {as_of}</title><style>{CSS}</style></head>
<body><header><h1>Campaign report</h1><p>As of {as_of}: every measured audience against its randomised
holdout.</p></header><main>
<section id="lift"><h2>Lift per audience</h2>
<p class="small">Lift = treated mean − holdout mean per customer over the window (orders and revenue: revenue
orders; contacts: contact-centre interactions; response: share who ordered at least once). 95% interval:
Welch's t-interval (unequal variances). Nothing is called significant below the minimum sample per arm.
Chart: orders per customer, intervals in green when significant.</p>
{forest_chart(chart_rows)}
{lift_table}</section>
<section id="over-time"><h2>Treated vs holdout over time</h2>{legend}
<p class="small">Cumulative revenue orders per customer by day since the delivery.</p>
<div class="charts">{time_charts or '<p class="muted">No campaign has been observed for a day yet.</p>'}</div>
</section>
<section id="deciles"><h2>Response by predicted decile</h2>
<p class="small">Realised lift in orders per customer by decile of the churn probability that selected the
customers (all campaigns, shortest window). Rising bars: the model finds the customers a campaign saves.</p>
{decile_chart([(d["decile"], d["lift"]) for d in deciles])}
<table id="decile-lift"><tr><th class="num">decile</th><th class="num">predicted churn</th>
<th class="num">treated n</th><th class="num">holdout n</th><th class="num">treated orders</th>
<th class="num">holdout orders</th><th class="num">lift</th></tr>{decile_rows}</table></section>
<section id="models"><h2>Models judged in the field</h2>
<p class="small">Each scoring model run and the campaigns its scores selected, with their realised lift in
orders per customer (longest complete window).</p>
<table id="model-campaigns"><tr><th>model</th><th>run</th><th>version</th><th>trained as of</th><th>campaign</th>
<th class="num">customers</th><th class="num">held out</th><th class="num">lift</th><th class="num">95% interval</th>
</tr>{model_rows}</table></section>
<p class="small muted">Method: docs/campaigns.md. Sources: marts.campaign_lift, marts.fct_campaign_responses,
marts.fct_orders, scoring.model_run_campaigns, scoring.model_runs. No customer is named on this page.</p>
</main></body></html>
"""


def build_campaign_report(as_of: dt.date, *, settings: Settings | None = None, url: str | None = None) -> Path:
    """Write the day's campaign page and ``campaigns.html``; return the day's page."""
    settings = settings or get_settings()
    with connect(url or settings.warehouse_url) as conn:
        data = collect(conn)
    page = report_path(as_of, settings)
    text = render(data, as_of)
    write_private_text(page, text)
    latest = latest_path(settings)
    tmp = latest.with_suffix(".html.tmp")
    write_private_text(tmp, text)
    shutil.move(tmp, latest)
    log.info("campaign report written: %s (%d lift rows)", page, len(data["lift"]))
    return page
