"""Identity resolution: source records -> customers (one customer_id per individual).

Pipeline (both modes): prepare (name keys) -> junk detection and removal -> deterministic edges ->
probabilistic pairs (Splink) for records not already linked by a strong identifier -> connected
components with a size guard -> stable customer ids. Records with no usable identifier go to
`unresolved` and get no customer_id.

Backends: the matching steps (:func:`match_records`, up to the clusters) run in this process (pandas, Splink on
DuckDB) or, with ``backend: spark`` in config/identity.yml, as Spark jobs
(:mod:`crm_knowledge.identity.spark_backend`); :func:`_run` is the one place that chooses. Both hand a
:class:`Matching` to the same assembly (usable records, stable ids, output tables).

Incremental mode (:func:`resolve_incremental`) differs from a full run in these cases only:

* earlier decisions are kept: records already sharing a customer_id stay together (their previous
  cluster is a hard edge), even if a full run would now split them (a value that became junk because new
  records pushed it over its share limit, a retrained model scoring an old pair lower, a changed record
  that used to bridge two groups);
* probabilistic pairs are only searched between new records and from new to existing records
  (``predict_within`` + ``predict_between``); two *existing* records in different customers are not
  re-scored, so a retrained model that would now link them does not (deterministic edges are always
  computed over all records, they are cheap);
* the model is trained on all eligible records, as in a full run, so parameters agree with a full
  run on the same data up to sampling of u (fixed seed) - borderline pairs can still differ.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from crm_knowledge.identity.clusters import ClusterResult, build_clusters, components, unique_values
from crm_knowledge.identity.config import IdentityConfig, load_config
from crm_knowledge.identity.deterministic import deterministic_edges, rule_priority
from crm_knowledge.identity.explanations import score_columns, with_explanations
from crm_knowledge.identity.junk import detect_junk, remove_junk
from crm_knowledge.identity.prepare import KEY, prepare
from crm_knowledge.identity.probabilistic import (
    eligible,
    probabilistic_pairs,
    probabilistic_pairs_incremental,
)
from crm_knowledge.identity.stable_ids import assign_customer_ids
from crm_knowledge.identity.staging import StagedCandidates, StagedResult

log = logging.getLogger(__name__)

RECORD_CLUSTER_COLUMNS = ["source_system", "source_record_id", "customer_id", "match_rule", "match_score"]
MATCH_PAIR_COLUMNS = ["source_system_l", "source_record_id_l", "source_system_r", "source_record_id_r",
                      "match_rule", "match_probability", "match_weight", "explanation"]
UNRESOLVED_COLUMNS = ["source_system", "source_record_id", "reason", "seen_at"]
JUNK_COLUMNS = ["identifier_kind", "identifier_value_hash", "distinct_records", "reason"]
MERGE_COLUMNS = ["old_customer_id", "new_customer_id"]

#: candidate columns no step after :func:`prepare` reads: their prepared forms (name keys and texts, city_key,
#: street_key, address_line2_key, email, phone, national_id) are what matching compares
PREPARATION_ONLY = ["first_name_norm", "last_name_norm", "full_name_norm", "city_norm", "street_norm",
                    "address_line2_norm", "email_norm", "phone_e164", "national_id_valid"]

REASON_NO_IDENTIFIER = "no usable identifier"
REASON_JUNK_ONLY = "no usable identifier (junk values only)"


@dataclass
class ResolutionResult:
    record_clusters: pd.DataFrame   # RECORD_CLUSTER_COLUMNS
    match_pairs: pd.DataFrame       # MATCH_PAIR_COLUMNS (probabilistic rows: explanation from scores, see below)
    merges: pd.DataFrame            # MERGE_COLUMNS
    unresolved: pd.DataFrame        # UNRESOLVED_COLUMNS
    junk_values: pd.DataFrame       # JUNK_COLUMNS (hashes only, no values)
    stats: dict = field(default_factory=dict)
    #: the trained probabilistic model of the run: {"parameters": PARAMETER_COLUMNS frame, "splink_model":
    #: Splink's settings dict}; None when no model was trained (too few records, probabilistic disabled)
    model: dict | None = None
    #: every record's prepared blocking keys, comparison columns and identifiers (:func:`stored_columns`), what
    #: the daily run keeps in the warehouse (identity/daily.py); None on the Spark backend
    prepared: pd.DataFrame | None = None
    #: on the Spark backend (store.run): record_clusters, match_pairs and unresolved as Parquet files Spark wrote,
    #: which write_result streams into the warehouse (the three frames above are then empty)
    staged: StagedResult | None = None
    #: the levels of the probabilistic pairs' comparisons (explanations.Labels): match_pairs' probabilistic rows
    #: carry their levels and weights, and get their explanation text from them as they are written
    #: (:meth:`explained_match_pairs`, store.write_result, chunk by chunk); None when there are none
    pair_labels: dict | None = None

    def explained_match_pairs(self, start: int = 0, stop: int | None = None) -> pd.DataFrame:
        """Rows `start` to `stop` of match_pairs (MATCH_PAIR_COLUMNS), each with its explanation."""
        return with_explanations(self.match_pairs.iloc[start:stop], self.pair_labels)[MATCH_PAIR_COLUMNS]


def resolve(candidates: pd.DataFrame, previous: pd.DataFrame | None = None,
            config: IdentityConfig | None = None, *, retired_ids: Iterable[str] = ()) -> ResolutionResult:
    """Full run over all `candidates` (columns of intermediate.int_identity_candidates).

    `previous`: the previous identity.record_clusters (at least source_system, source_record_id,
    customer_id) for stable ids; `retired_ids`: ids issued before that must not be reissued.
    """
    config = config or load_config()
    return _run(candidates, None, previous, config, retired_ids)


def resolve_incremental(new_candidates: pd.DataFrame, existing_candidates: pd.DataFrame,
                        previous: pd.DataFrame | None, config: IdentityConfig | None = None, *,
                        retired_ids: Iterable[str] = (), saved_model: dict | None = None) -> ResolutionResult:
    """Match `new_candidates` against each other and against `existing_candidates` (already resolved
    in `previous`). The result covers all records (existing and new), like :func:`resolve`.

    `saved_model`: the Splink model of the last full run (``identity.resolution_runs.splink_model``), scored
    with as it is; without it the model is trained again on all eligible records."""
    config = config or load_config()
    both = pd.concat([existing_candidates, new_candidates], ignore_index=True)
    is_new = np.r_[np.zeros(len(existing_candidates), bool), np.ones(len(new_candidates), bool)]
    return _run(both, is_new, previous, config, retired_ids, saved_model)


def resolve_staged(staged: StagedCandidates, previous: str | None, config: IdentityConfig, *,
                   incremental: bool, retired_ids: Iterable[str] = ()) -> ResolutionResult:
    """:func:`resolve` (or, `incremental`, :func:`resolve_incremental`) on candidates staged as Parquet files
    (:mod:`crm_knowledge.identity.staging`): the Spark backend's entry, which never holds them on the driver.
    Incremental staging numbers existing records first, then new ones, as resolve_incremental does.

    `previous`: the previous resolution staged as Parquet (staging.stage_previous), or None. The result's tables
    are Parquet files in the Spark session's scratch directory (ResolutionResult.staged): the caller writes them
    and then stops the session (spark_session.stop_session), which removes them."""
    from crm_knowledge.identity.spark_backend import assemble_on_spark, match_records_on_spark

    if config.backend != "spark":
        raise ValueError("staged candidates are resolved on Spark (backend: spark)")
    if incremental and staged.is_new is None:
        raise ValueError("an incremental run needs candidates staged with the previous resolution")
    t0 = time.monotonic()
    is_new = staged.is_new if incremental else None
    m = match_records_on_spark(staged, is_new, previous, config)
    return assemble_on_spark(m, is_new, staged.is_new, config, retired_ids, t0)


def _previous_edges(prepared: pd.DataFrame, is_new: np.ndarray, previous: pd.DataFrame | None) -> pd.DataFrame:
    """Star edges joining existing records that shared a customer_id in `previous`."""
    if previous is None or previous.empty:
        return pd.DataFrame({"rid_l": [], "rid_r": []}, dtype="int64")
    ex = prepared.loc[~is_new, KEY + ["rid"]].merge(previous[KEY + ["customer_id"]], on=KEY, how="inner")
    ex = ex.sort_values(["customer_id", "rid"])
    centre = ex.groupby("customer_id")["rid"].transform("first")
    keep = ex["rid"] != centre
    return pd.DataFrame({"rid_l": centre[keep].astype("int64").to_numpy(),
                         "rid_r": ex.loc[keep, "rid"].astype("int64").to_numpy()})


@dataclass
class Matching:
    """What the matching steps decided, on either backend (:func:`match_records` here, or
    :func:`crm_knowledge.identity.spark_backend.match_records_on_spark`); everything after it (usable records,
    stable ids, the output tables) is shared, so both backends give the same answers from the same decisions."""

    #: one row per record in rid order (index = rid): KEY, rid, seen_at, junk_kinds (tuple), has_identifier
    #: (a non-junk identifier or customer_ref), is_eligible (for probabilistic matching); see record_flags
    records: pd.DataFrame
    junk: pd.DataFrame               # junk.detect_junk's frame
    deterministic: pd.DataFrame      # deterministic.EDGE_COLUMNS
    probabilistic: pd.DataFrame      # explanations.scored_pairs, without pairs inside one hard component
    prob_info: dict
    model: dict | None
    extra: pd.DataFrame | None       # incremental: previous clusters as hard edges
    clusters: ClusterResult
    prepared: pd.DataFrame | None = None  # stored_columns of the prepared records (before junk removal)
    pair_labels: dict | None = None  # the probabilistic pairs' comparison levels (ResolutionResult.pair_labels)


def record_flags(clean: pd.DataFrame, config: IdentityConfig) -> pd.DataFrame:
    """The per-record columns the shared steps need, from a prepared frame with junk removed."""
    id_cols = [k.column for k in config.identifiers if k.column in clean.columns]
    out = clean[[*KEY, "rid", "seen_at", "junk_kinds"]].copy()
    out["has_identifier"] = clean[[*id_cols, "customer_ref"]].notna().any(axis=1).to_numpy()
    out["is_eligible"] = eligible(clean, config).to_numpy()
    return out


def stored_columns(config: IdentityConfig) -> list[str]:
    """The prepared columns the warehouse keeps per record for daily runs (identity/daily.py): record key,
    Splink's comparison columns (blocking keys among them), what eligibility needs, every identifier."""
    from crm_knowledge.identity.config import identifier_column
    from crm_knowledge.identity.probabilistic import MODEL_COLUMNS

    ids = [identifier_column(k) for k in config.kinds]
    return [*KEY, *MODEL_COLUMNS[1:], "has_name", *[c for c in ids if c not in MODEL_COLUMNS], "cref_key"]


