"""The identity stage on Spark (`backend: spark`) gives the same answers as in process (DuckDB), on the demo.

The demo is generated, ingested and staged into a scratch warehouse (tests/demo_warehouse.py, the build
tests/warehouse/test_identity_accuracy.py uses, at a smaller size that still has every kind of decision:
deterministic and probabilistic links, junk values, unresolved records); then the same candidates are resolved
through `store.run`, the way the warehouse DAG runs it: with the in-process backend and with Spark in local mode
(`local[2]`, pyspark from the lock, the machine's JVM). Both must give identical clusters and stable customer ids,
the same match pairs, junk values and unresolved records, and both must hold the demo's accuracy floor. Then an
incremental run on both backends from the same earlier state - some records changed since, one customer split in
two by hand - must re-resolve the same records the same way and merge the same customer ids.

Match probabilities agree to about 1e-4 (EM sums in another order), not bit for bit.
u is estimated from every pair (u_max_pairs above n(n-1)/2): Splink samples pairs by a hash of the record id,
and DuckDB and Spark hash differently, so with sampling the two engines would see different samples (as two
seeds would) and borderline pairs could differ. Everything else is deterministic.

After every Spark run its JVM has ended (no java process of this test process is left) and its scratch
directory (staged candidates: personal data) is gone. Spark runs with tests/spark_local.py's settings.
"""

from __future__ import annotations

import dataclasses
import time

import psutil
import psycopg
import pytest
from demo_warehouse import build_demo_warehouse
from spark_local import LOCAL_TEST_SPARK_CONF

from crm_knowledge.identity import store
from crm_knowledge.identity.config import load_config
from crm_knowledge.identity.report import evaluation_metrics
from crm_knowledge.identity.spark_session import stop_session

pytestmark = pytest.mark.warehouse

PERSONS = 120
IDENTITY_TABLES = ("record_clusters", "match_pairs", "unresolved", "junk_values", "customer_id_merges",
                   "issued_ids", "match_weights", "resolution_runs")
#: the identity state an incremental run starts from (saved once, restored before each backend's run)
SAVED_TABLES = ("record_clusters", "customer_id_merges", "issued_ids")


@pytest.fixture()
def demo_warehouse(settings, scratch_db_factory, tmp_path, monkeypatch):
    monkeypatch.delenv("CKP_ORDERS_URL", raising=False)
    for var in ("CKP_SPARK_MASTER", "CKP_SPARK_CONNECT_URL", "CKP_SPARK_SHUFFLE_PARTITIONS", "CKP_SPARK_SCRATCH_DIR"):
        monkeypatch.delenv(var, raising=False)
    yield build_demo_warehouse(settings, scratch_db_factory(), scratch_db_factory(), tmp_path, persons=PERSONS)
    stop_session()


def _state(url: str) -> dict:
    with psycopg.connect(url) as conn:
        return {
            "clusters": set(conn.execute("select source_system, source_record_id, customer_id, match_rule "
                                         "from identity.record_clusters").fetchall()),
            "pairs": {r[:5]: r[5] for r in conn.execute(
                "select source_system_l, source_record_id_l, source_system_r, source_record_id_r, match_rule, "
                "match_probability from identity.match_pairs").fetchall()},
            "unresolved": set(conn.execute("select source_system, source_record_id, reason "
                                           "from identity.unresolved").fetchall()),
            "junk": set(conn.execute("select identifier_kind, identifier_value_hash, distinct_records "
                                     "from identity.junk_values").fetchall()),
            "merges": set(conn.execute("select old_customer_id, new_customer_id "
                                       "from identity.customer_id_merges").fetchall()),
            # the records the latest run decided about (their resolved_at is its time: the customer-level models
            # recompute their customers)
            "decided": set(conn.execute("select source_system, source_record_id from identity.record_clusters "
                                        "where resolved_at = (select max(resolved_at) from identity.record_clusters)"
                                        ).fetchall()),
        }


def _reset(url: str) -> None:
    with psycopg.connect(url) as conn:
        for t in IDENTITY_TABLES:
            conn.execute(f"delete from identity.{t}")


