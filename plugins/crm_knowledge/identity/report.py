"""`ckp identity-eval`: how well the warehouse's identity map matches the demo's ground truth, and why
pairs linked (Splink's charts of the latest run, :mod:`crm_knowledge.identity.charts`).

The metrics are only meaningful on demo data: the ground truth is written by the demo generator and never
read by the pipeline itself. The charts work on any deployment.
"""

from __future__ import annotations

import pandas as pd

from crm_knowledge.identity.charts import write_charts
from crm_knowledge.identity.evaluate import evaluate, format_report
from crm_knowledge.settings import Settings, get_settings
from crm_knowledge.warehouse.db import connect


def evaluation_metrics(settings: Settings | None = None, url: str | None = None) -> dict:
    settings = settings or get_settings()
    truth_file = settings.demo_dir / "ground_truth.csv"
    if not truth_file.exists():
        raise FileNotFoundError(f"no ground truth at {truth_file}: generate demo data first (`ckp demo`)")
    truth = pd.read_csv(truth_file, dtype=str)
    with connect(url or settings.warehouse_url) as conn:
        rows = conn.execute(
            "select source_system, source_record_id, customer_id from identity.record_clusters").fetchall()
    clusters = pd.DataFrame(rows, columns=["source_system", "source_record_id", "customer_id"])
    return evaluate(clusters, truth)


def evaluation_report(settings: Settings | None = None) -> str:
    return format_report(evaluation_metrics(settings))


def charts_dir(settings: Settings | None = None):
    """Where the identity charts go: next to the auditor's report (``<reports_dir>/identity/``)."""
    return (settings or get_settings()).reports_dir / "identity"


def write_identity_charts(settings: Settings | None = None, url: str | None = None, pairs: int = 20) -> dict:
    """Splink's match-weight and waterfall charts of the latest identity run, as offline HTML files."""
    settings = settings or get_settings()
    with connect(url or settings.warehouse_url) as conn:
        return write_charts(conn, charts_dir(settings), pairs=pairs)
