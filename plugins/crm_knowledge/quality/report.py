"""The auditor's summary of one pipeline run: plain HTML with inline CSS, no external assets.

Written to ``<reports_dir>/runs/<pipeline_run_id>/index.html`` and copied to ``<reports_dir>/latest.html``.
It answers, from the audit schema only (no PII):

* which sources delivered what: rows read / loaded / rejected / quarantined / held per batch
  (``audit.load_batches``);
* which checks ran, passed and failed, per layer, with every failure listed (``audit.dq_runs`` /
  ``audit.dq_results``), linking to the GX Data Docs page of the validation;
* how fresh each source is (``dbt source freshness``, layer ``freshness``): last load, age, thresholds;
* every dbt model, seed and snapshot the run built, with its status, time and rows (``audit.dbt_node_runs``);
* how each source reaches the customer view and each export (static map in :mod:`lineage` plus the
  deliveries in ``audit.exports``).

The batches shown are those validated in this run plus every batch the ledger opened since the previous
run finished (so quarantined files, which never reach validation, are listed too); ``since`` overrides.
"""

from __future__ import annotations

import datetime as dt
import html
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from crm_knowledge.config_reader import ConfigError
from crm_knowledge.privacy.file_modes import write_private_text
from crm_knowledge.quality import lineage
from crm_knowledge.quality.freshness import age_text
from crm_knowledge.report_html import BASE_CSS, cell_text
from crm_knowledge.settings import Settings, get_settings
from crm_knowledge.warehouse.db import connect, table_exists

log = logging.getLogger(__name__)

CSS = BASE_CSS + """
.verdict{display:inline-block;padding:.25rem .7rem;border-radius:4px;font-weight:700}
.ok{background:#e3f9e5;color:#0e5814}.blocked{background:#ffe3e3;color:#8a041a}.warn{background:#fffbea;color:#8d2b0b}
.sev-critical{color:#8a041a;font-weight:700}.sev-warning{color:#8d2b0b;font-weight:600}
.status-held,.status-retired,.status-quarantined,.status-failed,.status-aborted{color:#8a041a;font-weight:700}.status-loaded{color:#0e5814}
code{background:#f0f4f8;padding:0 .25rem;border-radius:3px;font-size:.85em}
ol.flow{margin:.3rem 0 .3rem 1.2rem;padding:0} ol.flow li{margin:.15rem 0}
"""


