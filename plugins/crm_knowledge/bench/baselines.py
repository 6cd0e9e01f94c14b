"""What the same machine can do without the pipeline, measured in the same run on the same files.

* ``plain_copy``: each landing file streamed with PostgreSQL's own ``COPY`` into a table of text columns
  on the same server (CSV as CSV, JSON Lines as one text column per line). No parsing, conversion,
  validation or ledger: the physical limit of getting those bytes into that server.
* ``raw_ceiling``: the same COPY into a temporary text table, then one ``INSERT ... SELECT`` of those rows
  into the source's raw table (same columns, indexes and WAL as in the warehouse) with the load metadata
  and no conversion at all: the raw layer's text columns as received.
  No loader that writes this raw layer can beat it, so it shows how much of the distance to plain COPY is
  the raw layer itself (typed, indexed, hashed rows) and how much is the pipeline's parsing and checks.
* ``pandas_to_sql``: ``pandas.read_csv`` / ``read_json(lines=True)`` / ``read_excel`` then
  ``DataFrame.to_sql`` through SQLAlchemy, what many hand-written pipelines do. It is slow, so it runs on at
  most ``TO_SQL_ROWS`` rows of each source and reports rows/s.

Both write into a scratch database (``bench_baseline``) that is dropped afterwards, never into the warehouse.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from crm_knowledge.ingest.files import PG_ENCODINGS, json_object_sql, pending_files
from crm_knowledge.ingest.readers import header_key
from crm_knowledge.ingest.registry import IDENTIFIER_KINDS, KIND_TARGETS, SourceConfig
from crm_knowledge.settings import Settings
from crm_knowledge.warehouse.db import connect, copy_file_in

log = logging.getLogger(__name__)

BASELINE_DB = "bench_baseline"
TO_SQL_ROWS = 200_000


def _admin_exec(settings: Settings, statement: sql.Composable) -> None:
    with connect(settings.server_url("postgres"), autocommit=True) as conn:
        conn.execute(statement)


def create_baseline_db(settings: Settings) -> str:
    _admin_exec(settings, sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(BASELINE_DB)))
    _admin_exec(settings, sql.SQL("create database {}").format(sql.Identifier(BASELINE_DB)))
    return settings.server_url(BASELINE_DB)


def drop_baseline_db(settings: Settings) -> None:
    _admin_exec(settings, sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(BASELINE_DB)))


def _csv_header(path: Path, cfg: SourceConfig) -> list[str]:
    import csv

    with open(path, encoding=cfg.encoding, newline="") as fh:
        return next(csv.reader(fh, delimiter=cfg.delimiter))


def _copy_options(cfg: SourceConfig, enc: str) -> sql.Composable:
    """COPY's options for a source file: CSV as CSV, JSON Lines as one text value per line."""
    if cfg.format == "csv":
        return sql.SQL("(format csv, header true, delimiter {}, encoding {})").format(
            sql.Literal(cfg.delimiter), sql.Literal(enc))
    if cfg.format == "jsonl":
        # csv with quote/delimiter bytes that never occur in JSON text: one line = one value, no unescaping
        return sql.SQL("(format csv, quote e'\\x01', delimiter e'\\x02', encoding {})").format(sql.Literal(enc))
    raise ValueError(f"plain COPY cannot read {cfg.format!r} files")


def copy_file(conn: psycopg.Connection, cfg: SourceConfig, path: Path, table: str, enc: str,
              line_type: str = "text") -> int:
    """Plain COPY of one file into `table` (created here: text columns); returns the rows COPY reports.
    `line_type`: the type of a JSON Lines file's one column (`jsonb`: the COPY parses each line)."""
    ident = sql.Identifier(table)
    if cfg.format == "csv":
        cols = sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(f"c{i}"))
                                  for i in range(len(_csv_header(path, cfg))))
    else:
        cols = sql.SQL("line {}").format(sql.SQL({"text": "text", "jsonb": "jsonb"}[line_type]))
    options = _copy_options(cfg, enc)
    conn.execute(sql.SQL("create table {} ({})").format(ident, cols))
    return copy_file_in(conn, sql.SQL("copy {} from stdin {}").format(ident, options), path)


def _time_sources(settings: Settings, sources: list[SourceConfig], label: str, setup: str | None,
                  load: Callable[[psycopg.Connection, SourceConfig, Path, str, int], int]) -> dict[str, dict[str, Any]]:
    """Per source: rows, seconds and rows/s of `load` over all its pending files, in a scratch database
    (after `setup` SQL); a file the server refuses (e.g. the demo's planted corrupt one) is not counted."""
    url = create_baseline_db(settings)
    out: dict[str, dict[str, Any]] = {}
    try:
        with connect(url, autocommit=True) as conn:
            if setup:
                conn.execute(setup)
            for cfg in sources:
                enc = PG_ENCODINGS.get(cfg.encoding.lower())
                if cfg.format not in ("csv", "jsonl") or enc is None:
                    out[cfg.name] = {"rows": None, "seconds": None, "rows_per_s": None,
                                     "note": f"COPY cannot read {cfg.format}"}
                    continue
                files = pending_files(cfg, settings)
                rows, started = 0, time.perf_counter()
                for i, path in enumerate(files):
                    try:
                        with conn.transaction():
                            rows += load(conn, cfg, path, enc, i)
                    except psycopg.Error as exc:
                        log.info("baseline %s of %s failed (%s); not counted", label, path.name,
                                 exc.diag.message_primary)
                took = time.perf_counter() - started
                out[cfg.name] = {"rows": rows, "seconds": round(took, 3),
                                 "rows_per_s": round(rows / took, 1) if took > 0 and rows else None,
                                 "files": len(files)}
                log.info("baseline %s %s: %s rows in %.1fs", label, cfg.name, rows, took)
    finally:
        drop_baseline_db(settings)
    return out


