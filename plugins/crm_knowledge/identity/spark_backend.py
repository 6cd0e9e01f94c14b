"""The identity stage as Spark jobs (`backend: spark` in config/identity.yml).

Same answers as the in-process backend by construction, not by a second implementation: every decision is
taken by the same functions, run on Spark partitions that hold everything those functions look at.

* **Preparation**: :func:`crm_knowledge.identity.prepare.prepare` on each Arrow batch (``mapInPandas``); it is
  per record, so batches give the rows one whole frame would. The record number (`rid`, the row position the
  in-process backend gives) is assigned before staging and carried through.
* **Junk detection**: identifier values are repartitioned by (kind, value), so every record carrying one value is
  in one partition, where :func:`crm_knowledge.identity.junk.detect_junk` counts it; junk values are then nulled
  with :func:`~crm_knowledge.identity.junk.remove_junk` per batch.
* **Deterministic links**: rows sharing a value (groups of two or more, found with a Spark aggregation) are
  repartitioned by the value and linked with the deterministic module's own star and name-guard functions; the
  strongest rule per pair is kept with a Spark window.
* **Splink**: the same settings (:func:`crm_knowledge.identity.probabilistic.build_settings`) and training
  (:class:`~crm_knowledge.identity.probabilistic.ProbabilisticModel`) on Splink's SparkAPI; the predictions are
  explained, corroborated and vetoed per batch by the probabilistic module's functions.
* **Connected components**: Splink's clustering (iterative min-label propagation in Spark SQL), once over the
  hard edges (deterministic, and previous clusters when incremental) and once over all; the size guard
  (:func:`crm_knowledge.identity.clusters.guard_clusters`) then works on the two label vectors.

What comes back to the driver is what the shared assembly in :mod:`crm_knowledge.identity.resolve` needs: one
slim row per record (keys, flags), the kept edges and the label vectors; stable ids and merges keep their rules
(:mod:`crm_knowledge.identity.stable_ids`).

The candidates reach Spark as Parquet files in the session's private scratch directory (0700), streamed there
from the warehouse chunk by chunk by :mod:`crm_knowledge.identity.staging` (store.run; the driver never holds all
of them), not through the JVM gateway row by row; intermediate results are checkpointed to Parquet there too.
A caller of resolve() that already holds a frame has it written to one file.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd

from crm_knowledge.identity.clusters import _canonical, conflict_guard, guard_clusters, unique_values
from crm_knowledge.identity.config import IdentityConfig, identifier_column
from crm_knowledge.identity.deterministic import EDGE_COLUMNS, _guarded_edges, _star, rule_priority
from crm_knowledge.identity.junk import detect_junk, remove_junk
from crm_knowledge.identity.prepare import CANDIDATE_COLUMNS, KEY, prepare
from crm_knowledge.identity.probabilistic import (
    PAIR_COLUMNS,
    ProbabilisticModel,
    _corroborated,
    _dedupe,
    _veto,
    empty_pairs,
    model_frame,
    optional_columns,
    pairs_with_explanations,
)
from crm_knowledge.identity.resolve import Matching, _previous_edges, record_flags
from crm_knowledge.identity.spark_session import db_api as spark_db_api
from crm_knowledge.identity.spark_session import scratch_dir, spark_session
from crm_knowledge.identity.staging import StagedCandidates

log = logging.getLogger(__name__)

#: prepared columns that are not strings in Spark (all others are)
_TYPED = {"rid": "bigint", "has_name": "boolean", "seen_at": "timestamp", "name_tokens": "array<string>",
          "junk_kinds": "array<string>", "has_identifier": "boolean", "is_eligible": "boolean"}
JUNK_SCHEMA = ("identifier_kind string, identifier_value string, identifier_value_hash string, "
               "distinct_records bigint, reason string")
EDGE_SCHEMA = "rid_l bigint, rid_r bigint, match_rule string, match_score double"
PAIR_SCHEMA = "rid_l bigint, rid_r bigint, match_probability double, match_weight double, explanation string"


def _schema(columns: list[str]) -> str:
    return ", ".join(f"`{c}` {_TYPED.get(c, 'string')}" for c in columns)


def _prepared_columns(config: IdentityConfig) -> list[str]:
    """The columns prepare() yields (from an empty frame: the same function says), less the Python-only
    name_profile (rebuilt where the name guard needs it)."""
    empty = pd.DataFrame({c: pd.Series(dtype="object") for c in CANDIDATE_COLUMNS})
    return [c for c in prepare(empty, config).columns if c != "name_profile"]


def _arrow_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Text columns as plain object columns: pandas 3's Arrow-backed strings become multi-chunk arrays after a
    concat, which pyspark's pandas-to-Arrow conversion does not take."""
    for c in df.columns:
        if isinstance(df[c].dtype, pd.StringDtype) or df[c].dtype == object:
            df[c] = df[c].astype(object).where(df[c].notna(), None)
    return df


