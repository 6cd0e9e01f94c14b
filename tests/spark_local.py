"""Spark settings for the tests that start Spark in local mode on a tiny demo (test_identity_spark.py,
test_cli_bench.py): importable from every test module (``tests/`` is on ``sys.path``).

At a few hundred records a Spark run's time is not the data but a cold JVM planning and compiling Splink's many
small queries. These settings make that cheaper and change no answer: adaptive query execution off (no
re-planning of every stage after its shuffle), no whole-stage code generation (no Java source compiled per
query; the interpreted operators give the same rows) and the JIT's quick compiler only (the optimising one costs
more CPU than a run of minutes earns back). The quick compiler alone gets a 48 MB code cache by default, which a
whole run filled ("Out of space in CodeCache", the JVM gone mid-test): it gets the default of both compilers,
240 MB, reserved, committed as it fills. A deployment keeps Spark's defaults (config/identity.yml ``spark``).
"""

from __future__ import annotations

#: ``spark.conf`` of config/identity.yml (crm_knowledge.identity.spark_session.SparkConfig.conf)
LOCAL_TEST_SPARK_CONF: tuple[tuple[str, str], ...] = (
    ("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=240m -XX:+UseSerialGC"),
    ("spark.sql.adaptive.enabled", "false"),
    ("spark.sql.codegen.wholeStage", "false"),
)


def identity_yml_spark_section() -> str:
    """The same settings as a ``spark`` section of config/identity.yml (for a `ckp` command reading a copy)."""
    lines = ["spark:", "  conf:"]
    lines += [f'    {key}: "{value}"' for key, value in LOCAL_TEST_SPARK_CONF]
    return "\n".join(lines) + "\n"
