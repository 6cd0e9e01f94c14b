"""Incremental extraction from an operational orders database by change-timestamp watermark.

The source's schema is the deployment's, not ours: `config/sources/orders_db.yml` names, per entity
(customers, products, orders, order_items), the source table or query, its key, its change-timestamp
column and the mapping of its columns onto the canonical fields of `raw.orders__<entity>`
(`registry.OrdersEntity`). The mapping is checked against the live source first, so a wrong name fails
with the setting named, before anything is read.

Per entity, one batch = the window (watermark - look-back, max(change timestamp) at the start]. Rows
stream from the source's `COPY ... TO STDOUT` straight into a temporary table in the warehouse (no
Python row handling), then into `raw.orders__<entity>` except versions the warehouse already holds (same
key, same content hash: the look-back window re-reads them on purpose, to catch late commits). The rows,
the ledger row and the new watermark commit together, so a failed run moves nothing and the next run
re-reads the same window. A row whose value the raw table cannot hold becomes a reject (raw.load_rejects)
and the rest of the window loads.

Deletions at the source become raw versions with `_deleted_at_source = true`: a row whose soft-delete
column says so, or, by key reconciliation, a copy of the last loaded version of a key the source no
longer holds (dated at the reconciliation). Staging drops keys whose latest version is a deletion.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass
from typing import Any

import psycopg
from psycopg import sql

from crm_knowledge.ingest import errors, ledger
from crm_knowledge.ingest.registry import OrdersEntity, SourceConfig, SourceConfigError
from crm_knowledge.settings import Settings, env_value, get_settings
from crm_knowledge.warehouse.db import connect, refresh_statistics, table_exists

log = logging.getLogger(__name__)

EPOCH = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)
#: Extraction order: parents before children.
ENTITY_ORDER = ("products", "customers", "orders", "order_items")
_TIMESTAMP_TYPES = {"timestamptz", "timestamp"}
_DELETED = "_deleted_at_source"


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
    rows_deleted: int = 0  # versions loaded that mark a deletion at the source

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SourceShape:
    """The source relation of one entity as it really is: checked column names and the types that matter."""

    relation: sql.Composable
    label: str
    timestamp_type: str
    soft_delete_is_bool: bool


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


def _error(cfg: SourceConfig, key: str, message: str) -> SourceConfigError:
    return SourceConfigError(f"{cfg.config_file}: key '{key}': {message}")


def inspect_source(src: psycopg.Connection, cfg: SourceConfig, ent: OrdersEntity) -> SourceShape:
    """Check the entity's table/query and every mapped column against the source; name the setting if wrong."""
    if ent.query:
        relation: sql.Composable = sql.SQL("({})").format(sql.SQL(ent.query))
        label, setting = "the query", f"{ent.setting}.query"
    else:
        relation = sql.Identifier(*str(ent.table).split("."))
        label, setting = f"table {ent.table!r}", f"{ent.setting}.table"
    try:
        with src.cursor() as cur:
            cur.execute(sql.SQL("select * from {} as src limit 0").format(relation))
            described = {d.name: d.type_code for d in cur.description or ()}
    except psycopg.errors.UndefinedTable as exc:
        if not ent.query:
            raise _error(cfg, setting, f"{label} does not exist in the orders database") from None
        raise _error(cfg, setting, f"the query cannot be read: {str(exc).strip().splitlines()[0]}") from None
    except psycopg.Error as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _error(cfg, setting, f"{label} cannot be read: {first_line}") from None

    def type_name(column: str) -> str:
        info = src.adapters.types.get(described[column])
        return info.name if info else str(described[column])

    def require(column: str, key: str) -> None:
        if column not in described:
            raise _error(cfg, key, f"column {column!r} does not exist in {label} "
                         f"(its columns: {', '.join(described)})")

    require(ent.primary_key, f"{ent.setting}.primary_key")
    require(ent.updated_at, f"{ent.setting}.updated_at")
    for column in ent.columns:
        require(column, f"{ent.setting}.columns.{column}")
    ts_type = type_name(ent.updated_at)
    if ts_type not in _TIMESTAMP_TYPES:
        raise _error(cfg, f"{ent.setting}.updated_at", f"column {ent.updated_at!r} is of type {ts_type}; the "
                     "change timestamp must be a timestamp (with or without time zone)")
    soft_bool = False
    if ent.soft_delete_column:
        require(ent.soft_delete_column, f"{ent.setting}.soft_delete_column")
        soft_bool = type_name(ent.soft_delete_column) == "bool"
    return SourceShape(relation, label, ts_type, soft_bool)


