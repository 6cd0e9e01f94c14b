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

* **Assembly** (:func:`assemble_on_spark`, the rules of :func:`crm_knowledge.identity.resolve.assemble`): usable
  records, each record's strongest kept rule, match pairs and unresolved records as Spark jobs; stable ids by
  :func:`crm_knowledge.identity.stable_ids.ids_of_clusters` (the rules of assign_customer_ids) on the counts of old
  ids per cluster that Spark aggregates. The three per-record tables are written by Spark as Parquet and streamed
  into the warehouse with COPY, a record batch at a time (:class:`crm_knowledge.identity.staging.StagedResult`).

What the driver holds per record is numbers: the cluster label vectors (8 bytes a record each), the new-or-changed
flags, the kept probabilistic pairs' ends and probabilities for the conflict guard, and the values of
unique-per-person identifiers of the records that have one; per cluster, the customer ids. No record's keys,
names or edges' explanations pass through it.

The candidates reach Spark as Parquet files in the session's private scratch directory (0700), streamed there
from the warehouse chunk by chunk by :mod:`crm_knowledge.identity.staging` (store.run; the driver never holds all
of them), not through the JVM gateway row by row, and so does the previous resolution (staging.stage_previous);
intermediate results are checkpointed to Parquet there too. A caller of resolve() that already holds a frame has
it written to one file, and gets the result tables back as frames.
"""

from __future__ import annotations

import functools
import logging
import operator
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from crm_knowledge.identity.clusters import ClusterResult, _canonical, conflict_guard, guard_clusters, unique_values
from crm_knowledge.identity.config import IdentityConfig, identifier_column
from crm_knowledge.identity.deterministic import EDGE_COLUMNS, _guarded_edges, _star, rule_priority
from crm_knowledge.identity.explanations import score_columns, scored_pairs, with_explanations
from crm_knowledge.identity.junk import detect_junk, remove_junk
from crm_knowledge.identity.prepare import CANDIDATE_COLUMNS, KEY, prepare
from crm_knowledge.identity.probabilistic import (
    PAIR_COLUMNS,
    ProbabilisticModel,
    guarded_pairs,
    model_frame,
    optional_columns,
)
from crm_knowledge.identity.resolve import (
    JUNK_COLUMNS,
    MERGE_COLUMNS,
    RECORD_CLUSTER_COLUMNS,
    UNRESOLVED_COLUMNS,
    ResolutionResult,
    record_flags,
    resolution_stats,
)
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
        labels = model.level_labels()
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
            *score_columns(pred.columns)]
    pred = (pred.select(*keep)
            .join(nid.select(F.col("rid").alias("unique_id_l"), F.col("national_id").alias("_nid_l")), "unique_id_l")
            .join(nid.select(F.col("rid").alias("unique_id_r"), F.col("national_id").alias("_nid_r")), "unique_id_r"))

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for b in batches:
            if not len(b):
                continue
            ids = pd.concat([pd.DataFrame({"rid": b["unique_id_l"].to_numpy(), "national_id": b["_nid_l"].to_numpy()}),
                             pd.DataFrame({"rid": b["unique_id_r"].to_numpy(), "national_id": b["_nid_r"].to_numpy()})])
            ids["national_id"] = ids["national_id"].astype(object).where(ids["national_id"].notna(), None)
            pairs = guarded_pairs(scored_pairs(b, labels), ids.drop_duplicates("rid"), config, labels)
            pairs = with_explanations(pairs, labels)
            yield _arrow_safe(pairs[PAIR_COLUMNS].copy())

    return pred.mapInPandas(run, PAIR_SCHEMA)


def _components(nodes, edges, config: IdentityConfig, n: int) -> np.ndarray:
    """Canonical component label per rid (clusters._canonical), from Splink's clustering on Spark."""
    from splink.clustering import cluster_pairwise_predictions_at_threshold

    api = spark_db_api(config.spark, iterative=True)
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