def match_records(candidates: pd.DataFrame, is_new: np.ndarray | None, previous: pd.DataFrame | None,
                  config: IdentityConfig, saved_model: dict | None = None) -> Matching:
    """Prepare, junk, deterministic edges, Splink, clusters: in this process (pandas, Splink on DuckDB). The
    candidates' text columns that only feed preparation are dropped once it made their keys (a pointer per
    record and column, and often a string each, at millions of records)."""
    prepared = prepare(candidates, config).drop(columns=PREPARATION_ONLY)
    return match_prepared(prepared, is_new, previous, config, saved_model)


def link_clusters(clean: pd.DataFrame, det: pd.DataFrame, prob: pd.DataFrame, extra: pd.DataFrame | None,
                  config: IdentityConfig) -> tuple[pd.DataFrame, ClusterResult]:
    """(kept probabilistic pairs, clusters) of the records `clean`: probabilistic matching is for records that
    share no strong identifier with each other, so pairs already joined by deterministic or previous edges are
    dropped before the clusters are built (with the size and conflict guards)."""
    n = len(clean)
    hard_labels = components(n, det, extra)
    if len(prob):
        same = hard_labels[prob["rid_l"].to_numpy()] == hard_labels[prob["rid_r"].to_numpy()]
        prob = prob[~same].reset_index(drop=True)
    return prob, build_clusters(n, det, prob, config.max_cluster_size, extra=extra,
                                unique_values=unique_values(clean, config))