def _select_list(ent: OrdersEntity, shape: SourceShape, cols: list[str]) -> sql.Composable:
    """Source expressions in raw column order: the mapped column, or null for a field the source lacks."""
    source_of = {field: column for column, field in ent.columns.items()}
    parts = [sql.SQL("src.") + sql.Identifier(source_of[c]) if c in source_of else sql.NULL for c in cols]
    if not ent.soft_delete_column:
        parts.append(sql.SQL("false"))
    elif shape.soft_delete_is_bool:
        parts.append(sql.SQL("coalesce(src.{}, false)").format(sql.Identifier(ent.soft_delete_column)))
    else:  # e.g. deleted_at: set = deleted
        parts.append(sql.SQL("src.{} is not null").format(sql.Identifier(ent.soft_delete_column)))
    return sql.SQL(", ").join(parts)


def _hash_expr(cols: list[str]) -> sql.Composable:
    """Content hash of a version. A deletion hashes differently from the same content alive, and a live
    row hashes exactly as before deletions were captured (so look-back re-reads still match)."""
    row = sql.SQL(", ").join(sql.SQL("t.") + sql.Identifier(c) for c in cols)
    return sql.SQL("case when t.{d} then md5(row({row}, true)::text) else md5(row({row})::text) end").format(
        d=sql.Identifier(_DELETED), row=row)


def _create_landing(wh: psycopg.Connection, tmp: sql.Identifier, cols: list[str]) -> None:
    """A temporary table of text columns (and the deletion flag, and a row number) to land source rows in."""
    wh.execute(sql.SQL("drop table if exists {}").format(tmp))
    wh.execute(sql.SQL("create temp table {} ({}, {} text, _n bigserial)").format(
        tmp, sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(c)) for c in cols),
        sql.Identifier(_DELETED)))


def _insert_statement(entity: str, typed: list[tuple[str, str]], tmp: sql.Identifier) -> sql.Composable:
    """Cast the landed text rows (all, or the one numbered ``%(n)s``) to raw's types and insert the versions raw
    does not hold yet; returns (inserted, of which deletions)."""
    cols = [c for c, _ in typed]
    business = cols[:-1]  # the deletion flag is last
    casts = sql.SQL(", ").join(
        sql.SQL("{c}::{t} as {c}").format(c=sql.Identifier(c), t=sql.SQL(t)) for c, t in typed)
    pk = sql.Identifier(business[0])
    return sql.SQL(
        """with inserted as (
               insert into raw.{raw} ({cols}, _batch_id, _source_file, _loaded_at, _row_number, _record_hash)
               select {tcols}, %(batch)s, %(label)s, now(), t._n, h.hash
                 from (select {casts}, _n from {tmp} where %(n)s::bigint is null or _n = %(n)s) t
                 cross join lateral (select {hash} as hash) h
                where not exists (select 1 from raw.{raw} r where r.{pk} = t.{pk} and r._record_hash = h.hash)
               returning {deleted})
           select count(*), count(*) filter (where {deleted}) from inserted"""
    ).format(raw=sql.Identifier(f"orders__{entity}"), cols=sql.SQL(", ").join(sql.Identifier(c) for c in cols),
             tcols=sql.SQL(", ").join(sql.SQL("t.") + sql.Identifier(c) for c in cols), casts=casts, tmp=tmp,
             hash=_hash_expr(business), pk=pk, deleted=sql.Identifier(_DELETED))