def _frame(spark, table, name: str):
    """A Spark DataFrame of a pandas frame or pyarrow table, through a private Parquet file in the scratch
    directory (not row by row through the JVM gateway)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, preserve_index=False)
    path = scratch_dir() / f"{name}-{time.monotonic_ns()}.parquet"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # personal data: owner only
    with os.fdopen(fd, "wb") as fh:
        pq.write_table(table, fh)
    return spark.read.parquet(str(path))


def _previous(spark, previous: pd.DataFrame | str | None):
    """The previous resolution (staging.PREVIOUS_COLUMNS, resolved_at in epoch microseconds) as a Spark
    DataFrame: the file store.run staged, or a frame a caller of resolve() holds."""
    from crm_knowledge.identity.staging import PREVIOUS_COLUMNS

    if previous is None:
        return None
    if isinstance(previous, pd.DataFrame):
        import pyarrow as pa

        prev = previous.drop_duplicates(KEY)
        text = {c: pa.array([_text(v) for v in prev[c]] if c in prev.columns else [None] * len(prev), pa.string())
                for c in PREVIOUS_COLUMNS[:4]}
        score = pd.to_numeric(prev["match_score"]) if "match_score" in prev.columns else pd.Series(np.nan,
                                                                                                   index=prev.index)
        at = (pd.to_datetime(prev["resolved_at"], utc=True) if "resolved_at" in prev.columns
              else pd.Series(pd.NaT, index=prev.index, dtype="datetime64[us, UTC]"))
        micros = pa.array(at.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[us]"), pa.timestamp("us"))
        table = pa.table({**text, "match_score": pa.array(score.to_numpy(dtype=float), pa.float64(), from_pandas=True),
                          "resolved_at": micros.cast(pa.int64())})
        return _frame(spark, table, "previous")
    return spark.read.parquet(str(previous))


def _star_of_labels(labels: np.ndarray) -> pd.DataFrame:
    """Edges joining every record to the first of its component: the same components as the edges that made
    `labels` (canonical), at 16 bytes a record, so the driver's guards need no edge frames."""
    n = len(labels)
    _, first = np.unique(labels, return_index=True)
    lo = first[labels].astype(np.int64)
    keep = lo != np.arange(n)
    return pd.DataFrame({"rid_l": lo[keep], "rid_r": np.flatnonzero(keep).astype(np.int64)})


def _unique_values(clean, config: IdentityConfig, n: int):
    """clusters.unique_values' input for the conflict guard: the unique-per-person values, fetched only for the
    records that have one (an object array of n entries, mostly None)."""
    from pyspark.sql import functions as F

    present = [k.column for k in config.identifiers if k.unique_per_person and k.column in clean.columns]
    if not present:
        return []
    have = clean.where(functools.reduce(operator.or_, [F.col(c).isNotNull() for c in present]))
    rows = have.select("rid", *present).toPandas()
    rid = rows["rid"].to_numpy(dtype=np.int64)
    columns = {}
    for c in present:
        columns[c] = np.full(n, None, dtype=object)
        columns[c][rid] = rows[c].astype(object).where(rows[c].notna(), None).to_numpy()
    return unique_values(pd.DataFrame(columns), config)


