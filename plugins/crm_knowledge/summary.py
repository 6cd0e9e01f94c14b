"""What a pipeline run produced, in numbers: printed at the end of `make run`."""

from __future__ import annotations

from typing import Any

import psycopg

from crm_knowledge.privacy.roles import AUDITOR, BI_READER, login_url
from crm_knowledge.settings import Settings, WarehouseNotConfigured
from crm_knowledge.warehouse.db import connect

LAYERS = ("raw", "staging", "intermediate", "identity", "marts", "pii", "scoring", "audit")


def collect_summary(settings: Settings) -> dict[str, Any]:
    out: dict[str, Any] = {"layers": {}}
    with connect(settings.warehouse_url) as conn:
        tables = conn.execute(
            """select table_schema, table_name from information_schema.tables
                where table_schema = any(%s) and table_type in ('BASE TABLE', 'VIEW')
                order by 1, 2""", (list(LAYERS),)).fetchall()
        for schema, table in tables:
            n = conn.execute(psycopg.sql.SQL("select count(*) from {}.{}").format(
                psycopg.sql.Identifier(schema), psycopg.sql.Identifier(table))).fetchone()[0]
            out["layers"].setdefault(schema, {})[table] = n

        def scalar(query: str) -> Any:
            try:
                with conn.transaction():
                    return conn.execute(query).fetchone()[0]
            except psycopg.errors.UndefinedTable:
                return None

        out["customers_unified"] = scalar("select count(distinct customer_id) from marts.customer_identity_map")
        out["source_records_resolved"] = scalar("select count(*) from marts.customer_identity_map")
        out["customers_scored"] = scalar("select count(*) from marts.customer_segments")
        out["batches"] = dict(conn.execute(
            "select status, count(*) from audit.load_batches group by status order by 1").fetchall())
        out["exports"] = scalar("select count(*) from audit.exports where status = 'delivered'")
        out["campaigns_significant"] = scalar(
            "select count(distinct campaign_id) filter (where is_significant) || ' of ' || count(distinct campaign_id) "
            "from marts.campaign_lift where metric = 'orders'")
    return out


def bi_connection(settings: Settings) -> str:
    """The warehouse URL a BI tool uses: its own login (a ckp_bi_reader member), never the admin's."""
    try:
        url = settings.warehouse_url
    except WarehouseNotConfigured:
        return "postgresql://<login>@<warehouse host>"
    return login_url(url, "LOGIN").replace("LOGIN", "<login>", 1)


def format_summary(summary: dict[str, Any], settings: Settings) -> str:
    lines = ["", "=" * 72, "Pipeline summary", "=" * 72]
    for schema in LAYERS:
        tables = summary["layers"].get(schema)
        if not tables:
            continue
        total = sum(tables.values())
        lines.append(f"{schema:<13} {len(tables):>3} tables  {total:>10,} rows")
    lines += [
        f"customers unified:    {summary.get('customers_unified')} "
        f"(from {summary.get('source_records_resolved')} source records)",
        f"customers scored:     {summary.get('customers_scored')}",
        f"load batches:         {summary.get('batches')}",
        f"deliveries:           {summary.get('exports')}",
        f"pii scan findings:    {summary.get('pii_scan_findings')}   (`ckp pii-scan` lists them; 0 = no leak)",
        f"data-quality report:  {settings.reports_dir / 'latest.html'}",
        f"campaign report:      {settings.reports_dir / 'campaigns.html'}   (campaigns with a significant "
        f"orders lift: {summary.get('campaigns_significant')})",
        f"data docs:            {settings.reports_dir / 'data_docs' / 'index.html'}",
        f"dbt docs:             {settings.dbt_project_dir / 'target' / 'index.html'}",
        f"exports:              {settings.exports_dir}",
        f"BI tools (marts):     {bi_connection(settings)}   as a {BI_READER} login "
        f"(`ckp access create-login {BI_READER} <login>` makes one)",
        f"auditors:             a {AUDITOR} login (audit + marts): `ckp access create-login {AUDITOR} <login>`; "
        "the reports over HTTP: `ckp reports serve`",
        f"front line:           `ckp api-keys create --role agent --name <desk>`, then `ckp serve`: "
        f"http://{settings.serve_host}:{settings.serve_port}/agent (docs/serve.md)",
        "pipeline/admin:       `make warehouse-url` (the owner's URL: not for BI tools or people)",
        "=" * 72,
    ]
    return "\n".join(lines)
