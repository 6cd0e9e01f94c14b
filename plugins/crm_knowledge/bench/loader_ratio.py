"""The loader against a plain COPY of the same file, side by side in one process (the aim: at least 0.7).

`make bench` measures the whole pipeline; this measures only what the ratio is about, cheaply enough for a
shared machine: for every pending CSV and JSON Lines file of the given sources (and XLSX, against no COPY),
the loader (ingest.files.load_file, into the raw layer of a scratch database, ledger and all) and
baselines.copy_file (the server's COPY into a table of text columns, nothing else), alternately, `rounds`
times each, best time kept (the machine is shared: the best of a few runs is the least noisy). Files are
copied to a scratch landing zone first, so the real landing zone is not touched.

    python -m crm_knowledge.bench.loader_ratio [--rounds 3] [source ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from crm_knowledge.bench.baselines import copy_file, create_baseline_db, drop_baseline_db
from crm_knowledge.ingest.files import PG_ENCODINGS, load_file, pending_files
from crm_knowledge.ingest.registry import SourceConfig, load_registry
from crm_knowledge.settings import Settings, get_settings
from crm_knowledge.warehouse.bootstrap import apply_ddl
from crm_knowledge.warehouse.db import connect


def _time_loader(settings: Settings, url: str, cfg: SourceConfig, path: Path,
                 scratch: Path) -> tuple[float, int, str]:
    local = dataclasses.replace(settings, home=scratch / "home", landing_dir=scratch / "landing")
    copy = scratch / "landing" / path.name
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, copy)
    with connect(url, autocommit=True) as conn:
        conn.execute("truncate audit.load_batches, audit.batch_conventions, raw.load_rejects")
        conn.execute(f"truncate {cfg.target_table}")
        started = time.perf_counter()
        result = load_file(conn, cfg, copy, local)
        took = time.perf_counter() - started
    return took, result.rows_loaded, result.status


def _time_copy(url: str, cfg: SourceConfig, path: Path, n: int) -> tuple[float, int]:
    with connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        with conn.transaction():
            rows = copy_file(conn, cfg, path, f"plain_{n}", PG_ENCODINGS[cfg.encoding.lower()])
        took = time.perf_counter() - started
        conn.execute(f"drop table plain_{n}")
    return took, rows


def measure(settings: Settings, sources: list[SourceConfig], rounds: int = 3) -> list[dict[str, Any]]:
    url = create_baseline_db(settings)
    out = []
    try:
        apply_ddl(url)
        with tempfile.TemporaryDirectory() as tmp:
            n = 0
            for cfg in sources:
                for path in pending_files(cfg, settings):
                    loader, plain, rows, plain_rows = [], [], 0, None
                    copyable = cfg.format in ("csv", "jsonl") and cfg.encoding.lower() in PG_ENCODINGS
                    for _ in range(rounds):
                        took, rows, status = _time_loader(settings, url, cfg, path, Path(tmp) / str(n))
                        n += 1
                        if status != "loaded":  # e.g. the demo's planted corrupt file: nothing to compare
                            break
                        loader.append(took)
                        if copyable:
                            took, plain_rows = _time_copy(url, cfg, path, n)
                            plain.append(took)
                    if not loader:
                        out.append({"source": cfg.name, "file": path.name, "status": status})
                        continue
                    entry = {"source": cfg.name, "file": path.name, "format": cfg.format, "rows": rows,
                             "loader_s": round(min(loader), 3),
                             "loader_rows_per_s": round(rows / min(loader))}
                    if plain:
                        entry.update({"copy_s": round(min(plain), 3), "copy_rows": plain_rows,
                                      "ratio": round(min(plain) / min(loader), 2)})
                    out.append(entry)
    finally:
        drop_baseline_db(settings)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("sources", nargs="*", help="source names (default: every file source)")
    args = parser.parse_args(argv)
    settings = get_settings()
    sources = [s for s in load_registry() if s.kind != "orders_db" and (not args.sources or s.name in args.sources)]
    for entry in measure(settings, sources, args.rounds):
        print(json.dumps(entry, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