def _load_landed(wh: psycopg.Connection, source_name: str, entity: str, typed: list[tuple[str, str]],
                 tmp: sql.Identifier, batch_id: str, label: str) -> tuple[int, int, list[tuple[int, str]]]:
    """Insert the landed rows into raw: (inserted, deletions, rejects as (row number, reason)).

    One `INSERT` for all; if the database refuses a value, that statement is rolled back to its savepoint
    and the rows go in one by one, each refused one becoming a reject that names the column."""
    insert = _insert_statement(entity, typed, tmp)
    params = {"batch": batch_id, "label": label, "n": None}
    try:
        with wh.transaction():
            inserted, deleted = wh.execute(insert, params).fetchone()
            return int(inserted), int(deleted), []
    except Exception as exc:
        if not errors.is_data_error(exc):
            raise
        log.warning("%s: the warehouse refused a row of window %s (%s); loading the rows one by one",
                    source_name, label, errors.describe(exc))
    errors.quiet_server_log(wh, expected_errors=True)
    inserted = deleted = 0
    rejects: list[tuple[int, str]] = []
    for (n,) in wh.execute(sql.SQL("select _n from {} order by _n").format(tmp)).fetchall():
        try:
            with wh.transaction():
                one, one_deleted = wh.execute(insert, {**params, "n": n}).fetchone()
                inserted, deleted = inserted + int(one), deleted + int(one_deleted)
        except Exception as row_exc:
            if not errors.is_data_error(row_exc):
                raise
            rejects.append((n, _refused_column(wh, tmp, typed, n, row_exc)))
    if rejects:
        with wh.cursor() as cur:
            cur.executemany(sql.SQL(
                """insert into raw.load_rejects (batch_id, source_name, source_file, row_number, reason, record)
                   select %s, %s, %s, _n, %s, to_jsonb(t) - '_n' from {} t where _n = %s""").format(tmp),
                [(batch_id, source_name, label, reason, n) for n, reason in rejects])
    return inserted, deleted, rejects


def _entity(cfg: SourceConfig, table: str) -> OrdersEntity:
    if table not in cfg.tables:
        raise _error(cfg, "tables", f"has no entry for {table!r} (configured: {', '.join(cfg.tables)})")
    return cfg.tables[table]


