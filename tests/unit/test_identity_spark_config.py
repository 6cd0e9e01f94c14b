"""Where the identity stage's Spark runs comes from config/identity.yml or the environment, never from code."""

from __future__ import annotations

import os

import pytest

from crm_knowledge.identity.config import IdentityConfigError, config_from_dict, load_config
from crm_knowledge.identity.spark_session import SparkConfig, effective_config


def test_defaults_are_local_and_small():
    cfg = config_from_dict({}).spark
    assert cfg == SparkConfig() and cfg.master == "local[2]" and cfg.is_local
    assert config_from_dict({}).backend == "duckdb"
    assert load_config().backend in ("duckdb", "spark")


def test_the_spark_section_is_read():
    c = config_from_dict({"backend": "spark", "spark": {
        "master": "spark://spark-master:7077", "driver_memory": "2g", "executor_memory": "6g",
        "shuffle_partitions": 64, "conf": {"spark.executor.cores": 4}}})
    assert c.backend == "spark" and c.probabilistic.backend == "spark"
    assert c.spark.master == "spark://spark-master:7077" and not c.spark.is_local
    assert (c.spark.driver_memory, c.spark.executor_memory, c.spark.shuffle_partitions) == ("2g", "6g", 64)
    assert dict(c.spark.conf) == {"spark.executor.cores": "4"}
    assert config_from_dict({"spark": {"connect_url": "sc://spark:15002"}}).spark.is_local is False


def test_backend_top_level_or_probabilistic_but_not_contradicting():
    assert config_from_dict({"probabilistic": {"backend": "spark"}}).backend == "spark"
    assert config_from_dict({"backend": "spark", "probabilistic": {"backend": "spark"}}).backend == "spark"
    with pytest.raises(IdentityConfigError, match=r"backend is 'spark' but probabilistic.backend is 'duckdb'"):
        config_from_dict({"backend": "spark", "probabilistic": {"backend": "duckdb"}})
    with pytest.raises(IdentityConfigError, match=r"backend must be one of duckdb, spark, got 'flink'"):
        config_from_dict({"backend": "flink"})


@pytest.mark.parametrize(("spark", "message"), [
    ({"driver_memory": "lots"}, r"spark.driver_memory must be a JVM size like 1g"),
    ({"shuffle_partitions": 0}, r"spark.shuffle_partitions must be a whole number >= 1, got 0"),
    ({"connect_url": "http://x"}, r"spark.connect_url must look like sc://"),
    ({"masters": "local"}, r"spark has unknown key\(s\) \['masters'\]"),
    ({"conf": {"spark.ui.enabled": "true"}}, r"spark.conf may not set \['spark.ui.enabled'\]"),
    ({"conf": {"ui": 1}}, r"spark.conf must map spark.\* settings"),
])
def test_bad_spark_settings_name_the_file_and_key(spark, message):
    with pytest.raises(IdentityConfigError, match=r"^identity.yml: " + message):
        config_from_dict({"spark": spark}, source="identity.yml")


def test_environment_overrides_the_file(monkeypatch):
    cfg = config_from_dict({"spark": {"master": "local[4]", "shuffle_partitions": 16}}).spark
    for var in ("CKP_SPARK_MASTER", "CKP_SPARK_CONNECT_URL", "CKP_SPARK_DRIVER_MEMORY", "CKP_SPARK_EXECUTOR_MEMORY",
                "CKP_SPARK_SHUFFLE_PARTITIONS", "CKP_SPARK_SCRATCH_DIR"):
        monkeypatch.delenv(var, raising=False)
    assert effective_config(cfg) == cfg
    monkeypatch.setenv("CKP_SPARK_MASTER", "spark://cluster:7077")
    monkeypatch.setenv("CKP_SPARK_EXECUTOR_MEMORY", "8g")
    monkeypatch.setenv("CKP_SPARK_SHUFFLE_PARTITIONS", "200")
    eff = effective_config(cfg)
    assert (eff.master, eff.executor_memory, eff.shuffle_partitions) == ("spark://cluster:7077", "8g", 200)
    assert eff.driver_memory == cfg.driver_memory
    monkeypatch.setenv("CKP_SPARK_DRIVER_MEMORY", "huge")
    with pytest.raises(ValueError, match=r"CKP_SPARK_\*.*spark.driver_memory must be a JVM size"):
        effective_config(cfg)


def test_scratch_left_by_a_killed_run_on_this_host_is_removed_and_nothing_else(tmp_path):
    """A SIGKILL or an out-of-memory kill skips every finally: the next session removes such a run's scratch
    directory (staged candidates: personal data), but never a live run's or another host's (a shared path)."""
    import socket
    import subprocess
    import sys

    from crm_knowledge.identity.scratch import OWNER_FILE, remove_stale_scratch
    from crm_knowledge.identity.spark_session import SCRATCH_PREFIX

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    dead_pid = int(dead.stdout)  # exited (and reaped): a pid of no process
    host = socket.gethostname()
    owners = {"ckp-spark-killed": f"{host} {dead_pid}", "ckp-spark-live": f"{host} {os.getpid()}",
              "ckp-spark-other-host": f"elsewhere.example {dead_pid}", "ckp-spark-no-owner": None,
              "not-ours": f"{host} {dead_pid}"}
    for name, owner in owners.items():
        d = tmp_path / name
        (d / "candidates").mkdir(parents=True)
        (d / "candidates" / "part-00000.parquet").write_bytes(b"x")
        if owner:
            (d / OWNER_FILE).write_text(owner, encoding="utf-8")
    removed = remove_stale_scratch(tmp_path, SCRATCH_PREFIX)
    assert removed == [tmp_path / "ckp-spark-killed"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(set(owners) - {"ckp-spark-killed"})