def _safe_dir_name(pipeline_run_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", pipeline_run_id)[:150] or "run"


def run_report_path(pipeline_run_id: str, settings: Settings | None = None) -> Path:
    return (settings or get_settings()).reports_dir / "runs" / _safe_dir_name(pipeline_run_id) / "index.html"


def latest_report_path(settings: Settings | None = None) -> Path:
    return (settings or get_settings()).reports_dir / "latest.html"


_e = cell_text


def _n(value: Any) -> str:
    return f'<td class="num">{_e(value)}</td>'


# --- data ------------------------------------------------------------------------------------------

def collect(conn: psycopg.Connection, pipeline_run_id: str, since: dt.datetime | None = None) -> dict[str, Any]:
    """Everything the report shows, read from the audit schema."""
    cur = conn.cursor(row_factory=dict_row)
    runs = cur.execute(
        """select dq_run_id, layer, suite, batch_id, scope, started_at, finished_at, success, critical_failures,
                  warnings, action, data_docs_path
             from audit.dq_runs where pipeline_run_id = %s order by started_at""", (pipeline_run_id,)).fetchall()
    first = min((r["started_at"] for r in runs), default=None)
    if since is None:
        row = cur.execute(
            """select max(coalesce(finished_at, started_at)) as t from audit.dq_runs
                where pipeline_run_id <> %s and started_at < coalesce(%s, now())""",
            (pipeline_run_id, first)).fetchone()
        since = row["t"] if row and row["t"] else dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    batch_ids = sorted({r["batch_id"] for r in runs if r["batch_id"]})
    batches = cur.execute(
        """select batch_id, source_name, source_kind, source_file, window_start, window_end, status,
                  rows_read, rows_loaded, rows_rejected, rows_duplicate, error, started_at, finished_at
             from audit.load_batches
            where batch_id = any(%s) or started_at >= %s
            order by source_name, started_at""", (batch_ids, since)).fetchall()
    results = cur.execute(
        """select d.layer, r.suite, r.batch_id, d.scope, r.expectation, r.column_name, r.severity, r.success,
                  r.observed_value, r.unexpected_count, r.unexpected_percent, r.unexpected_sample,
                  r.description, r.expectation_id, d.data_docs_path
             from audit.dq_results r join audit.dq_runs d using (dq_run_id)
            where d.pipeline_run_id = %s
            order by case d.layer when 'raw' then 1 when 'freshness' then 2 when 'staging' then 3
                                  when 'dbt' then 4 else 5 end,
                     r.suite, r.severity, r.expectation""", (pipeline_run_id,)).fetchall()
    exports: list[dict] = []
    exports_in_run = True
    if table_exists(conn, "audit.exports"):
        exports = cur.execute(
            """select export_id, destination, kind, as_of_date, rows_added, rows_changed, rows_removed, status,
                      started_at, finished_at from audit.exports where started_at >= %s
                order by destination, started_at""", (since,)).fetchall()
        if not exports:
            exports_in_run = False
            exports = cur.execute(
                """select distinct on (destination) export_id, destination, kind, as_of_date, rows_added,
                          rows_changed, rows_removed, status, started_at, finished_at
                     from audit.exports order by destination, started_at desc""").fetchall()
    field_issues: list[dict] = []
    if batches and table_exists(conn, "audit.field_issues"):
        field_issues = cur.execute(
            """select source_name, batch_id, column_name, reason, count(*) as fields, min(row_number) as first_row
                 from audit.field_issues where batch_id = any(%s)
                group by source_name, batch_id, column_name, reason
                order by source_name, batch_id, count(*) desc, column_name""",
            ([b["batch_id"] for b in batches],)).fetchall()
    dbt_nodes: list[dict] = []
    if table_exists(conn, "audit.dbt_node_runs"):
        dbt_nodes = cur.execute(
            """select unique_id, resource_type, status, execution_seconds, rows_affected, message
                 from audit.dbt_node_runs where pipeline_run_id = %s
                order by status in ('success', 'pass'), unique_id""", (pipeline_run_id,)).fetchall()
    return {"runs": runs, "batches": batches, "results": results, "exports": exports, "dbt_nodes": dbt_nodes,
            "exports_in_run": exports_in_run, "since": since, "pipeline_run_id": pipeline_run_id,
            "field_issues": field_issues}


# --- rendering -------------------------------------------------------------------------------------

def _sample_text(sample: Any) -> str:
    if not sample:
        return ""
    refs = []
    for item in sample[:8]:
        row = item.get("row") if isinstance(item, dict) else None
        if row:
            refs.append(", ".join(f"{k}={v}" for k, v in row.items()))
        elif isinstance(item, dict) and "value" in item:
            refs.append(f"value shape {item['value']}")
    more = f" (+{len(sample) - 8} more in sample)" if len(sample) > 8 else ""
    return "; ".join(refs) + more


def _batches_section(data: dict) -> str:
    batches = data["batches"]
    by_source: dict[str, dict[str, int]] = {}
    for b in batches:
        s = by_source.setdefault(b["source_name"], {"batches": 0, "read": 0, "loaded": 0, "rejected": 0,
                                                    "quarantined": 0, "held": 0, "duplicate": 0})
        s["batches"] += 1
        s["read"] += b["rows_read"] or 0
        s["rejected"] += b["rows_rejected"] or 0
        s["duplicate"] += b["rows_duplicate"] or 0
        if b["status"] == "loaded":
            s["loaded"] += b["rows_loaded"] or 0
        elif b["status"] == "held":
            s["held"] += b["rows_loaded"] or 0
        elif b["status"] == "quarantined":
            s["quarantined"] += b["rows_read"] or 0
    src_rows = "".join(
        f"<tr><td>{_e(name)}</td>{_n(s['batches'])}{_n(s['read'])}{_n(s['loaded'])}{_n(s['rejected'])}"
        f"{_n(s['duplicate'])}{_n(s['quarantined'])}{_n(s['held'])}</tr>"
        for name, s in sorted(by_source.items()))
    rows = []
    for b in batches:
        held = b["rows_loaded"] if b["status"] == "held" else 0
        quarantined = b["rows_read"] if b["status"] == "quarantined" else 0
        loaded = b["rows_loaded"] if b["status"] == "loaded" else 0
        if b["source_file"]:
            origin_html = _e(b["source_file"])
        elif b["window_start"] or b["window_end"]:
            origin_html = f"{_e(b['window_start'])} – {_e(b['window_end'])}"
        else:
            origin_html = _e(None)
        rows.append(
            f'<tr class="batch status-row-{_e(b["status"])}"><td><code>{_e(b["batch_id"])}</code></td>'
            f"<td>{_e(b['source_name'])}</td><td class=\"small\">{origin_html}</td>"
            f'<td class="status-{_e(b["status"])}">{_e(b["status"])}</td>'
            f"{_n(b['rows_read'])}{_n(loaded)}{_n(b['rows_rejected'])}{_n(b['rows_duplicate'])}"
            f"{_n(quarantined)}{_n(held)}<td class=\"small\">{_e((b['error'] or '')[:300] or None)}</td></tr>")
    if not batches:
        return ('<section id="sources"><h2>Sources received</h2><p class="muted">No load batch in this run.</p>'
                "</section>")
    return f"""<section id="sources"><h2>Sources received</h2>
<p class="small muted">Batches validated in this run and every batch opened since {_e(data['since'])}.
Held rows are loaded in raw but kept out of staging by a critical data quality failure.</p>
<table><thead><tr><th>source</th><th class="num">batches</th><th class="num">rows read</th>
<th class="num">loaded</th><th class="num">rejected</th><th class="num">duplicate</th>
<th class="num">quarantined</th><th class="num">held</th></tr></thead><tbody>{src_rows}</tbody></table>
<h2 style="margin-top:1.2rem">Batches</h2>
<table id="batches"><thead><tr><th>batch</th><th>source</th><th>file / window</th><th>status</th>
<th class="num">read</th><th class="num">loaded</th><th class="num">rejected</th><th class="num">duplicate</th>
<th class="num">quarantined</th><th class="num">held</th><th>reason</th></tr></thead>
<tbody>{''.join(rows)}</tbody></table></section>"""


def _field_issues_section(data: dict) -> str:
    """Fields loaded as NULL because their value did not convert (records kept), per batch, column and reason."""
    issues = data.get("field_issues") or []
    if not issues:
        return ""
    rows = "".join(
        f"<tr><td>{_e(i['source_name'])}</td><td><code>{_e(i['batch_id'])}</code></td><td>{_e(i['column_name'])}</td>"
        f"<td class=\"small\">{_e(i['reason'])}</td>{_n(i['fields'])}{_n(i['first_row'])}</tr>" for i in issues)
    total = sum(i["fields"] for i in issues)
    return f"""<section id="field-issues"><h2>Field issues</h2>
<p class="small muted">{total} field(s) whose value did not convert were loaded as NULL and their records kept
(audit.field_issues). A batch where one column's share is above its source's threshold is held.</p>
<table><thead><tr><th>source</th><th>batch</th><th>column</th><th>reason</th><th class="num">fields</th>
<th class="num">first row</th></tr></thead><tbody>{rows}</tbody></table></section>"""


#: Rows of the per-layer table: each layer's Great Expectations suites, then the dbt tests of its models.
LAYER_ORDER = ["raw", "freshness", "staging", "dbt:staging", "dbt:intermediate", "marts", "dbt:marts", "dbt:pii", "dbt"]


def _layer_of(r: dict) -> str:
    """``dbt:<model layer>`` for a dbt test (see ``gate.model_layer``), else the GX layer."""
    observed = r.get("observed_value")
    if r["layer"] == "dbt" and isinstance(observed, dict) and observed.get("model_layer"):
        return f"dbt:{observed['model_layer']}"
    return r["layer"]


def _scope_text(r: dict) -> str:
    """The scope a failed check read, under its batch (raw checks read their batch)."""
    if r.get("batch_id") or not r.get("scope"):
        return ""
    return f'<div class="small">{_e(r["scope"])}</div>'


def _scopes_table(data: dict) -> str:
    """Which rows each staging / marts suite and each model's dbt tests read: daily runs check the rows they
    wrote (and uniqueness and row counts on the whole table), weekly runs every row (crm_knowledge.run_mode)."""
    rows = sorted({(r["layer"], r["suite"], r.get("scope") or "whole table") for r in data["runs"]
                   if r["layer"] in ("staging", "marts", "dbt")},
                  key=lambda t: (LAYER_ORDER.index(t[0]) if t[0] in LAYER_ORDER else 99, t[1]))
    if not rows:
        return ""
    body = "".join(f"<tr><td>{_e(layer)}</td><td>{_e(suite)}</td><td>{_e(scope)}</td></tr>"
                   for layer, suite, scope in rows)
    return f"""<h2 style="margin-top:1.2rem">What each check read</h2>
<p class="small muted">Raw checks read their load batch. A daily run checks the rows it wrote (staging and marts:
by <code>staged_at</code>, else the customers it changed), with key uniqueness and row count checked on the whole
table in SQL; the weekly (full) run checks every row. dbt tests limited to new rows say so.</p>
<table id="scopes"><thead><tr><th>layer</th><th>suite</th><th>scope</th></tr></thead><tbody>{body}</tbody></table>"""


def _checks_section(data: dict, docs_prefix: str) -> str:
    results = data["results"]
    layers: dict[str, dict[str, int]] = {}
    suites: dict[str, set[str]] = {}
    for r in results:
        layer = _layer_of(r)
        s = layers.setdefault(layer, {"run": 0, "passed": 0, "critical": 0, "warning": 0})
        suites.setdefault(layer, set()).add(r["suite"])
        s["run"] += 1
        if r["success"]:
            s["passed"] += 1
        else:
            s[r["severity"]] += 1
    for run in data["runs"]:
        if run["layer"] != "dbt":  # a dbt run row spans one model; its tests say which layer it is in
            suites.setdefault(run["layer"], set()).add(run["suite"])
    layer_rows = "".join(
        f'<tr><td>{_e(layer)}</td>{_n(len(suites.get(layer, ())))}{_n(s["run"])}{_n(s["passed"])}'
        f'<td class="num sev-critical">{s["critical"]}</td><td class="num sev-warning">{s["warning"]}</td></tr>'
        for layer, s in sorted(layers.items(), key=lambda kv: LAYER_ORDER.index(kv[0]) if kv[0] in LAYER_ORDER else 99))
    failures = [r for r in results if not r["success"]]
    fail_rows = []
    for r in failures:
        link = ""
        if r["data_docs_path"]:
            link = f' <a class="small" href="{html.escape(docs_prefix + r["data_docs_path"])}">Data Docs</a>'
        observed = r["observed_value"]
        detail = ""
        if isinstance(observed, dict) and observed.get("error"):
            detail = f'<div class="small">{_e(observed["error"])}</div>'
        elif r["layer"] == "freshness" and isinstance(observed, dict):
            detail = (f'<div class="small muted">{_e(r["expectation_id"])}</div>'
                      f'<div class="small">dbt source freshness: {_e(observed.get("status"))}, last load '
                      f'{_e(observed.get("max_loaded_at"))}</div>')
        elif r["layer"] == "dbt" and isinstance(observed, dict):
            # dbt tests: the node to re-run (`dbt test --select ...`) and dbt's own message
            detail = (f'<div class="small muted">{_e(r["expectation_id"])}</div>'
                      f'<div class="small">dbt {_e(observed.get("status"))}: {_e(observed.get("message"))}</div>')
        elif r["unexpected_count"] is None and observed is not None:
            detail = f'<div class="small">observed: {_e(observed)}</div>'
        pct = f"{r['unexpected_percent']:.2f}%" if r["unexpected_percent"] is not None else None
        fail_rows.append(
            f'<tr class="failure sev-row-{_e(r["severity"])}"><td>{_e(_layer_of(r))}</td><td>{_e(r["suite"])}</td>'
            f"<td><code>{_e(r['batch_id'])}</code>{_scope_text(r)}</td>"
            f"<td><code>{_e(r['expectation'])}</code><div class=\"small\">{_e(r['description'])}</div>{detail}</td>"
            f"<td>{_e(r['column_name'])}</td><td class=\"sev-{_e(r['severity'])}\">{_e(r['severity'])}</td>"
            f"{_n(r['unexpected_count'])}{_n(pct)}"
            f"<td class=\"small\">{_e(_sample_text(r['unexpected_sample']) or None)}{link}</td></tr>")
    failures_html = (
        '<p class="muted">No check failed.</p>' if not failures else
        f"""<table id="failures"><thead><tr><th>layer</th><th>suite</th><th>batch / scope</th><th>check</th>
<th>column</th><th>severity</th><th class="num">offending rows</th><th class="num">share</th>
<th>sample (row numbers / keys)</th>
</tr></thead><tbody>{''.join(fail_rows)}</tbody></table>""")
    if not results:
        return ('<section id="checks"><h2>Data quality checks</h2>'
                '<p class="muted">No check recorded for this run.</p></section>')
    return f"""<section id="checks"><h2>Data quality checks</h2>
<p class="small muted">Schema rules (not null, unique, accepted values, relationships) are dbt tests, shown as
<code>dbt:&lt;layer&gt;</code>; the Great Expectations suites of a layer gate raw batches and check formats,
ranges, volume and null-rate drift (docs/data_contracts.md, "Where a quality rule belongs").</p>
<table id="layers"><thead><tr><th>layer</th><th class="num">suites</th><th class="num">checks run</th>
<th class="num">passed</th><th class="num">failed (critical)</th><th class="num">failed (warning)</th></tr></thead>
<tbody>{layer_rows}</tbody></table>
{_scopes_table(data)}
<h2 style="margin-top:1.2rem">Failures</h2>
<p class="small muted">Critical failures hold a raw batch (kept out of staging) or stop the run before
scoring and exports; warnings are recorded only. Samples name rows by number or key, never by personal
values.</p>{failures_html}</section>"""


def _lineage_section(data: dict, settings: Settings) -> str:
    kinds_seen = {b["source_kind"] for b in data["batches"]}
    rows = []
    for s in lineage.SOURCES:
        received = "received in this run" if s.kind in kinds_seen else "nothing received in this run"
        rows.append(
            f"<tr><td><b>{_e(s.kind)}</b><div class=\"small muted\">{_e(received)}</div></td>"
            f"<td class=\"small\">{_e(s.origin)}</td><td>{'<br>'.join(_e(t) for t in s.raw)}</td>"
            f"<td>{'<br>'.join(_e(t) for t in s.staging)}</td><td class=\"small\">{_e(s.feeds)}</td>"
            f"<td>{_e(lineage.CUSTOMER_VIEW)}</td></tr>")
    path = "".join(f"<li><code>{_e(node)}</code> <span class=\"small muted\">{_e(how)}</span></li>"
                   for node, how in lineage.CUSTOMER_VIEW_PATH)
    try:
        dests = {d.name: d for d in lineage.destinations(settings)}
        config_note = ""
    except ConfigError as exc:  # the report is written after failed runs too, a broken config among them
        log.warning("destinations config not shown in the run report: %s", exc)
        dests = {}
        config_note = "The destinations config is invalid (see the log); only recorded deliveries are shown."
    exports_by_dest: dict[str, list[dict]] = {}
    for x in data["exports"]:
        exports_by_dest.setdefault(x["destination"], []).append(x)
    names = [*dests, *sorted(set(exports_by_dest) - set(dests))]
    dest_rows = []
    for name in names:
        conf = dests.get(name)
        audiences = ", ".join(a.name for a in conf.audiences) if conf else ""
        deliveries = exports_by_dest.get(name) or [None]
        for x in deliveries:
            if x is None:
                dest_rows.append(f"<tr><td>{_e(name)}</td><td>{_e(conf.kind if conf else None)}</td>"
                                 f"<td class=\"small\">{_e(audiences or None)}</td>"
                                 '<td colspan="6" class="muted">no delivery recorded</td></tr>')
                continue
            dest_rows.append(
                f"<tr><td>{_e(name)}</td><td>{_e(x['kind'] or (conf.kind if conf else None))}</td>"
                f"<td class=\"small\">{_e(audiences or None)}</td>"
                f"<td><code>{_e(x['export_id'])}</code></td><td>{_e(x['as_of_date'])}</td>"
                f"<td class=\"status-{_e(x['status'])}\">{_e(x['status'])}</td>"
                f"{_n(x['rows_added'])}{_n(x['rows_changed'])}{_n(x['rows_removed'])}</tr>")
    when = ("Deliveries of this run." if data["exports_in_run"] else
            "No delivery in this run; the latest delivery per destination is shown.")
    return f"""<section id="lineage"><h2>Lineage</h2>
<p class="small muted">Each source lands append-only in <code>raw</code>; only rows of <b>loaded</b> batches are
read by <code>staging</code> (one latest version per record); staging feeds the customer view.</p>
<table><thead><tr><th>source kind</th><th>origin</th><th>raw</th><th>staging</th><th>feeds</th>
<th>customer view</th></tr></thead><tbody>{''.join(rows)}</tbody></table>
<h2 style="margin-top:1.2rem">From staging to the customer view and the exports</h2><ol class="flow">{path}
<li>exports read <code>{_e(lineage.EXPORT_INPUT)}</code> joined to <code>{_e(lineage.CUSTOMER_VIEW)}</code>
(consent) and deliver to the destinations below</li></ol>
<p class="small muted">{_e(when)} {_e(config_note)}</p>
<table id="exports"><thead><tr><th>destination</th><th>kind</th><th>audiences</th><th>export</th><th>as of</th>
<th>status</th><th class="num">added</th><th class="num">changed</th><th class="num">removed</th></tr></thead>
<tbody>{''.join(dest_rows) or '<tr><td colspan="9" class="muted">no destination configured</td></tr>'}</tbody>
</table></section>"""


def _dbt_nodes_section(data: dict) -> str:
    """Every node the run's dbt stages built (failed and skipped first)."""
    nodes = data.get("dbt_nodes") or []
    if not nodes:
        return ""
    counts: dict[str, int] = {}
    for n in nodes:
        counts[n["status"]] = counts.get(n["status"], 0) + 1
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    rows = "".join(
        f'<tr><td><code>{_e(n["unique_id"])}</code></td><td>{_e(n["resource_type"])}</td>'
        f'<td class="{"status-loaded" if n["status"] in ("success", "pass") else "status-failed"}">'
        f'{_e(n["status"])}</td>{_n(None if n["execution_seconds"] is None else round(n["execution_seconds"], 2))}'
        f'{_n(n["rows_affected"])}<td class="small">{_e(n["message"])}</td></tr>' for n in nodes)
    return f"""<section id="dbt-models"><h2>dbt models built</h2>
<p class="small muted">{len(nodes)} models, seeds and snapshots: {html.escape(summary)}. Their tests are in
the checks above (layer dbt).</p>
<table id="dbt-nodes"><thead><tr><th>node</th><th>kind</th><th>status</th><th class="num">seconds</th>
<th class="num">rows</th><th>message</th></tr></thead><tbody>{rows}</tbody></table></section>"""


def _freshness_section(data: dict) -> str:
    """Every source table `dbt source freshness` measured in this run, stale or not."""
    rows = [r for r in data["results"] if r["layer"] == "freshness"]
    if not rows:
        return ('<section id="freshness"><h2>Source freshness</h2><p class="muted">dbt source freshness was not '
                "run for this run.</p></section>")
    body = []
    for r in rows:
        o = r["observed_value"] if isinstance(r["observed_value"], dict) else {}
        status = o.get("status")
        css = {"pass": "status-loaded", "warn": "sev-warning"}.get(status, "status-failed")
        body.append(f'<tr><td><code>{_e(r["expectation_id"])}</code></td><td>{_e(o.get("max_loaded_at"))}</td>'
                    f'{_n(age_text(o.get("age_seconds")))}<td>{_e(o.get("warn_after"))}</td>'
                    f'<td>{_e(o.get("error_after"))}</td>'
                    f'<td class="{css}">{_e(status)}</td></tr>')
    return f"""<section id="freshness"><h2>Source freshness</h2>
<p class="small muted">Last load of each raw source table (its <code>_loaded_at</code>) at the time of the
check, against the thresholds its dbt source declares. Past <em>error after</em> stops the run before
scoring and exports; past <em>warn after</em> is a warning.</p>
<table id="freshness-table"><thead><tr><th>source table</th><th>last load</th><th class="num">age</th>
<th>warn after</th><th>error after</th><th>status</th></tr></thead><tbody>{''.join(body)}</tbody></table>
</section>"""


def render(data: dict, settings: Settings, *, docs_prefix: str) -> str:
    critical = sum(1 for r in data["results"] if not r["success"] and r["severity"] == "critical")
    warnings = sum(1 for r in data["results"] if not r["success"] and r["severity"] == "warning")
    held = [b["batch_id"] for b in data["batches"] if b["status"] == "held"]
    quarantined = [b["batch_id"] for b in data["batches"] if b["status"] == "quarantined"]
    if critical or held:
        verdict = (f'<span class="verdict blocked" id="verdict">BLOCKED: {critical} critical failure(s), '
                   f"{len(held)} held batch(es)</span>")
    elif warnings or quarantined:
        verdict = (f'<span class="verdict warn" id="verdict">PASSED WITH WARNINGS: {warnings} warning(s), '
                   f"{len(quarantined)} quarantined file(s)</span>")
    else:
        verdict = '<span class="verdict ok" id="verdict">PASSED</span>'
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Pipeline run {html.escape(data['pipeline_run_id'])} – data quality and lineage</title>
<style>{CSS}</style></head>
<body><header><h1>Customer knowledge pipeline – run report</h1>
<p>Run <code style="background:transparent;color:#fff">{_e(data['pipeline_run_id'])}</code> · generated {generated}</p>
<p>{verdict} · <a style="color:#bcccdc" href="{html.escape(docs_prefix)}index.html">Great Expectations Data Docs</a></p>
</header><main>
{_batches_section(data)}
{_field_issues_section(data)}
{_freshness_section(data)}
{_checks_section(data, docs_prefix)}
{_dbt_nodes_section(data)}
{_lineage_section(data, settings)}
<p class="small muted">This page holds no personal data: counts, row numbers, keys and the masked shape of
offending values only. Source: audit.load_batches, audit.field_issues, audit.dq_runs, audit.dq_results,
audit.exports.</p>
</main></body></html>
"""


def build_run_report(pipeline_run_id: str, *, settings: Settings | None = None, url: str | None = None,
                     since: dt.datetime | None = None, build_docs: bool = True) -> Path:
    """Write the auditor's page of `pipeline_run_id` (and ``latest.html``); return the run page's path.

    With `build_docs`, the GX Data Docs site is built first when it does not exist yet, so
    ``<reports_dir>/data_docs/index.html`` exists even when no gate ran.
    """
    settings = settings or get_settings()
    if build_docs and not (settings.reports_dir / "data_docs" / "index.html").exists():
        # the gates rebuild the site incrementally after every validation; a full build is only needed
        # when none ran yet (or the site was removed)
        try:
            from crm_knowledge.quality.context import build_context, build_data_docs

            build_data_docs(build_context(settings, datasource=False), settings)
        except Exception:  # the summary must still be written
            log.exception("building Data Docs failed")
    with connect(url or settings.warehouse_url) as conn:
        data = collect(conn, pipeline_run_id, since)
    page = run_report_path(pipeline_run_id, settings)
    # 0600 in 0700 folders: the report quotes failing rows' samples
    write_private_text(page, render(data, settings, docs_prefix="../../data_docs/"))
    latest = latest_report_path(settings)
    tmp = latest.with_suffix(".html.tmp")
    write_private_text(tmp, render(data, settings, docs_prefix="data_docs/"))
    shutil.move(tmp, latest)
    log.info("run report written: %s", page)
    return page
