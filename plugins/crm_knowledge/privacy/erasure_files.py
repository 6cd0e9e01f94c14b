"""Erasure in the files ingestion keeps on disk: the landing archive and the quarantine.

Called by privacy/erasure.py (``erase``, ``run_pending``) and privacy/tombstones.py; nothing here deletes
warehouse rows.

**Landing archive** ``$CKP_HOME/archive/<source>/<file>`` (every loaded file, and every skipped
re-delivery of one). The warehouse knows where each erased record came from: its raw row carries
``_batch_id`` and ``_row_number``, and the batch's ledger row (``audit.load_batches``) the SHA-256 of the
file as delivered. :func:`locate` collects those locations *before* the raw rows are purged; an archived
file belongs to a batch when its SHA-256 as delivered equals the batch's checksum (a re-delivery archived
as ``<stem>.<timestamp><suffix>`` or under another name is found the same way). Each such file is rewritten
(:func:`rewrite_csv`, :func:`rewrite_jsonl`, :func:`rewrite_xlsx`):

* the erased records' rows — and rows rejected at load that quote one of the person's identifiers —
  are replaced by an **empty row** (CSV / JSON Lines: an empty line; XLSX: a row of empty cells). The
  readers skip empty rows but still count them, so the row numbers of every other record (raw
  ``_row_number``, ``raw.load_rejects.row_number``) stay valid and a later erasure in the same file
  finds its rows again;
* any remaining occurrence of the person's email / phone / national-ID spellings (e.g. in another
  caller's note) is masked to ``[erased]``;
* every other line is kept as it was: CSV and JSON Lines are streamed in the source's configured
  encoding and delimiter (``config/sources/*.yml``), lines decoded and re-encoded unchanged, line endings
  and a UTF-8 byte-order mark kept. An XLSX workbook is re-saved by openpyxl with the values the loader
  read (formulas become their last computed values).

Writes are atomic (temporary file in the same folder, fsync, rename); mode and modification time are kept,
so retention by age is not reset. A per-folder manifest ``.erasure-manifest.json`` logs, per file, the
SHA-256 as delivered and now and each redaction (when, which request, rows removed, values masked:
counts only, never values); it is also what maps a rewritten file back to its batch. The ingestion ledger
is not touched: it keeps the checksum of the file as delivered, so a re-delivered original is still
recognised and skipped. Such a skipped copy is archived as it arrived; :func:`sweep_copies` (each
``customer_erasure`` run) replaces any archived file whose SHA-256 is that of an already redacted file as
delivered with the redacted content.

**Quarantine** ``$CKP_HOME/quarantine/<source>/<file>`` (+ ``<file>.reason.txt``): files that could not
be parsed, so rows cannot be identified: the identifiers are masked by text match (:func:`mask_file`),
line by line in the source's encoding where a line decodes, else on the bytes (needles encoded as UTF-8
and in the source's encoding); a workbook that opens is masked cell by cell.

A file that cannot be read or written never stops the erasure: it is logged and listed in the result as
*not redacted* with the reason (:class:`FileRedaction`).
"""

from __future__ import annotations

import codecs
import contextlib
import datetime as dt
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import psycopg
from psycopg import sql

from crm_knowledge.export.file_drop import fsync_dir
from crm_knowledge.ingest.files import sha256_file
from crm_knowledge.ingest.readers import csv_records
from crm_knowledge.privacy import lookup
from crm_knowledge.settings import Settings
from crm_knowledge.warehouse.db import table_exists as _exists

log = logging.getLogger(__name__)

MASK = "[erased]"
MANIFEST = ".erasure-manifest.json"
_LOCK = ".erasure-manifest.lock"
#: Raw tables the file sources land in (KIND_TARGETS); the orders database's tables come from no file.
FILE_RAW_TABLES = ("form_submissions", "sibling_customers", "contact_interactions", "order_exports")
_ASCII_PROBE = "\n\r\t ;,|azAZ09@.+-[]"


class Uninspectable(Exception):
    """A file whose content cannot be searched at all (e.g. a damaged, compressed workbook)."""


@dataclass
class FileRedaction:
    """What happened to the files (counts and file paths relative to CKP_HOME, never values)."""

    archive_files_redacted: int = 0
    archive_rows_removed: int = 0
    archive_values_masked: int = 0
    archive_files_missing: int = 0  # batches whose archived file is gone (e.g. retention)
    quarantine_files_masked: int = 0
    quarantine_values_masked: int = 0
    copies_replaced: int = 0
    not_redacted: list[str] = field(default_factory=list)  # "<path>: <reason>"