def _text(v) -> str | None:
    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
        return None
    return str(v)


# --- staging ---------------------------------------------------------------------------------------


def _stage(candidates: pd.DataFrame | StagedCandidates, config: IdentityConfig):
    """The candidates as a Spark DataFrame read from Parquet in the private scratch directory, with `rid` = row
    position (what prepare() numbers records by). Checks what prepare() checks on the whole.

    Staged candidates (:mod:`crm_knowledge.identity.staging`, what store.run passes) are read as they are; a
    frame (a caller of resolve() holding one already) is written to a file first."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if isinstance(candidates, StagedCandidates):
        columns = list(candidates.columns)
        paths = [str(f) for f in candidates.files]
    else:
        columns = list(candidates.columns)
        declared = [k.column for k in config.declared_identifiers if k.column in candidates.columns]
        staged = pd.DataFrame({c: [_text(v) for v in candidates[c]] for c in [*CANDIDATE_COLUMNS, *declared]
                               if c != "seen_at" and c in candidates.columns})
        if "seen_at" in candidates.columns:
            staged["seen_at"] = pd.to_datetime(candidates["seen_at"], errors="coerce",
                                               utc=True).reset_index(drop=True)
        staged["rid"] = np.arange(len(staged), dtype=np.int64)
        path = scratch_dir() / f"candidates-{time.monotonic_ns()}.parquet"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # personal data: owner only
        with os.fdopen(fd, "wb") as fh:
            pq.write_table(pa.Table.from_pandas(staged, preserve_index=False), fh)
        paths = [str(path)]
    missing = [c for c in CANDIDATE_COLUMNS if c not in columns]
    if missing:
        raise ValueError(f"identity candidates lack column(s) {missing}")
    declared = [k.column for k in config.declared_identifiers if k.column in columns]
    cols = [*CANDIDATE_COLUMNS, *declared]
    spark = spark_session(config.spark)
    sdf = spark.read.parquet(*paths).select(*cols, "rid")
    from pyspark.sql import functions as F

    if sdf.where(F.col("source_system").isNull() | F.col("source_record_id").isNull()).limit(1).count():
        raise ValueError("identity candidates have null source_system or source_record_id")
    dup = sdf.groupBy(*KEY).count().where("count > 1").limit(5).collect()
    if dup:
        raise ValueError(f"identity candidates are not unique on {KEY}: "
                         f"{[{k: r[k] for k in KEY} for r in dup]}")
    return sdf


def _checkpoint(sdf, name: str):
    """Materialise `sdf` as Parquet in the scratch directory: later steps read it instead of re-running the
    Python functions that produced it."""
    path = scratch_dir() / f"{name}-{time.monotonic_ns()}.parquet"
    sdf.write.mode("overwrite").parquet(str(path))
    return sdf.sparkSession.read.parquet(str(path))


# --- steps -----------------------------------------------------------------------------------------


def _prepare(cand, config: IdentityConfig):
    columns = _prepared_columns(config)

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for part in batches:
            rid = part["rid"].to_numpy(dtype=np.int64)
            p = prepare(part.drop(columns="rid"), config)
            p["rid"] = rid
            p["name_tokens"] = [sorted(t) for t in p["name_tokens"]]
            yield _arrow_safe(p[columns])

    return _checkpoint(cand.mapInPandas(run, _schema(columns)), "prepared")


def _junk(prepared, config: IdentityConfig) -> pd.DataFrame:
    """junk.detect_junk over partitions holding every record of a value (repartitioned by kind and value)."""
    from pyspark.sql import functions as F

    kinds = [(k, identifier_column(k)) for k in config.kinds if identifier_column(k) in prepared.columns]
    if not kinds:
        return detect_junk(pd.DataFrame(columns=["rid", "name_tokens"]), config)
    long = None
    for kind, col in kinds:
        part = prepared.where(F.col(col).isNotNull()).select(
            F.lit(kind).alias("kind"), F.col(col).alias("value"), "rid", "name_tokens")
        long = part if long is None else long.unionByName(part)
    columns = {kind: col for kind, col in kinds}

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        rows = [b for b in batches if len(b)]
        if not rows:
            return
        part = pd.concat(rows, ignore_index=True)
        for kind, grp in part.groupby("kind", sort=True):
            frame = pd.DataFrame({columns[kind]: grp["value"].to_numpy(dtype=object),
                                  "rid": grp["rid"].to_numpy(dtype=np.int64),
                                  "name_tokens": [frozenset(t) for t in grp["name_tokens"]]})
            found = detect_junk(frame, config)
            if len(found):
                yield _arrow_safe(found)

    found = long.repartition("kind", "value").mapInPandas(run, JUNK_SCHEMA).toPandas()
    order = {k: i for i, (k, _) in enumerate(kinds)}
    found["distinct_records"] = found["distinct_records"].astype(int)
    # the in-process order: by kind as configured, deny-list values before shared ones, values sorted
    found = found.assign(_k=found["identifier_kind"].map(order), _r=found["reason"] != "deny_list")
    found = found.sort_values(["_k", "_r", "identifier_value"]).drop(columns=["_k", "_r"]).reset_index(drop=True)
    for c in ("identifier_kind", "identifier_value", "identifier_value_hash", "reason"):
        found[c] = found[c].astype(object)
    return found


def _clean(prepared, junk: pd.DataFrame, config: IdentityConfig):
    """junk.remove_junk per batch, plus the per-record flags of resolve.record_flags."""
    columns = [*prepared.columns, "junk_kinds", "has_identifier", "is_eligible"]

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for part in batches:
            out = remove_junk(part, junk)
            flags = record_flags(out, config)
            out["has_identifier"] = flags["has_identifier"].to_numpy()
            out["is_eligible"] = flags["is_eligible"].to_numpy()
            out["junk_kinds"] = [list(t) for t in out["junk_kinds"]]
            yield _arrow_safe(out[columns])

    return _checkpoint(prepared.mapInPandas(run, _schema(columns)), "clean")


def _deterministic(clean, config: IdentityConfig):
    """Edges between records sharing a value: deterministic.py's star and name guard per value group."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    guard = set(config.deterministic.name_guard)
    parts = []
    jobs = [(kind, identifier_column(kind)) for kind in config.kinds] + [("customer_ref", "cref_key")]
    for kind, col in jobs:
        if col not in clean.columns:
            continue
        others = [identifier_column(k) for k in sorted(guard) if identifier_column(k) != col] \
            if kind in guard else []
        needed = [col, "rid", "source_system", *others]
        if kind in guard:
            needed += [c for c in CANDIDATE_COLUMNS if c not in needed]
        rows = (clean.where(F.col(col).isNotNull()).select(*needed)
                .withColumn("_n", F.count("*").over(Window.partitionBy(col))).where("_n > 1").drop("_n"))
        parts.append(rows.repartition(col).mapInPandas(_edges_of_groups(kind, col, others, config), EDGE_SCHEMA))
    edges = parts[0]
    for p in parts[1:]:
        edges = edges.unionByName(p)
    priority = F.create_map(*[x for i, r in enumerate(rule_priority(config)) for x in (F.lit(r), F.lit(i))])
    lo, hi = F.least("rid_l", "rid_r"), F.greatest("rid_l", "rid_r")
    edges = edges.select(lo.alias("rid_l"), hi.alias("rid_r"), "match_rule", "match_score")
    best = Window.partitionBy("rid_l", "rid_r").orderBy(priority[F.col("match_rule")])
    edges = edges.withColumn("_i", F.row_number().over(best)).where("_i = 1").drop("_i")
    return _checkpoint(edges, "deterministic")