def plain_copy(settings: Settings, sources: list[SourceConfig]) -> dict[str, dict[str, Any]]:
    """Per source: rows, seconds and rows/s of a plain COPY of all its pending files."""
    return _time_sources(settings, sources, "COPY", None,
                         lambda conn, cfg, path, enc, i: copy_file(conn, cfg, path, f"{cfg.name}_{i}", enc))


def _ceiling_file(conn: psycopg.Connection, cfg: SourceConfig, path: Path, enc: str) -> int:
    """COPY one file into a temporary text table and insert it, unconverted, into the raw table."""
    dst_by_key = {header_key(src): dst for src, dst in cfg.columns.items()}
    if cfg.format == "csv":
        header = _csv_header(path, cfg)
        cols = [sql.Identifier(f"c{i}") for i in range(len(header))]
        conn.execute(sql.SQL("create temp table land ({}, _rn serial) on commit drop").format(
            sql.SQL(", ").join(sql.SQL("{} text").format(c) for c in cols)))
        copy = sql.SQL("copy land ({}) from stdin {}").format(sql.SQL(", ").join(cols), _copy_options(cfg, enc))
        values = {dst_by_key[header_key(h)]: cols[i] for i, h in enumerate(header) if header_key(h) in dst_by_key}
    else:
        conn.execute("create temp table land (j jsonb, _rn serial) on commit drop")
        copy = sql.SQL("copy land (j) from stdin {}").format(_copy_options(cfg, enc))
        values = {dst: sql.SQL("j ->> {}").format(sql.Literal(src)) for src, dst in cfg.columns.items()}
    # a column mapped onto a declared identifier kind (not a raw column) lands in `identifiers` as the loader
    # lands it; without a raw column it would make the insert fail (the raw tables keep only business columns)
    _, business_cols = KIND_TARGETS[cfg.kind]
    kinds = {dst: expr for dst, expr in values.items() if dst not in business_cols}
    values = {dst: expr for dst, expr in values.items() if dst in business_cols}
    if kinds and cfg.kind in IDENTIFIER_KINDS:
        values["identifiers"] = json_object_sql(list(kinds.items()))
    values.update({k: sql.Literal(v) for k, v in cfg.constant_columns.items()})
    copy_file_in(conn, copy, path)
    with conn.cursor() as cur:
        schema, table = cfg.target_table.split(".")
        cur.execute(sql.SQL(
            "insert into {}.{} ({}, _batch_id, _source_file, _loaded_at, _row_number) "
            "select {}, 'baseline', {}, now(), _rn from land").format(
            sql.Identifier(schema), sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, values)),
            sql.SQL(", ").join(values.values()), sql.Literal(path.name)))
        return cur.rowcount


def raw_ceiling(settings: Settings, sources: list[SourceConfig]) -> dict[str, dict[str, Any]]:
    """Per source: rows, seconds and rows/s of COPY + an unconverted insert into its raw table."""
    from crm_knowledge.warehouse.bootstrap import ddl_files

    raw_ddl = next(p for p in ddl_files() if p.name.endswith("_raw.sql"))  # the raw tables and indexes
    return _time_sources(settings, sources, "raw ceiling", raw_ddl.read_text(encoding="utf-8"),
                         lambda conn, cfg, path, enc, i: _ceiling_file(conn, cfg, path, enc))


def _read_frame(cfg: SourceConfig, path: Path, nrows: int):
    import pandas as pd

    if cfg.format == "csv":
        return pd.read_csv(path, encoding=cfg.encoding, sep=cfg.delimiter, dtype=str, nrows=nrows,
                           keep_default_na=False, on_bad_lines="skip")
    if cfg.format == "jsonl":
        frame = pd.read_json(path, lines=True, dtype=False, nrows=nrows)
        # nested values (consent dicts, lists) are not SQL-storable as such: store them as text
        return frame.map(lambda v: str(v) if isinstance(v, (dict, list)) else v)
    if cfg.format == "xlsx":
        return pd.read_excel(path, sheet_name=cfg.sheet or 0, dtype=str, nrows=nrows)
    raise ValueError(f"no pandas reader for {cfg.format!r}")


def pandas_to_sql(settings: Settings, sources: list[SourceConfig], max_rows: int = TO_SQL_ROWS) -> dict[str, Any]:
    """Per source: read + to_sql of at most `max_rows` rows of its pending files; rows/s."""
    from sqlalchemy import create_engine

    url = create_baseline_db(settings)
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    out: dict[str, dict[str, Any]] = {}
    try:
        for cfg in sources:
            left, rows, started = max_rows, 0, time.perf_counter()
            for i, path in enumerate(pending_files(cfg, settings)):
                if left <= 0:
                    break
                try:
                    frame = _read_frame(cfg, path, left)
                except Exception as exc:  # noqa: BLE001 - a baseline must not stop the benchmark
                    log.info("baseline to_sql: cannot read %s (%s); not counted", path.name, exc)
                    continue
                frame.to_sql(f"{cfg.name}_{i}", engine, if_exists="replace", index=False, chunksize=10_000)
                rows += len(frame)
                left -= len(frame)
            took = time.perf_counter() - started
            out[cfg.name] = {"rows": rows, "seconds": round(took, 3),
                             "rows_per_s": round(rows / took, 1) if took > 0 and rows else None}
            log.info("baseline to_sql %s: %s rows in %.1fs", cfg.name, rows, took)
    finally:
        engine.dispose()
        drop_baseline_db(settings)
    return out
