"""Score customers as of a date, in proportion to what changed, and record the models that did it.

Two ways, one result for every customer a run covers:

* **full** (:func:`score_all`: the weekly run, ``ckp score``, the benchmark): fit every model (RFM edges are
  the day's, behaviour clusters, churn, CLV with its tier thresholds), persist the fitted models
  (``CKP_HOME/models``, sha256 in ``scoring.model_runs``, with the reason of the fit), then apply them to
  every eligible customer;
* **daily** (:func:`score_day`, the scoring DAG): refit as above when the weekly full warehouse run happened
  that day, the last fit is due (``refit.every_days``) or drift crossed ``refit.max_changed_share`` (the share
  of scored customers whose inputs changed since the fit); otherwise apply the last fitted models to the
  customers whose inputs changed since the last scoring plus those whose R, F or M score moved across
  today's quintile edges (edges and that comparison in SQL). Their rows replace today's rows; the other
  customers keep their latest scores (``marts.customer_segments`` reads each customer's latest).

Applying a fitted model to a customer depends on that customer's rows only (and the day's RFM edges over every
customer), so a daily run gives each customer it covers what a full re-score with the same fitted models
gives (tests/warehouse/test_incremental_equals_full.py). Reads the marts (never raw or pii), keeps only what
was known on the as-of date; every model has a fixed seed. Customers who opted out of profiling, and
forgotten customers, are not scored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import pickle
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from crm_knowledge.privacy.file_modes import open_private, write_private_text
from crm_knowledge.run_mode import CHANGED_CUSTOMERS_SQL, day_was_full
from crm_knowledge.scoring.behaviour import BehaviourModel, assign_clusters, segment_behaviour
from crm_knowledge.scoring.churn import ChurnModel, ChurnModelError
from crm_knowledge.scoring.clv import FittedCLV, fit_clv, score_clv
from crm_knowledge.scoring.config import ScoringConfig, load_scoring_config
from crm_knowledge.scoring.features import TIME_UNIT, customer_summary
from crm_knowledge.scoring.rfm import Edge, boundary_ranks, score_rfm
from crm_knowledge.scoring.tiers import tier_thresholds, tiers_by_thresholds
from crm_knowledge.settings import Settings, get_settings
from crm_knowledge.warehouse.db import connect, copy_rows, read_frame, table_exists

log = logging.getLogger(__name__)

MODEL_VERSION = "1"
INT_COLUMNS = {"recency_days", "frequency", "r_score", "f_score", "m_score", "behaviour_cluster"}
#: The filter every input query takes on a daily run: the covered customers (a temporary table).
COVERED_FILTER = " and customer_id in (select customer_id from pg_temp.scoring_covered)"
COVERED_FILTER_ORDERS = " and o.customer_id in (select customer_id from pg_temp.scoring_covered)"

ELIGIBLE_SQL = """
    select customer_id from marts.dim_customers
     where not coalesce(has_profiling_opt_out, false)
