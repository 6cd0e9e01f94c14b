"""`make bench-api`'s program as the Makefile runs it (a subprocess), on a tiny population: it fills the serving
tables, serves them with `ckp serve` (two workers), loads them in each phase (closed loop, agents with think
time, one client), and reports p50 / p99 / errors, the clients and the load average per phase.

A wrong answer counts as an error (the lookup must find the customer asked for), so a green run means every
request of every client was answered right. The latency target is not asserted here (shared test machines);
`make bench-api` at 1M customers does that and exits 1 when it is missed.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from ckp_cli import ckp_env
from serve_world import SERVE_PORT

from crm_knowledge.netports import free_port

pytestmark = pytest.mark.warehouse

SIZE = 300


def test_bench_api_small(tmp_path):
    env = ckp_env(CKP_BENCH_PORT=str(free_port()), CKP_SERVE_PORT=str(SERVE_PORT), WAREHOUSE_URL=None)
    cmd = [sys.executable, "-m", "crm_knowledge.serve.bench", "--size", str(SIZE), "--clients", "8", "--duration", "3",
           "--warmup", "1", "--think-ms", "20", "--workers", "2", "--p99-target-ms", "60000", "--results-dir",
           str(tmp_path)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, check=False,
                         stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (report_file,) = tmp_path.glob(f"api-*-{SIZE}.json")
    report = json.loads(report_file.read_text(encoding="utf-8"))
    assert list(report["phases"]) == ["closed", "agents", "single"] and report["parameters"]["judge"] == "agents"
    for phase, clients, think in (("closed", 8, 0), ("agents", 8, 20), ("single", 1, 0)):
        res = report["phases"][phase]
        assert (res["clients"], res["think_ms"]) == (clients, think)
        assert 0 <= res["load_average"]["min"] <= res["load_average"]["max"]
        for endpoint in ("lookup", "profile"):
            r = res[endpoint]
            assert r["requests"] > 10 and r["errors"] == 0, (phase, endpoint, r)
            assert 0 < r["p50_ms"] <= r["p99_ms"] <= r["max_ms"]
    assert report["target_met"] is True and set(report["target_met_by_phase"]) == {"closed", "agents", "single"}
    md = report_file.with_suffix(".md").read_text(encoding="utf-8")
    assert "| closed | 8 | 0 |" in md and "| single | 1 | 0 |" in md and "p99 ms" in md
    assert "judged on the `agents` phase: **met**" in md
