"""`ckp bench` as a user runs it (a subprocess), on a tiny population: it must finish and report what it timed.

Slow (a whole pipeline in its own embedded warehouse): marked e2e with the pipeline test. The benchmark's home
(``var/bench/<size>``, wiped first) and port (``CKP_BENCH_PORT``) are its own; the reports go to tmp_path.
"""

from __future__ import annotations

import json
import os
import socket

import pytest
from ckp_cli import ckp_env, run_ckp

pytestmark = [pytest.mark.e2e, pytest.mark.warehouse]

SIZE = 40


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ckp_bench_small(tmp_path):
    env = ckp_env(CKP_BENCH_PORT=str(_free_port()), WAREHOUSE_URL=None, CKP_ORDERS_URL=None,
                  CKP_BENCH_WEBHOOK_PORT=os.environ.get("CKP_WEBHOOK_PORT", "8790"))
    res = run_ckp("bench", "--size", str(SIZE), "--seed", "5", "--no-incremental", "--no-baselines", "--no-scaling",
                  "--results-dir", str(tmp_path), env=env, timeout=3600)
    try:
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        reports = sorted(tmp_path.glob(f"*-{SIZE}.json"))
        assert len(reports) == 1 and reports[0].with_suffix(".md").exists()
        report = json.loads(reports[0].read_text(encoding="utf-8"))
        assert (report["size"], report["seed"]) == (SIZE, 5)
        stages = {(s["stage"], s["phase"]) for s in report["stages"]}
        assert ("generate", "full") in stages and len(stages) >= 4
        assert all(s["seconds"] >= 0 for s in report["stages"])
        assert not [s for s in report["stages"] if s["phase"] == "incremental"]  # --no-incremental honoured
    finally:
        from crm_knowledge.settings import PROJECT_ROOT

        home = PROJECT_ROOT / "var" / "bench" / str(SIZE)
        run_ckp("warehouse", "stop", env=ckp_env(CKP_HOME=str(home), CKP_WAREHOUSE_PORT=env["CKP_BENCH_PORT"],
                                                 WAREHOUSE_URL=None))
