"""Load landing-zone files of one source into its raw table: exactly once, all or nothing per file.

For each file matching the source's glob:
1. its SHA-256 is looked up in the ledger; a file whose content was already loaded is skipped (and
   archived), so a re-run or a file that arrives twice loads nothing twice;
2. a file that cannot be read at all is moved to quarantine with its reason in the ledger;
3. otherwise every row is converted; rows that fail go to `raw.load_rejects` with their reason and
   the good rows are written with one `COPY`, in the same transaction as the ledger's `loaded` row,
   so a failure leaves no partial batch;
4. only after that commit is the file moved out of the landing zone into the archive.
Columns the mapping does not know are kept in `extras` and reported as schema drift.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from crm_knowledge.ingest import ledger
from crm_knowledge.ingest.convert import RowError, converter_for, jsonable, record_hash
from crm_knowledge.ingest.readers import BadRow, FileUnreadable, header_key, read_file
from crm_knowledge.ingest.registry import IDENTIFIER_KINDS, KIND_TARGETS, SourceConfig
from crm_knowledge.settings import Settings, get_settings

log = logging.getLogger(__name__)

META_COLUMNS = ("_batch_id", "_source_file", "_loaded_at", "_row_number", "_record_hash")
_UNPLANNED = object()


@dataclass
class FileResult:
    source_name: str
    file: str
    status: str  # loaded | skipped | quarantined | failed
    batch_id: str | None = None
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    missing_columns: list[str] = field(default_factory=list)
    unexpected_columns: list[str] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pending_files(cfg: SourceConfig, settings: Settings) -> list[Path]:
    assert cfg.path is not None
    return sorted(p for p in settings.landing_dir.glob(cfg.path) if p.is_file())


def _move(path: Path, dest_dir: Path) -> Path:
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / path.name
    if dest.exists():
        dest = dest_dir / f"{path.stem}.{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}{path.suffix}"
    shutil.move(str(path), dest)
    return dest


def _quarantine(conn: psycopg.Connection, cfg: SourceConfig, path: Path, checksum: str, reason: str,
                settings: Settings) -> FileResult:
    batch_id = ledger.new_batch_id(cfg.name)
    with conn.transaction():
        ledger.open_batch(conn, batch_id=batch_id, source_name=cfg.name, source_kind=cfg.kind,
                          source_file=path.name, checksum=checksum)
        ledger.close_batch(conn, batch_id, "quarantined", ledger.BatchCounts(), error=reason)
    qdir = settings.quarantine_dir / cfg.name
    moved = _move(path, qdir)
    moved.with_name(moved.name + ".reason.txt").write_text(f"batch {batch_id}\n{reason}\n", encoding="utf-8")
    log.error("QUARANTINED %s (%s): %s -> %s", path.name, cfg.name, reason, moved)
    return FileResult(cfg.name, path.name, "quarantined", batch_id, error=reason)


def load_file(conn: psycopg.Connection, cfg: SourceConfig, path: Path,
              settings: Settings | None = None) -> FileResult:
    """Load one file; never raises for bad data (it is quarantined or rejected), only for bugs/outages.

    `conn` must be in autocommit mode: each `conn.transaction()` below is then a real transaction,
    so the ledger's `running` row survives a failed load and says what happened.
    """
    if not conn.autocommit:
        raise ValueError("load_file needs an autocommit connection (psycopg.connect(..., autocommit=True))")
    settings = settings or get_settings()
    checksum = sha256_file(path)
    done = ledger.already_loaded(conn, cfg.name, checksum)
    if done:
        log.info("%s: %s already loaded as batch %s; skipping", cfg.name, path.name, done)
        _move(path, settings.archive_dir / cfg.name)
        return FileResult(cfg.name, path.name, "skipped", done)

    try:
        parsed = read_file(path, cfg)
    except FileUnreadable as exc:
        return _quarantine(conn, cfg, path, checksum, str(exc), settings)

    # File columns map onto raw columns by loosely compared names (see header_key). A JSON Lines file may
    # bring keys its first objects did not have: columns are mapped as they are met, and drift (missing /
    # unexpected columns) is worked out over the whole file after the rows.
    dst_by_key = {header_key(src): dst for src, dst in cfg.columns.items()}
    header_keys = {header_key(h) for h in parsed.header}
    missing_required = [c for c in cfg.required_columns if header_key(c) not in header_keys]
    if missing_required:
        reason = (f"{path.name}: required column(s) {missing_required} missing; the file has "
                  f"{parsed.header}. Fix the file or the mapping in {cfg.config_file.name}")
        return _quarantine(conn, cfg, path, checksum, reason, settings)
    missing: list[str] = []
    unexpected: list[str] = []

    target, business_cols = KIND_TARGETS[cfg.kind]
    constants = cfg.constant_columns
    # columns mapped onto a declared identifier kind land in `identifiers` ({"<kind>": value})
    has_identifiers = cfg.kind in IDENTIFIER_KINDS
    columns = [*constants, *business_cols, "extras", *(["identifiers"] if has_identifiers else []), *META_COLUMNS]
    batch_id = ledger.new_batch_id(cfg.name)
    loaded_at = dt.datetime.now(dt.UTC)
    counts = ledger.BatchCounts()
    rejects: list[tuple[int, str, dict[str, Any] | None]] = []

    with conn.transaction():
        ledger.open_batch(conn, batch_id=batch_id, source_name=cfg.name, source_kind=cfg.kind,
                          source_file=path.name, checksum=checksum)
    try:
        with conn.transaction():
            schema, table = target.split(".")
            copy_sql = sql.SQL("copy {}.{} ({}) from stdin").format(
                sql.Identifier(schema), sql.Identifier(table),
                sql.SQL(", ").join(sql.Identifier(c) for c in columns))
            # Per file column, chosen once: (position in business_cols, converter), or None for extras.
            position = {c: i for i, c in enumerate(business_cols)}
            plan: dict[str, tuple[int, Callable[[Any], Any]] | None] = {}
            key_position = position.get(cfg.primary_key or "")
            const_values = list(constants.values())
            with conn.cursor() as cur, cur.copy(copy_sql) as copy:
                for item in parsed.rows:
                    counts.rows_read += 1
                    if isinstance(item, BadRow):
                        rejects.append((item.row_number, item.reason, {"raw": item.raw}))
                        continue
                    row_number, record = item
                    business: list[Any] = [None] * len(business_cols)
                    extras: dict[str, Any] = {}
                    identifiers: dict[str, str] = {}
                    try:
                        for col, value in record.items():
                            step = plan.get(col, _UNPLANNED)
                            if step is _UNPLANNED:
                                dst = dst_by_key.get(header_key(col))
                                step = plan[col] = ((position[dst], converter_for(dst, cfg)) if dst in position
                                                    else (dst, None) if dst else None)
                            if step is None:
                                if value is not None and value != "":
                                    extras[col] = jsonable(value)
                                continue
                            if step[1] is None:  # a declared identifier kind
                                if value is not None and str(value).strip():
                                    identifiers[step[0]] = str(value)
                                continue
                            try:
                                business[step[0]] = step[1](value)
                            except RowError as exc:
                                raise RowError(f"column {col!r}: {exc}") from None
                        if key_position is None or business[key_position] is None:
                            raise RowError(f"primary key {cfg.primary_key!r} is empty")
                    except RowError as exc:
                        rejects.append((row_number, str(exc), {k: jsonable(v) for k, v in record.items()}))
                        continue
                    ids = [Jsonb(identifiers) if identifiers else None] if has_identifiers else []
                    # rows without identifiers hash as before, so existing rows are not seen as changed
                    hashed = [*const_values, *business, extras or None, *([identifiers] if identifiers else [])]
                    row = [*const_values, *business, Jsonb(extras) if extras else None, *ids,
                           batch_id, path.name, loaded_at, row_number, record_hash(hashed)]
                    copy.write_row(row)
                    counts.rows_loaded += 1
            counts.rows_rejected = len(rejects)
            columns_met = list(dict.fromkeys([*parsed.header, *plan]))
            keys_met = {header_key(c) for c in columns_met}
            unexpected = [c for c in columns_met if header_key(c) not in dst_by_key]
            missing = [src for src in cfg.columns if header_key(src) not in keys_met]
            if rejects:
                with conn.cursor() as cur:
                    cur.executemany(
                        """insert into raw.load_rejects (batch_id, source_name, source_file, row_number,
                                                         reason, record) values (%s, %s, %s, %s, %s, %s)""",
                        [(batch_id, cfg.name, path.name, n, reason, Jsonb(rec)) for n, reason, rec in rejects],
                    )
            if missing or unexpected:
                conn.execute(
                    """insert into audit.schema_drift (batch_id, source_name, source_file, missing_columns,
                                                       unexpected_columns) values (%s, %s, %s, %s, %s)""",
                    (batch_id, cfg.name, path.name, missing, unexpected),
                )
            ledger.close_batch(conn, batch_id, "loaded", counts)
    except Exception as exc:
        with conn.transaction():
            ledger.close_batch(conn, batch_id, "failed", ledger.BatchCounts(),
                               error=f"{type(exc).__name__}: {exc}")
        log.exception("%s: loading %s failed; nothing of it was kept", cfg.name, path.name)
        raise

    if missing or unexpected:
        log.warning("%s: schema drift in %s: missing columns %s, unexpected columns %s (kept in extras)",
                    cfg.name, path.name, missing, unexpected)
    for n, reason, _ in rejects[:5]:
        log.warning("%s: %s row %s rejected: %s", cfg.name, path.name, n, reason)
    if len(rejects) > 5:
        log.warning("%s: ... %s more rejected rows in raw.load_rejects (batch %s)", cfg.name,
                    len(rejects) - 5, batch_id)
    _move(path, settings.archive_dir / cfg.name)
    log.info("%s: %s loaded as batch %s: read %s, loaded %s, rejected %s", cfg.name, path.name, batch_id,
             counts.rows_read, counts.rows_loaded, counts.rows_rejected)
    return FileResult(cfg.name, path.name, "loaded", batch_id, counts.rows_read, counts.rows_loaded,
                      counts.rows_rejected, missing, unexpected)


def ingest_source(cfg: SourceConfig, url: str | None = None, settings: Settings | None = None) -> list[FileResult]:
    """Load every pending file of one file source; returns what happened to each file."""
    settings = settings or get_settings()
    files = pending_files(cfg, settings)
    log.info("%s: %s file(s) pending in %s", cfg.name, len(files), settings.landing_dir / (cfg.path or ""))
    results = []
    with psycopg.connect(url or settings.warehouse_url, autocommit=True) as conn:
        for i, path in enumerate(files, start=1):
            log.info("%s: file %s/%s: %s", cfg.name, i, len(files), path.name)
            results.append(load_file(conn, cfg, path, settings))
        if any(r.rows_loaded for r in results):
            ledger.analyze_after_load(conn, cfg.target_table)
    return results