def extract_table(src: psycopg.Connection, wh: psycopg.Connection, cfg: SourceConfig, table: str,
                  shape: SourceShape | None = None) -> WindowResult:
    """Load one entity's window of changed rows into raw (see the module docstring).

    The source's rows land as text in a temporary table (a text value never fails), then are cast to the raw
    table's types in one `INSERT`. If the database refuses a value (an amount beyond numeric(14,2), say), that
    statement is rolled back to its savepoint and the rows go in one by one: each refused row becomes a
    reject naming the column and the error class, never the value, and every other row loads.
    """
    ent = _entity(cfg, table)
    shape = shape or inspect_source(src, cfg, ent)
    typed = [*_raw_columns(wh, table), (_DELETED, "boolean")]
    cols = [c for c, _ in typed[:-1]]
    ts = sql.Identifier(ent.updated_at)

    row = wh.execute("select high_watermark from audit.watermarks where source_name = %s and table_name = %s",
                     (cfg.name, table)).fetchone()
    watermark = row[0] if row and row[0] else EPOCH
    upper = src.execute(sql.SQL("select cast(max(src.{}) as timestamptz) from {} as src").format(
        ts, shape.relation)).fetchone()[0]
    if upper is None or upper <= watermark:
        log.info("%s.%s: nothing changed since %s", cfg.name, table, watermark.isoformat())
        return WindowResult(cfg.name, table, "empty", None, watermark.isoformat(), watermark.isoformat())
    lower = watermark - dt.timedelta(minutes=cfg.lookback_minutes) if watermark > EPOCH else EPOCH

    source_name = f"{cfg.name}.{table}"
    batch_id = ledger.new_batch_id(source_name)
    window_label = f"{table} {ent.updated_at} in ({lower.isoformat()}, {upper.isoformat()}]"
    with wh.transaction():
        ledger.open_batch(wh, batch_id=batch_id, source_name=source_name, source_kind=cfg.kind,
                          source_file=window_label, checksum=None, window=(lower, upper))
    counts = ledger.BatchCounts()
    rejects: list[tuple[int, str]] = []
    deletions = 0
    try:
        with wh.transaction():
            tmp = sql.Identifier(f"_extract_{table}")
            _create_landing(wh, tmp, cols)
            ts_type = sql.SQL(shape.timestamp_type)
            out_sql = sql.SQL(
                "copy (select {sel} from {rel} as src where src.{ts} > cast({lo} as {tt}) "
                "and src.{ts} <= cast({hi} as {tt}) order by src.{pk}) to stdout"
            ).format(sel=_select_list(ent, shape, cols), rel=shape.relation, ts=ts, tt=ts_type,
                     lo=sql.Literal(lower), hi=sql.Literal(upper), pk=sql.Identifier(ent.primary_key))
            in_sql = sql.SQL("copy {} ({}) from stdin").format(
                tmp, sql.SQL(", ").join(sql.Identifier(c) for c in [*cols, _DELETED]))
            with src.cursor() as scur, wh.cursor() as wcur:
                with scur.copy(out_sql) as cout, wcur.copy(in_sql) as cin:
                    for block in cout:
                        cin.write(block)
            counts.rows_read = wh.execute(sql.SQL("select count(*) from {}").format(tmp)).fetchone()[0]
            deletions, rejects = _close_landed(wh, source_name, table, typed, tmp, batch_id, window_label, counts,
                                               watermark=(cfg.name, table, upper))
    except Exception as exc:
        _fail(wh, source_name, batch_id, f"extracting window {window_label}", exc)
    for n, reason in rejects[:5]:
        log.warning("%s: window row %s rejected: %s", source_name, n, reason)
    log.info("%s.%s: window %s: read %s, loaded %s (%s marked deleted), rejected %s, already held %s", cfg.name,
             table, window_label, counts.rows_read, counts.rows_loaded, deletions, counts.rows_rejected,
             counts.rows_duplicate)
    return WindowResult(cfg.name, table, "loaded", batch_id, lower.isoformat(), upper.isoformat(),
                        counts.rows_read, counts.rows_loaded, counts.rows_duplicate, counts.rows_rejected, deletions)


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


def _close_landed(wh: psycopg.Connection, source_name: str, entity: str, typed: list[tuple[str, str]],
                  tmp: sql.Identifier, batch_id: str, label: str, counts: ledger.BatchCounts, *,
                  watermark: tuple[str, str, dt.datetime]) -> tuple[int, list[tuple[int, str]]]:
    """Insert the landed rows (see :func:`_load_landed`), move the watermark and close the batch `loaded`, in
    the caller's transaction; returns (deletions, rejects)."""
    counts.rows_loaded, deletions, rejects = _load_landed(wh, source_name, entity, typed, tmp, batch_id, label)
    counts.rows_rejected = len(rejects)
    counts.rows_duplicate = counts.rows_read - counts.rows_loaded - counts.rows_rejected
    _set_watermark(wh, *watermark)
    wh.execute(sql.SQL("drop table {}").format(tmp))
    ledger.close_batch(wh, batch_id, "loaded", counts)
    return deletions, rejects


def _fail(wh: psycopg.Connection, source_name: str, batch_id: str, what: str, exc: Exception) -> None:
    """Close the batch `failed` with a reason free of values, and raise LoadFailed (never the database's error,
    whose context can quote a row). An unreachable warehouse leaves the batch `running`: the next extract
    marks it aborted."""
    reason = f"{source_name}: {what} failed, nothing of it was kept: {errors.describe(exc)}"
    ledger.fail_batch(wh, source_name, batch_id, reason)
    log.error("%s (batch %s; the watermark did not move, the next run reads it again)", reason, batch_id)
    raise errors.LoadFailed(reason) from None