def match_records_on_spark(candidates: pd.DataFrame | StagedCandidates, is_new: np.ndarray | None,
                           previous, config: IdentityConfig) -> SparkMatching:
    """:func:`crm_knowledge.identity.resolve.match_records` as Spark jobs (see the module docstring): what it
    decided stays in Spark (DataFrames checkpointed to Parquet); the driver holds the label vectors.
    `previous`: the previous resolution (:func:`_previous`)."""
    from pyspark.sql import functions as F

    t0 = time.monotonic()
    timings: dict[str, float] = {}

    def lap(step: str) -> None:
        timings[step] = round(time.monotonic() - t0 - sum(timings.values()), 2)

    spark = spark_session(config.spark)
    cand = _stage(candidates, config)
    n = candidates.rows if isinstance(candidates, StagedCandidates) else len(candidates)
    prepared = _prepare(cand, config)
    lap("prepare")
    junk = _junk(prepared, config)
    clean = _clean(prepared, junk, config)
    lap("junk")
    det = _deterministic(clean, config)
    by_rule = {r["match_rule"]: int(r["count"]) for r in det.groupBy("match_rule").count().collect()}
    lap("deterministic")
    if by_rule:
        log.info("deterministic edges: %s", by_rule)
    prev = _previous(spark, previous)
    extra = None
    if is_new is not None:
        # resolve._previous_edges: existing records that shared a customer_id, joined to its first record
        flags = _frame(spark, pd.DataFrame({"rid": np.arange(n, dtype=np.int64), "is_new": is_new}), "is-new")
        ex = clean.select(*KEY, "rid").join(flags.where(~F.col("is_new")), "rid")
        if prev is not None:
            ex = ex.join(prev.select(*KEY, "customer_id"), KEY)
            from pyspark.sql import Window

            centre = F.min("rid").over(Window.partitionBy("customer_id"))
            extra = _checkpoint(ex.select(centre.alias("rid_l"), F.col("rid").alias("rid_r"))
                                .where("rid_l != rid_r"), "previous-edges")

    prob_sdf, prob_info = _probabilistic(clean, is_new, config)
    model = prob_info.pop("model", None)
    lap("splink")

    nodes = clean.select("rid")
    hard_sdf = det.select("rid_l", "rid_r")
    if extra is not None:
        hard_sdf = hard_sdf.unionByName(extra)
    hard_labels = _components(nodes, hard_sdf, config, n)
    labels, conflicting, kept_l = hard_labels, 0, np.zeros(0, dtype=np.int64)
    if prob_sdf is not None:
        # probabilistic matching is for records that share no strong identifier with each other
        hl = _frame(spark, pd.DataFrame({"rid": np.arange(n, dtype=np.int64), "h": hard_labels}), "hard-labels")
        prob_sdf = (prob_sdf.join(hl.select(F.col("rid").alias("rid_l"), F.col("h").alias("h_l")), "rid_l")
                    .join(hl.select(F.col("rid").alias("rid_r"), F.col("h").alias("h_r")), "rid_r")
                    .where("h_l != h_r").drop("h_l", "h_r"))
        prob_sdf = _checkpoint(prob_sdf, "probabilistic-kept")
        # the conflict guard (clusters.conflict_guard) on the driver, on the pairs' numbers only, with the hard
        # components as star edges (like build_clusters, it only decides the clusters: every pair is kept)
        prob = prob_sdf.select("rid_l", "rid_r", "match_probability").orderBy("rid_l", "rid_r").toPandas()
        if len(prob):
            kept, conflicting = conflict_guard(n, [_star_of_labels(hard_labels)], prob,
                                               _unique_values(clean, config, n))
            kept_l = kept["rid_l"].to_numpy(dtype=np.int64)
            if len(kept):
                kept_sdf = _frame(spark, kept[["rid_l", "rid_r"]].astype("int64"), "kept")
                labels = _components(nodes, hard_sdf.unionByName(kept_sdf), config, n)
        del prob
    clusters = guard_clusters(labels, hard_labels, kept_l, config.max_cluster_size, conflicting)
    lap("clusters")
    prob_info["spark_seconds"] = timings
    return SparkMatching(clean, junk, det, by_rule, prob_sdf, prob_info, model, extra, prev, clusters, timings)


@dataclass
class SparkMatching:
    """What the Spark matching decided, for :func:`assemble_on_spark`: the records and edges stay Spark
    DataFrames; junk values (few), the model and the cluster labels are on the driver."""

    clean: object                   # Spark DataFrame: prepared records, junk removed, record_flags' columns
    junk: pd.DataFrame              # junk.detect_junk's frame
    deterministic: object           # Spark DataFrame of deterministic.EDGE_COLUMNS
    deterministic_by_rule: dict
    probabilistic: object | None    # Spark DataFrame of PAIR_COLUMNS, without pairs inside one hard component
    prob_info: dict
    model: dict | None
    extra: object | None            # Spark DataFrame (rid_l, rid_r): incremental, previous clusters as hard edges
    previous: object | None         # Spark DataFrame of the previous resolution
    clusters: ClusterResult
    timings: dict


