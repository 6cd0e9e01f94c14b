"""`ckp bench` as a user runs it (a subprocess), on a tiny population: it must finish and report what it timed, the
full run and an incremental day through every stage, and identity resolution on both backends (`--only-identity`:
DuckDB in process, Spark in local mode, with the driver's and the JVM's peak memory apart).

The identity backends run with the Splink model's prior m / u values, not trained (``probabilistic.
min_records_for_training`` above the demo's records, in a copy of the configuration the bench reads through
CKP_CONFIG_DIR): what is checked here is the bench's report of each backend. Training on Spark costs a cold JVM
minutes of query planning at any size (the prior, u and EM steps are dozens of Spark queries), and is checked where
it is about the answers: tests/warehouse/test_identity_spark.py (the same trained model on both backends). With
the prior values both engines score every pair alike, so their customers are equal without the sampled u estimate
that can differ between them.

Slow (a whole pipeline in its own embedded warehouse): marked e2e with the pipeline test. The benchmark's home
(``var/bench/<size>``, wiped first) and port (``CKP_BENCH_PORT``) are its own; the reports go to tmp_path.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import pytest
from ckp_cli import ckp_env, run_ckp
from spark_local import identity_yml_spark_section

from crm_knowledge.netports import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.warehouse]

SIZE = 40


def _config_without_training(tmp: Path) -> Path:
    """A copy of config/ whose identity resolution keeps Splink's prior m / u values (module docstring), with the
    Spark settings of the tests that run Spark on a tiny demo (tests/spark_local.py)."""
    from crm_knowledge.settings import get_settings

    config = tmp / "config"
    shutil.copytree(get_settings().config_dir, config)
    identity = config / "identity.yml"
    text = identity.read_text(encoding="utf-8")
    line = next(x for x in text.splitlines() if x.strip().startswith("min_records_for_training:"))
    identity.write_text(text.replace(line, "  min_records_for_training: 1000000").rstrip("\n") + "\n"
                        + identity_yml_spark_section(), encoding="utf-8")
    return config


def _stop_bench_warehouse(env: dict) -> None:
    """A benchmark stops its warehouse when it finishes; after a failure this does."""
    from crm_knowledge.settings import PROJECT_ROOT

    home = PROJECT_ROOT / "var" / "bench" / str(SIZE)
    run_ckp("warehouse", "stop", env=ckp_env(CKP_HOME=str(home), CKP_WAREHOUSE_PORT=env["CKP_BENCH_PORT"],
                                             WAREHOUSE_URL=None))


def test_a_failed_bench_stops_its_warehouse(tmp_path):
    """A benchmark that fails (here: a Spark setting the identity stage refuses) exits non-zero with the
    reason, and leaves no warehouse running on its port: it holds GBs of memory at scale, and the next run on
    the port would fail on it."""
    port = free_port()
    env = ckp_env(CKP_BENCH_PORT=str(port), WAREHOUSE_URL=None, CKP_ORDERS_URL=None,
                  CKP_SPARK_DRIVER_MEMORY="lots", CKP_SPARK_SCRATCH_DIR=str(tmp_path / "spark-scratch"))
    res = run_ckp("bench", "--size", str(SIZE), "--only-identity", "--identity-backends", "spark",
                  "--results-dir", str(tmp_path), env=env, timeout=600)
    try:
        assert res.returncode == 1, res.stdout[-3000:] + res.stderr[-3000:]
        assert "driver_memory must be a JVM size" in res.stderr and "'lots'" in res.stderr, res.stderr[-3000:]
        assert "generate:identity_candidates" in res.stdout  # it failed after its warehouse was filled
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"the bench's warehouse still listens on {port}"
        assert not list(tmp_path.glob("*.json"))  # no report of a run that did not finish
    finally:
        _stop_bench_warehouse(env)


def test_a_bench_without_the_disk_it_needs_fails_at_once(tmp_path):
    """A benchmark whose warehouse would not fit on the disk fails before it generates anything, naming what it
    needs and what is free (a 1M run filled the disk an hour in, in its incremental day)."""
    port = free_port()
    env = ckp_env(CKP_BENCH_PORT=str(port), WAREHOUSE_URL=None, CKP_ORDERS_URL=None)
    huge = 10**12  # customers: about 55 PB
    res = run_ckp("bench", "--size", str(huge), "--results-dir", str(tmp_path), env=env, timeout=120)
    assert res.returncode == 1, res.stdout[-3000:] + res.stderr[-3000:]
    assert f"{huge:,} customers needs about" in res.stderr and "GB free" in res.stderr, res.stderr[-2000:]
    assert f"/bench/{huge} (" in res.stderr  # the benchmark's home, then what is free there
    assert "generate" not in res.stdout and not list(tmp_path.glob("*.json"))
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, f"a warehouse listens on {port}"


#: the stages of a day, as the warehouse and scoring DAGs run them (the ingest stages are one per source)
DAY_STAGES = {"generate", "quality:raw_gate", "dbt:staging", "identity_resolution", "dbt:marts",
              "quality:staging_and_marts", "scoring:all_models", "dbt:post_scoring", "quality:post_scoring"}


def test_ckp_bench_small(tmp_path):
    """The full run, then one incremental day (`--days 1`) through every stage on the day's generated changes."""
    env = ckp_env(CKP_BENCH_PORT=str(free_port()), WAREHOUSE_URL=None, CKP_ORDERS_URL=None,
                  CKP_BENCH_WEBHOOK_PORT=os.environ.get("CKP_WEBHOOK_PORT", "8790"))
    bad = run_ckp("bench", "--size", str(SIZE), "--identity-backends", "duckdb,flink", env=env, timeout=300)
    assert bad.returncode == 2 and "flink" in bad.stderr
    no_day = run_ckp("bench", "--size", str(SIZE), "--days", "0", env=env, timeout=300)
    assert no_day.returncode == 2 and "argument --days: must be at least 1, got 0" in no_day.stderr, no_day.stderr
    res = run_ckp("bench", "--size", str(SIZE), "--seed", "5", "--days", "1", "--no-baselines", "--no-scaling",
                  "--identity-backends", "duckdb", "--results-dir", str(tmp_path), env=env, timeout=3600)
    try:
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        reports = sorted(tmp_path.glob(f"*-{SIZE}.json"))
        assert len(reports) == 1 and reports[0].with_suffix(".md").exists()
        report = json.loads(reports[0].read_text(encoding="utf-8"))
        assert (report["size"], report["seed"]) == (SIZE, 5)
        assert all(s["seconds"] >= 0 for s in report["stages"])
        by_phase: dict[str, dict[str, dict]] = {}
        for s in report["stages"]:
            by_phase.setdefault(s["phase"], {})[s["stage"]] = s
        assert set(by_phase) == {"full", "incremental"}  # --days 1: one day, no second
        for phase in ("full", "incremental"):
            stages = set(by_phase[phase])
            assert DAY_STAGES <= stages, (phase, DAY_STAGES - stages)
            assert {s for s in stages if s.startswith("ingest:")} >= {"ingest:forms", "ingest:orders"}
            assert {s for s in stages if s.startswith("export:")}, phase
        # the day generated and loaded a day's changes, not the population again
        day, full = by_phase["incremental"]["generate"]["rows"], by_phase["full"]["generate"]["rows"]
        assert 0 < day < full / 2, (day, full)
        [entry] = report["days"]
        assert entry["phase"] == "incremental" and entry["seconds"] > 0
        assert report["incremental_seconds"] == entry["seconds"] and report["full_seconds"] > 0
        assert [r["backend"] for r in report["identity_backends"]] == ["duckdb"]
        md = reports[0].with_suffix(".md").read_text(encoding="utf-8")
        assert "incremental day: **" in md and "| dbt:marts |" in md
    finally:
        _stop_bench_warehouse(env)


