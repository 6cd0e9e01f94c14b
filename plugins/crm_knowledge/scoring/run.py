"""Score every customer as of a date and record the models that did it (the scoring DAG's task).

Reads the marts (never raw or pii), keeps only what was known on the as-of date, runs RFM, behaviour
clustering, churn and CLV, and writes `scoring.model_runs` + `scoring.customer_scores` for that date.
Re-running the same date replaces that date's scores (idempotent), and gives the same numbers: every
model has a fixed seed. Customers who opted out of profiling, and forgotten customers, are not scored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg.types.json import Jsonb

from crm_knowledge.privacy.file_modes import write_private_text
from crm_knowledge.scoring.behaviour import segment_behaviour
from crm_knowledge.scoring.churn import ChurnModel, ChurnModelError
from crm_knowledge.scoring.clv import fit_clv, score_clv
from crm_knowledge.scoring.config import ScoringConfig, load_scoring_config
from crm_knowledge.scoring.features import TIME_UNIT, customer_summary
from crm_knowledge.scoring.rfm import score_rfm
from crm_knowledge.scoring.tiers import assign_tiers
from crm_knowledge.settings import Settings, get_settings
from crm_knowledge.warehouse.db import connect, copy_rows, read_frame

log = logging.getLogger(__name__)

MODEL_VERSION = "1"
INT_COLUMNS = {"recency_days", "frequency", "r_score", "f_score", "m_score", "behaviour_cluster"}

ELIGIBLE_SQL = """
    select customer_id from marts.dim_customers
     where not coalesce(has_profiling_opt_out, false)
"""

ORDERS_SQL = f"""
    select o.customer_id, o.order_id::text as order_id, o.ordered_at, o.total_amount::float8 as amount
      from marts.fct_orders o
      join ({ELIGIBLE_SQL}) e using (customer_id)
     where o.is_revenue_order and o.total_amount > 0 and o.ordered_at < %(cutoff)s
"""

BEHAVIOUR_SQL = f"""
    with eligible as ({ELIGIBLE_SQL}),
    orders as (
        select customer_id,
               count(*) as n_orders,
               avg(total_amount)::float8 as avg_order_value,
               greatest(extract(epoch from (%(cutoff)s::timestamptz - min(ordered_at))) / 86400 / 30.44, 1)
                   as months_active,
               avg(case when channel = 'web' then 1.0 else 0.0 end)::float8 as web_order_share,
               avg(case when status = 'returned' then 1.0 else 0.0 end)::float8 as return_rate
          from marts.fct_orders
         where ordered_at < %(cutoff)s and customer_id is not null
         group by customer_id
    ),
    categories as (
        select customer_id, count(distinct category)::float8 as distinct_categories
          from marts.fct_order_items
         where ordered_at < %(cutoff)s and customer_id is not null
         group by customer_id
    ),
    complaints as (
        select customer_id, count(*) as n_complaints
          from (
              select customer_id from marts.fct_interactions where is_complaint and occurred_at < %(cutoff)s
              union all
              select customer_id from marts.fct_form_submissions
               where form_type = 'complaint' and submitted_at < %(cutoff)s
          ) c
         where customer_id is not null
         group by customer_id
    )
    select o.customer_id,
           (o.n_orders / o.months_active)::float8 as orders_per_month,
           o.avg_order_value,
           coalesce(cat.distinct_categories, 0) as distinct_categories,
           o.web_order_share,
           o.return_rate,
           (coalesce(c.n_complaints, 0) * 12.0 / o.months_active)::float8 as complaints_per_year
      from orders o
      join eligible using (customer_id)
      left join categories cat using (customer_id)
      left join complaints c using (customer_id)
