"""Customer data report: everything the warehouse holds about one customer, as JSON (``ckp customer-report``).

Customers are told what is collected and how it is used; on a *verified* access request (the privacy
officer checked the requester's identity and names who did in ``--verified-by``) this produces the answer:

* ``golden_record``   -- the pii vault's profile, the customer dimension and the 360 view;
* ``source_records``  -- which record of which system we know them by (identity map), with the personal
  fields each carried (``pii.pii_source_identities``);
* ``knowledge_items`` -- the knowledge repository (about / from / for the customer), with dates;
* ``segments`` and ``scores`` -- every segment and model score with its as-of date;
* ``consent_history`` -- every consent statement, with source and time;
* ``deliveries``      -- what was sent to which destination when (``scoring.communications`` joined to the
  export log) and what each destination currently holds (``scoring.delivered_state``);
* ``activity``        -- orders, interactions and form submissions;
* ``other_tables``    -- rows of any other table in marts / pii / scoring / snapshots keyed by the
  customer id, so the report stays complete when a model is added.

The customer is found by customer id or through the identity map from an email / phone / national ID
(privacy/lookup.py, the same lookup erasure uses). The report holds personal data: it is written to the
requested file only; ``audit.customer_data_reports`` records who verified it, when, how many rows per
section and the file's SHA-256 — not its content. Runs as a role that may read ``pii`` (privacy officer
or pipeline).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from crm_knowledge.privacy import lookup
from crm_knowledge.settings import Settings, get_settings
from crm_knowledge.warehouse.db import connect, table_exists

log = logging.getLogger(__name__)

#: section -> tables (schema, table) read by customer_id, in this order
SECTIONS: dict[str, list[tuple[str, str]]] = {
    "golden_record": [("pii", "pii_customer_profiles"), ("marts", "dim_customers"), ("marts", "customer_360")],
    "source_records": [("marts", "customer_identity_map"), ("pii", "pii_source_identities")],
    "knowledge_items": [("marts", "customer_knowledge")],
    "segments": [("marts", "customer_segments")],
    "scores": [("scoring", "customer_scores")],
    "consent_history": [("marts", "fct_consent_events")],
    "activity": [("marts", "fct_orders"), ("marts", "fct_interactions"), ("marts", "fct_form_submissions"),
                 ("marts", "fct_order_items")],
}
OTHER_SCHEMAS = ("marts", "pii", "scoring", "snapshots")
#: columns to order rows by, first one present wins
_ORDER_COLUMNS = ("as_of_date", "observed_at", "event_at", "occurred_at", "ordered_at", "submitted_at",
                  "communicated_at", "delivered_at", "scored_at", "dbt_valid_from", "source_system")


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def _columns(conn: psycopg.Connection, schema: str, table: str) -> list[str]:
    return [r[0] for r in conn.execute(
        "select column_name from information_schema.columns where table_schema = %s and table_name = %s "
        "order by ordinal_position", (schema, table)).fetchall()]


def _rows(conn: psycopg.Connection, schema: str, table: str, customer_ids: list[str]) -> list[dict[str, Any]] | None:
    cols = _columns(conn, schema, table)
    if "customer_id" not in cols:
        return None
    order = [c for c in _ORDER_COLUMNS if c in cols][:1]
    q = sql.SQL("select * from {}.{} where customer_id::text = any(%s){}").format(
        sql.Identifier(schema), sql.Identifier(table),
        sql.SQL(" order by {}").format(sql.Identifier(order[0])) if order else sql.SQL(""))
    with conn.cursor(row_factory=dict_row) as cur:
        return [{k: _json_value(v) for k, v in row.items()} for row in cur.execute(q, (customer_ids,)).fetchall()]


def _deliveries(conn: psycopg.Connection, customer_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {"communications": [], "held_by_destinations": []}
    with conn.cursor(row_factory=dict_row) as cur:
        if table_exists(conn, "scoring.communications"):
            out["communications"] = [{k: _json_value(v) for k, v in r.items()} for r in cur.execute(
                "select c.destination, c.audience, c.change_type, c.kind, c.purpose, c.communicated_at, "
                "e.kind as destination_kind, e.as_of_date, e.status from scoring.communications c "
                "left join audit.exports e on e.export_id = c.export_id where c.customer_id = any(%s) "
                "order by c.communicated_at", (customer_ids,)).fetchall()]
        if table_exists(conn, "scoring.delivered_state"):
            out["held_by_destinations"] = [{k: _json_value(v) for k, v in r.items()} for r in cur.execute(
                "select destination, destination_key, payload, delivered_at from scoring.delivered_state "
                "where customer_id = any(%s) order by destination, destination_key", (customer_ids,)).fetchall()]
    return out


def build_report(conn: psycopg.Connection, *, email: str | None = None, phone: str | None = None,
                 national_id: str | None = None, customer_id: str | None = None,
                 declared: dict[str, str] | None = None) -> dict[str, Any]:
    """The report for the customer(s) the identifiers (or the customer id) name; `declared`: identifier kinds
    declared in config/identity.yml ({"passport": "X1234567"})."""
    if customer_id:
        ids = {customer_id}
        if any((email, phone, national_id, *(declared or {}).values())):
            ids |= lookup.find(conn, lookup.normalise_identifiers(email, phone, national_id, declared)).customer_ids
    else:
        ids = lookup.find(conn, lookup.normalise_identifiers(email, phone, national_id, declared)).customer_ids
    customer_ids = sorted(ids)
    report: dict[str, Any] = {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "customer_ids": customer_ids,
        "note": ("Everything this organisation's customer warehouse holds about you. Source systems (the "
                 "order system, sibling business units) hold their own copies; see docs/privacy.md."),
    }
    covered: set[tuple[str, str]] = set()
    for section, tables in SECTIONS.items():
        report[section] = {}
        for schema, table in tables:
            covered.add((schema, table))
            if not customer_ids:
                report[section][table] = []
                continue
            if not table_exists(conn, f"{schema}.{table}"):
                continue
            rows = _rows(conn, schema, table, customer_ids)
            if rows is not None:
                report[section][table] = rows
    report["deliveries"] = _deliveries(conn, customer_ids) if customer_ids else {
        "communications": [], "held_by_destinations": []}
    report["other_tables"] = {}
    if customer_ids:
        for schema, table in conn.execute(
                "select table_schema, table_name from information_schema.columns where column_name = 'customer_id' "
                "and table_schema = any(%s) order by 1, 2", (list(OTHER_SCHEMAS),)).fetchall():
            if (schema, table) in covered or table in ("communications", "delivered_state"):
                continue
            rows = _rows(conn, schema, table, customer_ids)
            if rows:
                report["other_tables"][f"{schema}.{table}"] = rows
    return report


def section_counts(report: dict[str, Any]) -> dict[str, int]:
    counts = {}
    for key, value in report.items():
        if isinstance(value, dict):
            counts[key] = sum(len(v) for v in value.values() if isinstance(v, list))
    return counts


def write_report(output: str | Path, *, verified_by: str, email: str | None = None, phone: str | None = None,
                 national_id: str | None = None, customer_id: str | None = None,
                 declared: dict[str, str] | None = None,
                 settings: Settings | None = None, url: str | None = None) -> dict[str, Any]:
    """Write the report to `output` (mode 0600) and record it in the audit log; returns a summary (no PII)."""
    if not verified_by or not verified_by.strip():
        raise ValueError("a customer data report needs --verified-by: who verified the requester's identity")
    settings = settings or get_settings()
    with connect(url or settings.warehouse_url, application_name="crm_knowledge.data_report") as conn:
        report = build_report(conn, email=email, phone=phone, national_id=national_id, customer_id=customer_id,
                              declared=declared)
        data = (json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        path = Path(output)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600, exist_ok=True)
        path.chmod(0o600)
        path.write_bytes(data)
        report_id = "rep-" + uuid.uuid4().hex[:16]
        counts = section_counts(report)
        digest = hashlib.sha256(data).hexdigest()
        conn.execute("insert into audit.customer_data_reports (report_id, verified_by, customers, sections, sha256) "
                     "values (%s, %s, %s, %s, %s)",
                     (report_id, verified_by.strip(), len(report["customer_ids"]), Jsonb(counts), digest))
    summary = {"report_id": report_id, "output": str(path), "customers": len(report["customer_ids"]),
               "sections": counts, "sha256": digest}
    log.info("customer data report %s: %d customer(s), sections %s -> %s", report_id, summary["customers"], counts,
             path)
    return summary