def _edges_of_groups(kind: str, col: str, others: list[str], config: IdentityConfig):
    guarded = kind in config.deterministic.name_guard

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        rows = [b for b in batches if len(b)]
        if not rows:
            return
        part = pd.concat(rows, ignore_index=True)
        if kind == "customer_ref":
            yield _arrow_safe(_star(part[col], part["rid"], kind, centre_first=part["source_system"] == "orders"))
        elif not guarded:
            yield _arrow_safe(_star(part[col], part["rid"], kind))
        else:
            # the name profiles the guard compares: prepare()'s, from the (already normalised) name columns
            names = prepare(part[CANDIDATE_COLUMNS].astype(object).where(part[CANDIDATE_COLUMNS].notna(), None))
            part["name_profile"] = names["name_profile"].to_numpy()
            part["first_key"] = names["first_key"].to_numpy()
            for c in [col, *others]:
                part[c] = part[c].astype(object).where(part[c].notna(), None)
            yield _arrow_safe(_guarded_edges(part, col, kind, config)[EDGE_COLUMNS].copy())

    return run


def _probabilistic(clean, is_new: np.ndarray | None, config: IdentityConfig):
    """Splink on Spark with the in-process model; returns (pairs sdf or None, info)."""
    from pyspark.sql import functions as F

    elig = clean.where("is_eligible")
    n_elig = elig.count()
    info: dict = {"eligible_records": n_elig, "trained": False, "training_steps": []}
    new_rids = None
    if is_new is not None:
        spark = clean.sparkSession
        new_rids = spark.createDataFrame(pd.DataFrame({"rid": np.flatnonzero(is_new).astype(np.int64)}))
        n_new = elig.join(new_rids, "rid").count()
        info["eligible_new_records"] = n_new
        if n_new == 0:
            return None, info
    if not config.probabilistic.enabled or n_elig < 2:
        return None, info
    # optional comparisons: optional_columns() on one row of the first non-null value of every column
    firsts = elig.agg(*[F.first(c, ignorenulls=True).alias(c) for c in elig.columns]).toPandas()
    optional = optional_columns(firsts.astype(object).where(firsts.notna(), None), config)
    cols = list(model_frame(pd.DataFrame({c: pd.Series(dtype="object") for c in elig.columns}), optional).columns)
    mf = elig.select(F.col("rid").alias("unique_id"), *cols[1:])
    model = ProbabilisticModel(mf, config, optional)
    threshold = config.probabilistic.match_threshold
    try:
        inference = model.linker.inference
        if is_new is None:
            predictions = [inference.predict(threshold_match_probability=threshold, warning_mode="never")]
        else:
            model._ensure_tf()
            new_mf = mf.join(new_rids.withColumnRenamed("rid", "unique_id"), "unique_id")
            old_mf = mf.join(new_rids.withColumnRenamed("rid", "unique_id"), "unique_id", "left_anti")
            predictions = []
            if n_new >= 2:
                predictions.append(inference.predict_within(model.register(new_mf), warning_mode="never",
                                                            threshold_match_probability=threshold))
            if n_elig - n_new > 0:
                predictions.append(inference.predict_between(model.register(new_mf), model.register(old_mf),
                                                             threshold_match_probability=threshold,
                                                             warning_mode="never"))
        labels = model._level_labels()
        nid = clean.select("rid", "national_id")
        pairs = None
        for pred in predictions:
            p = _explained(pred.as_spark_dataframe(), nid, labels, config)
            pairs = p if pairs is None else pairs.unionByName(p)
        pairs = _checkpoint(pairs, "probabilistic")
        for pred in predictions:
            pred.drop_table_from_database_and_remove_from_cache()
        info.update(trained=model.training.trained, training_steps=model.training.steps)
        info["model"] = {"parameters": model.parameters(), "splink_model": model.model_json()}
    finally:
        model.close()
    return pairs, info


