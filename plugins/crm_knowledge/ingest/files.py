"""Load landing-zone files of one source into its raw table: exactly once, all or nothing per file.

A source loads under its advisory lock (one load per source at a time); a batch a crashed load left
`running` is marked `aborted` first (see ledger.py). For each file matching the source's glob:
1. its SHA-256 is looked up in the ledger; a file whose content was already loaded is skipped (and
   archived), so a re-run or a file that arrives twice loads nothing twice;
2. a file that cannot be read at all (encoding, header, duplicate column names, a reader that breaks
   part-way) is moved to quarantine, once, with its reason in the ledger; the next files still load;
3. otherwise every row is converted and checked against what the raw table can hold (convert.py); rows
   that fail go to `raw.load_rejects` with their reason, and the good rows are written with one `COPY`,
   in the same transaction as the ledger's `loaded` row, so a failure leaves no partial batch. Should the
   database still refuse a value, the file is loaded again in chunks and only the refused rows are
   rejected. Under `invalid_optional_field: null` a bad optional value loads as NULL and is recorded in
   `audit.field_issues`; too many hold the batch;
4. only after that commit is the file moved out of the landing zone into the archive.
Columns the mapping does not know are kept in `extras` and reported as schema drift. No error text
written anywhere holds a value from the file (errors.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from crm_knowledge.ingest import errors, ledger
from crm_knowledge.ingest.convert import (
    RowError,
    check_json,
    check_text,
    converter_for,
    jsonable,
    printable,
    record_hash,
)
from crm_knowledge.ingest.readers import (
    BadRow,
    FileUnreadable,
    ParsedFile,
    duplicate_columns,
    guess_encoding,
    header_key,
    read_file,
)
from crm_knowledge.ingest.registry import IDENTIFIER_KINDS, KIND_TARGETS, SourceConfig
from crm_knowledge.privacy.file_modes import private_dir, private_file, write_private_text
from crm_knowledge.settings import Settings, get_settings
from crm_knowledge.warehouse.db import connect

log = logging.getLogger(__name__)

META_COLUMNS = ("_batch_id", "_source_file", "_loaded_at", "_row_number", "_record_hash")
_UNPLANNED = object()


@dataclass
class FileResult:
    source_name: str
    file: str
    status: str  # loaded | held (too many field issues) | skipped | quarantined
    batch_id: str | None = None
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    missing_columns: list[str] = field(default_factory=list)
    unexpected_columns: list[str] = field(default_factory=list)
    error: str | None = None
    rows_field_issues: int = 0

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
    """Move a landing file into the archive / quarantine: a 0600 file in a 0700 folder, whatever mode it
    was dropped with (it holds personal data)."""
    private_dir(dest_dir)
    dest = dest_dir / path.name
    if dest.exists():
        dest = dest_dir / f"{path.stem}.{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}{path.suffix}"
    shutil.move(str(path), dest)
    private_file(dest)
    return dest


def _quarantine(conn: psycopg.Connection, cfg: SourceConfig, path: Path, checksum: str, reason: str,
                settings: Settings, batch_id: str | None = None, detail: str = "") -> FileResult:
    """Record the file as quarantined (once: it leaves the landing zone) and move it to the quarantine.

    `reason` is what the ledger, the log and the auditors see: no values from the file. `detail` (e.g. the
    header as read) goes only into the `.reason.txt` beside the quarantined file, which holds the data anyway.
    """
    with conn.transaction():
        if batch_id is None:
            batch_id = ledger.new_batch_id(cfg.name)
            ledger.open_batch(conn, batch_id=batch_id, source_name=cfg.name, source_kind=cfg.kind,
                              source_file=path.name, checksum=checksum)
        ledger.close_batch(conn, batch_id, "quarantined", ledger.BatchCounts(), error=reason)
    qdir = settings.quarantine_dir / cfg.name
    moved = _move(path, qdir)
    write_private_text(moved.with_name(moved.name + ".reason.txt"), f"batch {batch_id}\n{reason}\n{detail}")
    log.error("QUARANTINED %s (%s), batch %s: %s -> %s", path.name, cfg.name, batch_id, reason, moved)
    return FileResult(cfg.name, path.name, "quarantined", batch_id, error=reason)


#: Rows per COPY when a file is loaded row-safe (after the database refused one of its rows).
SAFE_CHUNK_ROWS = 2000


def _guarded(rows: Iterator[Any], name: str) -> Iterator[Any]:
    """The reader's records; a reader that breaks mid-file (a corrupt workbook part, a bug) makes the file
    unreadable rather than failing the run: it is quarantined once and the next files still load."""
    it = iter(rows)
    n = 0
    while True:
        try:
            item = next(it)
        except StopIteration:
            return
        except FileUnreadable:
            raise
        except Exception as exc:  # noqa: BLE001 - any reader failure is the file's
            raise FileUnreadable(f"{name}: cannot be read after record {n}: {errors.describe(exc)}") from None
        n += 1
        yield item


def load_file(conn: psycopg.Connection, cfg: SourceConfig, path: Path,
              settings: Settings | None = None) -> FileResult:
    """Load one file; never raises for bad data (it is quarantined or rejected), only for outages.

    `conn` must be in autocommit mode: each `conn.transaction()` below is then a real transaction,
    so the ledger's `running` row survives a failed load and says what happened. Callers that may run
    concurrently hold the source's lock (:func:`ingest_source` does).
    """
    if not conn.autocommit:
        raise ValueError("load_file needs an autocommit connection (warehouse.db.connect(..., autocommit=True))")
    settings = settings or get_settings()
    ledger.durable_commits(conn)
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
    header_keys = {header_key(h) for h in parsed.header}
    missing_required = [c for c in cfg.required_columns if header_key(c) not in header_keys]
    if missing_required:
        _close(parsed)
        other = guess_encoding(path, cfg) if cfg.format == "csv" else None
        if other:
            reason = (f"{path.name}: wrong encoding: read as {cfg.encoding} (the source's `encoding` in "
                      f"{cfg.config_file.name}) the header lacks the required column(s) {missing_required}, but "
                      f"the file reads as {other} and then has them. Re-deliver the file in {cfg.encoding} or "
                      "fix the setting")
        else:
            reason = (f"{path.name}: required column(s) {missing_required} missing; the file's header has "
                      f"{len(parsed.header)} column(s) (listed in the quarantine's .reason.txt). Fix the file or "
                      f"the mapping in {cfg.config_file.name}")
        return _quarantine(conn, cfg, path, checksum, reason, settings,
                           detail=f"header as read ({cfg.encoding}): {parsed.header}\n")
    duplicates = duplicate_columns(parsed.header) if cfg.format != "jsonl" else []
    if duplicates:
        _close(parsed)
        reason = (f"{path.name}: the header names a column more than once: {'; '.join(duplicates)}; which one "
                  "holds the data is unknown. Fix the file's header")
        return _quarantine(conn, cfg, path, checksum, reason, settings)

    batch_id = ledger.new_batch_id(cfg.name)
    with conn.transaction():
        ledger.open_batch(conn, batch_id=batch_id, source_name=cfg.name, source_kind=cfg.kind,
                          source_file=path.name, checksum=checksum)
    try:
        try:
            outcome = _load_rows(conn, cfg, path, parsed, batch_id, safe=False)
        except _RowRefused as refused:
            # The database refused a value the checks in convert.py let through: load the file again, row-safe.
            log.warning("%s: %s: the database refused a row (%s); loading the file again in chunks, rejecting "
                        "only the refused rows", cfg.name, path.name, refused.reason)
            outcome = _load_rows(conn, cfg, path, read_file(path, cfg), batch_id, safe=True)
    except FileUnreadable as exc:
        return _quarantine(conn, cfg, path, checksum, str(exc), settings, batch_id=batch_id)
    except Exception as exc:
        reason = f"{cfg.name}: loading {path.name} failed, nothing of it was kept: {errors.describe(exc)}"
        try:
            with conn.transaction():
                ledger.close_batch(conn, batch_id, "failed", ledger.BatchCounts(), error=reason)
        except psycopg.Error:
            log.error("%s: batch %s could not be marked failed (the warehouse is unreachable); the next load "
                      "marks it aborted", cfg.name, batch_id)
        log.error("%s (batch %s; the file stays in the landing zone for the next run)", reason, batch_id)
        raise errors.LoadFailed(reason) from None

    counts, rejects, missing, unexpected, hold = outcome
    if missing or unexpected:
        log.warning("%s: schema drift in %s: missing columns %s, unexpected columns %s (kept in extras)",
                    cfg.name, path.name, missing, unexpected)
    for n, reason, _ in rejects[:5]:
        log.warning("%s: %s row %s rejected: %s", cfg.name, path.name, n, reason)
    if len(rejects) > 5:
        log.warning("%s: ... %s more rejected rows in raw.load_rejects (batch %s)", cfg.name,
                    len(rejects) - 5, batch_id)
    if counts.rows_field_issues:
        log.warning("%s: %s: %s row(s) kept with an invalid optional field set to NULL (audit.field_issues, "
                    "batch %s)", cfg.name, path.name, counts.rows_field_issues, batch_id)
    if hold:
        log.error("%s: %s: batch %s %s", cfg.name, path.name, batch_id, hold)
    _move(path, settings.archive_dir / cfg.name)
    log.info("%s: %s %s as batch %s: read %s, loaded %s, rejected %s, with field issues %s", cfg.name, path.name,
             "held" if hold else "loaded", batch_id, counts.rows_read, counts.rows_loaded, counts.rows_rejected,
             counts.rows_field_issues)
    return FileResult(cfg.name, path.name, "held" if hold else "loaded", batch_id, counts.rows_read,
                      counts.rows_loaded, counts.rows_rejected, missing, unexpected, error=hold,
                      rows_field_issues=counts.rows_field_issues)


def _close(parsed: ParsedFile) -> None:
    close = getattr(parsed.rows, "close", None)
    if close is not None:
        close()


class _RowRefused(Exception):
    """The database (or the driver) refused a row's value in a plain COPY; the transaction was rolled back."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