def _set_watermark(wh: psycopg.Connection, source_name: str, table: str, value: dt.datetime) -> None:
    wh.execute(
        """insert into audit.watermarks (source_name, table_name, high_watermark, updated_at)
           values (%s, %s, %s, now())
           on conflict (source_name, table_name)
           do update set high_watermark = excluded.high_watermark, updated_at = now()""",
        (source_name, table, value))


def reconcile_deletions(src: psycopg.Connection, wh: psycopg.Connection, cfg: SourceConfig, table: str,
                        shape: SourceShape | None = None) -> WindowResult | None:
    """Mark keys the warehouse holds but the source no longer has as deleted at the source.

    Every source key is streamed into a temporary table (one `COPY` of one column) and compared with the
    latest loaded version of each key in raw. A key that is gone gets a deletion version: its last loaded
    version, dated at the reconciliation (the source snapshot's time), with `_deleted_at_source`; it is a
    batch of its own in the ledger and passes the raw quality gate like any other. Runs at most every
    `reconcile_every_hours` (kept in audit.watermarks as `<entity>:keys`); None when not due or nothing is gone.
    """
    ent = _entity(cfg, table)
    if not ent.reconcile_deletes:
        return None
    shape = shape or inspect_source(src, cfg, ent)
    snapshot_at = src.execute("select now()").fetchone()[0]
    marker = f"{table}:keys"
    row = wh.execute("select high_watermark from audit.watermarks where source_name = %s and table_name = %s",
                     (cfg.name, marker)).fetchone()
    if row and row[0] and snapshot_at - row[0] < dt.timedelta(hours=ent.reconcile_every_hours):
        log.info("%s.%s: key reconciliation not due (last %s)", cfg.name, table, row[0].isoformat())
        return None
    typed = [*_raw_columns(wh, table), (_DELETED, "boolean")]
    cols = [c for c, _ in typed[:-1]]
    key = sql.Identifier(cols[0])
    raw = sql.Identifier(f"orders__{table}")
    keys_tmp, gone_tmp = sql.Identifier(f"_source_keys_{table}"), sql.Identifier(f"_gone_{table}")
    with wh.transaction():
        wh.execute(sql.SQL("drop table if exists {}").format(keys_tmp))
        wh.execute(sql.SQL("create temp table {} as select {} as key from raw.{} with no data").format(
            keys_tmp, key, raw))
        out_sql = sql.SQL("copy (select src.{} from {} as src where src.{} is not null) to stdout").format(
            sql.Identifier(ent.primary_key), shape.relation, sql.Identifier(ent.primary_key))
        with src.cursor() as scur, wh.cursor() as wcur:
            with scur.copy(out_sql) as cout, wcur.copy(sql.SQL("copy {} from stdin").format(keys_tmp)) as cin:
                for block in cout:
                    cin.write(block)
        wh.execute(sql.SQL("create index on {} (key)").format(keys_tmp))
        wh.execute(sql.SQL("analyze {}").format(keys_tmp))
        source_keys = wh.execute(sql.SQL("select count(*) from {}").format(keys_tmp)).fetchone()[0]
        _create_landing(wh, gone_tmp, cols)
        tomb_cols = sql.SQL(", ").join(
            sql.SQL("greatest(latest.updated_at, {})").format(sql.Literal(snapshot_at)) if c == "updated_at"
            else sql.SQL("latest.") + sql.Identifier(c) for c in cols)
        gone = wh.execute(sql.SQL(
            """insert into {gone} ({cols}, {deleted})
               select {tomb}, true
                 from (select distinct on (r.{key}) r.*
                         from raw.{raw} r
                        where r.{key} is not null
                          and r._batch_id in (select batch_id from audit.load_batches where status = 'loaded')
                        order by r.{key}, r.updated_at desc nulls last, r._loaded_at desc, r._row_number desc
                      ) latest
                where not latest.{deleted}
                  and not exists (select 1 from {keys} k where k.key = latest.{key})"""
        ).format(gone=gone_tmp, tomb=tomb_cols, key=key, raw=raw, deleted=sql.Identifier(_DELETED),
                 keys=keys_tmp, cols=sql.SQL(", ").join(sql.Identifier(c) for c in cols))).rowcount
        wh.execute(sql.SQL("drop table {}").format(keys_tmp))
        if not gone:
            _set_watermark(wh, cfg.name, marker, snapshot_at)
    if not gone:
        wh.execute(sql.SQL("drop table {}").format(gone_tmp))
        log.info("%s.%s: key reconciliation: all %s source keys present, nothing deleted", cfg.name, table,
                 source_keys)
        return None

    batch_id = ledger.new_batch_id(f"{cfg.name}.{table}")
    label = f"{table} key reconciliation as of {snapshot_at.isoformat()}: {gone} keys gone from the source"
    with wh.transaction():
        ledger.open_batch(wh, batch_id=batch_id, source_name=f"{cfg.name}.{table}", source_kind=cfg.kind,
                          source_file=label, checksum=None, window=(snapshot_at, snapshot_at))
    counts = ledger.BatchCounts(rows_read=gone)
    try:
        with wh.transaction():
            _close_landed(wh, f"{cfg.name}.{table}", table, typed, gone_tmp, batch_id, label, counts,
                          watermark=(cfg.name, marker, snapshot_at))
    except Exception as exc:
        _fail(wh, f"{cfg.name}.{table}", batch_id, "key reconciliation", exc)
    log.info("%s.%s: key reconciliation: %s of the warehouse's keys are gone from the source (%s source keys); "
             "marked deleted in batch %s", cfg.name, table, gone, source_keys, batch_id)
    return WindowResult(cfg.name, table, "loaded", batch_id, snapshot_at.isoformat(), snapshot_at.isoformat(),
                        counts.rows_read, counts.rows_loaded, counts.rows_duplicate, counts.rows_rejected,
                        counts.rows_loaded)