def _save(url: str) -> None:
    with psycopg.connect(url) as conn:
        for t in SAVED_TABLES:
            conn.execute(f"create table identity.saved_{t} as select * from identity.{t}")


def _restore(url: str) -> None:
    with psycopg.connect(url) as conn:
        for t in SAVED_TABLES:
            conn.execute(f"delete from identity.{t}")
            conn.execute(f"insert into identity.{t} select * from identity.saved_{t}")


def _floor(s, url: str) -> str:
    m = evaluation_metrics(s, url=url)
    report = f"precision {m['precision']:.4f} recall {m['recall']:.4f} F1 {m['f1']:.4f}"
    # the demo's floors: precision as test_identity_accuracy.py holds it; F1 a little lower, as a few missed
    # pairs weigh more among this small demo's (0.9888 at 120 persons: 0.99 is held at 800 persons there)
    assert m["precision"] >= 0.995, report
    assert m["f1"] >= 0.985, report
    return report


def _assert_jvm_ended_and_scratch_gone(scratch) -> None:
    java = [p for p in psutil.Process().children(recursive=True) if "java" in p.name().lower()]
    assert not java, f"a Spark JVM outlived its identity run: {java}"
    assert scratch.is_dir() and not list(scratch.iterdir()), list(scratch.iterdir())


def _assert_same(on_spark: dict, on_duckdb: dict, spark_stats: dict, duck_stats: dict, keys: tuple) -> None:
    assert on_spark["clusters"] == on_duckdb["clusters"]  # the same customer ids for the same records
    # the same pairs by the same rules; the EM-trained probabilities agree to float summation order (the two
    # engines add up the expectation steps in different orders: 0.9949 here is 0.9948 there)
    assert on_spark["pairs"].keys() == on_duckdb["pairs"].keys()
    for pair, p in on_duckdb["pairs"].items():
        assert on_spark["pairs"][pair] == pytest.approx(p, abs=2e-3), pair
    assert on_spark["unresolved"] == on_duckdb["unresolved"]
    assert on_spark["junk"] == on_duckdb["junk"]
    assert on_spark["merges"] == on_duckdb["merges"]
    assert on_spark["decided"] == on_duckdb["decided"]  # the same records resolved again (resolved_at)
    for key in keys:
        assert spark_stats[key] == duck_stats[key], key


