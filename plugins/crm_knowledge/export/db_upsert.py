"""Database destination: upsert the delta into a table of another PostgreSQL database, in one transaction.

The table (``database.table``, e.g. ``public.customer_segments`` in the orders database) is created if missing:
``<key_column> text primary key, audience text, <fields, typed>, as_of_date date, delivery_id text,
delivered_at timestamptz``. Added and changed rows are ``insert ... on conflict (<key>) do update`` (or
``do nothing`` for ``insert_only``), removals are deleted. Either all of the delta is applied or none of it.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import psycopg
from psycopg import sql

from crm_knowledge.export.config import DIM_FIELDS, PII_FIELDS, SEGMENT_FIELDS, DestinationConfig
from crm_knowledge.export.file_drop import SendResult
from crm_knowledge.warehouse.db import connect


def column_types(dest: DestinationConfig) -> dict[str, str]:
    types = {dest.key_column: "text", "audience": "text"}
    for f in dest.fields:
        types[f] = SEGMENT_FIELDS.get(f) or DIM_FIELDS.get(f) or "text"
    for f in dest.named_fields:
        types[f] = PII_FIELDS[f]
    return types


def _table(dest: DestinationConfig) -> sql.Composable:
    assert dest.database is not None
    schema, table = dest.database.table.split(".", 1)
    return sql.Identifier(schema, table)


def ensure_table(conn: psycopg.Connection, dest: DestinationConfig) -> None:
    assert dest.database is not None
    schema, table = dest.database.table.split(".", 1)
    types = column_types(dest)
    cols = [sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in types.items()]
    if not conn.execute("select 1 from pg_namespace where nspname = %s", (schema,)).fetchone():
        conn.execute(sql.SQL("create schema {}").format(sql.Identifier(schema)))
    conn.execute(sql.SQL(
        "create table if not exists {} ({}, as_of_date date, delivery_id text, "
        "delivered_at timestamptz not null default now(), primary key ({}))"
    ).format(_table(dest), sql.SQL(", ").join(cols), sql.Identifier(dest.key_column)))
    have = {r[0] for r in conn.execute(
        "select column_name from information_schema.columns where table_schema = %s and table_name = %s",
        (schema, table)).fetchall()}
    missing = [c for c in [*types, "as_of_date", "delivery_id", "delivered_at"] if c not in have]
    if missing:
        raise RuntimeError(f"destination {dest.name!r}: table {dest.database.table} exists but lacks the "
                           f"column(s) {', '.join(missing)}")


def send(dest: DestinationConfig, records: list[dict[str, Any]], *, delivery_id: str, as_of: date,
         url: str) -> SendResult:
    assert dest.database is not None
    types = column_types(dest)
    cols = list(types)
    key = dest.key_column
    upserts = [r for r in records if r["change_type"] in ("added", "changed")]
    removals = [r[key] for r in records if r["change_type"] == "removed"]
    insert_cols = [*cols, "as_of_date", "delivery_id"]
    values = sql.SQL(", ").join(
        [sql.SQL("%s::{}").format(sql.SQL(types[c])) for c in cols] + [sql.SQL("%s::date"), sql.SQL("%s")])
    if dest.mode == "insert_only":
        conflict = sql.SQL("do nothing")
    else:
        conflict = sql.SQL("do update set {}, delivered_at = now()").format(sql.SQL(", ").join(
            sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c)) for c in insert_cols if c != key))
    insert = sql.SQL("insert into {} ({}) values ({}) on conflict ({}) {}").format(
        _table(dest), sql.SQL(", ").join(map(sql.Identifier, insert_cols)), values, sql.Identifier(key), conflict)
    with connect(url, application_name="crm_knowledge.export") as conn:
        ensure_table(conn, dest)
        with conn.cursor() as cur:
            if upserts:
                cur.executemany(insert, [[r.get(c) for c in cols] + [as_of, delivery_id] for r in upserts])
            if removals:
                cur.execute(sql.SQL("delete from {} where {} = any(%s::text[])").format(
                    _table(dest), sql.Identifier(key)), (removals,))
        # leaving the block commits; an exception rolls the whole delta back
    safe = psycopg.conninfo.conninfo_to_dict(url)
    location = f"postgresql://{safe.get('host', '')}:{safe.get('port', '')}/{safe.get('dbname', '')}" \
               f"?table={dest.database.table}"
    return SendResult(location=location)
