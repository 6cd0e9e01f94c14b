"""Read landing-zone files (CSV, XLSX, JSON Lines) into header + numbered records.

Readers separate two kinds of failure, because ingestion treats them differently:
- `FileUnreadable`: the file as a whole cannot be read (wrong encoding, not a workbook, header
  missing). The file is quarantined and nothing from it loads.
- a bad row (a JSON line that does not parse, a CSV line with the wrong number of fields) is yielded
  as a `BadRow`, becomes a reject, and the good rows still load.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import itertools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from crm_knowledge.ingest.errors import describe
from crm_knowledge.ingest.registry import SourceConfig
from crm_knowledge.normalize import normalize_persian


class FileUnreadable(Exception):
    """The whole file cannot be read; the message says why (shown in the ledger and task log)."""


@dataclass(frozen=True)
class BadRow:
    row_number: int
    reason: str
    raw: Any


@dataclass
class ParsedFile:
    header: list[str]
    rows: Iterator[tuple[int, dict[str, Any]] | BadRow]


def header_key(name: str) -> str:
    """Header names compared loosely: trimmed, case-folded, Arabic/Persian letter variants unified.

    A Windows-1256 export cannot hold the Persian ی and writes the Arabic ي instead, so a mapping
    written with ی must still find its column.
    """
    return (normalize_persian(str(name).replace("\ufeff", "")) or "").casefold()


def _check_decodable(path: Path, encoding: str, whole: bool = True) -> None:
    """The whole file is valid `encoding` and not blank: checked before any row loads (a file that fails
    is quarantined whole), streamed in 1 MB chunks so a multi-GB file is never held in memory.

    `whole=False` checks only the first chunk (the header and first records): for a file the server's COPY
    reads, which refuses undecodable bytes itself; the loader then reads the file again with the whole check,
    so a bad byte further on still quarantines the file with this message. A file blank in its first chunk
    is checked whole."""
    decoder = codecs.getincrementaldecoder(encoding)()
    offset, blank = 0, True
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(1 << 20)
            if not whole and offset and not blank:
                break
            try:
                text = decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                raise FileUnreadable(
                    f"{path.name}: not valid {encoding} at byte {max(offset + exc.start, 0)} ({exc.reason}); "
                    "check the source's `encoding` setting"
                ) from None
            if blank and text.replace("\ufeff", "").strip():
                blank = False
            if not chunk:
                break
            offset += len(chunk)
    if blank:
        raise FileUnreadable(f"{path.name}: file is empty")


def _open_text(path: Path, encoding: str):
    """The file as text, streamed; a UTF-8 byte-order mark is dropped."""
    if codecs.lookup(encoding).name == "utf-8":
        encoding = "utf-8-sig"
    return open(path, encoding=encoding, newline="")


class _LineFeed:
    """The physical lines csv.reader takes: pushed-back lines first, then the file's. Remembers the lines
    of the record being parsed, so a record that swallowed lines it should not have can give them back."""

    def __init__(self, lines: Iterator[str]):
        self._lines = lines
        self.pushback: list[str] = []  # a stack: the next line to hand out is the last one
        self.taken: list[str] = []

    def __iter__(self) -> _LineFeed:
        return self

    def __next__(self) -> str:
        line = self.pushback.pop() if self.pushback else next(self._lines)
        self.taken.append(line)
        return line


UNCLOSED_QUOTE = "unclosed quote"


class CsvRecord(NamedTuple):
    number: int                # 0 is the header, then 1, 2, ... (blank and bad records count)
    line: int                  # the physical line it starts on, 1-based
    fields: list[str] | None   # None when the record is bad (see `problem`)
    lines: list[str]           # the physical lines it was read from, line endings kept
    problem: str | None        # UNCLOSED_QUOTE, or the csv module's error


def _next_fields(reader: Iterator[list[str]]) -> tuple[list[str] | None, str | None] | None:
    """The next record of a csv.reader as (fields, problem): fields None and the csv module's error when the
    record is bad (the reader goes on after it); None at the end of the text."""
    try:
        return next(reader), None
    except StopIteration:
        return None
    except csv.Error as exc:
        return None, str(exc)


def csv_records(open_lines: Callable[[], Iterator[str]], delimiter: str, *,
                keep_lines: bool = False) -> Iterator[CsvRecord]:
    """The records of a CSV text, numbered as ingestion numbers them (0 the header, then 1, 2, ...).

    A quoted field may legally span lines, but a quote that never closes makes csv.reader swallow every line
    after it into one field. A record that spans lines and still has the wrong number of fields (the header's)
    is that: it becomes a bad record of its first line only (`UNCLOSED_QUOTE`), and reading resumes at the
    next line. Whoever walks a file by record number (ingestion, the erasure's rewrite of archived files) must
    use this, so both agree on which record is which.

    `open_lines()` returns a fresh iterator over the text's physical lines (a file opened with newline="").
    With `keep_lines`, each record carries the lines it was read from. Without, `lines` is empty and the
    common case runs at the csv module's own speed: the file is opened a second time only to re-sync after
    an unclosed quote.
    """
    if keep_lines:
        yield from _records_with_lines(open_lines(), delimiter, number=0, line=1, width=None)
        return
    reader = csv.reader(open_lines(), delimiter=delimiter)
    n, consumed, width = -1, 0, None
    while True:
        parsed = _next_fields(reader)
        if parsed is None:
            return
        fields, problem = parsed
        n += 1
        start, consumed = consumed + 1, reader.line_num
        if consumed - start > 0 and (n == 0 or fields is None or len(fields) != width):
            if n == 0:
                yield CsvRecord(0, 1, None, [], UNCLOSED_QUOTE)
                return
            rest = open_lines()
            for _ in range(start - 1):
                next(rest)
            yield from _records_with_lines(rest, delimiter, number=n, line=start, width=width)
            return
        if n == 0 and fields is not None:
            width = len(fields)
        yield CsvRecord(n, start, fields, [], problem)


def _records_with_lines(lines: Iterator[str], delimiter: str, *, number: int, line: int,
                        width: int | None) -> Iterator[CsvRecord]:
    """csv_records' careful walk from record `number` on physical `line`, keeping each record's lines."""
    feed = _LineFeed(lines)
    reader = csv.reader(feed, delimiter=delimiter)
    n = number - 1
    line_no = line - 1  # physical lines consumed so far
    while True:
        start = line_no + 1
        parsed = _next_fields(reader)
        if parsed is None:
            return
        fields, problem = parsed
        taken, feed.taken = feed.taken, []
        n += 1
        if len(taken) > 1 and (n == 0 or fields is None or len(fields) != width):
            if n == 0:
                yield CsvRecord(0, 1, None, taken, UNCLOSED_QUOTE)
                return
            feed.pushback.extend(reversed(taken[1:]))
            reader = csv.reader(feed, delimiter=delimiter)  # a fresh parser, out of the open quote
            line_no = start
            yield CsvRecord(n, start, None, taken[:1], UNCLOSED_QUOTE)
            continue
        line_no = start + max(len(taken), 1) - 1
        if n == 0 and fields is not None:
            width = len(fields)
        yield CsvRecord(n, start, fields, taken, problem)


#: Encodings tried when a file's header does not hold the required columns in the configured encoding.
LIKELY_ENCODINGS = ("utf-8", "cp1256", "utf-16")


def guess_encoding(path: Path, cfg: SourceConfig) -> str | None:
    """Another encoding in which the file's first line decodes to a header holding every required column.

    A file delivered in UTF-8 to a source configured as Windows-1256 (or the other way round) decodes
    without error in the wrong encoding often enough, and then only its header looks wrong: the operator
    must hear "wrong encoding", not "column missing".
    """
    if not cfg.required_columns:
        return None
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    configured = codecs.lookup(cfg.encoding).name
    for enc in LIKELY_ENCODINGS:
        if codecs.lookup(enc).name == configured:
            continue
        try:
            text = codecs.getincrementaldecoder(enc)().decode(head, final=False)
        except UnicodeError:  # UnicodeDecodeError, or UTF-16 without a byte-order mark
            continue
        lines = text.lstrip("\ufeff").splitlines()
        if not lines:
            continue
        try:
            names = {header_key(h.strip()) for h in next(csv.reader([lines[0]], delimiter=cfg.delimiter))}
        except (csv.Error, StopIteration):
            continue
        if all(header_key(c) in names for c in cfg.required_columns):
            return enc
    return None


def duplicate_columns(header: list[str]) -> list[str]:
    """Header names that occur twice or more (compared as `header_key` does), each with its positions."""
    positions: dict[str, list[int]] = {}
    names: dict[str, str] = {}
    for i, name in enumerate(header, start=1):
        key = header_key(name)
        if key:
            positions.setdefault(key, []).append(i)
            names.setdefault(key, name)
    return [f"{names[k]!r} (columns {', '.join(map(str, p))})" for k, p in positions.items() if len(p) > 1]


def read_csv(path: Path, cfg: SourceConfig) -> ParsedFile:
    """The CSV file's header and records (its encoding checked by read_file)."""
    opened = contextlib.ExitStack()

    def open_lines() -> Iterator[str]:
        return opened.enter_context(_open_text(path, cfg.encoding))

    records = csv_records(open_lines, cfg.delimiter)
    head = next(records, None)
    if head is None or head.fields is None:
        opened.close()
        if head is not None and head.problem == UNCLOSED_QUOTE:
            raise FileUnreadable(f"{path.name}: the header line has a quoted name that does not close on line 1 "
                                 "(unclosed quote)")
        raise FileUnreadable(f"{path.name}: no readable header line "
                             f"({head.problem if head is not None else 'the file has no line'})")
    header = [h.strip() for h in head.fields]
    if len(header) < 2:
        opened.close()
        raise FileUnreadable(
            f"{path.name}: header has {len(header)} column(s) with delimiter {cfg.delimiter!r}; "
            "check the source's `delimiter` setting"
        )
    width = len(header)

    def rows() -> Iterator[tuple[int, dict[str, Any]] | BadRow]:
        with opened:
            for n, line, fields, lines, problem in records:
                if problem == UNCLOSED_QUOTE:
                    yield BadRow(n, f"line {line}: a quoted field opens but does not close on its line (unclosed "
                                    f"quote); the line is rejected and reading resumes at line {line + 1}",
                                 lines[0].rstrip("\r\n") if lines else None)
                elif fields is None:
                    yield BadRow(n, f"line {line}: unparsable CSV: {problem}", None)
                elif not fields or all(not f.strip() for f in fields):
                    continue
                elif len(fields) != width:
                    yield BadRow(n, f"line {line}: expected {width} fields, found {len(fields)}", fields)
                else:
                    yield n, dict(zip(header, fields, strict=True))

    return ParsedFile(header, rows())


#: JSON Lines files have no header line: the columns are the keys of the objects. The loader learns keys
#: it has not seen as they stream by (schema drift is computed over the whole file); the header given
#: up front, used for the required-columns check, is the keys of the first objects.
JSONL_HEADER_SAMPLE = 1000


#: A JSON escape of a UTF-16 surrogate; a pair decodes to one character, a lone one to a str no database
#: (nor UTF-8) can hold.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF][0-9a-fA-F]{2}")


def _lone_surrogate_key(obj: dict[str, Any]) -> str | None:
    """The first key whose value (or the key itself) holds a lone surrogate, else None."""
    for key, value in obj.items():
        try:
            json.dumps({key: value}, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            return key.encode("utf-8", "replace").decode("utf-8")
    return None


def read_jsonl(path: Path, cfg: SourceConfig) -> ParsedFile:
    """The JSON Lines file's objects (its encoding checked by read_file); the header is the first objects' keys."""

    def objects() -> Iterator[tuple[int, dict[str, Any]] | BadRow]:
        with _open_text(path, cfg.encoding) as fh:
            for n, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield BadRow(n, f"invalid JSON: {exc.msg} at column {exc.colno}", line.rstrip("\r\n")[:2000])
                    continue
                if not isinstance(obj, dict):
                    yield BadRow(n, "a line must hold one JSON object", line.rstrip("\r\n")[:2000])
                    continue
                if _SURROGATE_ESCAPE.search(line):
                    bad = _lone_surrogate_key(obj)
                    if bad is not None:
                        yield BadRow(n, f"column {bad!r}: holds a lone UTF-16 surrogate (invalid Unicode)",
                                     line.rstrip("\r\n")[:2000])
                        continue
                yield n, obj

    stream = objects()
    head: list[tuple[int, dict[str, Any]] | BadRow] = []
    header: list[str] = []
    seen: set[str] = set()
    good = 0
    for item in stream:
        head.append(item)
        if isinstance(item, tuple):
            good += 1
            for k in item[1]:
                if k not in seen:
                    seen.add(k)
                    header.append(k)
            if good >= JSONL_HEADER_SAMPLE:
                break
    if not good:
        raise FileUnreadable(f"{path.name}: no line holds a JSON object")
    return ParsedFile(header, itertools.chain(head, stream))


def read_xlsx(path: Path, cfg: SourceConfig) -> ParsedFile:
    """The sheet's rows with python-calamine (Rust; several times openpyxl's read-only mode). Cells come as
    Python values (str, int, float, bool, date, datetime, time); an empty cell is None, as with the others."""
    from python_calamine import CalamineError, CalamineWorkbook

    try:
        wb = CalamineWorkbook.from_path(str(path))
    except (CalamineError, OSError, ValueError) as exc:
        raise FileUnreadable(f"{path.name}: not a readable .xlsx workbook ({describe(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - calamine's zip / XML errors have their own classes
        raise FileUnreadable(f"{path.name}: not a readable .xlsx workbook ({describe(exc)})") from None
    if cfg.sheet not in wb.sheet_names:
        raise FileUnreadable(f"{path.name}: no sheet {cfg.sheet!r} (sheets: {', '.join(wb.sheet_names)})")
    it = iter(wb.get_sheet_by_name(cfg.sheet).iter_rows())
    try:
        header = ["" if h is None else str(h).strip() for h in next(it)]
    except StopIteration:
        raise FileUnreadable(f"{path.name}: sheet {cfg.sheet!r} is empty") from None

    def rows() -> Iterator[tuple[int, dict[str, Any]] | BadRow]:
        for n, values in enumerate(it, start=1):
            cells = [None if v == "" else v for v in values]
            if all(v is None or str(v).strip() == "" for v in cells):
                continue
            cells = cells + [None] * (len(header) - len(cells))
            yield n, dict(zip(header, cells[: len(header)], strict=True))
        wb.close()

    return ParsedFile(header, rows())


READERS = {"csv": read_csv, "jsonl": read_jsonl, "xlsx": read_xlsx}


def read_file(path: Path, cfg: SourceConfig, whole: bool = True) -> ParsedFile:
    """The file's header and records. `whole=False`: the encoding is checked on the first MB only (for a
    file whose rows the server's COPY reads; see _check_decodable)."""
    assert cfg.format is not None
    if cfg.format in ("csv", "jsonl"):
        try:
            _check_decodable(path, cfg.encoding, whole)
        except FileUnreadable as exc:
            other = guess_encoding(path, cfg) if cfg.format == "csv" else None
            if other:
                raise FileUnreadable(f"{exc}; the file reads as {other} (its header then has the required "
                                     f"columns): the source's `encoding` ({cfg.encoding}) or the delivery is "
                                     "wrong") from None
            raise
    return READERS[cfg.format](path, cfg)