"""


def _code_version() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _run_id(model: str, as_of: dt.date) -> str:
    return f"{model}-{as_of.isoformat()}-v{MODEL_VERSION}"


def _save_artifact(settings: Settings, run_id: str, payload: dict[str, Any]) -> tuple[str, str]:
    path = settings.home / "models" / f"{run_id}.json"
    text = json.dumps(payload, indent=2, sort_keys=True, default=str)
    write_private_text(path, text)
    return str(path), hashlib.sha256(text.encode()).hexdigest()


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _previous_centroids(conn: psycopg.Connection, as_of: dt.date) -> pd.DataFrame | None:
    row = conn.execute(
        """select model_run_id from scoring.model_runs
            where model = 'behaviour_kmeans' and status = 'published' and as_of_date < %s
            order by as_of_date desc limit 1""", (as_of,)).fetchone()
    if not row:
        return None
    rows = conn.execute("select cluster_id, centroid from scoring.cluster_centroids where model_run_id = %s",
                        (row[0],)).fetchall()
    return pd.DataFrame({cid: c for cid, c in rows}).T.sort_index() if rows else None


def score_all(as_of: dt.date, url: str | None = None, config: ScoringConfig | None = None,
              settings: Settings | None = None) -> dict[str, Any]:
    """Score all eligible customers as of `as_of`; returns a small summary (counts, model run ids)."""
    started = time.perf_counter()
    settings = settings or get_settings()
    config = config or load_scoring_config()
    cutoff = pd.Timestamp(as_of).tz_localize("UTC") + pd.Timedelta(days=1)
    code_version = _code_version()
    runs: list[dict[str, Any]] = []

    with connect(url or settings.warehouse_url) as conn:
        conn.execute("set timezone = 'UTC'")
        orders = read_frame(conn, ORDERS_SQL, {"cutoff": cutoff},
                            dtype={"customer_id": str, "order_id": str, "amount": "float64"})
        behaviour = read_frame(conn, BEHAVIOUR_SQL, {"cutoff": cutoff}, dtype={"customer_id": str})
        previous = _previous_centroids(conn, as_of)
    if orders.empty:
        raise RuntimeError(f"no revenue orders on or before {as_of} in marts.fct_orders: nothing to score")
    orders["ordered_at"] = pd.to_datetime(orders["ordered_at"], utc=True, format="ISO8601")
    log.info("scoring as of %s: %s orders of %s customers", as_of, len(orders), orders["customer_id"].nunique())

    summary = customer_summary(orders, as_of)
    scores = pd.DataFrame(index=summary.index)
    scores["recency_days"] = summary["recency_days"]
    scores["frequency"] = summary["frequency"]
    scores["monetary"] = summary["monetary"].round(2)

    seconds: dict[str, float] = {"load_features": round(time.perf_counter() - started, 3)}
    # RFM
    t = time.perf_counter()
    rfm = score_rfm(summary, config.rfm)
    scores = scores.join(rfm[["r_score", "f_score", "m_score", "rfm_segment"]])
    runs.append({"model": "rfm", "rows": len(summary), "params": {"grid": {k: list(v) for k, v in
                                                                           config.rfm.grid.items()}},
                 "metrics": {"segments": rfm["rfm_segment"].value_counts().to_dict()}, "status": "published"})
    seconds["rfm"] = round(time.perf_counter() - t, 3)

    # Behaviour clusters
    t = time.perf_counter()
    seg = None
    if len(behaviour) >= config.behaviour.k_min * 2:
        seg = segment_behaviour(behaviour.set_index("customer_id"), config.behaviour, previous)
        scores = scores.join(seg.labels.rename("behaviour_cluster"))
        labels = dict(zip(seg.profiles["cluster_id"], seg.profiles["label"], strict=True))
        scores["behaviour_profile"] = scores["behaviour_cluster"].map(labels)
        runs.append({"model": "behaviour_kmeans", "rows": len(behaviour),
                     "params": {"k": seg.k, "features": config.behaviour.feature_names},
                     "metrics": {"silhouette": {str(k): v for k, v in seg.silhouette.items()},
                                 "sizes": seg.profiles.set_index("cluster_id")["size"].to_dict()},
                     "status": "published"})

    seconds["behaviour_kmeans"] = round(time.perf_counter() - t, 3)
    # Churn
    t = time.perf_counter()
    churn = ChurnModel(config.churn)
    try:
        churn.fit(orders, as_of)
        metrics = churn.evaluation.metrics() if churn.evaluation else {}
        if churn.is_usable:
            scores["churn_probability"] = churn.predict_proba(summary)
            status = "published"
        else:
            status = "refused"
            log.warning("churn model refused: %s", metrics)
    except ChurnModelError as exc:
        metrics, status = {"error": str(exc)}, "refused"
        log.warning("churn model not trained: %s", exc)
    runs.append({"model": "churn", "rows": len(summary), "status": status,
                 "params": {"horizon_days": config.churn.horizon_days, "classifier": config.churn.classifier,
                            "calibration": config.churn.calibration,
                            "max_training_rows": config.churn.max_training_rows,
                            "training_rows_available": churn.training_rows_available},
                 "metrics": {k: _finite(v) for k, v in metrics.items()}})

    seconds["churn"] = round(time.perf_counter() - t, 3)
    # Lifetime value and tiers
    t = time.perf_counter()
    try:
        fitted = fit_clv(summary, as_of)
    except ValueError as exc:  # e.g. a new shop where nobody has bought twice yet
        fitted = None
        log.warning("CLV model not fitted: %s", exc)
        runs.append({"model": "clv_bgnbd_gamma_gamma", "rows": len(summary), "status": "refused",
                     "params": {"time_unit": TIME_UNIT}, "metrics": {"error": str(exc)}})
    if fitted is not None:
        clv = score_clv(summary, fitted, config.clv.horizon_weeks, config.clv.annual_discount_rate)
        scores["expected_purchases"] = clv["expected_purchases"]
        scores["p_alive"] = clv["p_alive"]
        scores["predicted_clv"] = clv["clv"].round(2)
        scores["value_tier"] = assign_tiers(clv["clv"], config.tiers)
        runs.append({"model": "clv_bgnbd_gamma_gamma", "rows": len(summary), "status": "published",
                     "params": {**fitted.params, "time_unit": TIME_UNIT, "horizon_weeks": config.clv.horizon_weeks,
                                "annual_discount_rate": config.clv.annual_discount_rate},
                     "metrics": {"converged": fitted.converged, "n_repeat_customers": fitted.n_repeat_customers,
                                 "spend_model": fitted.spend_model,
                                 "frequency_spend_corr": _finite(fitted.frequency_spend_corr),
                                 "log_likelihood_bgnbd": _finite(fitted.log_likelihood_bgnbd)}})

    seconds["clv_bgnbd_gamma_gamma"] = round(time.perf_counter() - t, 3)
    run_ids = {r["model"]: _run_id(r["model"], as_of) for r in runs}
    published = {m: rid for m, rid in run_ids.items()
                 if next(r for r in runs if r["model"] == m)["status"] == "published"}
    t = time.perf_counter()
    _write(url or settings.warehouse_url, as_of, scores, runs, run_ids, published, seg, code_version, settings)
    seconds["write_scores"] = round(time.perf_counter() - t, 3)
    summary_out = {"as_of": as_of.isoformat(), "customers_scored": len(scores),
                   "segments": scores["rfm_segment"].value_counts().to_dict(),
                   "model_runs": {r["model"]: r["status"] for r in runs},
                   "model_seconds": seconds,
                   "model_rows": {r["model"]: r["rows"] for r in runs}}
    log.info("scoring summary: %s", summary_out)
    return summary_out


def _write(url: str, as_of: dt.date, scores: pd.DataFrame, runs: list[dict[str, Any]], run_ids: dict[str, str],
           published: dict[str, str], seg, code_version: str, settings: Settings) -> None:
    columns = ["customer_id", "as_of_date", "recency_days", "frequency", "monetary", "r_score", "f_score", "m_score",
               "rfm_segment", "behaviour_cluster", "behaviour_profile", "churn_probability", "expected_purchases",
               "p_alive", "predicted_clv", "value_tier", "model_run_ids"]
    frame = scores.reset_index().rename(columns={"index": "customer_id"})
    with connect(url) as conn, conn.transaction():
        for r in runs:
            rid = run_ids[r["model"]]
            path, digest = _save_artifact(settings, rid, {"params": r["params"], "metrics": r["metrics"]})
            conn.execute("delete from scoring.cluster_centroids where model_run_id = %s", (rid,))
            conn.execute("delete from scoring.model_runs where model_run_id = %s", (rid,))
            conn.execute(
                """insert into scoring.model_runs (model_run_id, model, model_version, as_of_date, training_rows,
                       parameters, metrics, artifact_path, artifact_sha256, code_version, status)
                   values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                (rid, r["model"], MODEL_VERSION, as_of, r["rows"], Jsonb(json.loads(json.dumps(r["params"],
                 default=str))), Jsonb(json.loads(json.dumps(r["metrics"], default=str))), path, digest,
                 code_version, r["status"]))
        if seg is not None:
            rid = run_ids["behaviour_kmeans"]
            labels = seg.profiles.set_index("cluster_id")
            for cid, centroid in seg.centroids.iterrows():
                conn.execute(
                    "insert into scoring.cluster_centroids (model_run_id, cluster_id, centroid, size, profile) "
                    "values (%s, %s, %s, %s, %s)",
                    (rid, int(cid), Jsonb({k: float(v) for k, v in centroid.items()}),
                     int(labels.loc[cid, "size"]), str(labels.loc[cid, "label"])))
        conn.execute("delete from scoring.customer_scores where as_of_date = %s", (as_of,))
        def score_rows():
            for row in frame.itertuples(index=False):
                rec = row._asdict()
                values = []
                for c in columns:
                    if c == "as_of_date":
                        values.append(as_of)
                    elif c == "model_run_ids":
                        values.append(Jsonb(published))
                    else:
                        v = rec.get(c)
                        if v is None or (isinstance(v, float) and not np.isfinite(v)) or v is pd.NA:
                            values.append(None)
                        elif c in INT_COLUMNS or isinstance(v, np.integer):
                            values.append(int(v))
                        elif isinstance(v, (np.floating,)):
                            values.append(None if not np.isfinite(v) else float(v))
                        else:
                            values.append(v)
                yield values

        copy_rows(conn, f"copy scoring.customer_scores ({', '.join(columns)}) from stdin", score_rows())
    log.info("wrote %s customer scores for %s and %s model runs", len(frame), as_of, len(runs))
