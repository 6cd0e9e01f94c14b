"""`ckp bench --identity-backends duckdb,spark` as a user runs it (a subprocess), on a tiny population: identity
resolution timed on both backends, Spark in local mode, with the driver's and the JVM's peak memory apart.

Slow (a whole pipeline in its own embedded warehouse, then a Spark JVM): marked e2e like tests/e2e/
test_cli_bench.py, at another size so the two never share a benchmark home (``var/bench/<size>``).
"""

from __future__ import annotations

import json
import os
import socket

import pytest
from ckp_cli import ckp_env, run_ckp

pytestmark = [pytest.mark.e2e, pytest.mark.warehouse]

SIZE = 30


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ckp_bench_reports_identity_on_duckdb_and_spark(tmp_path):
    env = ckp_env(CKP_BENCH_PORT=str(_free_port()), WAREHOUSE_URL=None, CKP_ORDERS_URL=None,
                  CKP_SPARK_MASTER="local[2]", CKP_SPARK_SHUFFLE_PARTITIONS="2",
                  CKP_SPARK_SCRATCH_DIR=str(tmp_path / "spark-scratch"),
                  CKP_BENCH_WEBHOOK_PORT=os.environ.get("CKP_WEBHOOK_PORT", "8790"))
    bad = run_ckp("bench", "--size", str(SIZE), "--identity-backends", "duckdb,flink", env=env, timeout=300)
    assert bad.returncode == 2 and "flink" in bad.stderr
    res = run_ckp("bench", "--size", str(SIZE), "--seed", "5", "--no-incremental", "--no-baselines",
                  "--no-scaling", "--identity-backends", "duckdb,spark", "--results-dir", str(tmp_path),
                  env=env, timeout=3600)
    try:
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        reports = sorted(tmp_path.glob(f"*-{SIZE}.json"))
        assert len(reports) == 1
        report = json.loads(reports[0].read_text(encoding="utf-8"))
        rows = {r["backend"]: r for r in report["identity_backends"]}
        assert set(rows) == {"duckdb", "spark"}
        duck, spark = rows["duckdb"], rows["spark"]
        assert duck["records"] == spark["records"] > 4 * SIZE
        assert duck["customers"] == spark["customers"] > 0
        assert spark["steps"] and set(spark["steps"]) >= {"prepare", "junk", "deterministic", "splink", "clusters"}
        assert duck["steps"] is None
        # the driver and the JVM measured apart: a JVM is hundreds of MB, DuckDB runs in the driver
        assert spark["peak_children_mb"] > 200 and spark["peak_driver_mb"] > 50, spark
        assert duck["peak_driver_mb"] > 50, duck
        assert all(r["seconds"] > 0 for r in rows.values())
        stages = {s["stage"] for s in report["stages"]}
        assert {"identity_backend:duckdb", "identity_backend:spark"} <= stages
        md = reports[0].with_suffix(".md").read_text(encoding="utf-8")
        assert "| spark |" in md and "peak driver MB" in md
        # the run's Spark scratch directory (staged candidates: personal data) is gone
        assert not list((tmp_path / "spark-scratch").glob("ckp-spark-*"))
    finally:
        from crm_knowledge.settings import PROJECT_ROOT

        home = PROJECT_ROOT / "var" / "bench" / str(SIZE)
        run_ckp("warehouse", "stop", env=ckp_env(CKP_HOME=str(home), CKP_WAREHOUSE_PORT=env["CKP_BENCH_PORT"],
                                                 WAREHOUSE_URL=None))
