"""Load landing-zone files of one source into its raw table: exactly once, all or nothing per file.

A source loads under its advisory lock (one load per source at a time); a batch a crashed load left
`running` is marked `aborted` first (see ledger.py). For each file matching the source's glob:
1. its SHA-256 is looked up in the ledger; a file whose content was already loaded is skipped (and
   archived), so a re-run or a file that arrives twice loads nothing twice;
2. a file that cannot be read at all (encoding, header, duplicate column names, a reader that breaks
   part-way) is moved to quarantine, once, with its reason in the ledger; the next files still load;
3. otherwise its rows land in the raw table as received, as text: nothing is converted here.
   CSV and JSON Lines files are streamed to the server's own `COPY` (the fast path: straight into the raw
   table when every column of the file is mapped, else through a temporary landing table and one
   `INSERT ... SELECT` that builds `extras` and `identifiers`); a file the server's parser refuses, and
   every XLSX file, goes through the Python readers, which find the faulty rows. A row is rejected (to
   `raw.load_rejects`, with its reason) only for a structural fault: a line that does not parse, a wrong
   number of fields, a value no text column can hold (NUL), an empty primary key. The rows, the rejects,
   the batch's conventions (calendar, date format: `audit.batch_conventions`) and the ledger's `loaded`
   row commit in one transaction, so a failure leaves no partial batch;
4. only after that commit is the file moved out of the landing zone into the archive.
Values that do not convert (an impossible birth date) are staging's business: they are NULL there, and
ingest/field_issues.py records them per field before the quality gate. Columns the mapping does not know
are kept in `extras` and reported as schema drift. No error text written anywhere holds a value from the
file (errors.py).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from crm_knowledge.ingest import errors, ledger
from crm_knowledge.ingest.convert import RowError, check_json, check_text, jsonable, printable, text_or_none, to_text
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
from crm_knowledge.warehouse.db import connect, copy_file_in, hold_off_schema_changes

log = logging.getLogger(__name__)

META_COLUMNS = ("_batch_id", "_source_file", "_loaded_at", "_row_number")
#: Python encoding name -> PostgreSQL's, for the encodings the server's COPY can read itself.
PG_ENCODINGS = {"utf-8": "UTF8", "utf8": "UTF8", "utf-8-sig": "UTF8", "cp1256": "WIN1256",
                "windows-1256": "WIN1256"}
_UNPLANNED = object()


@dataclass
class FileResult:
    source_name: str
    file: str
    status: str  # loaded | skipped | quarantined
    batch_id: str | None = None
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    missing_columns: list[str] = field(default_factory=list)
    unexpected_columns: list[str] = field(default_factory=list)
    error: str | None = None
    #: where the load's time went, seconds per phase (see Laps); logged, and read by the benchmark
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Laps(dict[str, float]):
    """Seconds per phase of one file's load: checksum, header (reading the header / first records), ledger
    (ledger rows, drift, conventions), copy (the server's COPY), land (temp table -> raw insert, rejects),
    keys (JSON Lines: the keys of the whole file), python (the Python readers' path), commit, move."""

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self[name] = self.get(name, 0.0) + time.perf_counter() - started

    def summary(self) -> str:
        return ", ".join(f"{k} {v:.2f}s" for k, v in sorted(self.items(), key=lambda kv: -kv[1]) if v >= 0.005)


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
    laps = Laps()
    ledger.durable_commits(conn)
    with laps.phase("checksum"):
        checksum = sha256_file(path)
    with laps.phase("ledger"):
        done = ledger.already_loaded(conn, cfg.name, checksum)
    if done:
        log.info("%s: %s already loaded as batch %s; skipping", cfg.name, path.name, done)
        _move(path, settings.archive_dir / cfg.name)
        return FileResult(cfg.name, path.name, "skipped", done)

    # A file the server's COPY reads is read here for its header only (COPY refuses undecodable bytes itself;
    # a file it refuses is read again, whole, below).
    by_copy = cfg.format in ("csv", "jsonl") and cfg.encoding.lower() in PG_ENCODINGS
    try:
        with laps.phase("header"):
            parsed = read_file(path, cfg, whole=not by_copy)
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
    with laps.phase("ledger"), conn.transaction():
        ledger.open_batch(conn, batch_id=batch_id, source_name=cfg.name, source_kind=cfg.kind,
                          source_file=path.name, checksum=checksum)
    try:
        outcome = None
        if by_copy:
            _close(parsed)
            outcome = _copy_file(conn, cfg, path, parsed.header, batch_id, laps)
            if outcome is None:
                parsed = read_file(path, cfg)
        elif cfg.format == "xlsx":
            # the sheet as CSV (an owner-only temporary file) through the same COPY as a CSV file
            with tempfile.TemporaryDirectory() as tmp:
                sheet = Path(tmp) / "sheet.csv"
                try:
                    _write_csv(parsed, sheet, path.name)
                except _NotForCopy:
                    pass
                else:
                    outcome = _copy_file(conn, dataclasses.replace(cfg, format="csv", delimiter=",",
                                                                   encoding="utf-8"),
                                         path, parsed.header, batch_id, laps, stream=sheet)
            if outcome is None:
                parsed = read_file(path, cfg)
        if outcome is None:
            try:
                with laps.phase("python"):
                    outcome = _load_rows(conn, cfg, path, parsed, batch_id, safe=False)
            except _RowRefused as refused:
                # The database refused a value the checks in convert.py let through: load the file again, row-safe.
                log.warning("%s: %s: the database refused a row (%s); loading the file again in chunks, rejecting "
                            "only the refused rows", cfg.name, path.name, refused.reason)
                with laps.phase("python"):
                    outcome = _load_rows(conn, cfg, path, read_file(path, cfg), batch_id, safe=True)
    except FileUnreadable as exc:
        return _quarantine(conn, cfg, path, checksum, str(exc), settings, batch_id=batch_id)
    except Exception as exc:
        reason = f"{cfg.name}: loading {path.name} failed, nothing of it was kept: {errors.describe(exc)}"
        ledger.fail_batch(conn, cfg.name, batch_id, reason)
        log.error("%s (batch %s; the file stays in the landing zone for the next run)", reason, batch_id)
        raise errors.LoadFailed(reason) from None

    counts, rejects, missing, unexpected = outcome
    if missing or unexpected:
        log.warning("%s: schema drift in %s: missing columns %s, unexpected columns %s (kept in extras)",
                    cfg.name, path.name, missing, unexpected)
    for n, reason in rejects[:5]:
        log.warning("%s: %s row %s rejected: %s", cfg.name, path.name, n, reason)
    if counts.rows_rejected > 5:
        log.warning("%s: ... %s more rejected rows in raw.load_rejects (batch %s)", cfg.name,
                    counts.rows_rejected - 5, batch_id)
    with laps.phase("move"):
        _move(path, settings.archive_dir / cfg.name)
    log.info("%s: %s loaded as batch %s: read %s, loaded %s, rejected %s (%s)", cfg.name, path.name, batch_id,
             counts.rows_read, counts.rows_loaded, counts.rows_rejected, laps.summary())
    return FileResult(cfg.name, path.name, "loaded", batch_id, counts.rows_read, counts.rows_loaded,
                      counts.rows_rejected, missing, unexpected, seconds={k: round(v, 4) for k, v in laps.items()})


def _close(parsed: ParsedFile) -> None:
    close = getattr(parsed.rows, "close", None)
    if close is not None:
        close()


class _RowRefused(Exception):
    """The database (or the driver) refused a row's value in a plain COPY; the transaction was rolled back."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class _NotForCopy(Exception):
    """The server's COPY cannot load this file as the readers would (a blank key, a row of blanks): the
    transaction is rolled back and the Python readers load the file."""


#: (counts, the first rejects as (row number, reason), missing columns, unexpected columns)
Outcome = tuple[ledger.BatchCounts, list[tuple[int, str]], list[str], list[str]]


def _finish(conn: psycopg.Connection, cfg: SourceConfig, path: Path, batch_id: str, counts: ledger.BatchCounts,
            columns_met: list[str]) -> tuple[list[str], list[str]]:
    """Inside the load's transaction: drift, the batch's conventions and the ledger's `loaded` row."""
    dst_by_key = {header_key(src): dst for src, dst in cfg.columns.items()}
    keys_met = {header_key(c) for c in columns_met}
    unexpected = [printable(c) for c in columns_met if header_key(c) not in dst_by_key]
    missing = [src for src in cfg.columns if header_key(src) not in keys_met]
    if missing or unexpected:
        conn.execute(
            """insert into audit.schema_drift (batch_id, source_name, source_file, missing_columns,
                                               unexpected_columns) values (%s, %s, %s, %s, %s)""",
            (batch_id, cfg.name, path.name, missing, unexpected),
        )
    # raw column -> the file's column as the file names it (for the field-issue report), else as configured
    source_columns = {dst: printable(src) for src, dst in cfg.columns.items()}
    for col in reversed(columns_met):
        if header_key(col) in dst_by_key:
            source_columns[dst_by_key[header_key(col)]] = printable(col)
    conn.execute(
        """insert into audit.batch_conventions (batch_id, source_name, date_calendar, date_format,
                                                field_issue_threshold, source_columns)
           values (%s, %s, %s, %s, %s, %s)""",
        (batch_id, cfg.name, cfg.date_calendar, cfg.date_format, cfg.field_issue_threshold,
         Jsonb(source_columns)),
    )
    ledger.close_batch(conn, batch_id, "loaded", counts)
    return missing, unexpected


def copy_options(cfg: SourceConfig) -> sql.Composable:
    """COPY's options for a source file: CSV as CSV with its header line, JSON Lines as one value per line
    (csv with quote and delimiter bytes that never occur in JSON text: no unescaping)."""
    enc = sql.Literal(PG_ENCODINGS[cfg.encoding.lower()])
    if cfg.format == "csv":
        return sql.SQL("(format csv, header true, delimiter {}, encoding {})").format(
            sql.Literal(cfg.delimiter), enc)
    return sql.SQL("(format csv, quote e'\\x01', delimiter e'\\x02', encoding {})").format(enc)


def _write_csv(parsed: ParsedFile, dest: Path, name: str) -> None:
    """A reader's rows as a CSV file with its header; a row's position is its row number (blank rows stay,
    as empty lines of fields, so the numbering holds); cells as text (convert.to_text)."""
    import csv

    header = parsed.header
    with open(dest, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        expected = 1
        for item in _guarded(parsed.rows, name):
            if isinstance(item, BadRow):  # the XLSX reader has none; should it, the Python path rejects them
                raise _NotForCopy(f"row {item.row_number} cannot be read")
            n, record = item
            for _ in range(expected, n):
                writer.writerow([""] * len(header))
            expected = n + 1
            writer.writerow([v if v.__class__ is str else (to_text(v) or "") for v in record.values()])


def _copy_file(conn: psycopg.Connection, cfg: SourceConfig, path: Path, header: list[str],
               batch_id: str, laps: Laps, stream: Path | None = None) -> Outcome | None:
    """The fast path: the server parses the file (COPY) and writes its rows in one statement; None (nothing
    kept) when the server's parser refuses the file or a row needs the Python readers' handling. `stream`:
    the file COPY reads, when not `path` itself (an XLSX sheet written out as CSV)."""
    try:
        committing = None
        with conn.transaction():
            hold_off_schema_changes(conn)  # first: the restart below writes the sequence's catalog row
            errors.quiet_server_log(conn, expected_errors=True)
            # the rows are numbered from 1 by the table's sequence; restarting it locks it until the commit, so
            # two loads into one table (two sibling units) take turns
            conn.execute(sql.SQL("alter sequence {} restart").format(_row_sequence(cfg)))
            conn.execute(
                "select set_config('ckp.load_batch_id', %s, true), set_config('ckp.load_source_file', %s, true), "
                "set_config('ckp.load_unit', %s, true), set_config('ckp.load_shop', %s, true)",
                (batch_id, path.name, cfg.unit or "", cfg.shop or ""))
            if cfg.format == "csv":
                counts, columns_met = _copy_csv(conn, cfg, path, header, batch_id, stream or path, laps)
            else:
                counts, columns_met = _copy_jsonl(conn, cfg, path, header, batch_id, laps)
            with laps.phase("ledger"):
                missing, unexpected = _finish(conn, cfg, path, batch_id, counts, columns_met)
            committing = time.perf_counter()
        laps["commit"] = time.perf_counter() - committing
    except _NotForCopy as exc:
        log.info("%s: %s: %s; loading it through the Python reader", cfg.name, path.name, exc)
        return None
    except Exception as exc:
        if not errors.is_data_error(exc):
            raise
        log.info("%s: %s: the server's COPY refused the file (%s); loading it through the Python reader, which "
                 "rejects the faulty rows", cfg.name, path.name, errors.describe(exc))
        return None
    rejects = []
    if counts.rows_rejected:
        rejects = [tuple(r) for r in conn.execute(
            "select row_number, reason from raw.load_rejects where batch_id = %s order by row_number limit 5",
            (batch_id,)).fetchall()]
    return counts, rejects, missing, unexpected


def _target(cfg: SourceConfig) -> tuple[sql.Composable, tuple[str, ...]]:
    target, business_cols = KIND_TARGETS[cfg.kind]
    schema, table = target.split(".")
    return sql.Identifier(schema, table), business_cols


def _row_sequence_name(cfg: SourceConfig) -> sql.Composable:
    """The raw table's row-number sequence as a literal (for `::regclass`): raw.<table>__row_number (01_raw.sql)."""
    return sql.Literal(f"{cfg.target_table}__row_number")


def _row_sequence(cfg: SourceConfig) -> sql.Composable:
    schema, table = cfg.target_table.split(".")
    return sql.Identifier(schema, f"{table}__row_number")


def json_object_sql(pairs: list[tuple[str, sql.Composable]]) -> sql.Composable:
    """`jsonb_build_object(name, value, ...)` without its null members, NULL when nothing is left."""
    if not pairs:
        return sql.SQL("cast(null as jsonb)")
    return sql.SQL("nullif(jsonb_strip_nulls(jsonb_build_object({})), '{{}}'::jsonb)").format(
        sql.SQL(", ").join(sql.SQL("{}, {}").format(sql.Literal(k), v) for k, v in pairs))


def _land(conn: psycopg.Connection, cfg: SourceConfig, header: list[str],
          value: dict[str, sql.Composable], everything: sql.Composable, present: sql.Composable,
          unreadable: sql.Composable | None, batch_id: str, source_file: str, copied: int,
          fields: sql.Composable | None = None) -> ledger.BatchCounts:
    """From the temporary landing table `ckp_landing`: its records into the raw table, set-based, and the
    structural rejects (no primary key; for JSON Lines, a line that is not an object) into raw.load_rejects.

    `value`: file column -> its text expression; `everything`: the whole record as jsonb (a reject's record);
    `present`: true for a record (not a row of blanks); `unreadable`: true for a line that is no record;
    `copied`: the rows COPY wrote to the landing table (when all of them loaded, none is left to reject);
    `fields`: joined to the landing table (`value` may name its columns), e.g. a JSON object's fields.
    """
    table, business_cols = _target(cfg)
    fields = fields or sql.SQL("")
    dst_by_key = {header_key(src): dst for src, dst in cfg.columns.items()}
    mapped: dict[str, sql.Composable] = {}
    extras: list[tuple[str, sql.Composable]] = []
    identifiers: list[tuple[str, sql.Composable]] = []
    for col, expr in value.items():
        dst = dst_by_key.get(header_key(col))
        if dst in business_cols:
            mapped.setdefault(dst, expr)
        elif dst:
            identifiers.append((dst, sql.SQL("nullif(btrim({}), '')").format(expr)))
        else:
            extras.append((col, sql.SQL("nullif({}, '')").format(expr)))
    key = mapped.get(cfg.primary_key or "")
    has_key = (sql.SQL("nullif(btrim({}), '') is not null").format(key) if key is not None
               else sql.SQL("false"))
    record_ok = sql.SQL("({}) and {}").format(present, sql.SQL("not ({})").format(unreadable)
                                              if unreadable is not None else sql.SQL("true"))
    columns = [sql.Identifier(c) for c in mapped] + [sql.Identifier("extras"), sql.Identifier("_row_number")]
    values = [sql.SQL("case when btrim({0}) <> '' then {0} end").format(v) for v in mapped.values()]
    values += [json_object_sql(extras), sql.Identifier("_row_number")]
    if cfg.kind in IDENTIFIER_KINDS:
        columns.append(sql.Identifier("identifiers"))
        values.append(json_object_sql(identifiers))
    with conn.cursor() as cur:
        cur.execute(sql.SQL("insert into {} ({}) select {} from ckp_landing {} where {} and {}").format(
            table, sql.SQL(", ").join(columns), sql.SQL(", ").join(values), fields, record_ok, has_key))
        loaded = cur.rowcount
        if loaded == copied:
            return ledger.BatchCounts(rows_read=loaded, rows_loaded=loaded)
        reason = (f"primary key {cfg.primary_key!r} is empty" if key is not None
                  else f"primary key {cfg.primary_key!r}: its column is not in the file")
        cur.execute(sql.SQL(
            "insert into raw.load_rejects (batch_id, source_name, source_file, row_number, reason, record) "
            "select {batch}, {source}, {file}, _row_number, case when {bad} then {bad_reason} else {reason} end, "
            "case when {bad} then {bad_record} else {record} end "
            "from ckp_landing {fields} where ({present}) and not (({ok}) and {key})").format(fields=fields, 
            batch=sql.Literal(batch_id), source=sql.Literal(cfg.name), file=sql.Literal(source_file),
            bad=unreadable if unreadable is not None else sql.SQL("false"),
            bad_record=sql.SQL("jsonb_build_object('raw', left(j::text, 2000))") if unreadable is not None
            else sql.SQL("null"),
            bad_reason=sql.Literal("a line must hold one JSON object"), reason=sql.Literal(reason),
            record=everything, present=present, ok=record_ok, key=has_key))
        rejected = cur.rowcount
    return ledger.BatchCounts(rows_read=loaded + rejected, rows_loaded=loaded, rows_rejected=rejected)


def _copy_csv(conn: psycopg.Connection, cfg: SourceConfig, path: Path, header: list[str],
              batch_id: str, stream: Path, laps: Laps) -> tuple[ledger.BatchCounts, list[str]]:
    table, business_cols = _target(cfg)
    dst_by_key = {header_key(src): dst for src, dst in cfg.columns.items()}
    targets = [dst_by_key.get(header_key(h)) for h in header]
    if all(t in business_cols for t in targets) and cfg.primary_key in targets:
        # Every column has its raw column: COPY straight into the raw table (metadata from the defaults).
        # A row without a key is left out by COPY's WHERE; then the readers load the file and reject it.
        key = sql.Identifier(cfg.primary_key or "")
        with laps.phase("copy"):
            loaded = copy_file_in(conn, sql.SQL("copy {} ({}) from stdin {} where nullif(btrim({}), '') is not null")
                                  .format(table, sql.SQL(", ").join(map(sql.Identifier, targets)),
                                          copy_options(cfg), key), stream)
            # the rows COPY read (kept or left out): the numbers handed out since the restart (the sequence's
            # cached numbers are this session's alone until the commit; see 01_raw.sql)
            read = conn.execute(sql.SQL("select nextval({}) - 1").format(_row_sequence_name(cfg))).fetchone()[0]
        if read != loaded:
            raise _NotForCopy(f"{read - loaded} row(s) without a primary key or of blanks only")
        return ledger.BatchCounts(rows_read=read, rows_loaded=loaded), list(header)
    cols = [sql.Identifier(f"c{i}") for i in range(len(header))]
    conn.execute(sql.SQL("create temp table ckp_landing ({}, _row_number int not null default "
                         "nextval({}::regclass)) on commit drop").format(
        sql.SQL(", ").join(sql.SQL("{} text").format(c) for c in cols), _row_sequence_name(cfg)))
    with laps.phase("copy"):
        copied = copy_file_in(conn, sql.SQL("copy ckp_landing ({}) from stdin {}").format(
            sql.SQL(", ").join(cols), copy_options(cfg)), stream)
    everything = sql.SQL("jsonb_build_object({})").format(sql.SQL(", ").join(
        sql.SQL("{}, coalesce({}, '')").format(sql.Literal(printable(h)), c)  # as the CSV reader gives it
        for h, c in zip(header, cols, strict=True)))
    present = sql.SQL("coalesce({}) is not null").format(sql.SQL(", ").join(
        sql.SQL("nullif(btrim({}), '')").format(c) for c in cols))
    with laps.phase("land"):
        counts = _land(conn, cfg, header, dict(zip(header, cols, strict=True)), everything, present, None,
                       batch_id, path.name, copied)
    return counts, list(header)


def _copy_jsonl(conn: psycopg.Connection, cfg: SourceConfig, path: Path, header: list[str],
                batch_id: str, laps: Laps) -> tuple[ledger.BatchCounts, list[str]]:
    conn.execute(sql.SQL("create temp table ckp_landing (j jsonb, _row_number int not null default "
                         "nextval({}::regclass)) on commit drop").format(_row_sequence_name(cfg)))
    # The keys: those of the first objects (the reader's header) and the mapped names; any other key a later
    # object brings is found among what is left over (`extras`), which is cheap to list.
    known = list(dict.fromkeys([*header, *cfg.columns]))
    unseen = [k for k in cfg.columns if k not in header]
    with laps.phase("copy"):
        copied = copy_file_in(conn, sql.SQL("copy ckp_landing (j) from stdin {}").format(copy_options(cfg)), path)
    with laps.phase("keys"), conn.cursor() as cur:
        later = [k for (k,) in cur.execute(
            "select distinct k from (select j - %s::text[] as rest from ckp_landing where jsonb_typeof(j) = 'object' "
            "and j - %s::text[] <> '{}'::jsonb) as r, jsonb_object_keys(r.rest) as k order by 1",
            (known, known)).fetchall()]
        found = cur.execute(sql.SQL("select {} from ckp_landing").format(sql.SQL(", ").join(
            sql.SQL("coalesce(bool_or(j ? {}), false)").format(sql.Literal(k)) for k in unseen))).fetchone() \
            if unseen else ()
        met = [*header, *(k for k, seen in zip(unseen, found, strict=True) if seen)]
    keys = list(dict.fromkeys([*met, *later]))
    for k in keys:
        check_text(k)  # jsonb holds no NUL; a key the readers would refuse is the readers' business
    # Each field is looked up once per object (`offset 0` keeps the subquery from being flattened into the
    # insert, which would look each one up twice: in the blank test and for the value).
    value = {k: sql.SQL("f.{}").format(sql.Identifier(f"v{i}")) for i, k in enumerate(keys)}
    fields = sql.SQL("cross join lateral (select {} offset 0) as f").format(sql.SQL(", ").join(
        sql.SQL("j ->> {} as {}").format(sql.Literal(k), sql.Identifier(f"v{i}")) for i, k in enumerate(keys))) \
        if keys else None
    with laps.phase("land"):
        counts = _land(conn, cfg, keys, value, sql.SQL("j"), sql.SQL("j is not null"),
                       sql.SQL("jsonb_typeof(j) <> 'object'"), batch_id, path.name, copied, fields)
    return counts, keys


def _load_rows(conn: psycopg.Connection, cfg: SourceConfig, path: Path, parsed: ParsedFile, batch_id: str, *,
               safe: bool) -> Outcome:
    """The Python readers' path (XLSX, and files the server's COPY refused): every row as text, one COPY,
    rejects and drift recorded, the batch closed `loaded`: one transaction.

    Plain mode streams all rows through one COPY. Safe mode sends SAFE_CHUNK_ROWS rows per COPY, each in a
    savepoint; a chunk the database refuses is split in halves until the refused rows are single rows, which
    become rejects with the database's reason (class, column; no value). Outages are not the row's fault and
    are raised.
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
    # Per file column, chosen once: a position in business_cols, an identifier kind (str), or None for extras.
    position = {c: i for i, c in enumerate(business_cols)}
    plan: dict[str, int | str | None] = {}
    key_position = position.get(cfg.primary_key or "")
    const_values = list(constants.values())
    chunk: list[tuple[int, list[Any], Any]] = []

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
                    try:
                        for col, value in record.items():
                            step = plan.get(col, _UNPLANNED)
                            if step is _UNPLANNED:
                                dst = dst_by_key.get(header_key(col))
                                step = plan[col] = position[dst] if dst in position else dst
                            try:
                                if step is None:
                                    if value is not None and value != "":
                                        check_text(str(col))
                                        extras[col] = check_json(jsonable(value))
                                elif step.__class__ is str:  # a declared identifier kind
                                    text = text_or_none(value)
                                    if text is not None and text.strip():
                                        identifiers[step] = text
                                else:
                                    business[step] = text_or_none(value)
                            except RowError as exc:
                                raise RowError(f"column {_column_label(col)}: {exc}") from None
                        if key_position is None or business[key_position] is None \
                                or not business[key_position].strip():
                            raise RowError(f"primary key {cfg.primary_key!r} is empty")
                    except RowError as exc:
                        rejects.append((row_number, str(exc), record))
                        continue
                    ids = [Jsonb(identifiers) if identifiers else None] if has_identifiers else []
                    row = [*const_values, *business, Jsonb(extras) if extras else None, *ids,
                           batch_id, path.name, loaded_at, row_number]
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
        if rejects:
            with conn.cursor() as cur:
                cur.executemany(
                    """insert into raw.load_rejects (batch_id, source_name, source_file, row_number,
                                                     reason, record) values (%s, %s, %s, %s, %s, %s)""",
                    [(batch_id, cfg.name, path.name, n, reason, Jsonb(printable(rec))) for n, reason, rec in rejects],
                )
        missing, unexpected = _finish(conn, cfg, path, batch_id, counts, list(dict.fromkeys([*parsed.header, *plan])))
    return counts, [(n, reason) for n, reason, _ in rejects[:5]], missing, unexpected


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
    # The planner statistics of the new batches are refreshed by their first reader, the raw gate's field
    # issue check (field_issues.check_batches), once per raw table rather than once per source.
    return results