@dataclass
class Locations:
    """Where erased records sit in delivered files, per batch (no values)."""

    remove: dict[str, set[int]] = field(default_factory=dict)  # batch_id -> data-row numbers to empty
    mention: set[str] = field(default_factory=set)             # batch ids whose rows quote an identifier
    batches: dict[str, tuple[str, str]] = field(default_factory=dict)  # batch_id -> (source_name, sha256)

    def by_source(self) -> dict[str, dict[str, set[int]]]:
        """{source_name: {sha256 as delivered: data-row numbers to empty}}."""
        out: dict[str, dict[str, set[int]]] = {}
        for batch, (source, checksum) in sorted(self.batches.items()):
            rows = out.setdefault(source, {}).setdefault(checksum, set())
            rows |= self.remove.get(batch, set())
        return out


class Rewritten(NamedTuple):
    """What rewriting one file did: rows emptied, values masked, rows to remove that the file does not have."""

    removed: int
    masked: int
    not_found: int = 0


# --- locating rows through the warehouse's lineage --------------------------------------------------------------

def locate(conn: psycopg.Connection, records: Iterable[lookup.RecordKey], sql_pattern: str | None) -> Locations:
    """Batches and row numbers of the records (and of rejects / rows quoting an identifier); read-only.

    Must run before the raw rows are purged.
    """
    loc = Locations()

    def add(rows: Iterable[tuple[str, int | None]]) -> None:
        for batch, row_number in rows:
            if batch and row_number is not None:
                loc.remove.setdefault(batch, set()).add(int(row_number))

    keys = sorted(set(records))
    systems, ids = [s for s, _ in keys], [r for _, r in keys]
    for table, spec in lookup.RAW_RECORD_TABLES.items():
        if table not in FILE_RAW_TABLES or not keys or not _exists(conn, f"raw.{table}"):
            continue
        q = sql.SQL("select t._batch_id, t._row_number from raw.{} t join unnest(%s::text[], %s::text[]) k(s, r) "
                    "on {} = k.s and {} = k.r").format(
            sql.Identifier(table), sql.SQL(spec["system"].replace("unit", "t.unit")),
            sql.SQL(lookup._qualify(spec["record"])))
        add(conn.execute(q, (systems, ids)).fetchall())
    orders_ids = lookup.record_keys_by_system(keys).get("orders", [])
    if orders_ids and _exists(conn, "raw.order_exports"):  # a shop's export rows of their orders account
        add(conn.execute(
            "select _batch_id, _row_number from raw.order_exports where nullif(regexp_replace("
            "util.ascii_digits(customer_source_id), '\\s', '', 'g'), '') = any(%s)", (orders_ids,)).fetchall())
    if sql_pattern:
        if _exists(conn, "raw.load_rejects"):
            add(conn.execute("select batch_id, row_number from raw.load_rejects where record::text ~* %s",
                             (sql_pattern,)).fetchall())
        for table in FILE_RAW_TABLES:
            if _exists(conn, f"raw.{table}"):
                q = sql.SQL("select distinct t._batch_id from raw.{} t where t::text ~* %s").format(
                    sql.Identifier(table))
                loc.mention |= {r[0] for r in conn.execute(q, (sql_pattern,)).fetchall()}
    wanted = sorted(set(loc.remove) | loc.mention)
    if wanted:
        for batch, source, checksum in conn.execute(
                "select batch_id, source_name, checksum from audit.load_batches where batch_id = any(%s) "
                "and checksum is not null", (wanted,)).fetchall():
            loc.batches[batch] = (source, checksum)
    return loc


# --- text codecs ---------------------------------------------------------------------------------------------

def _codecs_for(path: Path, encoding: str) -> str:
    """The codec to read *and* write the file with: a UTF-8 byte-order mark is kept as it was."""
    if codecs.lookup(encoding).name == "utf-8":
        with open(path, "rb") as fh:
            return "utf-8-sig" if fh.read(3) == codecs.BOM_UTF8 else "utf-8"
    return encoding


def _ascii_compatible(encoding: str) -> bool:
    try:
        return _ASCII_PROBE.encode(encoding) == _ASCII_PROBE.encode("ascii")
    except (LookupError, UnicodeError):
        return False