def match_prepared(prepared: pd.DataFrame, is_new: np.ndarray | None, previous: pd.DataFrame | None,
                   config: IdentityConfig, saved_model: dict | None = None) -> Matching:
    """:func:`match_records` from prepared records (:func:`crm_knowledge.identity.prepare.prepare`)."""
    junk = detect_junk(prepared, config)
    clean = remove_junk(prepared, junk)

    det = deterministic_edges(clean, config)
    if is_new is None:
        prob, prob_info = probabilistic_pairs(clean, config)
        extra = None
    else:
        prob, prob_info = probabilistic_pairs_incremental(clean, clean.loc[is_new, "rid"].to_numpy(), config,
                                                          saved_model)
        extra = _previous_edges(clean, is_new, previous)

    model, labels = prob_info.pop("model", None), prob_info.pop("labels", None)
    prob, cl = link_clusters(clean, det, prob, extra, config)
    return Matching(record_flags(clean, config), junk, det, prob, prob_info, model, extra, cl,
                    prepared[stored_columns(config)], labels)


def _run(candidates: pd.DataFrame, is_new: np.ndarray | None, previous: pd.DataFrame | None,
         config: IdentityConfig, retired_ids: Iterable[str], saved_model: dict | None = None) -> ResolutionResult:
    t0 = time.monotonic()
    if config.backend == "spark":  # the one backend switch of the identity stage
        from crm_knowledge.identity.spark_backend import assemble_on_spark, match_records_on_spark
        from crm_knowledge.identity.spark_session import ending_session

        with ending_session():  # the JVM and the scratch directory (staged personal data) end with the run
            m = match_records_on_spark(candidates, is_new, previous, config)
            result = assemble_on_spark(m, is_new, is_new, config, retired_ids, t0)
            frames = result.staged.frames()  # read before the scratch directory goes with the session
        result.record_clusters = frames["record_clusters"].sort_values(KEY).reset_index(drop=True)
        result.match_pairs, result.unresolved, result.staged = frames["match_pairs"], frames["unresolved"], None
        return result
    m = match_records(candidates, is_new, previous, config, saved_model)
    return assemble(m, is_new, previous, config, retired_ids, t0)


