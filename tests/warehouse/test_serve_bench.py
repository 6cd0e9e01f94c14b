"""`make bench-api`'s program as the Makefile runs it (a subprocess), on a tiny population: it fills the serving
tables, serves them with `ckp serve`, loads them with concurrent clients, and reports p50 / p99 / errors.

A wrong answer counts as an error (the lookup must find the customer asked for), so a green run means every
request of every client was answered right. The latency target is not asserted here (shared test machines);
`make bench-api` at 1M customers does that and exits 1 when it is missed.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
from ckp_cli import ckp_env
from serve_world import SERVE_PORT

pytestmark = pytest.mark.warehouse

SIZE = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bench_api_small(tmp_path):
    env = ckp_env(CKP_BENCH_PORT=str(_free_port()), CKP_SERVE_PORT=str(SERVE_PORT), WAREHOUSE_URL=None)
    cmd = [sys.executable, "-m", "crm_knowledge.serve.bench", "--size", str(SIZE), "--clients", "8", "--duration", "3",
           "--warmup", "1", "--think-ms", "20", "--workers", "1", "--p99-target-ms", "60000", "--results-dir",
           str(tmp_path)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, check=False,
                         stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (report_file,) = tmp_path.glob(f"api-*-{SIZE}.json")
    report = json.loads(report_file.read_text(encoding="utf-8"))
    for endpoint in ("lookup", "profile"):
        r = report["results"][endpoint]
        assert r["requests"] > 10 and r["errors"] == 0, (endpoint, r)
        assert 0 < r["p50_ms"] <= r["p99_ms"] <= r["max_ms"]
    md = report_file.with_suffix(".md").read_text(encoding="utf-8")
    assert "| lookup |" in md and "| profile |" in md and "p99 ms" in md
