"""Incremental extraction from the operational orders database by `updated_at` watermark.

Per table, one batch = the window (watermark - look-back, max(updated_at) at the start]. Rows stream
from the source's `COPY ... TO STDOUT` straight into a temporary table in the warehouse (no Python
row handling), then into `raw.orders__<table>` except versions the warehouse already holds (same key,
same content hash: the look-back window re-reads them on purpose, to catch late commits). The rows,
the ledger row and the new watermark commit together, so a failed run moves nothing and the next run
re-reads the same window.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass
from typing import Any

import psycopg
from psycopg import sql

from crm_knowledge.ingest import ledger
from crm_knowledge.ingest.registry import SourceConfig
from crm_knowledge.settings import Settings, env_value, get_settings
from crm_knowledge.warehouse.db import connect

log = logging.getLogger(__name__)

EPOCH = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)


@dataclass
class WindowResult:
    source_name: str
    table: str
    status: str  # loaded | empty
    batch_id: str | None
    window_start: str | None
    window_end: str | None
    rows_read: int = 0
    rows_loaded: int = 0
    rows_duplicate: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _raw_columns(conn: psycopg.Connection, table: str) -> list[str]:
    rows = conn.execute(
        """select column_name from information_schema.columns
            where table_schema = 'raw' and table_name = %s and column_name not like '\\_%%'
            order by ordinal_position""",
        (f"orders__{table}",),
    ).fetchall()
    if not rows:
        raise RuntimeError(f"raw.orders__{table} does not exist; run the warehouse bootstrap first")
    return [r[0] for r in rows]


def extract_table(src: psycopg.Connection, wh: psycopg.Connection, cfg: SourceConfig, table: str) -> WindowResult:
    pk = cfg.tables[table]["primary_key"]
    cols = _raw_columns(wh, table)
    ident_cols = sql.SQL(", ").join(sql.Identifier(c) for c in cols)

    row = wh.execute("select high_watermark from audit.watermarks where source_name = %s and table_name = %s",
                     (cfg.name, table)).fetchone()
    watermark = row[0] if row and row[0] else EPOCH
    upper = src.execute(sql.SQL("select max(updated_at) from {}").format(sql.Identifier(table))).fetchone()[0]
    if upper is None or upper <= watermark:
        log.info("%s.%s: nothing changed since %s", cfg.name, table, watermark.isoformat())
        return WindowResult(cfg.name, table, "empty", None, watermark.isoformat(), watermark.isoformat())
    lower = watermark - dt.timedelta(minutes=cfg.lookback_minutes) if watermark > EPOCH else EPOCH

    batch_id = ledger.new_batch_id(f"{cfg.name}.{table}")
    window_label = f"{table} updated_at in ({lower.isoformat()}, {upper.isoformat()}]"
    with wh.transaction():
        ledger.open_batch(wh, batch_id=batch_id, source_name=f"{cfg.name}.{table}", source_kind=cfg.kind,
                          source_file=window_label, checksum=None, window=(lower, upper))
    counts = ledger.BatchCounts()
    try:
        with wh.transaction():
            tmp = sql.Identifier(f"_extract_{table}")
            wh.execute(sql.SQL("create temp table {} on commit drop as select {} from raw.{} with no data").format(
                tmp, ident_cols, sql.Identifier(f"orders__{table}")))
            out_sql = sql.SQL(
                "copy (select {cols} from {t} where updated_at > {lo} and updated_at <= {hi} order by {pk}) to stdout"
            ).format(cols=ident_cols, t=sql.Identifier(table), lo=sql.Literal(lower), hi=sql.Literal(upper),
                     pk=sql.Identifier(pk))
            in_sql = sql.SQL("copy {} ({}) from stdin").format(tmp, ident_cols)
            with src.cursor() as scur, wh.cursor() as wcur:
                with scur.copy(out_sql) as cout, wcur.copy(in_sql) as cin:
                    for block in cout:
                        cin.write(block)
            counts.rows_read = wh.execute(sql.SQL("select count(*) from {}").format(tmp)).fetchone()[0]
            hash_expr = sql.SQL("md5(row({})::text)").format(
                sql.SQL(", ").join(sql.SQL("t.") + sql.Identifier(c) for c in cols))
            inserted = wh.execute(sql.SQL(
                """insert into raw.{raw} ({cols}, _batch_id, _source_file, _loaded_at, _row_number, _record_hash)
                   select {tcols}, %(batch)s, %(label)s, now(), row_number() over (order by t.{pk}), h.hash
                     from {tmp} t
                     cross join lateral (select {hash} as hash) h
                    where not exists (select 1 from raw.{raw} r where r.{pk} = t.{pk} and r._record_hash = h.hash)"""
            ).format(raw=sql.Identifier(f"orders__{table}"), cols=ident_cols,
                     tcols=sql.SQL(", ").join(sql.SQL("t.") + sql.Identifier(c) for c in cols),
                     pk=sql.Identifier(pk), tmp=tmp, hash=hash_expr),
                {"batch": batch_id, "label": window_label})
            counts.rows_loaded = inserted.rowcount
            counts.rows_duplicate = counts.rows_read - counts.rows_loaded
            wh.execute(
                """insert into audit.watermarks (source_name, table_name, high_watermark, updated_at)
                   values (%s, %s, %s, now())
                   on conflict (source_name, table_name)
                   do update set high_watermark = excluded.high_watermark, updated_at = now()""",
                (cfg.name, table, upper))
            ledger.close_batch(wh, batch_id, "loaded", counts)
    except Exception as exc:
        with wh.transaction():
            ledger.close_batch(wh, batch_id, "failed", ledger.BatchCounts(), error=f"{type(exc).__name__}: {exc}")
        raise
    log.info("%s.%s: window %s: read %s, loaded %s, already held %s", cfg.name, table, window_label,
             counts.rows_read, counts.rows_loaded, counts.rows_duplicate)
    return WindowResult(cfg.name, table, "loaded", batch_id, lower.isoformat(), upper.isoformat(),
                        counts.rows_read, counts.rows_loaded, counts.rows_duplicate)


def source_url(cfg: SourceConfig, settings: Settings) -> str:

    if cfg.connection_env and env_value(cfg.connection_env):
        return env_value(cfg.connection_env)
    return settings.orders_url


def extract_orders_db(cfg: SourceConfig, tables: list[str] | None = None,
                      settings: Settings | None = None) -> list[WindowResult]:
    """Extract every configured table (parents before children) from the orders database."""
    settings = settings or get_settings()
    order = [t for t in ("products", "customers", "orders", "order_items") if t in cfg.tables]
    results = []
    # A repeatable-read snapshot on the source: all tables are read as of one instant.
    with connect(source_url(cfg, settings)) as src, \
            connect(settings.warehouse_url, autocommit=True) as wh:
        src.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        src.read_only = True
        for table in tables or order:
            results.append(extract_table(src, wh, cfg, table))
            if results[-1].rows_loaded:
                ledger.analyze_after_load(wh, f"raw.orders__{table}")
    return results
