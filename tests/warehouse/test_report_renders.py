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