def assemble(m: Matching, is_new: np.ndarray | None, previous: pd.DataFrame | None, config: IdentityConfig,
             retired_ids: Iterable[str], t0: float) -> ResolutionResult:
    """The output tables from what the matching decided (shared by both backends and the daily run)."""
    clean, junk, det, prob, extra, cl = m.records, m.junk, m.deterministic, m.probabilistic, m.extra, m.clusters
    prob_info, model = m.prob_info, m.model
    n = len(clean)

    # usable identifiers
    strong = clean["has_identifier"].to_numpy(dtype=bool)
    always = clean["source_system"].isin(config.always_resolve_sources).to_numpy()
    linked = np.zeros(n, bool)
    for e in (det, prob, extra):
        if e is not None and len(e):
            linked[e["rid_l"].to_numpy()] = True
            linked[e["rid_r"].to_numpy()] = True
    prev_known = np.zeros(n, bool)
    if is_new is not None and previous is not None and len(previous):
        prev_keys = pd.MultiIndex.from_frame(previous[KEY])
        prev_known = (~is_new) & pd.MultiIndex.from_frame(clean[KEY]).isin(prev_keys)
    usable = strong | always | linked | clean["is_eligible"].to_numpy(dtype=bool) | prev_known
    labels = cl.labels

    # customer ids for usable records
    res = clean.loc[usable, KEY + ["rid"]].copy()
    res["cluster"] = labels[res["rid"].to_numpy()]
    ids = assign_customer_ids(res, previous, prefix=config.id_prefix, digits=config.id_digits,
                              retired_ids=retired_ids)
    res["customer_id"] = ids.customer_ids.to_numpy()

    # edges kept = both ends in the same final cluster
    edge_frames = []
    if len(det):
        edge_frames.append(det.assign(match_probability=1.0, match_weight=np.nan,
                                      explanation=det["match_rule"].map(_det_explanation)))
    if len(prob):
        edge_frames.append(prob.assign(match_rule="probabilistic"))
    edges = (pd.concat(edge_frames, ignore_index=True) if edge_frames
             else pd.DataFrame(columns=["rid_l", "rid_r", "match_rule", "match_probability", "match_weight",
                                        "explanation"]))
    if "explanation" not in edges.columns:  # probabilistic pairs only: their explanations come as they are written
        edges["explanation"] = None
    if len(edges):
        edges = edges[labels[edges["rid_l"].to_numpy(dtype=np.int64)]
                      == labels[edges["rid_r"].to_numpy(dtype=np.int64)]].reset_index(drop=True)
    if extra is not None and len(extra):
        prev_edges = extra.assign(match_rule="previous_cluster", match_probability=np.nan)
        prev_edges = prev_edges[labels[prev_edges["rid_l"].to_numpy()] == labels[prev_edges["rid_r"].to_numpy()]]
    else:
        prev_edges = None

    rule, score = _record_rules(n, edges, prev_edges, config)
    res["match_rule"] = rule[res["rid"].to_numpy()]
    res["match_score"] = score[res["rid"].to_numpy()]
    if prev_edges is not None and previous is not None and {"match_rule", "match_score"} <= set(previous.columns):
        carried = res.merge(previous[KEY + ["match_rule", "match_score"]], on=KEY, how="left",
                            suffixes=("", "_prev"))
        use_prev = (carried["match_rule"] == "previous_cluster") & carried["match_rule_prev"].notna()
        res.loc[use_prev.to_numpy(), "match_rule"] = carried.loc[use_prev, "match_rule_prev"].to_numpy()
        res.loc[use_prev.to_numpy(), "match_score"] = carried.loc[use_prev, "match_score_prev"].to_numpy()
    record_clusters = res[RECORD_CLUSTER_COLUMNS].sort_values(KEY).reset_index(drop=True)

    # match pairs with record keys
    key_l = clean[KEY].rename(columns=lambda c: c + "_l")
    key_r = clean[KEY].rename(columns=lambda c: c + "_r")
    mp = edges.join(key_l, on="rid_l").join(key_r, on="rid_r") if len(edges) else pd.DataFrame(
        columns=MATCH_PAIR_COLUMNS)
    match_pairs = mp[MATCH_PAIR_COLUMNS + score_columns(mp.columns)].reset_index(drop=True)

    # unresolved
    un = clean.loc[~usable, KEY + ["seen_at", "junk_kinds"]]
    unresolved = pd.DataFrame({
        "source_system": un["source_system"].to_numpy(),
        "source_record_id": un["source_record_id"].to_numpy(),
        "reason": np.where(un["junk_kinds"].map(len) > 0, REASON_JUNK_ONLY, REASON_NO_IDENTIFIER),
        "seen_at": un["seen_at"].to_numpy(),
    }, columns=UNRESOLVED_COLUMNS)

    junk_out = junk[JUNK_COLUMNS].reset_index(drop=True)
    merges = ids.merges[MERGE_COLUMNS].reset_index(drop=True)
    stats = resolution_stats(
        is_new, n, cl, prob_info, t0, resolved_records=len(record_clusters),
        customers=int(record_clusters["customer_id"].nunique()),
        deterministic_edges_by_rule=det["match_rule"].value_counts().to_dict() if len(det) else {},
        probabilistic_pairs=len(prob), match_pairs=len(match_pairs), merges=len(merges), new_customer_ids=ids.new_ids,
        kept_customer_ids=ids.kept_ids, split_records=ids.split_records, unresolved=len(unresolved),
        junk_values=len(junk_out))
    log.info("identity resolution (%s): %d records, %d customers, %d deterministic edges, %d probabilistic "
             "pairs, %d merges, %d unresolved, %d junk values, %d oversized clusters", stats["mode"], n,
             stats["customers"], len(det), len(prob), len(merges), len(unresolved), len(junk_out),
             len(cl.oversized))
    return ResolutionResult(record_clusters, match_pairs, merges, unresolved, junk_out, stats, model, m.prepared,
                            pair_labels=m.pair_labels)