def _explained(pred, nid, labels: dict, config: IdentityConfig):
    """Splink's predictions -> PAIR_COLUMNS, through probabilistic.py's explanation, corroboration and veto."""
    from pyspark.sql import functions as F

    keep = ["unique_id_l", "unique_id_r", "match_probability", "match_weight",
            *(c for c in pred.columns if c.startswith(("gamma_", "mw_")))]
    pred = (pred.select(*keep)
            .join(nid.select(F.col("rid").alias("unique_id_l"), F.col("national_id").alias("_nid_l")), "unique_id_l")
            .join(nid.select(F.col("rid").alias("unique_id_r"), F.col("national_id").alias("_nid_r")), "unique_id_r"))

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for b in batches:
            if not len(b):
                continue
            pairs = _corroborated(_dedupe(pairs_with_explanations(b, labels)), config)
            ids = pd.concat([pd.DataFrame({"rid": b["unique_id_l"].to_numpy(), "national_id": b["_nid_l"].to_numpy()}),
                             pd.DataFrame({"rid": b["unique_id_r"].to_numpy(), "national_id": b["_nid_r"].to_numpy()})])
            ids["national_id"] = ids["national_id"].astype(object).where(ids["national_id"].notna(), None)
            yield _arrow_safe(_veto(pairs, ids.drop_duplicates("rid"), config)[PAIR_COLUMNS].copy())

    return pred.mapInPandas(run, PAIR_SCHEMA)