def source_url(cfg: SourceConfig, settings: Settings) -> str:
    if cfg.connection_env and env_value(cfg.connection_env):
        return env_value(cfg.connection_env)
    return settings.orders_url


def extract_orders_db(cfg: SourceConfig, tables: list[str] | None = None,
                      settings: Settings | None = None) -> list[WindowResult]:
    """Extract every configured entity (parents before children) from the orders database.

    Every entity's table/query and column mapping is checked against the source before anything is
    read, so a wrong setting fails the run up front with the setting named.
    """
    settings = settings or get_settings()
    order = [t for t in ENTITY_ORDER if t in cfg.tables]
    results = []
    # A repeatable-read snapshot on the source: all tables are read as of one instant. Both sessions in
    # UTC, so a change timestamp without time zone is read as UTC on both sides.
    with connect(source_url(cfg, settings)) as src, \
            connect(settings.warehouse_url, autocommit=True) as wh:
        src.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        src.read_only = True
        src.execute("set timezone = 'UTC'")
        wh.execute("set timezone = 'UTC'")
        wanted = tables or order
        shapes = {t: inspect_source(src, cfg, _entity(cfg, t)) for t in wanted}
        # One extract of the source at a time; a window left `running` by a crash is aborted and read again
        # (its watermark never moved).
        with ledger.source_lock(wh, cfg.name):
            ledger.durable_commits(wh)
            errors.quiet_server_log(wh)
            ledger.abort_stale(wh, cfg.name)
            for table in wanted:
                results.append(extract_table(src, wh, cfg, table, shapes[table]))
                reconciled = reconcile_deletions(src, wh, cfg, table, shapes[table])
                if reconciled:
                    results.append(reconciled)
                if any(r.table == table and r.rows_loaded for r in results):
                    refresh_statistics(wh, f"raw.orders__{table}")
    return results
