"""Read landing-zone files (CSV, XLSX, JSON Lines) into header + numbered records.

Readers separate two kinds of failure, because ingestion treats them differently:
- `FileUnreadable`: the file as a whole cannot be read (wrong encoding, not a workbook, header
  missing). The file is quarantined and nothing from it loads.
- a bad row (a JSON line that does not parse, a CSV line with the wrong number of fields) is yielded
  as a `BadRow`, becomes a reject, and the good rows still load.
"""

from __future__ import annotations

import codecs
import csv
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def _check_decodable(path: Path, encoding: str) -> None:
    """The whole file is valid `encoding` and not blank: checked before any row loads (a file that fails
    is quarantined whole), streamed in 1 MB chunks so a multi-GB file is never held in memory."""
    decoder = codecs.getincrementaldecoder(encoding)()
    offset, blank = 0, True
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(1 << 20)
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


def read_csv(path: Path, cfg: SourceConfig) -> ParsedFile:
    _check_decodable(path, cfg.encoding)
    fh = _open_text(path, cfg.encoding)
    reader = csv.reader(fh, delimiter=cfg.delimiter)
    try:
        header = next(reader)
    except (StopIteration, csv.Error) as exc:
        fh.close()
        raise FileUnreadable(f"{path.name}: no readable header line ({exc})") from None
    header = [h.strip() for h in header]
    if len(header) < 2:
        fh.close()
        raise FileUnreadable(
            f"{path.name}: header has {len(header)} column(s) with delimiter {cfg.delimiter!r}; "
            "check the source's `delimiter` setting"
        )

    def rows() -> Iterator[tuple[int, dict[str, Any]] | BadRow]:
        with fh:
            yield from numbered()

    def numbered() -> Iterator[tuple[int, dict[str, Any]] | BadRow]:
        n = 0
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                n += 1
                yield BadRow(n, f"unparsable CSV line: {exc}", None)
                continue
            n += 1
            if not fields or all(not f.strip() for f in fields):
                continue
            if len(fields) != len(header):
                yield BadRow(n, f"expected {len(header)} fields, found {len(fields)}", fields)
                continue
            yield n, dict(zip(header, fields, strict=True))

    return ParsedFile(header, rows())


#: JSON Lines files have no header line: the columns are the keys of the objects. The loader learns keys
#: it has not seen as they stream by (schema drift is computed over the whole file); the header given
#: up front, used for the required-columns check, is the keys of the first objects.
JSONL_HEADER_SAMPLE = 1000


def read_jsonl(path: Path, cfg: SourceConfig) -> ParsedFile:
    _check_decodable(path, cfg.encoding)

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
    import zipfile

    from openpyxl import load_workbook

    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, OSError, KeyError, ValueError) as exc:
        raise FileUnreadable(f"{path.name}: not a readable .xlsx workbook ({exc})") from None
    if cfg.sheet not in wb.sheetnames:
        raise FileUnreadable(f"{path.name}: no sheet {cfg.sheet!r} (sheets: {', '.join(wb.sheetnames)})")
    it = wb[cfg.sheet].iter_rows(values_only=True)
    try:
        header = ["" if h is None else str(h).strip() for h in next(it)]
    except StopIteration:
        raise FileUnreadable(f"{path.name}: sheet {cfg.sheet!r} is empty") from None

    def rows() -> Iterator[tuple[int, dict[str, Any]] | BadRow]:
        for n, values in enumerate(it, start=1):
            if values is None or all(v is None or str(v).strip() == "" for v in values):
                continue
            values = list(values) + [None] * (len(header) - len(values))
            yield n, dict(zip(header, values[: len(header)], strict=True))
        wb.close()

    return ParsedFile(header, rows())


READERS = {"csv": read_csv, "jsonl": read_jsonl, "xlsx": read_xlsx}


def read_file(path: Path, cfg: SourceConfig) -> ParsedFile:
    assert cfg.format is not None
    return READERS[cfg.format](path, cfg)