Outcome = tuple[ledger.BatchCounts, list[tuple[int, str, Any]], list[str], list[str], str | None]


def _load_rows(conn: psycopg.Connection, cfg: SourceConfig, path: Path, parsed: ParsedFile, batch_id: str, *,
               safe: bool) -> Outcome:
    """Convert and COPY every row, record rejects and drift, close the batch `loaded`: one transaction.

    Plain mode streams all rows through one COPY (the fast path: convert.py's checks keep the database from
    refusing a value). Safe mode sends SAFE_CHUNK_ROWS rows per COPY, each in a savepoint; a chunk the database
    refuses is split in halves until the refused rows are single rows, which become rejects with the
    database's reason (class, column; no value). Outages are not the row's fault and are raised.
    """
    dst_by_key = {header_key(src): dst for src, dst in cfg.columns.items()}
    target, business_cols = KIND_TARGETS[cfg.kind]
    constants = cfg.constant_columns
    # columns mapped onto a declared identifier kind land in `identifiers` ({"<kind>": value})
    has_identifiers = cfg.kind in IDENTIFIER_KINDS
    columns = [*constants, *business_cols, "extras", *(["identifiers"] if has_identifiers else []), *META_COLUMNS]
    loaded_at = dt.datetime.now(dt.UTC)
    counts = ledger.BatchCounts()
    rejects: list[tuple[int, str, Any]] = []
    schema, table = target.split(".")
    copy_sql = sql.SQL("copy {}.{} ({}) from stdin").format(
        sql.Identifier(schema), sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c) for c in columns))
    # Per file column, chosen once: (position in business_cols, converter), (identifier kind, None) for a
    # declared identifier kind, or None for extras.
    position = {c: i for i, c in enumerate(business_cols)}
    plan: dict[str, tuple[int | str, Callable[[Any], Any] | None] | None] = {}
    key_position = position.get(cfg.primary_key or "")
    const_values = list(constants.values())
    chunk: list[tuple[int, list[Any], Any]] = []
    optional = cfg.optional_targets
    # (row number, raw column, file column, reason): optional fields set to NULL, the record kept
    issues: list[tuple[int, str, str, str]] = []
    refused: set[int] = set()

    def send(rows: list[tuple[int, list[Any], Any]]) -> None:
        """COPY `rows` in a savepoint; on a refused value, halve until the refused row is alone (safe mode)."""
        try:
            with conn.transaction(), conn.cursor() as cur, cur.copy(copy_sql) as copy:
                for _, row, _ in rows:
                    copy.write_row(row)
            counts.rows_loaded += len(rows)
        except Exception as exc:
            if not errors.is_data_error(exc):
                raise
            if len(rows) == 1:
                n, _, record = rows[0]
                rejects.append((n, f"refused by the database: {errors.describe(exc)}", record))
                refused.add(n)
                return
            half = len(rows) // 2
            send(rows[:half])
            send(rows[half:])

    with conn.transaction():
        if safe:
            errors.quiet_server_log(conn, expected_errors=True)
        with conn.cursor() as cur:
            copy_cm = None if safe else cur.copy(copy_sql)
            copy = copy_cm.__enter__() if copy_cm is not None else None
            try:
                for item in _guarded(parsed.rows, path.name):
                    counts.rows_read += 1
                    if isinstance(item, BadRow):
                        rejects.append((item.row_number, item.reason, {"raw": item.raw}))
                        continue
                    row_number, record = item
                    business: list[Any] = [None] * len(business_cols)
                    extras: dict[str, Any] = {}
                    identifiers: dict[str, str] = {}
                    row_issues: list[tuple[int, str, str, str]] = []
                    try:
                        for col, value in record.items():
                            step = plan.get(col, _UNPLANNED)
                            if step is _UNPLANNED:
                                dst = dst_by_key.get(header_key(col))
                                step = plan[col] = ((position[dst], converter_for(dst, cfg)) if dst in position
                                                    else (dst, None) if dst else None)
                            try:
                                if step is None:
                                    if value is not None and value != "":
                                        check_text(str(col))
                                        extras[col] = check_json(jsonable(value))
                                    continue
                                if step[1] is None:  # a declared identifier kind
                                    if value is not None and str(value).strip():
                                        identifiers[step[0]] = check_text(str(value))
                                    continue
                                business[step[0]] = step[1](value)
                            except RowError as exc:
                                if step is not None and step[1] is not None and business_cols[step[0]] in optional:
                                    row_issues.append((row_number, business_cols[step[0]], printable(str(col)),
                                                       str(exc)))
                                    continue
                                raise RowError(f"column {_column_label(col)}: {exc}") from None
                        if key_position is None or business[key_position] is None:
                            raise RowError(f"primary key {cfg.primary_key!r} is empty")
                    except RowError as exc:
                        rejects.append((row_number, str(exc), record))
                        continue
                    if row_issues:
                        issues.extend(row_issues)
                    ids = [Jsonb(identifiers) if identifiers else None] if has_identifiers else []
                    # rows without identifiers hash as before, so existing rows are not seen as changed
                    hashed = [*const_values, *business, extras or None, *([identifiers] if identifiers else [])]
                    row = [*const_values, *business, Jsonb(extras) if extras else None, *ids,
                           batch_id, path.name, loaded_at, row_number, record_hash(hashed)]
                    if copy is not None:
                        copy.write_row(row)
                        counts.rows_loaded += 1
                    else:
                        chunk.append((row_number, row, record))
                        if len(chunk) >= SAFE_CHUNK_ROWS:
                            send(chunk)
                            chunk = []
                if chunk:
                    send(chunk)
            except BaseException as exc:
                if copy_cm is not None:
                    try:
                        copy_cm.__exit__(type(exc), exc, exc.__traceback__)
                    except Exception:  # noqa: BLE001 - the COPY is abandoned; the first error is the one raised
                        pass
                if not safe and errors.is_data_error(exc) and not isinstance(exc, RowError):
                    raise _RowRefused(errors.describe(exc)) from None
                raise
            if copy_cm is not None:
                try:
                    copy_cm.__exit__(None, None, None)
                except Exception as exc:
                    if errors.is_data_error(exc):
                        raise _RowRefused(errors.describe(exc)) from None
                    raise
        counts.rows_rejected = len(rejects)
        issues = [i for i in issues if i[0] not in refused]
        counts.rows_field_issues = len({i[0] for i in issues})
        hold = _field_issue_hold(cfg, path, issues, counts.rows_read)
        if issues:
            with conn.cursor() as cur:
                cur.executemany(
                    """insert into audit.field_issues (batch_id, source_name, source_file, row_number, column_name,
                                                       source_column, reason) values (%s, %s, %s, %s, %s, %s, %s)""",
                    [(batch_id, cfg.name, path.name, n, column, src, reason) for n, column, src, reason in issues])
        columns_met = list(dict.fromkeys([*parsed.header, *plan]))
        keys_met = {header_key(c) for c in columns_met}
        unexpected = [printable(c) for c in columns_met if header_key(c) not in dst_by_key]
        missing = [src for src in cfg.columns if header_key(src) not in keys_met]
        if rejects:
            with conn.cursor() as cur:
                cur.executemany(
                    """insert into raw.load_rejects (batch_id, source_name, source_file, row_number,
                                                     reason, record) values (%s, %s, %s, %s, %s, %s)""",
                    [(batch_id, cfg.name, path.name, n, reason, Jsonb(printable(rec))) for n, reason, rec in rejects],
                )
        if missing or unexpected:
            conn.execute(
                """insert into audit.schema_drift (batch_id, source_name, source_file, missing_columns,
                                                   unexpected_columns) values (%s, %s, %s, %s, %s)""",
                (batch_id, cfg.name, path.name, missing, unexpected),
            )
        ledger.close_batch(conn, batch_id, "held" if hold else "loaded", counts, error=hold)
    return counts, rejects, missing, unexpected, hold


