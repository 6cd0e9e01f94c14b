"""File-drop destination: ``<exports_dir>/<dir>/<destination>/<delivery_id>.csv|jsonl`` plus a manifest.

The data file is written first, then ``<delivery_id>.manifest.json`` (row counts by change type, SHA-256 of the
data file, as-of date, destination, columns); each is written to a temporary file in the same folder, fsynced
and renamed, so a reader that waits for the manifest never sees a partial file. A retry of the same delta
(same ``delivery_id``) rewrites the same two files rather than adding a second copy.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from crm_knowledge.export.config import DestinationConfig
from crm_knowledge.privacy.file_modes import private_dir


@dataclass(frozen=True)
class SendResult:
    location: str | None
    checksum: str | None = None


def fsync_dir(folder: Path) -> None:
    """Make a rename inside `folder` durable (best effort: not every file system lets a directory be synced)."""
    try:
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def atomic_write(path: Path, data: bytes) -> None:
    private_dir(path.parent)  # mkstemp makes the file itself 0600
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def render(records: list[dict[str, Any]], columns: list[str], fmt: str) -> bytes:
    if fmt == "jsonl":
        lines = [json.dumps({c: r.get(c) for c in columns}, ensure_ascii=False) for r in records]
        return ("\n".join(lines) + ("\n" if lines else "")).encode("utf-8")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for r in records:
        writer.writerow(["" if r.get(c) is None else r.get(c) for c in columns])
    return buf.getvalue().encode("utf-8")


def target_dir(dest: DestinationConfig, exports_dir: Path) -> Path:
    assert dest.file is not None
    return Path(exports_dir) / dest.file.dir / dest.name


def send(dest: DestinationConfig, records: list[dict[str, Any]], columns: list[str], *, export_id: str,
         delivery_id: str, as_of: date, exports_dir: Path) -> SendResult:
    assert dest.file is not None
    folder = target_dir(dest, exports_dir)
    data_path = folder / f"{delivery_id}.{dest.file.format}"
    data = render(records, columns, dest.file.format)
    checksum = hashlib.sha256(data).hexdigest()
    counts = {"added": 0, "changed": 0, "removed": 0}
    for r in records:
        counts[r["change_type"]] += 1
    manifest = {
        "destination": dest.name,
        "export_id": export_id,
        "delivery_id": delivery_id,
        "as_of_date": as_of.isoformat(),
        "mode": dest.mode,
        "purpose": dest.purpose,
        "id_space": dest.id_space,
        "format": dest.file.format,
        "data_file": data_path.name,
        "sha256": checksum,
        "bytes": len(data),
        "rows": {**counts, "total": len(records)},
        "columns": columns,
        "named_fields": list(dest.named_fields),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    atomic_write(data_path, data)
    atomic_write(folder / f"{delivery_id}.manifest.json",
                 (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    return SendResult(location=str(data_path), checksum=checksum)
