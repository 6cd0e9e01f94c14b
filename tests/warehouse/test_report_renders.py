"""The auditor's page renders in a real headless Chromium and shows the run's failures and held batches.

Chromium comes from the Debian package (scripts/ensure_chromium.sh installs it in CI). Without it the test
skips locally but FAILS in CI (CI=true), so a missing install step cannot hide behind a green run.
"""

from __future__ import annotations

import dataclasses
import html
import os
import re
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest

from crm_knowledge.quality import gate, report
from crm_knowledge.quality.gate import CriticalDataQualityError
from crm_knowledge.warehouse.bootstrap import apply_ddl

pytestmark = pytest.mark.warehouse

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def chromium() -> str:
    for path in CHROMIUM_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("chromium is not installed in CI: run scripts/ensure_chromium.sh from .ci/run")
    pytest.skip("chromium not installed (bash scripts/ensure_chromium.sh as root installs it)")


def render_dom(page: Path, tmp_path: Path) -> tuple[str, Path]:
    png = tmp_path / "report.png"
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run",
           f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1400,2400",
           f"--screenshot={png}", "--dump-dom", page.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, png


def text_of(fragment: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", fragment))).strip()


def rows_of(dom: str, table_id: str) -> list[str]:
    m = re.search(rf'<table id="{table_id}".*?</table>', dom, re.S)
    assert m, f"table #{table_id} not in the rendered DOM"
    return [text_of(r) for r in re.findall(r"<tr[^>]*>(.*?)</tr>", m.group(0), re.S)[1:]]


@pytest.fixture()
def run_with_failures(scratch_db, settings, tmp_path):
    """A run where one forms batch is held (missing submission id), one passes with a warning, and a
    contacts file was quarantined by the loader."""
    apply_ddl(scratch_db)
    qsettings = dataclasses.replace(settings, home=tmp_path / "home")
    with psycopg.connect(scratch_db) as conn:
        for batch_id, n, status in (("forms-held", 3, "loaded"), ("forms-ok", 2, "loaded"),
                                    ("contacts-bad", 0, "quarantined")):
            source = batch_id.split("-")[0]
            conn.execute(
                """insert into audit.load_batches (batch_id, source_name, source_kind, source_file, checksum,
                       rows_read, rows_loaded, status, error, finished_at)
                   values (%s, %s, %s, %s, %s, %s, %s, %s, %s, now())""",
                (batch_id, source, source, f"{source}/{batch_id}.dat", batch_id, n,
                 n if status == "loaded" else 0, status,
                 "file unreadable: not UTF-8" if status == "quarantined" else None))
        rows = [("forms-held", 1, "F1", "a1@example.ir"), ("forms-held", 2, None, "private.person@example.ir"),
                ("forms-held", 3, "F3", "a3@example.ir"), ("forms-ok", 1, "F4", "a4@example.ir"),
                ("forms-ok", 2, "F5", "broken-address")]
        for batch_id, rn, sid, email in rows:
            conn.execute(
                """insert into raw.form_submissions (submission_id, form_type, submitted_at, email,
                       _batch_id, _source_file, _loaded_at, _row_number, _record_hash)
                   values (%s, 'feedback', now() - interval '1 day', %s, %s, 'f', now(), %s, 'h')""",
                (sid, email, batch_id, rn))
    with pytest.raises(CriticalDataQualityError):
        gate.validate_raw_batches("raw.form_submissions", ["forms-held", "forms-ok"], "manual__2026-03-01T10:00",
                                  settings=qsettings, url=scratch_db)
    page = report.build_run_report("manual__2026-03-01T10:00", settings=qsettings, url=scratch_db)
    return page, qsettings


def test_report_renders_failures_held_batches_and_lineage(run_with_failures, tmp_path):
    page, qsettings = run_with_failures
    assert page == qsettings.reports_dir / "runs" / "manual__2026-03-01T10_00" / "index.html"
    assert report.latest_report_path(qsettings).exists()
    assert (qsettings.reports_dir / "data_docs" / "index.html").exists()

    dom, png = render_dom(page, tmp_path)

    assert "BLOCKED: 1 critical failure(s), 1 held batch(es)" in text_of(dom)
    failures = rows_of(dom, "failures")
    critical = [r for r in failures if "expect_column_values_to_not_be_null" in r]
    assert len(critical) == 1
    assert "forms-held" in critical[0] and "submission_id" in critical[0] and "critical" in critical[0]
    assert "_row_number=2" in critical[0]
    warning = [r for r in failures if "email can be normalised" in r]
    assert len(warning) == 1 and "forms-ok" in warning[0] and "warning" in warning[0]

    batches = {r.split()[0]: r for r in rows_of(dom, "batches")}
    assert set(batches) == {"forms-held", "forms-ok", "contacts-bad"}
    assert " held " in f" {batches['forms-held']} " and " quarantined " in f" {batches['contacts-bad']} "
    assert "file unreadable" in batches["contacts-bad"]

    layers = rows_of(dom, "layers")
    assert layers and layers[0].split()[0] == "raw"

    exports = rows_of(dom, "exports")
    assert any(r.startswith("marketing_campaigns") for r in exports)  # configured destination listed
    assert "marts.dim_customers" in text_of(dom)

    # no personal data, no external assets
    assert "private.person" not in dom and "broken-address" not in dom
    source = page.read_text()
    assert not re.search(r'(src|href)="https?://', source)
    assert png.exists() and png.stat().st_size > 10_000


# --- GX Data Docs: offline -------------------------------------------------------------------------

EXTERNAL_ASSET = re.compile(
    r"""<script\b[^>]*\bsrc\s*=\s*["']https?://|<link\b[^>]*\brel\s*=\s*["']?stylesheet[^>]*\bhref\s*=\s*["']https?://"""
    r"""|<link\b[^>]*\bhref\s*=\s*["']https?://[^>]*\brel\s*=\s*["']?stylesheet|<img\b[^>]*\bsrc\s*=\s*["']https?://"""
    r"""|url\(\s*["']?https?://""", re.I)


def render_offline(page: Path, tmp_path: Path, name: str) -> str:
    """The DOM of `page` after its scripts ran, with every host name unresolvable (no network at all)."""
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run",
           "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=10000",
           f"--user-data-dir={tmp_path / ('profile-' + name)}", "--window-size=1400,2000",
           f"--screenshot={tmp_path / (name + '.png')}", "--dump-dom", page.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def table_rows(dom: str, table_class: str) -> list[str]:
    """Text of the body rows bootstrap-table rendered (it marks them with data-index) in the table of that class."""
    m = re.search(rf'<table[^>]*class="[^"]*{table_class}[^"]*".*?</table>', dom, re.S)
    assert m, f"no table .{table_class} in the rendered DOM"
    return [text_of(r) for r in re.findall(r'<tr[^>]*data-index="\d+"[^>]*>(.*?)</tr>', m.group(0), re.S)]


def test_data_docs_reference_no_external_script_or_stylesheet(run_with_failures):
    from crm_knowledge.quality.offline_docs import external_references

    _, qsettings = run_with_failures
    site = qsettings.reports_dir / "data_docs"
    pages = sorted(site.rglob("*.html"))
    # the index, the suite page and one validation page per batch
    assert len(pages) >= 4
    for page in pages:
        html_text = page.read_text(encoding="utf-8")
        assert not EXTERNAL_ASSET.search(html_text), f"{page} loads an asset from the network"
        assert external_references(html_text) == [], page
        for ref in re.findall(r"""<(?:script|link)\b[^>]*\b(?:src|href)\s*=\s*["']([^"'#]+)["']""", html_text):
            if ref.endswith((".js", ".css")):  # (GX's own favicon link is one level off on some pages)
                assert (page.parent / ref).resolve().is_file(), f"{page}: {ref} missing"
    assert not EXTERNAL_ASSET.search((site / "static" / "styles" / "data_docs_default_styles.css").read_text())
    # rebuilding leaves nothing to rewrite (idempotent)
    from crm_knowledge.quality.offline_docs import localize_site

    assert localize_site(site)["pages_rewritten"] == 0


def test_data_docs_render_their_tables_offline(run_with_failures, tmp_path):
    _, qsettings = run_with_failures
    site = qsettings.reports_dir / "data_docs"

    index = render_offline(site / "index.html", tmp_path, "index")
    validations = table_rows(index, "ge-index-page-validation-results-table")
    assert len(validations) == 2
    assert {("forms-held" in r, "forms-ok" in r) for r in validations} == {(True, False), (False, True)}
    assert all("raw.form_submissions" in r for r in validations)
    assert table_rows(index, "ge-index-page-expectation_suites-table") == ["raw.form_submissions"]

    held_page = next(site.glob("validations/**/forms-held.html"))
    dom = render_offline(held_page, tmp_path, "held")
    assert "fixed-table-body" in dom  # bootstrap-table ran
    rows = [text_of(r) for r in re.findall(r'<tr[^>]*data-index="\d+"[^>]*>(.*?)</tr>', dom, re.S)]
    assert len(rows) >= 10, rows  # every expectation of the suite is a rendered row
    assert any("values must never be null" in r for r in rows)
    assert "private.person" not in dom  # results are scrubbed before they are stored
    assert (tmp_path / "held.png").stat().st_size > 10_000


# --- the report of a day ---------------------------------------------------------------------------

def test_report_keyed_on_the_logical_date(scratch_db, settings, tmp_path):
    """Checks keyed `day-<ds>` (as the DAGs key them) give that day's page, dbt results included."""
    import json

    from crm_knowledge.as_of import run_key
    from crm_knowledge.quality import pipeline

    apply_ddl(scratch_db)
    qsettings = dataclasses.replace(settings, home=tmp_path / "home")
    day = "day-2026-11-20"
    assert run_key("2026-11-20") == day  # the key the DAG tasks give their day
    with psycopg.connect(scratch_db) as conn:
        conn.execute(
            """insert into audit.load_batches (batch_id, source_name, source_kind, source_file, checksum,
                   rows_read, rows_loaded, status, finished_at)
               values ('forms-1120', 'forms', 'forms', 'forms/1120.jsonl', 'c1120', 2, 2, 'loaded', now())""")
        for rn, sid in ((1, "F1"), (2, None)):
            conn.execute(
                """insert into raw.form_submissions (submission_id, form_type, submitted_at, _batch_id,
                       _source_file, _loaded_at, _row_number, _record_hash)
                   values (%s, 'feedback', now() - interval '1 day', 'forms-1120', 'f', now(), %s, 'h')""",
                (sid, rn))
    raw = pipeline.check_new_raw_batches(day, settings=qsettings, url=scratch_db)
    assert raw["held_batches"] == ["forms-1120"]
    target = tmp_path / "target"
    target.mkdir()
    (target / "run_results.json").write_text(json.dumps({"metadata": {"invocation_id": "i"}, "results": [
        {"unique_id": "test.crm_knowledge.not_null_dim_customers_customer_id.x", "status": "pass", "failures": 0},
    ]}))
    (target / "manifest.json").write_text(json.dumps({"nodes": {
        "test.crm_knowledge.not_null_dim_customers_customer_id.x": {
            "name": "not_null_dim_customers_customer_id", "column_name": "customer_id",
            "attached_node": "model.crm_knowledge.dim_customers", "test_metadata": {"name": "not_null"},
            "original_file_path": "models/marts/dim_customers.yml"}}}))
    pipeline.record_dbt_task_results(tmp_path, {"ds": "2026-11-20"}, settings=qsettings, url=scratch_db)
    # another day's checks do not leak into this day's page
    pipeline.check_new_raw_batches("day-2026-11-21", settings=qsettings, url=scratch_db, include_held=False)

    out = pipeline.build_reports(day, settings=qsettings, url=scratch_db)

    page = qsettings.reports_dir / "runs" / day / "index.html"
    assert out == {"pipeline_run_id": day, "report": str(page), "latest": str(report.latest_report_path(qsettings)),
                   "data_docs": str(qsettings.reports_dir / "data_docs" / "index.html")}
    dom, _ = render_dom(page, tmp_path)
    assert f"Run {day}" in text_of(dom)
    assert "BLOCKED: 1 critical failure(s), 1 held batch(es)" in text_of(dom)
    layers = {r.split()[0]: r.split()[1:] for r in rows_of(dom, "layers")}
    suites, checks, passed, critical, _warning = (int(v) for v in layers["raw"])
    assert (suites, critical) == (1, 1) and checks >= 10 and passed <= checks - 1
    # the dbt tests of a mart are shown as the marts layer's dbt tests: 1 suite, 1 check, 1 passed, no failure
    assert layers["dbt:marts"] == ["1", "1", "1", "0", "0"]
    assert [r.split()[0] for r in rows_of(dom, "batches")] == ["forms-1120"]
    assert any("forms-1120" in r and "submission_id" in r for r in rows_of(dom, "failures"))