def _ending(line: str) -> str:
    if line.endswith("\r\n"):
        return "\r\n"
    return line[-1] if line.endswith(("\n", "\r")) else ""


def _sub(pattern: re.Pattern | None, text: str) -> tuple[str, int]:
    return pattern.subn(MASK, text) if pattern is not None else (text, 0)


# --- rewriting one file (pure: src -> dst) ------------------------------------------------------------------

def rewrite_csv(src: Path, dst: Path, *, remove: set[int], pattern: re.Pattern | None, encoding: str = "utf-8",
                delimiter: str = ",") -> Rewritten:
    """Copy a CSV file, emptying data records `remove` and masking `pattern` everywhere else.

    Records are numbered by ``ingest.readers.csv_records``, the walk ingestion numbers them with (1-based after
    the header; blank lines, unparsable lines and a line with an unclosed quote count as one record each), so
    the record erased is the record that was loaded. A removed record (all its physical lines, if a quoted
    field spans several) becomes one empty line; every other line is written back as read. Raises
    UnicodeDecodeError when the file is not valid `encoding` (nothing is then replaced: the caller discards
    `dst`).
    """
    codec = _codecs_for(src, encoding)
    removed = masked = 0
    n = 0
    with open(src, encoding=codec, newline="") as fin, open(dst, "w", encoding=codec, newline="") as fout:
        for record in csv_records(lambda: iter(fin), delimiter, keep_lines=True):
            n = record.number
            empty = record.fields is not None and all(not f.strip() for f in record.fields)
            if n >= 1 and n in remove and not empty and record.lines:
                fout.write(_ending(record.lines[-1]))
                removed += 1
                continue
            for line in record.lines:
                line, k = _sub(pattern, line)
                masked += k
                fout.write(line)
    return Rewritten(removed, masked, sum(1 for r in remove if r < 1 or r > n))


def _mask_json(value: Any, pattern: re.Pattern) -> tuple[Any, int]:
    if isinstance(value, str):
        return pattern.subn(MASK, value)
    if isinstance(value, bool) or value is None:
        return value, 0
    if isinstance(value, int | float):
        return (MASK, 1) if pattern.search(str(value)) else (value, 0)
    if isinstance(value, list):
        out, total = [], 0
        for v in value:
            v, k = _mask_json(v, pattern)
            out.append(v)
            total += k
        return out, total
    if isinstance(value, dict):
        obj, total = {}, 0
        for key, v in value.items():
            key, k1 = pattern.subn(MASK, key)
            v, k2 = _mask_json(v, pattern)
            obj[key] = v
            total += k1 + k2
        return obj, total
    return value, 0


def _mask_jsonl_line(line: str, pattern: re.Pattern | None) -> tuple[str, int]:
    """Mask a JSON line value by value (a number or an escaped string is found too); text if it does not parse."""
    if pattern is None:
        return line, 0
    ending = _ending(line)
    body = line[: len(line) - len(ending)]
    if not pattern.search(body) and "\\u" not in body:
        return line, 0
    try:
        obj = json.loads(body)
    except json.JSONDecodeError:
        return _sub(pattern, line)
    new, k = _mask_json(obj, pattern)
    if k:
        return json.dumps(new, ensure_ascii=False) + ending, k
    return _sub(pattern, line)


def rewrite_jsonl(src: Path, dst: Path, *, remove: set[int], pattern: re.Pattern | None,
                  encoding: str = "utf-8") -> Rewritten:
    """Copy a JSON Lines file, emptying physical lines `remove` (1-based) and masking the rest."""
    codec = _codecs_for(src, encoding)
    removed = masked = n = 0
    with open(src, encoding=codec, newline="") as fin, open(dst, "w", encoding=codec, newline="") as fout:
        for n, line in enumerate(fin, start=1):
            if n in remove and line.strip():
                fout.write(_ending(line))
                removed += 1
                continue
            line, k = _mask_jsonl_line(line, pattern)
            masked += k
            fout.write(line)
    return Rewritten(removed, masked, sum(1 for r in remove if r < 1 or r > n))


def _mask_cell(cell: Any, pattern: re.Pattern | None) -> int:
    value = cell.value
    if pattern is None or value is None or isinstance(value, bool):
        return 0
    if isinstance(value, str):
        new, k = pattern.subn(MASK, value)
        if k:
            cell.value = new
        return k
    if isinstance(value, int | float):
        text = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
        if pattern.search(text):
            cell.value = MASK
            return 1
    return 0