def test_ckp_bench_only_identity(tmp_path):
    """`--only-identity`: synthetic candidates of --size customers, then only a full identity resolution per backend
    (DuckDB in process, Spark in local mode), with the driver's and the JVM's peak memory; no pipeline stage runs."""
    env = ckp_env(CKP_BENCH_PORT=str(free_port()), WAREHOUSE_URL=None, CKP_ORDERS_URL=None,
                  CKP_CONFIG_DIR=str(_config_without_training(tmp_path)),
                  CKP_SPARK_MASTER="local[2]", CKP_SPARK_SHUFFLE_PARTITIONS="2",
                  CKP_SPARK_SCRATCH_DIR=str(tmp_path / "spark-scratch"),
                  CKP_BENCH_WEBHOOK_PORT=os.environ.get("CKP_WEBHOOK_PORT", "8790"))
    res = run_ckp("bench", "--size", str(SIZE), "--only-identity", "--identity-backends", "duckdb,spark",
                  "--results-dir", str(tmp_path), env=env, timeout=1200)
    try:
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        report = json.loads(sorted(tmp_path.glob(f"*-{SIZE}.json"))[0].read_text(encoding="utf-8"))
        assert report["only_identity"] is True
        assert [s["stage"] for s in report["stages"]] == [
            "generate:identity_candidates", "identity_backend:duckdb", "identity_backend:spark"]
        # about 2.1 records per customer (an orders record, most with a sibling record or a form): every record is
        # resolved, the customers are about the people generated
        row = next(r for r in report["identity_backends"] if r["backend"] == "duckdb")
        assert row["records"] == report["identity_candidates"] and 1.5 * SIZE < row["records"] < 3 * SIZE
        assert 0.8 * SIZE <= row["customers"] <= 1.2 * SIZE and row["peak_driver_mb"] > 0
        # identity on both backends
        rows = {r["backend"]: r for r in report["identity_backends"]}
        assert set(rows) == {"duckdb", "spark"}
        duck, spark = rows["duckdb"], rows["spark"]
        assert duck["records"] == spark["records"] == report["identity_candidates"]
        assert duck["customers"] == spark["customers"] > 0
        assert spark["steps"]["splink"] > 0  # Splink scored the pairs on Spark (with the prior values)
        assert spark["steps"] and set(spark["steps"]) >= {"prepare", "junk", "deterministic", "splink", "clusters"}
        assert duck["steps"] is None
        # the driver and the JVM measured apart: a JVM is hundreds of MB, DuckDB runs in the driver
        assert spark["peak_children_mb"] > 200 and spark["peak_driver_mb"] > 50, spark
        assert duck["peak_driver_mb"] > 50, duck
        assert all(r["seconds"] > 0 for r in rows.values())
        md = sorted(tmp_path.glob(f"*-{SIZE}.md"))[0].read_text(encoding="utf-8")
        assert "`--only-identity`" in md and "| duckdb |" in md and "| spark |" in md and "peak driver MB" in md
        # the run's Spark scratch directory (staged candidates: personal data) is gone
        assert not list((tmp_path / "spark-scratch").glob("ckp-spark-*"))
    finally:
        _stop_bench_warehouse(env)


