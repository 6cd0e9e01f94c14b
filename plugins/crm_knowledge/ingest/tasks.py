"""Entry points the ingestion DAGs call: one per source kind, each returning a small JSON-able summary.

They take source *names* (strings), never data frames, so Airflow passes only small values through
XCom, and each ensures the warehouse schema first so a fresh deployment needs no manual setup.
"""

from __future__ import annotations

import logging
from typing import Any

from crm_knowledge.ingest.files import ingest_source
from crm_knowledge.ingest.orders_db import extract_orders_db
from crm_knowledge.ingest.registry import SourceConfig, load_registry
from crm_knowledge.settings import get_settings
from crm_knowledge.warehouse.bootstrap import apply_ddl

log = logging.getLogger(__name__)


def source_names(kind: str) -> list[str]:
    """Names of the registered sources of one kind (used for dynamic task mapping)."""
    return [s.name for s in load_registry() if s.kind == kind]


def _source(name: str) -> SourceConfig:
    for s in load_registry():
        if s.name == name:
            return s
    raise KeyError(f"no source named {name!r} in {get_settings().sources_dir}")


def prepare_warehouse() -> list[str]:
    """Apply the warehouse DDL (idempotent)."""
    return apply_ddl(get_settings().warehouse_url)


def ingest_file_source(name: str) -> dict[str, Any]:
    cfg = _source(name)
    results = ingest_source(cfg)
    summary = {
        "source": name,
        "files": len(results),
        "loaded": sum(r.status == "loaded" for r in results),
        "skipped": sum(r.status == "skipped" for r in results),
        "quarantined": sum(r.status == "quarantined" for r in results),
        "rows_loaded": sum(r.rows_loaded for r in results),
        "rows_rejected": sum(r.rows_rejected for r in results),
        "batch_ids": [r.batch_id for r in results if r.status == "loaded"],
    }
    log.info("ingest summary: %s", summary)
    return summary


def ingest_orders_database(name: str = "orders") -> dict[str, Any]:
    cfg = _source(name)
    results = extract_orders_db(cfg)
    tables: dict[str, dict[str, Any]] = {}
    for r in results:  # a change window per table, then perhaps a key reconciliation of the same table
        entry = tables.setdefault(r.table, {"status": "empty", "rows_loaded": 0, "rows_read": 0,
                                            "rows_rejected": 0, "rows_deleted": 0, "window_end": None})
        entry["status"] = "loaded" if "loaded" in (entry["status"], r.status) else r.status
        entry["rows_loaded"] += r.rows_loaded
        entry["rows_read"] += r.rows_read
        entry["rows_rejected"] += r.rows_rejected
        entry["rows_deleted"] += r.rows_deleted
        entry["window_end"] = entry["window_end"] or r.window_end
    summary = {
        "source": name,
        "tables": tables,
        "rows_loaded": sum(r.rows_loaded for r in results),
        "rows_rejected": sum(r.rows_rejected for r in results),
        "rows_deleted": sum(r.rows_deleted for r in results),
        "batch_ids": [r.batch_id for r in results if r.batch_id],
    }
    log.info("ingest summary: %s", summary)
    return summary
