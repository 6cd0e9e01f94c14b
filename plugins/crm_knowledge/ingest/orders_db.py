"""Incremental extraction from the operational orders database by `updated_at` watermark.

Per table, one batch = the window (watermark - look-back, max(updated_at) at the start]. Rows stream
from the source's `COPY ... TO STDOUT` straight into a temporary table in the warehouse (no Python
row handling), then into `raw.orders__<table>` except versions the warehouse already holds (same key,
same content hash: the look-back window re-reads them on purpose, to catch late commits). The rows,
the ledger row and the new watermark commit together, so a failed run moves nothing and the next run
re-reads the same window. A row whose value the raw table cannot hold becomes a reject (raw.load_rejects)
and the rest of the window loads.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass
from typing import Any

import psycopg
from psycopg import sql

from crm_knowledge.ingest import errors, ledger
from crm_knowledge.ingest.registry import SourceConfig
from crm_knowledge.settings import Settings, env_value, get_settings
from crm_knowledge.warehouse.db import connect, table_exists

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
    rows_rejected: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _raw_columns(conn: psycopg.Connection, table: str) -> list[tuple[str, str]]:
    """(name, type as declared, e.g. numeric(14,2)) of the business columns of raw.orders__<table>."""
    if not table_exists(conn, f"raw.orders__{table}"):
        raise RuntimeError(f"raw.orders__{table} does not exist; run the warehouse bootstrap first")
    rows = conn.execute(
        """select a.attname, format_type(a.atttypid, a.atttypmod)
             from pg_attribute a
            where a.attrelid = %s::regclass and a.attnum > 0 and not a.attisdropped
              and a.attname not like '\\_%%'
            order by a.attnum""",
        (f"raw.orders__{table}",),
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def extract_table(src: psycopg.Connection, wh: psycopg.Connection, cfg: SourceConfig, table: str) -> WindowResult:
    """Extract one table's window (see module doc). Rows the warehouse refuses become rejects, not a failure.

    The source's rows land as text in a temporary table (a text value never fails), then are cast to the raw
    table's types in one `INSERT`. If the database refuses a value (an amount beyond numeric(14,2), say), that
    statement is rolled back to its savepoint and the rows go in one by one: each refused row becomes a
    reject naming the column and the error class, never the value, and every other row loads.
    """
    pk = cfg.tables[table]["primary_key"]
    typed = _raw_columns(wh, table)
    cols = [c for c, _ in typed]
    ident_cols = sql.SQL(", ").join(sql.Identifier(c) for c in cols)

    row = wh.execute("select high_watermark from audit.watermarks where source_name = %s and table_name = %s",
                     (cfg.name, table)).fetchone()
    watermark = row[0] if row and row[0] else EPOCH
    upper = src.execute(sql.SQL("select max(updated_at) from {}").format(sql.Identifier(table))).fetchone()[0]
    if upper is None or upper <= watermark:
        log.info("%s.%s: nothing changed since %s", cfg.name, table, watermark.isoformat())
        return WindowResult(cfg.name, table, "empty", None, watermark.isoformat(), watermark.isoformat())
    lower = watermark - dt.timedelta(minutes=cfg.lookback_minutes) if watermark > EPOCH else EPOCH

    source_name = f"{cfg.name}.{table}"
    batch_id = ledger.new_batch_id(source_name)
    window_label = f"{table} updated_at in ({lower.isoformat()}, {upper.isoformat()}]"
    with wh.transaction():
        ledger.open_batch(wh, batch_id=batch_id, source_name=source_name, source_kind=cfg.kind,
                          source_file=window_label, checksum=None, window=(lower, upper))
    counts = ledger.BatchCounts()
    rejects: list[tuple[int, str]] = []
    try:
        with wh.transaction():
            tmp = sql.Identifier(f"_extract_{table}")
            wh.execute(sql.SQL("create temp table {} ({}, _n bigserial) on commit drop").format(
                tmp, sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(c)) for c in cols)))
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
            casts = sql.SQL(", ").join(
                sql.SQL("{c}::{t} as {c}").format(c=sql.Identifier(c), t=sql.SQL(t)) for c, t in typed)
            hash_expr = sql.SQL("md5(row({})::text)").format(
                sql.SQL(", ").join(sql.SQL("t.") + sql.Identifier(c) for c in cols))
            insert = sql.SQL(
                """insert into raw.{raw} ({cols}, _batch_id, _source_file, _loaded_at, _row_number, _record_hash)
                   select {tcols}, %(batch)s, %(label)s, now(), t._n, h.hash
                     from (select {casts}, _n from {tmp} where %(n)s::bigint is null or _n = %(n)s) t
                     cross join lateral (select {hash} as hash) h
                    where not exists (select 1 from raw.{raw} r where r.{pk} = t.{pk} and r._record_hash = h.hash)"""
            ).format(raw=sql.Identifier(f"orders__{table}"), cols=ident_cols,
                     tcols=sql.SQL(", ").join(sql.SQL("t.") + sql.Identifier(c) for c in cols),
                     pk=sql.Identifier(pk), tmp=tmp, hash=hash_expr, casts=casts)
            params = {"batch": batch_id, "label": window_label, "n": None}
            try:
                with wh.transaction():
                    counts.rows_loaded = wh.execute(insert, params).rowcount
            except Exception as exc:
                if not errors.is_data_error(exc):
                    raise
                log.warning("%s: the warehouse refused a row of window %s (%s); loading the rows one by one",
                            source_name, window_label, errors.describe(exc))
                counts.rows_loaded = 0
                errors.quiet_server_log(wh, expected_errors=True)
                for (n,) in wh.execute(sql.SQL("select _n from {} order by _n").format(tmp)).fetchall():
                    try:
                        with wh.transaction():
                            counts.rows_loaded += wh.execute(insert, {**params, "n": n}).rowcount
                    except Exception as row_exc:
                        if not errors.is_data_error(row_exc):
                            raise
                        rejects.append((n, _refused_column(wh, tmp, typed, n, row_exc)))
            if rejects:
                with wh.cursor() as cur:
                    cur.executemany(sql.SQL(
                        """insert into raw.load_rejects (batch_id, source_name, source_file, row_number, reason,
                                                         record)
                           select %s, %s, %s, _n, %s, to_jsonb(t) - '_n' from {} t where _n = %s""").format(tmp),
                        [(batch_id, source_name, window_label, reason, n) for n, reason in rejects])
            counts.rows_rejected = len(rejects)
            counts.rows_duplicate = counts.rows_read - counts.rows_loaded - counts.rows_rejected
            wh.execute(
                """insert into audit.watermarks (source_name, table_name, high_watermark, updated_at)
                   values (%s, %s, %s, now())
                   on conflict (source_name, table_name)
                   do update set high_watermark = excluded.high_watermark, updated_at = now()""",
                (cfg.name, table, upper))
            ledger.close_batch(wh, batch_id, "loaded", counts)
    except Exception as exc:
        reason = f"{source_name}: extracting window {window_label} failed, nothing of it was kept: " \
                 f"{errors.describe(exc)}"
        try:
            with wh.transaction():
                ledger.close_batch(wh, batch_id, "failed", ledger.BatchCounts(), error=reason)
        except psycopg.Error:
            log.error("%s: batch %s could not be marked failed (the warehouse is unreachable); the next extract "
                      "marks it aborted", source_name, batch_id)
        log.error("%s (batch %s; the watermark did not move, the next run reads the window again)", reason,
                  batch_id)
        raise errors.LoadFailed(reason) from None
    for n, reason in rejects[:5]:
        log.warning("%s: window row %s rejected: %s", source_name, n, reason)
    log.info("%s.%s: window %s: read %s, loaded %s, rejected %s, already held %s", cfg.name, table, window_label,
             counts.rows_read, counts.rows_loaded, counts.rows_rejected, counts.rows_duplicate)
    return WindowResult(cfg.name, table, "loaded", batch_id, lower.isoformat(), upper.isoformat(),
                        counts.rows_read, counts.rows_loaded, counts.rows_duplicate, counts.rows_rejected)


def _refused_column(wh: psycopg.Connection, tmp: sql.Identifier, typed: list[tuple[str, str]], n: int,
                    exc: Exception) -> str:
    """The reason a row was refused, naming the first column whose value does not cast to the raw type."""
    for column, type_ in typed:
        try:
            with wh.transaction():
                wh.execute(sql.SQL("select {c}::{t} from {tmp} where _n = %s").format(
                    c=sql.Identifier(column), t=sql.SQL(type_), tmp=tmp), (n,))
        except Exception as cast_exc:
            if not errors.is_data_error(cast_exc):
                raise
            return f"column {column!r} does not fit raw type {type_}: {errors.describe(cast_exc)}"
    return f"refused by the database: {errors.describe(exc)}"


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
        # One extract of the source at a time; a window left `running` by a crash is aborted and read again
        # (its watermark never moved).
        with ledger.source_lock(wh, cfg.name):
            ledger.durable_commits(wh)
            errors.quiet_server_log(wh)
            ledger.abort_stale(wh, cfg.name)
            for table in tables or order:
                results.append(extract_table(src, wh, cfg, table))
                if results[-1].rows_loaded:
                    ledger.analyze_after_load(wh, f"raw.orders__{table}")
    return results