def resolution_stats(is_new: np.ndarray | None, n: int, cl: ClusterResult, prob_info: dict, t0: float, *,
                     deterministic_edges_by_rule: dict, **counts: int) -> dict:
    """The stats of a resolution (both backends' assembly): `counts` are resolved_records, customers,
    probabilistic_pairs, match_pairs, merges, new_customer_ids, kept_customer_ids, split_records, unresolved and
    junk_values."""
    c = counts
    return {
        "mode": "full" if is_new is None else "incremental",
        "records": n,
        "new_records": int(is_new.sum()) if is_new is not None else n,
        "resolved_records": c["resolved_records"],
        "customers": c["customers"],
        "deterministic_edges": sum(deterministic_edges_by_rule.values()),
        "deterministic_edges_by_rule": deterministic_edges_by_rule,
        **{k: c[k] for k in ("probabilistic_pairs", "match_pairs", "merges", "new_customer_ids", "kept_customer_ids",
                             "split_records", "unresolved", "junk_values")},
        "oversized_clusters": len(cl.oversized),
        "oversized_detail": cl.oversized,
        "conflicting_edges": cl.conflicting_edges,
        "probabilistic": prob_info,
        "seconds": round(time.monotonic() - t0, 3),
    }


def _det_explanation(rule: str) -> str:
    import json

    return json.dumps({"rule": rule, "agreed": [rule]})