def _mask_workbook(wb: Any, pattern: re.Pattern | None) -> int:
    masked = 0
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                masked += _mask_cell(cell, pattern)
    return masked


def rewrite_xlsx(src: Path, dst: Path, *, remove: set[int], pattern: re.Pattern | None,
                 sheet: str | None = None) -> Rewritten:
    """Copy a workbook, emptying data rows `remove` of `sheet` (row n = sheet row n + 1, after the header)."""
    from openpyxl import load_workbook

    wb = load_workbook(src, data_only=True)  # the values the loader read (ingest/readers.read_xlsx)
    try:
        removed = not_found = 0
        if remove:
            if sheet not in wb.sheetnames:
                raise ValueError(f"no sheet {sheet!r} (sheets: {', '.join(wb.sheetnames)})")
            ws = wb[sheet]
            for n in sorted(remove):
                if n < 1 or n + 1 > ws.max_row:
                    not_found += 1
                    continue
                cells = [c for c in ws[n + 1] if c.value is not None]
                if any(str(c.value).strip() for c in cells):
                    for c in cells:
                        c.value = None
                    removed += 1
        masked = _mask_workbook(wb, pattern)
        wb.save(dst)
    finally:
        wb.close()
    return Rewritten(removed, masked, not_found)


# --- masking a file that cannot be parsed (quarantine) -----------------------------------------------------------

@dataclass
class Needles:
    """The person's identifier spellings to mask in files (too-short ones dropped), as text and byte patterns."""

    values: tuple[str, ...]
    text: re.Pattern | None = None

    @classmethod
    def of(cls, needles: Iterable[str], min_length: int) -> Needles:
        good = sorted({n for n in needles if n and len(n) >= min_length}, key=lambda n: (-len(n), n))
        pattern = re.compile("|".join(re.escape(n) for n in good), re.IGNORECASE) if good else None
        return cls(tuple(good), pattern)

    def __bool__(self) -> bool:
        return bool(self.values)

    def as_bytes(self, encoding: str) -> re.Pattern[bytes] | None:
        """The needles as UTF-8 and as `encoding` bytes (ASCII letters matched in any case)."""
        forms: set[bytes] = set()
        for needle in self.values:
            for enc in {"utf-8", encoding}:
                with contextlib.suppress(UnicodeError, LookupError):
                    forms.add(needle.encode(enc))
        if not forms:
            return None
        return re.compile(b"|".join(re.escape(f) for f in sorted(forms, key=lambda b: (-len(b), b))), re.IGNORECASE)


_ZIP = b"PK\x03\x04"


def mask_file(src: Path, dst: Path, *, needles: Needles, encoding: str = "utf-8") -> int:
    """Copy `src` to `dst` with every needle masked; returns the number masked (0: `dst` may be left empty).

    A workbook is masked cell by cell; other files line by line: a line that decodes in `encoding` by text
    match, one that does not on its bytes. Raises :class:`Uninspectable` for a file that cannot be searched.
    """
    with open(src, "rb") as fh:
        head = fh.read(4)
    if head == _ZIP or src.suffix.lower() in (".xlsx", ".xlsm"):
        from openpyxl import load_workbook

        try:
            wb = load_workbook(src)
        except Exception as exc:
            if head == _ZIP:
                raise Uninspectable(f"a workbook that does not open ({type(exc).__name__}): its compressed "
                                    "content cannot be searched") from None
        else:
            try:
                masked = _mask_workbook(wb, needles.text)
                if masked:
                    wb.save(dst)
            finally:
                wb.close()
            return masked
    codec = codecs.lookup(encoding).name
    codec = "utf-8" if codec == "utf-8-sig" else codec  # a byte-order mark stays a character of line 1
    if not _ascii_compatible(codec):
        try:
            text = src.read_bytes().decode(codec)
        except UnicodeDecodeError:
            raise Uninspectable(f"not valid {encoding}, which is not ASCII-compatible: cannot be searched") from None
        new, masked = _sub(needles.text, text)
        dst.write_bytes(new.encode(codec))
        return masked
    as_bytes = needles.as_bytes(codec)
    masked = 0
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        for raw in fin:
            try:
                line = raw.decode(codec)
            except UnicodeDecodeError:
                new, k = as_bytes.subn(MASK.encode("ascii"), raw) if as_bytes else (raw, 0)
            else:
                text, k = _sub(needles.text, line)
                new = text.encode(codec) if k else raw
            masked += k
            fout.write(new)
    return masked