def _ends(edges, F):
    """(rid, match_rule, match_probability) of both ends of every edge."""
    cols = ["match_rule", "match_probability"]
    return (edges.select(F.col("rid_l").alias("rid"), *cols)
            .unionByName(edges.select(F.col("rid_r").alias("rid"), *cols)))


#: The result files' rows per file. The driver copies them into the warehouse a Parquet batch at a time
#: (staging.copy_parquet), but a batch is cut from a row group, which is decoded whole: a file of one shuffle
#: partition (250k match pairs at 1M customers, with their explanations) held about 0.7 GB on the driver, a
#: file of 50k rows about 0.45 GB (2M pairs of 0.7 KB, measured directly).
RESULT_WRITE_OPTIONS = {"maxRecordsPerFile": 50_000}


def assemble_on_spark(m: SparkMatching, is_new: np.ndarray | None, refreshed: np.ndarray | None,
                      config: IdentityConfig, retired_ids, t0: float) -> ResolutionResult:
    """:func:`crm_knowledge.identity.resolve.assemble` as Spark jobs, the same rules: usable records, stable ids
    (:func:`crm_knowledge.identity.stable_ids.ids_of_clusters` on counts aggregated by Spark), each record's
    strongest kept rule, match pairs, unresolved records. The three per-record tables are written by Spark to
    Parquet in the scratch directory (:class:`crm_knowledge.identity.staging.StagedResult`), which store.run
    streams into the warehouse with COPY; the driver holds what is per cluster (the ids).

    `refreshed`: per rid, re-resolved as new or changed (their resolved_at is the run's time)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from crm_knowledge.identity.resolve import (
        MATCH_PAIR_COLUMNS,
        REASON_JUNK_ONLY,
        REASON_NO_IDENTIFIER,
        _det_explanation,
    )
    from crm_knowledge.identity.stable_ids import format_id, ids_of_clusters, parse_id
    from crm_knowledge.identity.staging import StagedResult

    started = time.monotonic()
    clean, cl, prev = m.clean, m.clusters, m.previous
    spark = clean.sparkSession
    n = len(cl.labels)
    per_rid = pd.DataFrame({"rid": np.arange(n, dtype=np.int64), "cluster": cl.labels.astype(np.int64),
                            "is_new": is_new if is_new is not None else np.zeros(n, bool),
                            "refreshed": refreshed if refreshed is not None else np.zeros(n, bool)})
    rec = clean.select(*KEY, "rid", "seen_at", "junk_kinds", "has_identifier", "is_eligible").join(
        _frame(spark, per_rid, "labels"), "rid")

    # usable records: resolve.assemble's rule
    edge_sets = [e.select("rid_l", "rid_r") for e in (m.deterministic, m.probabilistic, m.extra) if e is not None]
    ends = edge_sets[0]
    for e in edge_sets[1:]:
        ends = ends.unionByName(e)
    linked = (ends.select(F.col("rid_l").alias("rid")).unionByName(ends.select(F.col("rid_r").alias("rid")))
              .distinct().withColumn("linked", F.lit(True)))
    rec = rec.join(linked, "rid", "left")
    if prev is not None:
        rec = rec.join(prev.select(*KEY, F.col("customer_id").alias("prev_id"), F.col("match_rule").alias("prev_rule"),
                                   F.col("match_score").alias("prev_score"),
                                   F.col("resolved_at").alias("prev_resolved_at")), KEY, "left")
    else:
        rec = rec.select("*", *[F.lit(None).cast(t).alias(c) for c, t in
                                (("prev_id", "string"), ("prev_rule", "string"), ("prev_score", "double"),
                                 ("prev_resolved_at", "bigint"))])
    prev_known = (~F.col("is_new") & F.col("prev_id").isNotNull()) if is_new is not None else F.lit(False)
    always = list(config.always_resolve_sources)
    usable = (F.col("has_identifier") | F.col("source_system").isin(always) if always else F.col("has_identifier"))
    usable = usable | F.coalesce(F.col("linked"), F.lit(False)) | F.col("is_eligible") | prev_known
    rec = _checkpoint(rec.withColumn("usable", usable), "assembly")
    ok = rec.where("usable")

    # stable ids: the rules of stable_ids on what they look at (counts of old ids per cluster, the clusters)
    counts = ok.where(F.col("prev_id").isNotNull()).groupBy(F.col("prev_id").alias("customer_id"), "cluster") \
        .count().withColumnRenamed("count", "n").toPandas()
    clusters = ok.select("cluster").distinct().toPandas()["cluster"].to_numpy(dtype=np.int64)
    prefix = config.id_prefix
    issued = [parse_id(x, prefix) for x in retired_ids]
    if prev is not None:
        number = F.regexp_extract("customer_id", r"^\Q" + prefix + r"\E([0-9]+)$", 1)
        top = prev.select(F.max(F.when(number != "", number.cast("decimal(38,0)")))).first()[0]
        issued.append(int(top) if top is not None else None)
    high = max([x for x in issued if x is not None], default=0)
    assigned, merges, new_ids, split_records = ids_of_clusters(counts, clusters, high, prefix=prefix,
                                                               digits=config.id_digits)
    import pyarrow as pa

    ids = _frame(spark, pa.table({"cluster": pa.array(list(assigned), pa.int64()),
                                  "customer_id": pa.array(list(assigned.values()), pa.string())}), "customer-ids")
    highest = max((x for x in (parse_id(v, prefix) for v in assigned.values()) if x is not None), default=None)
    del counts, assigned

    # kept edges: both ends in the same final cluster
    lab = rec.select("rid", "cluster")
    explanation = F.create_map(*[x for r in rule_priority(config) for x in (F.lit(r), F.lit(_det_explanation(r)))])
    edges = m.deterministic.select("rid_l", "rid_r", "match_rule", F.lit(1.0).alias("match_probability"),
                                   F.lit(None).cast("double").alias("match_weight"),
                                   explanation[F.col("match_rule")].alias("explanation"))
    if m.probabilistic is not None:
        edges = edges.unionByName(m.probabilistic.select(
            "rid_l", "rid_r", F.lit("probabilistic").alias("match_rule"), "match_probability", "match_weight",
            "explanation"))

    def same_cluster(e):
        return (e.join(lab.select(F.col("rid").alias("rid_l"), F.col("cluster").alias("c_l")), "rid_l")
                .join(lab.select(F.col("rid").alias("rid_r"), F.col("cluster").alias("c_r")), "rid_r")
                .where("c_l = c_r").drop("c_l", "c_r"))

    edges = _checkpoint(same_cluster(edges), "kept-edges")
    rule_ends = _ends(edges, F)
    if m.extra is not None:
        prev_edges = same_cluster(m.extra).select("rid_l", "rid_r", F.lit("previous_cluster").alias("match_rule"),
                                                  F.lit(None).cast("double").alias("match_probability"))
        rule_ends = rule_ends.unionByName(_ends(prev_edges, F))

    # each record's strongest kept rule (resolve._record_rules), 'singleton' without one
    ranks = [*rule_priority(config), "previous_cluster", "probabilistic"]
    rank = F.create_map(*[x for i, r in enumerate(ranks) for x in (F.lit(r), F.lit(i))])
    best = Window.partitionBy("rid").orderBy(rank[F.col("match_rule")], F.col("match_probability").desc_nulls_last())
    rules = (rule_ends.withColumn("_i", F.row_number().over(best)).where("_i = 1")
             .select("rid", F.col("match_rule").alias("rule"),
                     F.coalesce("match_probability", F.lit(1.0)).alias("score")))
    attributed = ok.join(ids, "cluster")  # each usable record's customer id
    out = attributed.join(rules, "rid", "left")
    rule = F.coalesce("rule", F.lit("singleton"))
    score = F.coalesce("score", F.lit(1.0))
    if m.extra is not None:  # a record kept with its previous cluster keeps its previous rule and score
        carry = (rule == "previous_cluster") & F.col("prev_rule").isNotNull()
        rule, score = F.when(carry, F.col("prev_rule")).otherwise(rule), \
            F.when(carry, F.col("prev_score")).otherwise(score)
    # resolved_at: the previous one when the record kept its customer and was not re-resolved, and its customer
    # lost no record (moved or gone: store.resolved_at_column's rule); null = now
    stayed = F.col("prev_id") == F.col("customer_id")
    if prev is not None:
        had = prev.groupBy("customer_id").agg(F.count(F.lit(1)).alias("had"))
        # counted before the rules' join: `out` would compute the rules' window a second time for the count
        kept = attributed.where(stayed).groupBy("customer_id").agg(F.count(F.lit(1)).alias("kept"))
        lost = (had.join(kept, "customer_id", "left").where(F.coalesce("kept", F.lit(0)) < F.col("had"))
                .select("customer_id", F.lit(True).alias("lost_a_record")))
        out = out.join(lost, "customer_id", "left")
        stayed = stayed & F.col("lost_a_record").isNull()
    resolved_at = F.when(stayed & ~F.col("refreshed"), F.col("prev_resolved_at"))
    directory = scratch_dir() / f"result-{time.monotonic_ns()}"
    paths = {t: str(directory / t) for t in ("record_clusters", "match_pairs", "unresolved")}
    out.select(*KEY, "customer_id", rule.alias("match_rule"), score.alias("match_score"),
               resolved_at.alias("resolved_at")).write.options(**RESULT_WRITE_OPTIONS).parquet(paths["record_clusters"])
    keys_l = rec.select(F.col("rid").alias("rid_l"), *[F.col(k).alias(f"{k}_l") for k in KEY])
    keys_r = rec.select(F.col("rid").alias("rid_r"), *[F.col(k).alias(f"{k}_r") for k in KEY])
    edges.join(keys_l, "rid_l").join(keys_r, "rid_r").select(*MATCH_PAIR_COLUMNS) \
        .write.options(**RESULT_WRITE_OPTIONS).parquet(paths["match_pairs"])
    reason = F.when(F.size("junk_kinds") > 0, REASON_JUNK_ONLY).otherwise(REASON_NO_IDENTIFIER)
    rec.where("not usable").select(*KEY, reason.alias("reason"), F.unix_micros("seen_at").alias("seen_at")) \
        .write.options(**RESULT_WRITE_OPTIONS).parquet(paths["unresolved"])

    resolved = ok.count()
    n_pairs = edges.count()
    n_prob = m.probabilistic.count() if m.probabilistic is not None else 0
    junk_out = m.junk[JUNK_COLUMNS].reset_index(drop=True)
    m.timings["assemble"] = round(time.monotonic() - started, 2)
    stats = resolution_stats(
        is_new, n, cl, m.prob_info, t0, resolved_records=resolved, customers=len(clusters),
        deterministic_edges_by_rule=dict(m.deterministic_by_rule), probabilistic_pairs=n_prob, match_pairs=n_pairs,
        merges=len(merges), new_customer_ids=new_ids, kept_customer_ids=len(clusters) - new_ids,
        split_records=split_records, unresolved=n - resolved, junk_values=len(junk_out))
    log.info("identity (spark): %d records, %d customers, steps %s", n, len(clusters), m.timings)
    staged = StagedResult(paths["record_clusters"], paths["match_pairs"], paths["unresolved"],
                          format_id(highest, prefix, config.id_digits) if highest is not None else None)
    empty = {c: pd.DataFrame(columns=cols) for c, cols in
             (("rc", RECORD_CLUSTER_COLUMNS), ("mp", MATCH_PAIR_COLUMNS), ("un", UNRESOLVED_COLUMNS))}
    return ResolutionResult(empty["rc"], empty["mp"], merges[MERGE_COLUMNS].reset_index(drop=True), empty["un"],
                            junk_out, stats, m.model, None, staged)