def _record_rules(n: int, edges: pd.DataFrame, prev_edges: pd.DataFrame | None,
                  config: IdentityConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per record: the strongest rule among its kept edges ('singleton' when none) and its score."""
    ranks = {r: i for i, r in enumerate([*rule_priority(config), "previous_cluster", "probabilistic"])}
    rule = np.full(n, "singleton", dtype=object)
    score = np.ones(n, dtype=float)
    frames = [edges[["rid_l", "rid_r", "match_rule", "match_probability"]]] if len(edges) else []
    if prev_edges is not None and len(prev_edges):
        frames.append(prev_edges[["rid_l", "rid_r", "match_rule", "match_probability"]])
    if not frames:
        return rule, score
    e = pd.concat(frames, ignore_index=True)
    ends = pd.concat([
        e[["rid_l", "match_rule", "match_probability"]].rename(columns={"rid_l": "rid"}),
        e[["rid_r", "match_rule", "match_probability"]].rename(columns={"rid_r": "rid"}),
    ], ignore_index=True)
    ends["rank"] = ends["match_rule"].map(ranks)
    ends = ends.sort_values(["rid", "rank", "match_probability"], ascending=[True, True, False])
    best = ends.drop_duplicates("rid")
    rule[best["rid"].to_numpy(dtype=np.int64)] = best["match_rule"].to_numpy()
    score[best["rid"].to_numpy(dtype=np.int64)] = best["match_probability"].fillna(1.0).to_numpy()
    return rule, score
