"""The auditor's report and the Data Docs, served by `ckp reports serve` (the compose `reports` service).

The server runs as deployed (the `ckp` command in a subprocess) on loopback over the reports folder of a
real run (a held batch, a warning, a quarantined file), and headless Chromium reads the pages through it:
the index links the report and the Data Docs, the report shows the run's failures, its Data Docs links
resolve. The server is read-only and serves nothing outside the folder.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from ckp_cli import start_ckp
from test_report_renders import chromium, rows_of, run_with_failures, text_of  # noqa: F401 - fixture

pytestmark = pytest.mark.warehouse

PORT = int(os.environ.get("CKP_TEST_REPORTS_PORT", "8825"))
BASE = f"http://127.0.0.1:{PORT}"


@pytest.fixture()
def served(run_with_failures, tmp_path):  # noqa: F811 - the imported fixture
    _, qsettings = run_with_failures
    root = qsettings.reports_dir
    # something the server must never hand out: a file next to the reports folder, a link out of it,
    # a hidden file and a page half-written
    (root.parent / "secret.txt").write_text("landing data", encoding="utf-8")
    (root / "escape").symlink_to(root.parent)
    (root / ".hidden").write_text("x", encoding="utf-8")
    (root / "latest.html.tmp").write_text("x", encoding="utf-8")
    proc = start_ckp("reports", "serve", "--dir", str(root), "--host", "127.0.0.1", "--port", str(PORT))
    try:
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"{BASE}/healthz", timeout=1) as res:
                    if res.read() == b"ok\n":
                        break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"ckp reports serve exited: {proc.stdout.read()}")
                time.sleep(0.1)
        else:
            pytest.fail("ckp reports serve did not answer /healthz")
        yield root
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0, "SIGTERM must stop the server cleanly"


def dom_of(url: str, tmp_path: Path) -> str:
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run",
           f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1400,2000", "--dump-dom", url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def status(path: str, method: str = "GET") -> int:
    req = urllib.request.Request(f"{BASE}{path}", method=method, data=b"x" if method in ("POST", "PUT") else None)
    try:
        with urllib.request.urlopen(req, timeout=5) as res:
            return res.status
    except urllib.error.HTTPError as err:
        return err.code


def test_auditor_reads_the_report_and_data_docs_in_a_browser(served, tmp_path):
    index = dom_of(f"{BASE}/", tmp_path)
    assert 'id="latest-report" href="latest.html"' in index and 'href="data_docs/index.html"' in index
    assert re.search(r'href="runs/manual__2026-03-01T10_00/index.html"', index)

    report = dom_of(f"{BASE}/latest.html", tmp_path)
    assert "BLOCKED: 1 critical failure(s), 1 held batch(es)" in text_of(report)
    assert {r.split()[0] for r in rows_of(report, "batches")} == {"forms-held", "forms-ok", "contacts-bad"}
    # every Data Docs link of the report resolves through the server
    links = sorted(set(re.findall(r'href="(data_docs/[^"#]+)', report)))
    assert links, "the report links its Data Docs"
    for link in links:
        assert status(f"/{link}") == 200, link

    docs = dom_of(f"{BASE}/data_docs/index.html", tmp_path)
    assert "form_submissions" in text_of(docs)  # the raw suite that ran, listed by the Data Docs site
    run_page = dom_of(f"{BASE}/runs/manual__2026-03-01T10_00/", tmp_path)
    assert "BLOCKED" in text_of(run_page)


def test_read_only_and_nothing_outside_the_folder(served):
    assert status("/latest.html", "HEAD") == 200
    for method in ("POST", "PUT", "DELETE"):
        assert status("/latest.html", method) == 405, method
    for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/escape/secret.txt", "/.hidden", "/latest.html.tmp",
                 "/runs/", "/nope.html"):
        assert status(path) == 404, path
    with urllib.request.urlopen(f"{BASE}/latest.html", timeout=5) as res:
        assert res.headers["X-Content-Type-Options"] == "nosniff"
        assert "default-src 'self'" in res.headers["Content-Security-Policy"]
    assert (served / "latest.html").exists()
