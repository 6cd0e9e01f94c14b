"""Lineage: the static map of the pipeline (for the auditor's report) and OpenLineage's configuration.

:data:`SOURCES` and :data:`CUSTOMER_VIEW_PATH` describe how each source reaches the customer view and the
exports; the report combines them with what happened (``audit.load_batches``, ``audit.exports``).

:func:`openlineage_env` returns the environment variables that make Airflow's OpenLineage provider
(apache-airflow-providers-openlineage) write its events to a local JSON Lines file instead of sending
them to a server: ``[openlineage] transport`` is the openlineage-python transport config as JSON, here
the ``file`` transport (``log_file_path``; ``append: true`` keeps one file instead of one per event).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from crm_knowledge.export.config import DestinationConfig, load_destinations
from crm_knowledge.privacy.file_modes import private_dir
from crm_knowledge.settings import Settings, get_settings

OPENLINEAGE_NAMESPACE = "crm_knowledge"


def openlineage_events_path(settings: Settings | None = None) -> Path:
    return (settings or get_settings()).reports_dir / "openlineage" / "events.jsonl"


def openlineage_transport(settings: Settings | None = None) -> dict:
    return {"type": "file", "log_file_path": str(openlineage_events_path(settings)), "append": True}


def openlineage_env(settings: Settings | None = None, *, create_dir: bool = True) -> dict[str, str]:
    """Environment for `airflow dags test` / workers: OpenLineage events to ``<reports>/openlineage/``.

    An explicitly configured transport (``AIRFLOW__OPENLINEAGE__TRANSPORT`` already set by the
    deployment, e.g. to a Marquez server) is the caller's to keep: merge with ``{**this, **os.environ}``.
    """
    path = openlineage_events_path(settings)
    if create_dir:
        private_dir(path.parent)
    return {
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(openlineage_transport(settings)),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": OPENLINEAGE_NAMESPACE,
        "AIRFLOW__OPENLINEAGE__DISABLED": "False",
    }


# --- static map of the pipeline ------------------------------------------------------------------

@dataclass(frozen=True)
class SourceLineage:
    kind: str              # source_kind in audit.load_batches (`kind` of config/sources/*.yml)
    origin: str            # where the data comes from
    raw: tuple[str, ...]   # raw tables
    staging: tuple[str, ...]
    feeds: str             # what the staging models feed on the way to the customer view


SOURCES: tuple[SourceLineage, ...] = (
    SourceLineage("forms", "landing zone forms/*.jsonl (web team)", ("raw.form_submissions",),
                  ("staging.stg_forms__submissions",),
                  "identity candidates, consent events, complaints, knowledge items"),
    SourceLineage("sibling_unit", "landing zone siblings/<unit>/* (CSV/XLSX of sibling units)",
                  ("raw.sibling_customers",), ("staging.stg_siblings__customers",),
                  "identity candidates, golden-record attributes, consents"),
    SourceLineage("contacts", "landing zone contacts/*.csv (contact-centre export)",
                  ("raw.contact_interactions",), ("staging.stg_contacts__interactions",),
                  "identity candidates, interactions"),
    SourceLineage("order_export", "landing zone order_exports/<shop>/*.csv (shops without database)",
                  ("raw.order_exports",), ("staging.stg_order_exports__orders",),
                  "orders (attributed through the orders-database customer)"),
    SourceLineage("orders_db", "operational orders database (incremental by updated_at)",
                  ("raw.orders__customers", "raw.orders__products", "raw.orders__orders",
                   "raw.orders__order_items"),
                  ("staging.stg_orders__customers", "staging.stg_orders__products",
                   "staging.stg_orders__orders", "staging.stg_orders__order_items"),
                  "identity candidates, orders, order items, products"),
)

#: From staging to the customer view and on to the exports (dbt models and Python tasks).
CUSTOMER_VIEW_PATH: tuple[tuple[str, str], ...] = (
    ("intermediate.int_identity_candidates", "dbt: one row per customer-bearing source record, normalised"),
    ("identity.record_clusters", "Python/Splink: deterministic + probabilistic identity resolution"),
    ("marts.customer_identity_map", "dbt: source record -> customer id"),
    ("marts.fct_orders / marts.fct_order_items", "dbt: orders of all sources attributed to customers"),
    ("marts.dim_customers", "dbt: the customer view (golden record, consent, activity)"),
    ("scoring.customer_scores", "Python/scikit-learn: RFM, behaviour clusters, churn, CLV, value tier"),
    ("marts.customer_segments", "dbt: current segment per customer (profiling opt-outs removed)"),
)

CUSTOMER_VIEW = "marts.dim_customers"


def lineage_for_kind(kind: str) -> SourceLineage | None:
    return next((s for s in SOURCES if s.kind == kind), None)


def destinations(settings: Settings | None = None) -> tuple[DestinationConfig, ...]:
    """Configured export destinations (``config/destinations.yml``), read by the exports' own reader.

    No file: no destination. An invalid file raises :class:`~crm_knowledge.config_reader.ConfigError`
    like it does for the exports (callers that must not fail on it catch that).
    """
    path = (settings or get_settings()).destinations_file
    if not path.exists():
        return ()
    return load_destinations(path).destinations


EXPORT_INPUT = "marts.customer_segments"