def _components(nodes, edges, config: IdentityConfig, n: int) -> np.ndarray:
    """Canonical component label per rid (clusters._canonical), from Splink's clustering on Spark."""
    from splink.clustering import cluster_pairwise_predictions_at_threshold

    api = spark_db_api(config.spark)
    cc = cluster_pairwise_predictions_at_threshold(nodes, edges, api, node_id_column_name="rid",
                                                   edge_id_column_name_left="rid_l",
                                                   edge_id_column_name_right="rid_r")
    rep = cc.as_spark_dataframe().select("rid", "cluster_id").toPandas()
    cc.drop_table_from_database_and_remove_from_cache()
    if len(rep) != n or rep["rid"].nunique() != n:
        raise RuntimeError(f"identity (spark): clustering returned {len(rep)} labels for {n} records")
    out = np.empty(n, dtype=np.int64)
    out[rep["rid"].to_numpy(dtype=np.int64)] = rep["cluster_id"].to_numpy(dtype=np.int64)
    return _canonical(out)


def _to_pandas_edges(sdf, columns: list[str]) -> pd.DataFrame:
    df = sdf.orderBy("rid_l", "rid_r").toPandas()
    df = df[columns].reset_index(drop=True)
    df["rid_l"] = df["rid_l"].astype("int64")
    df["rid_r"] = df["rid_r"].astype("int64")
    for c in df.columns:
        if c in ("match_rule", "explanation"):
            df[c] = df[c].astype(object)
    return df


def _records(clean) -> pd.DataFrame:
    """The slim per-record frame the shared assembly needs (resolve.Matching.records), in rid order."""
    df = clean.select(*KEY, "rid", "seen_at", "junk_kinds", "has_identifier", "is_eligible").orderBy("rid").toPandas()
    for c in KEY:
        df[c] = df[c].astype(object)
    df["rid"] = df["rid"].astype("int64")
    seen = pd.to_datetime(df["seen_at"], errors="coerce")
    df["seen_at"] = seen.dt.tz_localize("UTC") if seen.dt.tz is None else seen.dt.tz_convert("UTC")
    df["junk_kinds"] = pd.Series([tuple(t) if t is not None else () for t in df["junk_kinds"]], dtype=object)
    df["has_identifier"] = df["has_identifier"].astype(bool)
    df["is_eligible"] = df["is_eligible"].astype(bool)
    if not np.array_equal(df["rid"].to_numpy(), np.arange(len(df))):
        raise RuntimeError("identity (spark): record numbers are not 0..n-1 after preparation")
    return df