def test_ckp_bench_only_ingest(tmp_path):
    """`--only-ingest`: the file sources are generated and loaded, the loader is timed against plain COPY of the
    same file, interleaved, and the raw gate runs; nothing after it (no staging, identity, scoring)."""
    env = ckp_env(CKP_BENCH_PORT=str(free_port()), WAREHOUSE_URL=None, CKP_ORDERS_URL=None,
                  CKP_BENCH_WEBHOOK_PORT=os.environ.get("CKP_WEBHOOK_PORT", "8790"))
    res = run_ckp("bench", "--size", str(SIZE), "--seed", "5", "--only-ingest", "--rounds", "2",
                  "--results-dir", str(tmp_path), env=env, timeout=3600)
    try:
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        report = json.loads(sorted(tmp_path.glob(f"*-{SIZE}.json"))[0].read_text(encoding="utf-8"))
        assert report["only_ingest"] is True
        stages = {s["stage"] for s in report["stages"]}
        assert {"generate", "baseline:plain_copy", "baseline:loader_vs_copy", "ingest:forms", "ingest:contacts",
                "quality:raw_gate"} <= stages
        assert "ingest:orders_db" not in stages and not [s for s in stages if s.startswith(("dbt:", "scoring"))]
        measured = {e["source"]: e for e in report["loader_ratio"] if "loader_s" in e}
        # every CSV and JSON Lines source has a ratio from two rounds of each, the XLSX one a loader time only
        for name in ("forms", "contacts", "sibling_insurance", "sibling_bank_fa", "order_export_kiosk"):
            e = measured[name]
            assert e["rounds"] == 2 and len(e["loader_all_s"]) == 2 and len(e["copy_all_s"]) == 2
            assert e["rows"] > 0 and e["copy_rows"] >= e["rows"]
            # the ratio is of the unrounded medians, rounded to 0.01; the reported times are rounded to the
            # millisecond, so at this size (a few ms per file) the ratio lies within the bounds they allow
            half_ms = 0.0005
            low = (e["copy_s"] - half_ms) / (e["loader_s"] + half_ms) - 0.005
            high = (e["copy_s"] + half_ms) / max(e["loader_s"] - half_ms, 1e-9) + 0.005
            assert 0 < e["ratio"] and low <= e["ratio"] <= high, (e["ratio"], e["copy_s"], e["loader_s"])
            assert e["phases_s"]["copy"] > 0 and "commit" in e["phases_s"]
        assert measured["forms"]["copy_jsonb_s"] > 0
        assert "copy_s" not in measured["sibling_travel"] and measured["sibling_travel"]["loader_s"] > 0
        # the planted corrupt file is quarantined, not compared
        assert {"source": "order_export_kiosk", "status": "quarantined"}.items() <= next(
            e for e in report["loader_ratio"] if "corrupt" in e["file"]).items()
        assert report["load_average"]["start"] and report["load_average"]["end"]
        md = sorted(tmp_path.glob(f"*-{SIZE}.md"))[0].read_text(encoding="utf-8")
        assert "plain `COPY` of the same file" in md and "| forms |" in md
    finally:
        _stop_bench_warehouse(env)