"""

ORDERS_SQL = f"""
    select o.customer_id, o.order_id::text as order_id, o.ordered_at, o.total_amount::float8 as amount
      from marts.fct_orders o
      join ({ELIGIBLE_SQL}) e using (customer_id)
     where o.is_revenue_order and o.total_amount > 0 and o.ordered_at < %(cutoff)s{{only}}
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
         where ordered_at < %(cutoff)s and customer_id is not null{{only}}
         group by customer_id
    ),
    categories as (
        select customer_id, count(distinct category)::float8 as distinct_categories
          from marts.fct_order_items
         where ordered_at < %(cutoff)s and customer_id is not null{{only}}
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
         where customer_id is not null{{only}}
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


#: Recency, frequency and monetary of every scored customer, in SQL: the population the day's RFM quintile
#: edges are taken over (:func:`crm_knowledge.scoring.rfm.edges_of` is the same rule for a frame). Monetary is
#: summed exactly (numeric) and kept to the cent, as rfm_keys ranks it.
RFM_POPULATION_SQL = f"""
    select o.customer_id,
           (%(as_of)s::date - max((o.ordered_at at time zone 'UTC')::date)) as recency_days,
           count(*) as frequency,
           round(sum(o.total_amount), 2)::float8 as monetary
      from marts.fct_orders o
      join ({ELIGIBLE_SQL}) e using (customer_id)
     where o.is_revenue_order and o.total_amount > 0 and o.ordered_at < %(cutoff)s
     group by o.customer_id
"""
#: The key each RFM dimension ranks by (best last), as rfm.rfm_keys.
RFM_KEY_SQL = {"r": "-recency_days::float8", "f": "frequency::float8", "m": "monetary"}


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


@dataclass
class FittedModels:
    """Everything applying the models to a customer needs, persisted once per fit (a pickle under
    ``CKP_HOME/models``, private, its sha256 in ``scoring.model_runs``)."""

    as_of: dt.date
    run_ids: dict[str, str] = field(default_factory=dict)  # published model -> model_run_id
    behaviour: BehaviourModel | None = None
    behaviour_labels: dict[int, str] = field(default_factory=dict)
    churn: ChurnModel | None = None  # usable models only
    clv: FittedCLV | None = None
    tier_thresholds: list[float | None] | None = None


def _save_fitted(settings: Settings, fitted: FittedModels) -> tuple[str, str]:
    path = settings.home / "models" / f"fitted-{fitted.as_of.isoformat()}-v{MODEL_VERSION}.pkl"
    payload = pickle.dumps(fitted, protocol=pickle.HIGHEST_PROTOCOL)
    with open_private(path, "wb") as fh:
        fh.write(payload)
    return str(path), hashlib.sha256(payload).hexdigest()


def _load_fitted(path: str, sha256: str) -> FittedModels:
    """The fitted models a model run recorded, refused unless the file is the one it wrote (sha256)."""
    payload = Path(path).read_bytes()
    if hashlib.sha256(payload).hexdigest() != sha256:
        raise RuntimeError(f"{path}: the fitted models file is not the one scoring.model_runs recorded "
                           "(sha256 differs); refit with `ckp score --as-of DATE`")
    fitted = pickle.loads(payload)  # noqa: S301 - our own private file, checked against its recorded digest
    if not isinstance(fitted, FittedModels):
        raise RuntimeError(f"{path}: not a fitted models file")
    return fitted


def _rfm_edges(conn: psycopg.Connection, params: dict[str, Any]) -> tuple[int, dict[str, list[Edge]]]:
    """(customers, the day's quintile edges of R, F and M) over every scored customer, in SQL: the customers at
    the boundary ranks (rfm.boundary_ranks) of each ordering by (key, customer_id). Leaves the population in
    the temporary table ``scoring_rfm_population`` for :func:`_rfm_crossers`."""
    conn.execute("drop table if exists pg_temp.scoring_rfm_population")
    # client-side parameters: CREATE TABLE AS takes no server-side ones
    psycopg.ClientCursor(conn).execute(
        sql.SQL("create temp table scoring_rfm_population as {}").format(sql.SQL(RFM_POPULATION_SQL)), params)
    n = conn.execute("select count(*) from pg_temp.scoring_rfm_population").fetchone()[0]
    ranks = boundary_ranks(n)
    edges: dict[str, list[Edge]] = {}
    for dim, key in RFM_KEY_SQL.items():
        rows = dict((rn, (k, c)) for rn, k, c in conn.execute(sql.SQL(
            "select rn, key, customer_id from (select customer_id, {key} as key, row_number() over"
            " (order by {key}, customer_id collate \"C\") as rn from pg_temp.scoring_rfm_population) q"
            " where rn = any(%s)").format(key=sql.SQL(key)), ([r for r in ranks if r >= 1],)).fetchall())
        edges[dim] = [(float(rows[r][0]), str(rows[r][1])) if r >= 1 else None for r in ranks]
    return n, edges


def _score_sql(key: str, edges: list[Edge]) -> sql.Composable:
    """rfm.scores_from_edges in SQL: 1 + the edges a (key, customer_id) lies above."""
    terms = [sql.SQL("1")]
    for edge in edges:
        if edge is None:
            terms.append(sql.SQL("1"))
        else:
            terms.append(sql.SQL("(({}, customer_id collate \"C\") > ({}, {} collate \"C\"))::int").format(
                sql.SQL(key), sql.Literal(edge[0]), sql.Literal(edge[1])))
    return sql.SQL(" + ").join(terms)


def _rfm_crossers(conn: psycopg.Connection, as_of: dt.date, edges: dict[str, list[Edge]]) -> set[str]:
    """Scored customers whose R, F or M score under today's edges differs from their latest stored one (or who
    have none): recency moved them across an edge, or the edges moved past them."""
    rows = conn.execute(sql.SQL(
        """with today as (
               select customer_id, {r} as r_score, {f} as f_score, {m} as m_score
                 from pg_temp.scoring_rfm_population),
           latest as (
               select distinct on (customer_id) customer_id, r_score, f_score, m_score
                 from scoring.customer_scores where as_of_date <= %s
                order by customer_id, as_of_date desc)
           select t.customer_id from today t left join latest l using (customer_id)
            where l.customer_id is null
               or (l.r_score, l.f_score, l.m_score) is distinct from (t.r_score, t.f_score, t.m_score)""").format(
        r=_score_sql(RFM_KEY_SQL["r"], edges["r"]), f=_score_sql(RFM_KEY_SQL["f"], edges["f"]),
        m=_score_sql(RFM_KEY_SQL["m"], edges["m"])), (as_of,)).fetchall()
    return {c for (c,) in rows}


def _changed_since(conn: psycopg.Connection, since: dt.datetime) -> set[str]:
    """Customers whose inputs changed since `since` (crm_knowledge.run_mode.CHANGED_CUSTOMERS_SQL)."""
    if not table_exists(conn, "identity.record_clusters"):
        return set()
    query = sql.SQL(CHANGED_CUSTOMERS_SQL).format(since=sql.Placeholder("since"))
    return {c for (c,) in conn.execute(query, {"since": since}).fetchall() if c is not None}


def _read_inputs(conn: psycopg.Connection, cutoff: pd.Timestamp, covered: set[str] | None,
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(orders, behaviour features) of every eligible customer, or of the `covered` ones only."""
    if covered is not None:
        conn.execute("drop table if exists pg_temp.scoring_covered")
        conn.execute("create temp table scoring_covered (customer_id text primary key)")
        copy_rows(conn, "copy pg_temp.scoring_covered (customer_id) from stdin", ([c] for c in sorted(covered)))
        conn.execute("analyze pg_temp.scoring_covered")
    only, only_orders = (COVERED_FILTER, COVERED_FILTER_ORDERS) if covered is not None else ("", "")
    orders = read_frame(conn, ORDERS_SQL.format(only=only_orders), {"cutoff": cutoff},
                        dtype={"customer_id": str, "order_id": str, "amount": "float64"})
    behaviour = read_frame(conn, BEHAVIOUR_SQL.format(only=only), {"cutoff": cutoff}, dtype={"customer_id": str})
    orders["ordered_at"] = pd.to_datetime(orders["ordered_at"], utc=True, format="ISO8601")
    return orders, behaviour


def _apply(fitted: FittedModels, summary: pd.DataFrame, behaviour: pd.DataFrame, edges: dict[str, list[Edge]],
           config: ScoringConfig) -> pd.DataFrame:
    """The scores of the customers of `summary`: each from that customer's rows, the day's RFM edges and the
    fitted models alone."""
    scores = pd.DataFrame(index=summary.index)
    scores["recency_days"] = summary["recency_days"]
    scores["frequency"] = summary["frequency"]
    scores["monetary"] = summary["monetary"].round(2)
    rfm = score_rfm(summary, config.rfm, edges)
    scores = scores.join(rfm[["r_score", "f_score", "m_score", "rfm_segment"]])
    if fitted.behaviour is not None and len(behaviour):
        frame = behaviour.set_index("customer_id")
        clusters = assign_clusters(frame, fitted.behaviour)
        scores = scores.join(clusters.rename("behaviour_cluster"))
        scores["behaviour_profile"] = scores["behaviour_cluster"].map(fitted.behaviour_labels)
    if fitted.churn is not None and len(summary):
        scores["churn_probability"] = fitted.churn.predict_proba(summary)
    if fitted.clv is not None and len(summary):
        clv = score_clv(summary, fitted.clv, config.clv.horizon_weeks, config.clv.annual_discount_rate)
        scores["expected_purchases"] = clv["expected_purchases"]
        scores["p_alive"] = clv["p_alive"]
        scores["predicted_clv"] = clv["clv"].round(2)
        scores["value_tier"] = tiers_by_thresholds(clv["clv"], config.tiers, fitted.tier_thresholds or [])
    return scores


def _fit(as_of: dt.date, orders: pd.DataFrame, summary: pd.DataFrame, behaviour: pd.DataFrame,
         previous: pd.DataFrame | None, config: ScoringConfig, seconds: dict[str, float],
         ) -> tuple[FittedModels, list[dict[str, Any]], Any]:
    """Fit behaviour clusters, churn and CLV (with tier thresholds) on every eligible customer."""
    fitted = FittedModels(as_of=as_of)
    runs: list[dict[str, Any]] = []
    # RFM has no fitted state: its edges are the day's (SQL); the run records the grid
    runs.append({"model": "rfm", "rows": len(summary), "params": {"grid": {k: list(v) for k, v in
                                                                           config.rfm.grid.items()}},
                 "metrics": {}, "status": "published"})
    t = time.perf_counter()
    seg = None
    if len(behaviour) >= config.behaviour.k_min * 2:
        seg = segment_behaviour(behaviour.set_index("customer_id"), config.behaviour, previous)
        fitted.behaviour = seg.model
        fitted.behaviour_labels = {int(k): str(v) for k, v in zip(seg.profiles["cluster_id"], seg.profiles["label"],
                                                                   strict=True)}
        runs.append({"model": "behaviour_kmeans", "rows": len(behaviour),
                     "params": {"k": seg.k, "features": config.behaviour.feature_names},
                     "metrics": {"silhouette": {str(k): v for k, v in seg.silhouette.items()},
                                 "sizes": seg.profiles.set_index("cluster_id")["size"].to_dict()},
                     "status": "published"})
    seconds["behaviour_kmeans"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    churn = ChurnModel(config.churn)
    try:
        churn.fit(orders, as_of)
        metrics = churn.evaluation.metrics() if churn.evaluation else {}
        if churn.is_usable:
            fitted.churn, status = churn, "published"
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
    t = time.perf_counter()
    try:
        fitted.clv = fit_clv(summary, as_of)
    except ValueError as exc:  # e.g. a new shop where nobody has bought twice yet
        log.warning("CLV model not fitted: %s", exc)
        runs.append({"model": "clv_bgnbd_gamma_gamma", "rows": len(summary), "status": "refused",
                     "params": {"time_unit": TIME_UNIT}, "metrics": {"error": str(exc)}})
    if fitted.clv is not None:
        clv = fitted.clv
        population = score_clv(summary, clv, config.clv.horizon_weeks, config.clv.annual_discount_rate)
        fitted.tier_thresholds = tier_thresholds(population["clv"], config.tiers)
        runs.append({"model": "clv_bgnbd_gamma_gamma", "rows": len(summary), "status": "published",
                     "params": {**clv.params, "time_unit": TIME_UNIT, "horizon_weeks": config.clv.horizon_weeks,
                                "annual_discount_rate": config.clv.annual_discount_rate,
                                "tier_thresholds": dict(zip([tr.name for tr in config.tiers[:-1]],
                                                            fitted.tier_thresholds, strict=True))},
                     "metrics": {"converged": clv.converged, "n_repeat_customers": clv.n_repeat_customers,
                                 "spend_model": clv.spend_model,
                                 "frequency_spend_corr": _finite(clv.frequency_spend_corr),
                                 "log_likelihood_bgnbd": _finite(clv.log_likelihood_bgnbd)}})
    seconds["clv_bgnbd_gamma_gamma"] = round(time.perf_counter() - t, 3)
    fitted.run_ids = {r["model"]: _run_id(r["model"], as_of) for r in runs if r["status"] == "published"}
    return fitted, runs, seg


def _start_time(conn: psycopg.Connection) -> dt.datetime:
    return conn.execute("select now()").fetchone()[0]


def score_all(as_of: dt.date, url: str | None = None, config: ScoringConfig | None = None,
              settings: Settings | None = None, *, reason: str = "requested") -> dict[str, Any]:
    """Refit every model and score every eligible customer as of `as_of` (see the module docstring); the
    fit is recorded in ``scoring.model_runs`` with `reason`. Returns a small summary."""
    started = time.perf_counter()
    settings = settings or get_settings()
    config = config or load_scoring_config()
    url = url or settings.warehouse_url
    cutoff = pd.Timestamp(as_of).tz_localize("UTC") + pd.Timedelta(days=1)
    code_version = _code_version()

    with connect(url) as conn:
        conn.execute("set timezone = 'UTC'")
        scored_at = _start_time(conn)
        orders, behaviour = _read_inputs(conn, cutoff, None)
        previous = _previous_centroids(conn, as_of)
        _, edges = _rfm_edges(conn, {"as_of": as_of, "cutoff": cutoff})
    if orders.empty:
        raise RuntimeError(f"no revenue orders on or before {as_of} in marts.fct_orders: nothing to score")
    log.info("scoring as of %s (full, %s): %s orders of %s customers", as_of, reason, len(orders),
             orders["customer_id"].nunique())
    summary = customer_summary(orders, as_of)
    seconds: dict[str, float] = {"load_features": round(time.perf_counter() - started, 3)}
    fitted, runs, seg = _fit(as_of, orders, summary, behaviour, previous, config, seconds)
    t = time.perf_counter()
    scores = _apply(fitted, summary, behaviour, edges, config)
    seconds["rfm"] = round(time.perf_counter() - t, 3)  # applying every model; RFM dominates its cost
    runs[0]["metrics"] = {"segments": scores["rfm_segment"].value_counts().to_dict()}
    t = time.perf_counter()
    _write(url, as_of, scores, fitted, scored_at, code_version, settings, runs=runs, seg=seg, reason=reason)
    seconds["write_scores"] = round(time.perf_counter() - t, 3)
    summary_out = {"as_of": as_of.isoformat(), "mode": "full", "fit_reason": reason,
                   "customers_scored": len(scores),
                   "segments": scores["rfm_segment"].value_counts().to_dict(),
                   "model_runs": {r["model"]: r["status"] for r in runs},
                   "model_seconds": seconds,
                   "model_rows": {r["model"]: r["rows"] for r in runs}}
    log.info("scoring summary: %s", summary_out)
    return summary_out


def latest_fit(conn: psycopg.Connection, as_of: dt.date) -> dict[str, Any] | None:
    """The latest fit on or before `as_of` that persisted its models: as_of_date, path, sha256, started."""
    row = conn.execute(
        """select as_of_date, fitted_models_path, fitted_models_sha256, created_at from scoring.model_runs
            where fitted_models_path is not null and as_of_date <= %s
            order by as_of_date desc, created_at desc limit 1""", (as_of,)).fetchone()
    if not row:
        return None
    fit_started = conn.execute("select max(scored_at) from scoring.customer_scores where as_of_date = %s",
                               (row[0],)).fetchone()[0]
    return {"as_of_date": row[0], "path": row[1], "sha256": row[2], "started": fit_started or row[3]}


def refit_reason(conn: psycopg.Connection, as_of: dt.date, config: ScoringConfig,
                 fit: dict[str, Any] | None) -> str | None:
    """Why a daily run must refit rather than apply the last fitted models (None: apply them)."""
    if day_was_full(conn, as_of):
        return "weekly"
    if fit is None or not Path(fit["path"]).is_file():
        return "first"
    if (as_of - fit["as_of_date"]).days >= config.refit.every_days:
        return "due"
    if fit["as_of_date"] > as_of:
        return "requested"
    changed = _changed_since(conn, fit["started"])
    scored = conn.execute("select count(*) from scoring.customer_scores where as_of_date = %s",
                          (fit["as_of_date"],)).fetchone()[0]
    share = len(changed) / scored if scored else 1.0
    if share >= config.refit.max_changed_share:
        log.info("scoring drift: %.1f%% of the %d scored customers changed since the fit of %s (threshold %.0f%%)",
                 100 * share, scored, fit["as_of_date"], 100 * config.refit.max_changed_share)
        return "drift"
    return None


def score_day(as_of: dt.date, url: str | None = None, config: ScoringConfig | None = None,
              settings: Settings | None = None) -> dict[str, Any]:
    """The scoring DAG's run: refit and score everyone when :func:`refit_reason` says so, else apply the last
    fitted models to the customers this day changed (:func:`apply_fitted`)."""
    settings = settings or get_settings()
    config = config or load_scoring_config()
    url = url or settings.warehouse_url
    with connect(url) as conn:
        fit = latest_fit(conn, as_of)
        reason = refit_reason(conn, as_of, config, fit)
    if reason:
        return score_all(as_of, url, config, settings, reason=reason)
    return apply_fitted(as_of, url, config, settings, fit=fit)


def apply_fitted(as_of: dt.date, url: str | None = None, config: ScoringConfig | None = None,
                 settings: Settings | None = None, *, fit: dict[str, Any] | None = None,
                 everyone: bool = False) -> dict[str, Any]:
    """Apply the last fitted models as of `as_of` to the customers whose inputs changed since the last scoring
    plus those whose R, F or M score moved across today's edges (`everyone`: every eligible customer, the
    full re-score with the same models). Their rows for `as_of` are replaced; nothing is refitted."""
    started = time.perf_counter()
    settings = settings or get_settings()
    config = config or load_scoring_config()
    url = url or settings.warehouse_url
    cutoff = pd.Timestamp(as_of).tz_localize("UTC") + pd.Timedelta(days=1)
    with connect(url) as conn:
        conn.execute("set timezone = 'UTC'")
        fit = fit or latest_fit(conn, as_of)
        if fit is None:
            raise RuntimeError(f"no fitted models on or before {as_of}: run `ckp score --as-of {as_of}` first")
        fitted = _load_fitted(fit["path"], fit["sha256"])
        scored_at = _start_time(conn)
        population, edges = _rfm_edges(conn, {"as_of": as_of, "cutoff": cutoff})
        covered: set[str] | None = None
        if not everyone:
            last = conn.execute("select max(scored_at) from scoring.customer_scores where as_of_date <= %s",
                                (as_of,)).fetchone()[0]
            changed = _changed_since(conn, last) if last else set()
            crossers = _rfm_crossers(conn, as_of, edges)
            covered = changed | crossers
            log.info("scoring as of %s (daily, models of %s): %d customers changed, %d crossed an RFM edge, "
                     "%d covered of %d", as_of, fitted.as_of, len(changed), len(crossers), len(covered), population)
        orders, behaviour = _read_inputs(conn, cutoff, covered)
    summary = customer_summary(orders, as_of)
    scores = _apply(fitted, summary, behaviour, edges, config)
    seconds = {"load_features": round(time.perf_counter() - started, 3)}
    t = time.perf_counter()
    _write(url, as_of, scores, fitted, scored_at, _code_version(), settings,
           replace=None if everyone else list(scores.index))
    seconds["write_scores"] = round(time.perf_counter() - t, 3)
    out = {"as_of": as_of.isoformat(), "mode": "all" if everyone else "daily", "fit_reason": None,
           "models_of": fitted.as_of.isoformat(), "customers_scored": len(scores),
           "customers_covered": None if covered is None else len(covered), "population": population,
           "segments": scores["rfm_segment"].value_counts().to_dict() if len(scores) else {},
           "model_runs": {m: "applied" for m in fitted.run_ids}, "model_seconds": seconds}
    log.info("scoring summary: %s", out)
    return out


SCORE_COLUMNS = ["customer_id", "as_of_date", "recency_days", "frequency", "monetary", "r_score", "f_score",
                 "m_score", "rfm_segment", "behaviour_cluster", "behaviour_profile", "churn_probability",
                 "expected_purchases", "p_alive", "predicted_clv", "value_tier", "model_run_ids", "scored_at"]


def _score_rows(frame: pd.DataFrame, as_of: dt.date, published: dict[str, str], scored_at: dt.datetime):
    for row in frame.itertuples(index=False):
        rec = row._asdict()
        values = []
        for c in SCORE_COLUMNS:
            if c == "as_of_date":
                values.append(as_of)
            elif c == "model_run_ids":
                values.append(Jsonb(published))
            elif c == "scored_at":
                values.append(scored_at)
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


def _write(url: str, as_of: dt.date, scores: pd.DataFrame, fitted: FittedModels, scored_at: dt.datetime,
           code_version: str, settings: Settings, *, runs: list[dict[str, Any]] | None = None, seg=None,
           reason: str | None = None, replace: list[str] | None = None) -> None:
    """Write the scores of `as_of` (all of that day's rows, or those of the `replace` customers) and, after a
    fit (`runs`), the model runs with the fitted models file. `scored_at`: when the run began reading, so the
    next daily run re-scores whatever changed after that."""
    frame = scores.reset_index().rename(columns={"index": "customer_id"})
    models_path, models_digest = _save_fitted(settings, fitted) if runs else (None, None)
    with connect(url) as conn, conn.transaction():
        for r in runs or ():
            rid = _run_id(r["model"], as_of)
            path, digest = _save_artifact(settings, rid, {"params": r["params"], "metrics": r["metrics"]})
            conn.execute("delete from scoring.cluster_centroids where model_run_id = %s", (rid,))
            conn.execute("delete from scoring.model_runs where model_run_id = %s", (rid,))
            conn.execute(
                """insert into scoring.model_runs (model_run_id, model, model_version, as_of_date, training_rows,
                       parameters, metrics, artifact_path, artifact_sha256, code_version, status, fit_reason,
                       fitted_models_path, fitted_models_sha256)
                   values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                (rid, r["model"], MODEL_VERSION, as_of, r["rows"], Jsonb(json.loads(json.dumps(r["params"],
                 default=str))), Jsonb(json.loads(json.dumps(r["metrics"], default=str))), path, digest,
                 code_version, r["status"], reason, models_path, models_digest))
        if seg is not None:
            rid = _run_id("behaviour_kmeans", as_of)
            labels = seg.profiles.set_index("cluster_id")
            for cid, centroid in seg.centroids.iterrows():
                conn.execute(
                    "insert into scoring.cluster_centroids (model_run_id, cluster_id, centroid, size, profile) "
                    "values (%s, %s, %s, %s, %s)",
                    (rid, int(cid), Jsonb({k: float(v) for k, v in centroid.items()}),
                     int(labels.loc[cid, "size"]), str(labels.loc[cid, "label"])))
        if replace is None:
            conn.execute("delete from scoring.customer_scores where as_of_date = %s", (as_of,))
        else:
            conn.execute("delete from scoring.customer_scores where as_of_date = %s and customer_id = any(%s)",
                         (as_of, replace))
        copy_rows(conn, f"copy scoring.customer_scores ({', '.join(SCORE_COLUMNS)}) from stdin",
                  _score_rows(frame, as_of, fitted.run_ids, scored_at))
    log.info("wrote %s customer scores for %s%s", len(frame), as_of,
             f" and {len(runs)} model runs ({reason})" if runs else "")