def test_spark_backend_gives_the_same_customers_as_duckdb(demo_warehouse, tmp_path):
    s = demo_warehouse
    url = s.warehouse_url
    with psycopg.connect(url) as conn:
        n = conn.execute("select count(*) from intermediate.int_identity_candidates").fetchone()[0]
    assert n > 4 * PERSONS
    base = load_config()
    exhaustive = dataclasses.replace(base.probabilistic, u_max_pairs=float(n * (n - 1) // 2 + 1))
    duck = dataclasses.replace(base, probabilistic=exhaustive)
    scratch = tmp_path / "spark-scratch"
    spark = dataclasses.replace(base, probabilistic=dataclasses.replace(exhaustive, backend="spark"),
                                spark=dataclasses.replace(base.spark, master="local[2]", shuffle_partitions=2,
                                                          scratch_dir=str(scratch), conf=LOCAL_TEST_SPARK_CONF))
    assert spark.backend == "spark" and duck.backend == "duckdb"

    t0 = time.monotonic()
    duck_stats = store.run(url, config=duck)
    duck_s = time.monotonic() - t0
    on_duckdb = _state(url)
    duck_report = _floor(s, url)
    # the demo at this size still has every kind of decision the comparison is about
    assert duck_stats["customers"] < 0.8 * duck_stats["resolved_records"], duck_stats  # records merged
    assert duck_stats["probabilistic_pairs"] > 0 and duck_stats["unresolved"] > 0, duck_stats
    assert duck_stats["junk_values"] > 0 and len(duck_stats["deterministic_edges_by_rule"]) >= 3, duck_stats

    _reset(url)
    t0 = time.monotonic()
    spark_stats = store.run(url, config=spark)
    spark_s = time.monotonic() - t0
    on_spark = _state(url)
    spark_report = _floor(s, url)
    print(f"identity on {n} demo records: duckdb {duck_s:.1f}s ({duck_report}); spark local[2] {spark_s:.1f}s "
          f"({spark_report}); spark steps {spark_stats['probabilistic'].get('spark_seconds')}")
    _assert_jvm_ended_and_scratch_gone(scratch)

    assert spark_stats["probabilistic"]["trained"] and duck_stats["probabilistic"]["trained"]
    assert "spark_seconds" in spark_stats["probabilistic"]  # the Spark path ran, not a fallback
    _assert_same(on_spark, on_duckdb, spark_stats, duck_stats,
                 ("records", "customers", "deterministic_edges", "probabilistic_pairs", "unresolved",
                  "junk_values", "oversized_clusters", "conflicting_edges", "new_customer_ids"))
    assert len(on_spark["clusters"]) > 0.9 * n

    # incremental, from one earlier state on both backends: a tenth of the records changed since they were
    # resolved (they are re-matched, Splink's predict_within/between included), and one customer's records
    # were split between two ids (the run must merge them back, recording the merge)
    with psycopg.connect(url) as conn:
        conn.execute("update identity.record_clusters set resolved_at = timestamptz '2000-01-01 00:00+00' "
                     "where abs(hashtext(source_record_id)) % 10 = 0")
        split = conn.execute(
            "select customer_id from identity.record_clusters where match_rule <> 'probabilistic' "
            "group by customer_id having count(*) >= 3 order by customer_id limit 1").fetchone()[0]
        conn.execute("update identity.record_clusters set customer_id = 'C999000001' where ctid = "
                     "(select max(ctid) from identity.record_clusters where customer_id = %s)", (split,))
        # and a lone record was held by another customer (changed since, so re-matched): it leaves that customer
        # for an id of its own, and the customer it left, though none of its own records moved, is decided again
        loner = conn.execute("select source_system, source_record_id from identity.record_clusters "
                             "where match_rule = 'singleton' and abs(hashtext(source_record_id)) % 10 <> 0 and "
                             "customer_id in (select customer_id from identity.record_clusters group by customer_id "
                             "having count(*) = 1) order by 1, 2 limit 1").fetchone()
        host = conn.execute("select customer_id from identity.record_clusters where match_rule <> 'probabilistic' "
                            "and customer_id <> %s and abs(hashtext(source_record_id)) %% 10 <> 0 group by customer_id "
                            "having count(*) >= 3 order by customer_id limit 1", (split,)).fetchone()[0]
        host_records = set(conn.execute("select source_system, source_record_id from identity.record_clusters "
                                        "where customer_id = %s", (host,)).fetchall())
        conn.execute("update identity.record_clusters set customer_id = %s, resolved_at = timestamptz "
                     "'2000-01-01 00:00+00' where (source_system, source_record_id) = (%s, %s)", (host, *loner))
    _save(url)
    duck_inc = store.run(url, mode="incremental", config=duck)
    on_duckdb = _state(url)
    _restore(url)
    spark_inc = store.run(url, mode="incremental", config=spark)
    on_spark = _state(url)
    _assert_jvm_ended_and_scratch_gone(scratch)
    assert duck_inc["mode"] == spark_inc["mode"] == "incremental"
    assert 0 < spark_inc["new_records"] < n and spark_inc["probabilistic"]["eligible_new_records"] > 0
    assert (split, "C999000001") in on_duckdb["merges"] or ("C999000001", split) in on_duckdb["merges"]
    assert host not in {m for pair in on_duckdb["merges"] for m in pair}
    leaves = {(k[0], k[1]): k[2] for k in on_duckdb["clusters"]}
    assert leaves[loner] != host and host_records <= on_duckdb["decided"]
    assert all(leaves[k] == host for k in host_records)
    _assert_same(on_spark, on_duckdb, spark_inc, duck_inc,
                 ("records", "new_records", "customers", "probabilistic_pairs", "merges", "new_customer_ids",
                  "split_records", "unresolved", "junk_values"))