def test_a_second_bench_of_the_same_size_fails_and_leaves_the_running_one_alone(tmp_path):
    """Each benchmark wipes its home (`var/bench/<size>`) and stops the server left there: a second `ckp bench`
    of the same size while one runs would destroy the running one's data. It fails at once, naming the home,
    and touches nothing (here the running bench is this test holding the home's lock)."""
    from crm_knowledge.bench.run import home_lock
    from crm_knowledge.settings import PROJECT_ROOT

    size = SIZE + 1  # a home of its own: test_ckp_bench_small's is var/bench/SIZE
    home = PROJECT_ROOT / "var" / "bench" / str(size)
    home.mkdir(parents=True, exist_ok=True)
    marker = home / "running-bench-data"
    marker.write_text("kept", encoding="utf-8")
    env = ckp_env(CKP_BENCH_PORT=str(free_port()), WAREHOUSE_URL=None, CKP_ORDERS_URL=None)
    try:
        with home_lock(home):
            res = run_ckp("bench", "--size", str(size), "--only-ingest", "--results-dir", str(tmp_path), env=env,
                          timeout=120)
        assert res.returncode == 1, res.stdout + res.stderr
        assert "another benchmark is running in" in res.stderr and str(home) in res.stderr
        assert marker.read_text(encoding="utf-8") == "kept"  # not wiped
        assert not list(tmp_path.iterdir())  # no report written
    finally:
        shutil.rmtree(home, ignore_errors=True)