#: A share means little on a handful of rows (2 bad dates in a 36-row file are 5.6%): a column holds its batch
#: only from this many invalid values on.
MIN_FIELD_ISSUES_TO_HOLD = 5


def _field_issue_hold(cfg: SourceConfig, path: Path, issues: list[tuple[int, str, str, str]],
                      rows_read: int) -> str | None:
    """The reason to hold the batch when one column's share of invalid values exceeds the source's threshold."""
    if not issues or not rows_read:
        return None
    per_column: dict[str, int] = {}
    for _, column, _, _ in issues:
        per_column[column] = per_column.get(column, 0) + 1
    over = [(c, n) for c, n in sorted(per_column.items())
            if n >= MIN_FIELD_ISSUES_TO_HOLD and n / rows_read > cfg.field_issue_threshold]
    if not over:
        return None
    parts = ", ".join(f"{c} invalid in {n} of {rows_read} rows ({n / rows_read:.1%})" for c, n in over)
    return (f"held at load: {parts}, above the source's field_issue_threshold of {cfg.field_issue_threshold:.1%} "
            f"({cfg.config_file.name}); the rows are in raw with those fields NULL, see audit.field_issues. "
            "Fix the source and re-deliver (then `ckp batches retire` this one), or accept it with "
            "`ckp batches accept`")


def _column_label(col: Any) -> str:
    return repr(printable(str(col)))


def ingest_source(cfg: SourceConfig, url: str | None = None, settings: Settings | None = None) -> list[FileResult]:
    """Load every pending file of one file source; returns what happened to each file.

    Runs under the source's advisory lock: a second process loading the same source waits, then finds the
    files already archived. A batch left `running` by a load that crashed is marked `aborted` first; its
    file is still in the landing zone and loads again now.
    """
    settings = settings or get_settings()
    results = []
    with connect(url or settings.warehouse_url, autocommit=True) as conn, \
            ledger.source_lock(conn, cfg.name):
        errors.quiet_server_log(conn)
        ledger.abort_stale(conn, cfg.name)
        files = pending_files(cfg, settings)
        log.info("%s: %s file(s) pending in %s", cfg.name, len(files), settings.landing_dir / (cfg.path or ""))
        for i, path in enumerate(files, start=1):
            log.info("%s: file %s/%s: %s", cfg.name, i, len(files), path.name)
            if not path.exists():  # taken by a load that held the lock before this one
                continue
            results.append(load_file(conn, cfg, path, settings))
        if any(r.rows_loaded for r in results):
            ledger.analyze_after_load(conn, cfg.target_table)
    return results