# --- writing in place, the manifest ----------------------------------------------------------------------------

@contextlib.contextmanager
def _scratch(path: Path) -> Iterator[Path]:
    """A temporary file next to `path` (same file system, hidden name); removed unless committed."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".erasure.tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def _commit(tmp: Path, path: Path) -> None:
    """Replace `path` by `tmp` atomically, keeping its mode and times (retention by age is not reset)."""
    st = path.stat()
    shutil.copymode(path, tmp)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tmp, path)
    fsync_dir(path.parent)


class _Folder:
    """One archive / quarantine folder and its manifest, under an exclusive lock while in use.

    The manifest (``.erasure-manifest.json``) holds per redacted file its SHA-256 as delivered and now and
    the redactions made (counts only), plus a cache of file checksums keyed by size, mtime and inode.
    """

    def __init__(self, folder: Path):
        self.folder = folder
        self.path = folder / MANIFEST
        self.data: dict[str, Any] = {"files": {}, "checksums": {}}
        self.dirty = False
        self._lock: Any = None

    def __enter__(self) -> _Folder:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock (erasures are serialised by the warehouse lock anyway)
            fcntl = None
        self._lock = open(self.folder / _LOCK, "a")  # noqa: SIM115
        if fcntl is not None:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX)
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                self.data = {"files": dict(data.get("files") or {}), "checksums": dict(data.get("checksums") or {})}
            except (ValueError, OSError) as exc:
                log.error("erasure: manifest %s unreadable (%s); starting a new one", self.path, exc)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            cache = self.data["checksums"]
            for name in [n for n in cache if not (self.folder / n).exists()]:  # deleted since (retention)
                del cache[name]
                self.dirty = True
            if self.dirty:
                body = json.dumps({"about": "erasure redactions of the files in this folder (counts only)",
                                   **self.data}, indent=1, sort_keys=True) + "\n"
                with _scratch(self.path) as tmp:
                    tmp.write_text(body, encoding="utf-8")
                    os.replace(tmp, self.path)
        finally:
            self._lock.close()

    def files(self) -> list[Path]:
        return sorted(p for p in self.folder.iterdir() if p.is_file() and not p.name.startswith("."))

    def sha256(self, path: Path) -> str:
        st = path.stat()
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
        cached = self.data["checksums"].get(path.name)
        if cached and cached[:3] == stamp:
            return cached[3]
        digest = sha256_file(path)
        self.data["checksums"][path.name] = [*stamp, digest]
        self.dirty = True
        return digest

    def original(self, path: Path) -> str:
        """The SHA-256 of the file as delivered (what the ledger recorded), also after a redaction."""
        current = self.sha256(path)
        entry = self.data["files"].get(path.name)
        return entry["original_sha256"] if entry and entry.get("sha256") == current else current

    def record(self, path: Path, original: str, label: str, **counts: Any) -> None:
        entry = self.data["files"].get(path.name)
        if not entry or entry.get("original_sha256") != original:
            entry = self.data["files"][path.name] = {"original_sha256": original, "redactions": []}
        entry["sha256"] = self.sha256(path)
        entry["bytes"] = path.stat().st_size
        entry["redactions"].append({"at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "by": label,
                                    **counts})
        self.dirty = True


def _rel(path: Path, settings: Settings) -> str:
    try:
        return str(path.relative_to(settings.home))
    except ValueError:
        return str(path)


def _reason(exc: BaseException, needles: Needles) -> str:
    text, _ = _sub(needles.text, f"{type(exc).__name__}: {exc}")
    return text[:300]


def _file_configs(settings: Settings) -> dict[str, Any]:
    from crm_knowledge.ingest.registry import load_registry

    try:
        return {c.name: c for c in load_registry(settings.config_dir) if c.format}
    except Exception as exc:  # a broken config must not stop the erasure; files are then masked only
        log.error("erasure: source configuration unreadable (%s); archived files can only be masked", exc)
        return {}


def _mask_in_place(folder: _Folder, path: Path, needles: Needles, encoding: str, label: str) -> int:
    original = folder.original(path)
    with _scratch(path) as tmp:
        masked = mask_file(path, tmp, needles=needles, encoding=encoding)
        if masked:
            _commit(tmp, path)
            folder.record(path, original, label, values_masked=masked)
    return masked


# --- the archive ---------------------------------------------------------------------------------------------

def _rewrite(path: Path, tmp: Path, cfg: Any, rows: set[int], needles: Needles) -> Rewritten:
    if cfg.format == "csv":
        return rewrite_csv(path, tmp, remove=rows, pattern=needles.text, encoding=cfg.encoding,
                           delimiter=cfg.delimiter)
    if cfg.format == "jsonl":
        return rewrite_jsonl(path, tmp, remove=rows, pattern=needles.text, encoding=cfg.encoding)
    if cfg.format == "xlsx":
        return rewrite_xlsx(path, tmp, remove=rows, pattern=needles.text, sheet=cfg.sheet)
    raise ValueError(f"unknown format {cfg.format!r}")


def _redact_archived(folder: _Folder, path: Path, cfg: Any, rows: set[int], needles: Needles, label: str,
                     settings: Settings, out: FileRedaction) -> None:
    rel = _rel(path, settings)
    try:
        if cfg is None:
            raise LookupError(f"no file source named {folder.folder.name!r} in config/sources")
        original = folder.original(path)
        with _scratch(path) as tmp:
            removed, masked, not_found = _rewrite(path, tmp, cfg, rows, needles)
            if removed or masked:
                _commit(tmp, path)
                folder.record(path, original, label, rows_removed=removed, values_masked=masked)
    except Exception as exc:  # unreadable or unwritable: never stop the erasure; mask what text matching finds
        reason = _reason(exc, needles)
        masked = 0
        with contextlib.suppress(Exception):
            masked = _mask_in_place(folder, path, needles, getattr(cfg, "encoding", "utf-8"), label)
        out.archive_values_masked += masked
        out.not_redacted.append(f"{rel}: rows could not be removed ({reason})"
                                + ("; identifiers masked by text match" if masked else ""))
        log.error("erasure: archived file %s could not be redacted: %s", rel, reason)
        return
    if not_found:  # the lineage names rows the file does not have: it is not what was loaded
        out.not_redacted.append(f"{rel}: {not_found} row(s) of the erased records not found in the file "
                                "(it differs from the file loaded); identifiers masked by text match")
        log.error("erasure: archived file %s: %d row(s) to remove not found", rel, not_found)
    if removed or masked:
        out.archive_files_redacted += 1
        out.archive_rows_removed += removed
        out.archive_values_masked += masked
        log.info("erasure: archived file %s: %d row(s) removed, %d value(s) masked", rel, removed, masked)


def redact_archive(settings: Settings, loc: Locations, needles: Needles, label: str) -> FileRedaction:
    """Rewrite every archived file of the located batches (and their re-delivered copies); see module doc."""
    out = FileRedaction()
    wanted = loc.by_source()
    if not wanted:
        return out
    configs = _file_configs(settings)
    root = settings.archive_dir
    for source, by_checksum in sorted(wanted.items()):
        folder_path = root / source
        if not folder_path.is_dir():
            out.archive_files_missing += len(by_checksum)
            log.warning("erasure: no archive folder %s for %d batch(es)", folder_path, len(by_checksum))
            continue
        try:
            _redact_folder(settings, folder_path, source, by_checksum, configs.get(source), needles, label, out)
        except OSError as exc:  # e.g. the folder cannot be written (its manifest, its lock)
            out.not_redacted.append(f"{_rel(folder_path, settings)}/: folder could not be processed "
                                    f"({_reason(exc, needles)})")
            log.error("erasure: archive folder %s could not be processed: %s", folder_path, exc)
    return out


def _redact_folder(settings: Settings, folder_path: Path, source: str, by_checksum: dict[str, set[int]], cfg: Any,
                   needles: Needles, label: str, out: FileRedaction) -> None:
    with _Folder(folder_path) as folder:
        by_original: dict[str, list[Path]] = {}
        for path in folder.files():
            try:
                by_original.setdefault(folder.original(path), []).append(path)
            except OSError as exc:
                out.not_redacted.append(f"{_rel(path, settings)}: could not be read ({_reason(exc, needles)})")
        for checksum, rows in sorted(by_checksum.items()):
            paths = by_original.get(checksum)
            if not paths:
                out.archive_files_missing += 1
                log.warning("erasure: %s: the archived file of a batch (sha256 %s…) is not in %s",
                            source, checksum[:12], folder_path)
                continue
            for path in paths:
                _redact_archived(folder, path, cfg, rows, needles, label, settings, out)


def sweep_copies(settings: Settings) -> FileRedaction:
    """Replace archived copies of already redacted files (a re-delivery the ledger skipped) by the redacted file.

    A file whose SHA-256 equals another file's SHA-256 *as delivered* (manifest) holds exactly what that
    file held before its redaction, so the redacted bytes are what redacting it would produce.
    """
    out = FileRedaction()
    root = settings.archive_dir
    if not root.is_dir():
        return out
    for folder_path in sorted(p for p in root.iterdir() if p.is_dir() and (p / MANIFEST).exists()):
        try:
            _sweep_folder(settings, folder_path, out)
        except OSError as exc:
            out.not_redacted.append(f"{_rel(folder_path, settings)}/: folder could not be processed "
                                    f"({type(exc).__name__}: {exc})"[:400])
            log.error("erasure: archive folder %s could not be swept: %s", folder_path, exc)
    return out


def _sweep_folder(settings: Settings, folder_path: Path, out: FileRedaction) -> None:
    with _Folder(folder_path) as folder:
        redacted: dict[str, Path] = {}  # sha256 as delivered -> the redacted file
        for name, entry in folder.data["files"].items():
            path = folder_path / name
            with contextlib.suppress(OSError):
                if path.is_file() and folder.sha256(path) == entry.get("sha256") != entry.get("original_sha256"):
                    redacted.setdefault(entry["original_sha256"], path)
        if not redacted:
            return
        for path in folder.files():
            try:
                digest = folder.sha256(path)
                source = redacted.get(digest)
                if source is None or source == path:
                    continue
                with _scratch(path) as tmp:
                    shutil.copyfile(source, tmp)
                    _commit(tmp, path)
                folder.record(path, digest, f"copy of {source.name}", copied_from=source.name)
            except OSError as exc:
                out.not_redacted.append(f"{_rel(path, settings)}: copy of a redacted file, not replaced "
                                        f"({type(exc).__name__}: {exc})"[:400])
                log.error("erasure: archived copy %s could not be replaced: %s", path, exc)
                continue
            out.copies_replaced += 1
            log.warning("erasure: archived file %s is a re-delivered copy of %s (skipped by the ledger); "
                        "replaced by the redacted content", _rel(path, settings), source.name)


# --- the quarantine ------------------------------------------------------------------------------------------

def mask_quarantine(settings: Settings, needles: Needles, label: str) -> FileRedaction:
    """Mask the needles in every quarantined file and its ``.reason.txt`` (see module doc)."""
    out = FileRedaction()
    root = Path(settings.quarantine_dir)
    if not needles or not root.is_dir():
        return out
    configs = _file_configs(settings)
    folders = sorted({p.parent for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")})
    for folder_path in folders:
        cfg = configs.get(folder_path.name) if folder_path != root else None
        try:
            _mask_folder(settings, folder_path, cfg, needles, label, out)
        except OSError as exc:  # e.g. the folder cannot be written (its manifest, its lock)
            out.not_redacted.append(f"{_rel(folder_path, settings)}/: folder could not be processed "
                                    f"({_reason(exc, needles)})")
            log.error("erasure: quarantine folder %s could not be processed: %s", folder_path, exc)
    return out


def _mask_folder(settings: Settings, folder_path: Path, cfg: Any, needles: Needles, label: str,
                 out: FileRedaction) -> None:
    with _Folder(folder_path) as folder:
        for path in folder.files():
            encoding = "utf-8" if path.name.endswith(".reason.txt") or cfg is None else cfg.encoding
            try:
                masked = _mask_in_place(folder, path, needles, encoding, label)
            except Exception as exc:
                reason = _reason(exc, needles)
                out.not_redacted.append(f"{_rel(path, settings)}: could not be searched ({reason})")
                log.error("erasure: quarantined file %s could not be searched: %s", _rel(path, settings), reason)
                continue
            if masked:
                out.quarantine_files_masked += 1
                out.quarantine_values_masked += masked
                log.info("erasure: quarantined file %s: %d value(s) masked", _rel(path, settings), masked)