def match_records_on_spark(candidates: pd.DataFrame | StagedCandidates, is_new: np.ndarray | None,
                           previous: pd.DataFrame | None, config: IdentityConfig) -> Matching:
    """:func:`crm_knowledge.identity.resolve.match_records` as Spark jobs (see the module docstring)."""
    from pyspark.sql import functions as F

    t0 = time.monotonic()
    timings: dict[str, float] = {}

    def lap(step: str) -> None:
        timings[step] = round(time.monotonic() - t0 - sum(timings.values()), 2)

    spark_session(config.spark)
    cand = _stage(candidates, config)
    n = candidates.rows if isinstance(candidates, StagedCandidates) else len(candidates)
    prepared = _prepare(cand, config)
    lap("prepare")
    junk = _junk(prepared, config)
    clean = _clean(prepared, junk, config)
    lap("junk")
    det_sdf = _deterministic(clean, config)
    det = _to_pandas_edges(det_sdf, EDGE_COLUMNS)
    det["match_score"] = det["match_score"].astype(float)
    lap("deterministic")
    if len(det):
        log.info("deterministic edges: %s", det["match_rule"].value_counts().to_dict())
    records = _records(clean)
    extra = _previous_edges(records, is_new, previous) if is_new is not None else None

    prob_sdf, prob_info = _probabilistic(clean, is_new, config)
    model = prob_info.pop("model", None)
    lap("splink")

    spark = clean.sparkSession
    nodes = clean.select("rid")
    hard_sdf = det_sdf.select("rid_l", "rid_r")
    if extra is not None and len(extra):
        hard_sdf = hard_sdf.unionByName(spark.createDataFrame(extra[["rid_l", "rid_r"]].astype("int64")))
    hard_labels = _components(nodes, hard_sdf, config, n)
    prob = empty_pairs()
    labels = hard_labels
    if prob_sdf is not None:
        # probabilistic matching is for records that share no strong identifier with each other
        hl = spark.createDataFrame(pd.DataFrame({"rid": np.arange(n, dtype=np.int64), "h": hard_labels}))
        prob_sdf = (prob_sdf.join(hl.select(F.col("rid").alias("rid_l"), F.col("h").alias("h_l")), "rid_l")
                    .join(hl.select(F.col("rid").alias("rid_r"), F.col("h").alias("h_r")), "rid_r")
                    .where("h_l != h_r").drop("h_l", "h_r"))
        prob_sdf = _checkpoint(prob_sdf, "probabilistic-kept")
        prob = _to_pandas_edges(prob_sdf, PAIR_COLUMNS)
    conflicting, kept = 0, prob
    if len(prob):
        # the conflict guard (clusters.conflict_guard) on the driver, over the edges it already holds
        unique_cols = [k.column for k in config.identifiers if k.unique_per_person]
        present = [c for c in unique_cols if c in clean.columns]
        values = clean.select("rid", *present).orderBy("rid").toPandas() if present else pd.DataFrame()
        # (like build_clusters, it only decides the clusters: Matching keeps every pair, as on DuckDB)
        kept, conflicting = conflict_guard(n, [e for e in (det, extra) if e is not None and len(e)], prob,
                                           unique_values(values, config) if present else [])
        if len(kept):
            kept_sdf = spark.createDataFrame(kept[["rid_l", "rid_r"]].astype("int64"))
            labels = _components(nodes, hard_sdf.unionByName(kept_sdf), config, n)
    clusters = guard_clusters(labels, hard_labels, kept["rid_l"].to_numpy(dtype=np.int64),
                              config.max_cluster_size, conflicting)
    lap("clusters")
    prob_info["spark_seconds"] = timings
    log.info("identity (spark): %d records, steps %s", n, timings)
    return Matching(records, junk, det, prob, prob_info, model, extra, clusters)
